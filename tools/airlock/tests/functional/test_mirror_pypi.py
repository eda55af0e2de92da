"""The local git mirror from the real package index: keystone of 2025.2.

Downloads keystone's released sdist from the index named by
$AIRLOCK_INDEX_URL, or the one of pip's own configuration, makes the bare
repository and reads it back as a git server would be read: ``git
ls-remote``, ``airlock refs resolve`` and the CLI; then merges keystone's own
bindep.txt, the real one, into the image's package lists.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
import unittest
from pathlib import Path

from airlock import cli
from airlock.data import packages, refs
from airlock.data.layout import resolve_layout
from airlock.data.release import load_release
from airlock.ext import git
from airlock.inputs import mirror

REPO_ROOT = Path(__file__).resolve().parents[4]
RELEASE = "2025.2"


class KeystoneFromIndexTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls) -> None:
        cls._tmp = tempfile.TemporaryDirectory()
        cls.dest = Path(cls._tmp.name) / "git"
        cls.index_url = os.environ.get("AIRLOCK_INDEX_URL") or None
        cls.release = load_release(resolve_layout(str(REPO_ROOT)), RELEASE)
        cls.version = cls.release.components["keystone"].ref
        [cls.row] = mirror.create(cls.release, cls.dest, index_url=cls.index_url,
                                  components=["keystone"])
        cls.repo = cls.dest / "openstack" / "keystone"

    @classmethod
    def tearDownClass(cls) -> None:
        cls._tmp.cleanup()

    def test_row(self) -> None:
        self.assertEqual((self.row["component"], self.row["version"], self.row["repo"],
                          self.row["action"]),
                         ("keystone", self.version, str(self.repo), "created"))

    def test_ls_remote_sees_tag_and_branch(self) -> None:
        out = git.run(["ls-remote", str(self.repo)]).stdout
        listed = {name: sha for sha, name in (line.split("\t") for line in out.splitlines())}
        self.assertEqual(listed[f"refs/tags/{self.version}^{{}}"], self.row["sha"])
        self.assertEqual(listed[f"refs/heads/stable/{RELEASE}"], self.row["sha"])
        self.assertEqual(listed["HEAD"], self.row["sha"])

    def test_tree_is_the_released_keystone(self) -> None:
        def show(path: str) -> str:
            return git.run(["--git-dir", str(self.repo), "show",
                            f"{self.version}:{path}"]).stdout

        self.assertIn(f"\nVersion: {self.version}\n", show("PKG-INFO"))
        self.assertIn("name = keystone", show("setup.cfg"))

    def test_upstream_bindep_adds_nothing_to_the_image(self) -> None:
        """keystone's own bindep.txt is a devstack host's list: none of it is runtime."""
        with tempfile.TemporaryDirectory() as tmp:
            tree = Path(tmp)
            git.export_tree(self.repo, self.row["sha"], tree)
            self.assertIn("mariadb-server", (tree / "bindep.txt").read_text())
            images = REPO_ROOT / "images"
            for profile in packages.PROFILES:
                self.assertEqual(
                    packages.resolve(self.release, images, "keystone", profile, tree),
                    packages.resolve(self.release, images, "keystone", profile), profile)

    def test_refs_resolve_against_the_mirror(self) -> None:
        lock = refs.resolve_release(self.release, str(self.dest), only=["keystone"])
        self.assertEqual(lock["components"]["keystone"]["sha"], self.row["sha"])

    def test_cli_rerun_is_a_no_op(self) -> None:
        args = ["mirror", "create", "--release", RELEASE, "--dest", str(self.dest),
                "--component", "keystone", "--root", str(REPO_ROOT)]
        if self.index_url:
            args += ["--index-url", self.index_url]
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = cli.main(args)
        self.assertEqual(code, 0)
        self.assertEqual(out.getvalue(), f"keystone: {self.version} -> {self.repo} "
                                         f"({self.row['sha']})\n")


if __name__ == "__main__":
    unittest.main()
