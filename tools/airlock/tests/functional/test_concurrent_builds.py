"""Two ``airlock build`` runs at once on one host, as two Zuul jobs on one node.

Real builds (keystone, linux/amd64, each test under a fresh registry
prefix) sharing the suite's work folder and caches. Two builds of the same
release started together: one builds, the other says it waits for the
first (naming its pid), then finds every image the first made (skipped
once pushed, kept when not published) with the same digests. Two
different releases (2025.2 and a copy of it under another name, which
shares every cached input) build side by side: neither waits for the
other's release lock, and both records are whole.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

from airlock.tests.functional import pipeline
from airlock.tests.functional.engine import REPO_ROOT, base_image, require_engine

RELEASE = "2025.2"
PLATFORM = "linux/amd64"
TWIN = "2025.2-twin"


def start_build(release: str, prefix: str, git: str, root: Path | None = None
                ) -> subprocess.Popen[str]:
    """``airlock build --json`` of keystone for linux/amd64, in the background."""
    layout = ["--root", str(root), "--images-dir", str(REPO_ROOT / "images")] if root else []
    return subprocess.Popen(
        [sys.executable, "-m", "airlock.cli", "build", "--release", release,
         "--service", "keystone", "--platform", PLATFORM, "--registry", prefix,
         "--work-dir", str(pipeline.WORK), "--git-base", git, "--json", *layout],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "AIRLOCK_WORK_DIR": str(pipeline.WORK)})


def finish(proc: subprocess.Popen[str]) -> tuple[dict, str]:
    """Wait for a build; its --json document and its progress (stderr)."""
    out, err = proc.communicate(timeout=3600)
    if proc.returncode != 0:
        raise AssertionError(f"airlock build exited {proc.returncode}:\n{err[-3000:]}")
    return json.loads(out), err


def statuses(doc: dict) -> dict[str, str]:
    return {image["name"]: image["status"] for image in doc["images"]}


def digests(doc: dict) -> dict[str, str]:
    return {image["name"]: image["digest"] for image in doc["images"]}


class ConcurrentBuildsTest(unittest.TestCase):
    git: str

    @classmethod
    def setUpClass(cls) -> None:
        require_engine()
        base_image()
        cls.git = pipeline.git_base("keystone")

    def test_the_same_release_twice_one_builds_the_other_waits_then_keeps(self) -> None:
        prefix = pipeline.seeded_prefix("concurrent", RELEASE, (PLATFORM,))
        first, second = (start_build(RELEASE, prefix, self.git) for _ in range(2))
        (doc_a, err_a), (doc_b, err_b) = finish(first), finish(second)
        waiting = {proc.pid: f"{pipeline.WORK / RELEASE}: in use by airlock pid {proc.pid}; "
                   "waiting for it to finish" for proc in (first, second)}
        # Exactly one of them waited, for the other one.
        said = [waiting[second.pid] in err_a, waiting[first.pid] in err_b]
        self.assertEqual(sorted(said), [False, True], err_a[-2000:] + err_b[-2000:])
        (builder, builder_err), (waiter, waiter_err) = \
            ((doc_b, err_b), (doc_a, err_a)) if said[0] else ((doc_a, err_a), (doc_b, err_b))
        self.assertEqual(sum("waiting for it to finish" in line
                             for line in waiter_err.splitlines()), 1, waiter_err)
        # The bases were seeded (pipeline.seeded_prefix): keystone is what is built.
        self.assertEqual(statuses(builder), {"python-base": "skipped",
                                             "venv-builder": "skipped", "keystone": "built"})
        self.assertTrue(builder["changed"])
        self.assertEqual(statuses(waiter), {"python-base": "skipped",
                                            "venv-builder": "skipped", "keystone": "kept"})
        self.assertFalse(waiter["changed"])
        self.assertEqual(digests(waiter), digests(builder))
        self.assertNotIn("waiting", builder_err)

    def test_two_releases_build_side_by_side(self) -> None:
        with tempfile.TemporaryDirectory(prefix="airlock-twin-") as tmp:
            root = Path(tmp)
            for name in (RELEASE, TWIN):
                shutil.copytree(REPO_ROOT / "releases" / RELEASE, root / "releases" / name)
                shutil.copytree(REPO_ROOT / "patches" / "keystone" / RELEASE,
                                root / "patches" / "keystone" / name)
            release_yaml = root / "releases" / TWIN / "release.yaml"
            release_yaml.write_text(release_yaml.read_text().replace(
                f'name: "{RELEASE}"', f'name: "{TWIN}"'))
            prefix = pipeline.seeded_prefix("side-by-side", RELEASE, (PLATFORM,))
            procs = {name: start_build(name, prefix, self.git, root) for name in (RELEASE, TWIN)}
            results = {name: finish(proc) for name, proc in procs.items()}
        for name, (doc, err) in results.items():
            with self.subTest(release=name):
                self.assertNotIn(f"{pipeline.WORK / RELEASE}: in use", err)
                self.assertNotIn(f"{pipeline.WORK / TWIN}: in use", err)
                self.assertEqual(doc["release"], name)
                self.assertEqual(statuses(doc)["keystone"], "built")
                record = json.loads((pipeline.WORK / name / "build-record.json").read_text())
                self.assertEqual(digests(doc), {row["image"]: row["digest"]
                                                for row in record["images"]})
                keystone = next(i for i in doc["images"] if i["name"] == "keystone")
                self.assertIn(f"-{name}-", keystone["tags"][0])


if __name__ == "__main__":
    unittest.main()
