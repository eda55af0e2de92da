"""The Zuul build playbook, run by a real ansible-playbook on this machine.

playbooks/build/run.yaml with the variables Zuul gives a job (zuul.project
.src_dir and the job's airlock_* variables), against localhost: it must
build keystone with the roles, publish it to the local registry, and a
second run must change nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

from airlock.ext import registry
from airlock.tests.functional import pipeline
from airlock.tests.functional.engine import REPO_ROOT, base_image, require_engine

RELEASE = "2025.2"


def ansible_playbook(extra_vars: dict) -> subprocess.CompletedProcess[str]:
    bindir = Path(sys.executable).parent
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(extra_vars, handle)
    try:
        return subprocess.run(
            [str(bindir / "ansible-playbook"), "-i", "localhost,", "-c", "local",
             str(REPO_ROOT / "playbooks" / "build" / "run.yaml"), "-e", f"@{handle.name}"],
            cwd=REPO_ROOT, capture_output=True, text=True,
            env={**os.environ, "ANSIBLE_ROLES_PATH": str(REPO_ROOT / "roles"),
                 "ANSIBLE_PYTHON_INTERPRETER": sys.executable,
                 "ANSIBLE_NOCOLOR": "1"})
    finally:
        os.unlink(handle.name)


class BuildPlaybookTest(unittest.TestCase):
    def test_playbook_builds_publishes_and_then_changes_nothing(self) -> None:
        require_engine()
        base_image()
        prefix = pipeline.fresh_prefix("playbook")
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
        record = json.loads((pipeline.WORK / RELEASE / "build-record.json").read_text())
        keystone = pipeline.image(record, "keystone")
        self.assertEqual(keystone["status"], "built")
        self.assertEqual(registry.digest(f"{prefix}/keystone:{RELEASE}"), keystone["digest"])

        second = ansible_playbook(extra)
        self.assertEqual(second.returncode, 0, second.stdout[-4000:])
        record = json.loads((pipeline.WORK / RELEASE / "build-record.json").read_text())
        self.assertEqual({row["image"]: row["status"] for row in record["images"]},
                         {"python-base": "skipped", "venv-builder": "skipped",
                          "keystone": "skipped"})
        self.assertIn("Build the release's images", second.stdout)
