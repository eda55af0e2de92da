"""The Zuul build playbook, run by a real ansible-playbook on this machine.

playbooks/build/run.yaml with the variables Zuul gives a job (zuul.project
.src_dir and the job's airlock_* variables), against localhost: it must
build keystone with the roles, publish it to the local registry and say
it changed something; a second run must change nothing and say so (the
roles decide from airlock's --json results). The ensure-build-host role
reports what setup-host's result file lists.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
import unittest
from pathlib import Path

from airlock.ext import registry
from airlock.tests.functional import pipeline
from airlock.tests.functional.engine import REPO_ROOT, base_image, require_engine

RELEASE = "2025.2"


def ansible_playbook(extra_vars: dict, playbook: Path = REPO_ROOT / "playbooks" / "build"
                     / "run.yaml") -> subprocess.CompletedProcess[str]:
    bindir = Path(sys.executable).parent
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(extra_vars, handle)
    try:
        return subprocess.run(
            [str(bindir / "ansible-playbook"), "-i", "localhost,", "-c", "local",
             str(playbook), "-e", f"@{handle.name}"],
            cwd=REPO_ROOT, capture_output=True, text=True,
            env={**os.environ, "ANSIBLE_ROLES_PATH": str(REPO_ROOT / "roles"),
                 "ANSIBLE_PYTHON_INTERPRETER": sys.executable,
                 "ANSIBLE_NOCOLOR": "1"})
    finally:
        os.unlink(handle.name)


def recap(proc: subprocess.CompletedProcess[str]) -> dict[str, int]:
    """The PLAY RECAP counters of localhost: ok, changed, failed, ..."""
    line = next(line for line in proc.stdout.splitlines() if line.startswith("localhost "))
    return {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", line)}


def changed_tasks(proc: subprocess.CompletedProcess[str]) -> list[str]:
    """The tasks ansible-playbook reported as changed."""
    tasks, task = [], ""
    for line in proc.stdout.splitlines():
        if line.startswith("TASK ["):
            task = line[6:line.rindex("]")]
        elif line.startswith("changed:"):
            tasks.append(task)
    return tasks


class BuildPlaybookTest(unittest.TestCase):
    def test_playbook_builds_publishes_and_then_changes_nothing(self) -> None:
        require_engine()
        base_image()
        prefix = pipeline.seeded_prefix("playbook", RELEASE, ("linux/amd64",))
        extra = {
            "zuul": {"project": {"src_dir": str(REPO_ROOT)}},
            "airlock_release": RELEASE,
            "airlock_services": ["keystone"],
            "airlock_platforms": ["linux/amd64"],
            "airlock_registry": prefix,
            "airlock_git_base": pipeline.git_base("keystone"),
            "airlock_work_dir": str(pipeline.WORK),
            "airlock_executable": str(Path(sys.executable).parent / "airlock"),
        }
        first = ansible_playbook(extra)
        self.assertEqual(first.returncode, 0, first.stdout[-4000:] + first.stderr[-2000:])
        # "changed" is judged from airlock's --json by the task after each
        # command (the command itself decides nothing: see the roles).
        self.assertEqual(changed_tasks(first), ["airlock-build : Read the build's result",
                                                "airlock-publish : Read what publish did"],
                         first.stdout[-4000:])
        self.assertGreater(recap(first)["changed"], 0)
        record = json.loads((pipeline.WORK / RELEASE / "build-record.json").read_text())
        keystone = pipeline.image(record, "keystone")
        self.assertEqual(keystone["status"], "built")
        self.assertEqual(registry.digest(f"{prefix}/keystone:{RELEASE}"), keystone["digest"])

        second = ansible_playbook(extra)
        self.assertEqual(second.returncode, 0, second.stdout[-4000:])
        self.assertEqual(recap(second)["changed"], 0, second.stdout[-4000:])
        record = json.loads((pipeline.WORK / RELEASE / "build-record.json").read_text())
        self.assertEqual({row["image"]: row["status"] for row in record["images"]},
                         {"python-base": "skipped", "venv-builder": "skipped",
                          "keystone": "skipped"})
        self.assertIn("Build the release's images", second.stdout)

        # A Zuul base job's build (--bases-only): python-base and
        # venv-builder only, found by input digest, the digests the
        # service build used; no service is looked at.
        bases = pipeline.airlock("build", "--release", RELEASE, "--bases-only", "--json",
                                 "--platform", "linux/amd64", "--registry", prefix,
                                 "--work-dir", str(pipeline.WORK),
                                 "--git-base", pipeline.git_base("keystone"))
        doc = json.loads(bases.stdout)
        self.assertEqual([(row["name"], row["status"], row["digest"]) for row in doc["images"]],
                         [(name, "skipped", pipeline.image(record, name)["digest"])
                          for name in ("python-base", "venv-builder")])
        self.assertFalse(doc["changed"])


# What setup-host build-host would be told and what it writes: the stub
# below stands in for it, because producing a real change would mean
# installing packages or restarting the machine's dockerd under the other
# tests. The real script's result file is written by the same code path
# whatever it changed.
STUB_SETUP_HOST = """#!/bin/sh
test "$1" = build-host || exit 2
printf '%s\\n' "$STUB_CHANGES" > "$AIRLOCK_SETUP_RESULT"
"""


class EnsureBuildHostRoleTest(unittest.TestCase):
    def test_changed_comes_from_the_result_file(self) -> None:
        started = time.time()
        with tempfile.TemporaryDirectory() as tmp:
            src = Path(tmp)
            (src / "tools").mkdir()
            (src / "tools" / "setup-host").write_text(STUB_SETUP_HOST)
            (src / "tools" / "setup-host").chmod(0o755)
            playbook = src / "play.yaml"
            playbook.write_text("- hosts: all\n  roles:\n    - ensure-build-host\n")
            for changes, expected in (('{"changed": ["starting dockerd"]}', 1),
                                      ('{"changed": []}', 0)):
                with self.subTest(result=changes):
                    os.environ["STUB_CHANGES"] = changes
                    try:
                        proc = ansible_playbook({"ensure_build_host_src_dir": str(src)},
                                                playbook)
                    finally:
                        del os.environ["STUB_CHANGES"]
                    self.assertEqual(proc.returncode, 0, proc.stdout[-3000:])
                    self.assertEqual(recap(proc)["changed"], expected, proc.stdout[-3000:])
                    self.assertEqual(changed_tasks(proc), ["ensure-build-host : Report what "
                                                           "setup-host changed"] * expected)
        left = [path for path in Path(tempfile.gettempdir()).glob("*.setup-host.json")
                if path.stat().st_mtime >= started]
        self.assertEqual(left, [], "the role left its result file behind")


SITE_STORES = {
    "pypi": {"upload": "http://127.0.0.1:8080/", "simple": "http://127.0.0.1:8080/simple/"},
    "raw": {"url": "http://127.0.0.1:8081/airlock/"},
    "registry": {"prefix": "127.0.0.1:5001/airlock"},
    "git": {"base": "git://127.0.0.1:9418", "push": "/var/lib/airlock/site/git"},
}


class SiteRoleTest(unittest.TestCase):
    """The airlock-site role (the generated jobs' pre-run): site.yaml from airlock_site."""

    def run_role(self, stores: dict, dest: Path) -> subprocess.CompletedProcess[str]:
        playbook = dest.parent / "play.yaml"
        playbook.write_text("- hosts: all\n  roles:\n    - airlock-site\n")
        return ansible_playbook({"airlock_site_stores": stores, "airlock_site_dir": str(dest),
                                 "airlock_executable": str(Path(sys.executable).parent
                                                           / "airlock")}, playbook)

    def test_a_missing_key_fails_naming_the_variable_and_a_full_one_writes_both_files(self):
        with tempfile.TemporaryDirectory() as tmp:
            dest = Path(tmp) / "site"
            stores = json.loads(json.dumps(SITE_STORES))
            del stores["registry"]["prefix"]
            proc = self.run_role(stores, dest)
            self.assertNotEqual(proc.returncode, 0, proc.stdout[-3000:])
            self.assertIn("airlock_site.registry.prefix: is not set; set it in the site's "
                          "base job or site variables", proc.stdout)
            self.assertFalse(dest.exists())
            proc = self.run_role(SITE_STORES, dest)
            self.assertEqual(proc.returncode, 0, proc.stdout[-3000:])
            self.assertEqual(recap(proc)["changed"], 0)
            self.assertEqual(sorted(p.name for p in dest.iterdir()),
                             ["site-push.yaml", "site.yaml"])
            self.assertIn("anonymous: true", (dest / "site.yaml").read_text())
