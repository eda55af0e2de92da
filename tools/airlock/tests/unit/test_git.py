"""airlock.ext.git against real repositories: ls-remote, fetch by SHA, describe, apply."""

from __future__ import annotations

import hashlib
import os
import tempfile
import unittest
from pathlib import Path

from airlock.errors import ToolError
from airlock.ext import git
from airlock.tests.unit.gitrepo import GitRepo, numbered


class RemoteTest(unittest.TestCase):
    """Read-only queries on one shared repository."""

    @classmethod
    def setUpClass(cls) -> None:
        cls._tmp = tempfile.TemporaryDirectory(prefix="airlock-test-git-")
        cls.root = Path(cls._tmp.name)
        cls.repo = GitRepo(cls.root / "repo")
        cls.c1 = cls.repo.commit({"a": "1\n"}, "one")
        cls.tag_object = cls.repo.tag("1.0.0")
        cls.c2 = cls.repo.commit({"a": "2\n"}, "two")
        cls.c3 = cls.repo.commit({"a": "3\n"}, "three")

    @classmethod
    def tearDownClass(cls) -> None:
        cls._tmp.cleanup()

    def test_ls_remote_lists_tag_object_and_commit_and_peeled_keeps_commit(self) -> None:
        refs = git.ls_remote(str(self.repo.path), ["1.0.0", "1.0.0^{}"], tags=True)
        self.assertEqual(refs, {"refs/tags/1.0.0": self.tag_object,
                                "refs/tags/1.0.0^{}": self.c1})
        self.assertEqual(git.peeled(refs), {"refs/tags/1.0.0": self.c1})

    def test_ls_remote_of_a_missing_repository_gives_gits_reason(self) -> None:
        missing = str(self.root / "nope")
        with self.assertRaises(ToolError) as caught:
            git.ls_remote(missing, [], heads=True)
        self.assertEqual(caught.exception.what,
                         f"'{missing}' does not appear to be a git repository")

    def test_has_commit_finds_a_commit_that_is_no_ref_tip(self) -> None:
        self.assertTrue(git.has_commit(self.repo.url, self.c2))
        self.assertFalse(git.has_commit(self.repo.url, "0" * 40))

    def test_reason_prefers_the_first_fatal_line_over_advice(self) -> None:
        stderr = ("fatal: 'x' does not appear to be a git repository\n"
                  "fatal: Could not read from remote repository.\n\n"
                  "Please make sure you have the correct access rights\n")
        self.assertEqual(git.reason(stderr), "'x' does not appear to be a git repository")
        self.assertEqual(git.reason(""), "git failed without a message")


class ScratchTest(unittest.TestCase):
    """Fetch, export, describe and apply, each in a fresh temp dir."""

    def setUp(self) -> None:
        tmp = tempfile.TemporaryDirectory(prefix="airlock-test-git-")
        self.addCleanup(tmp.cleanup)
        self.root = Path(tmp.name)
        self.repo = GitRepo(self.root / "repo")

    def test_full_fetch_then_describe_and_export(self) -> None:
        self.repo.commit({"a": "1\n"}, "one")
        self.repo.tag("2024.1-eol", annotated=False)
        self.repo.tag("1.0.0")
        self.repo.commit({"a": "2\n", "sub/b": "b\n"}, "two")
        head = self.repo.commit({"a": "3\n"}, "three")
        git_dir = self.root / "scratch.git"
        git.init_bare(git_dir)
        self.assertTrue(git.fetch_commit(git_dir, str(self.repo.path), head, tags=True))
        self.assertEqual(sorted(git.tag_names(git_dir)), ["1.0.0", "2024.1-eol"])
        self.assertEqual(git.describe(git_dir, head, exclude=["2024.1-eol"]), ("1.0.0", 2))
        self.assertIsNone(git.describe(git_dir, head, exclude=["2024.1-eol", "1.0.0"]))
        self.assertEqual(git.count_commits(git_dir, head), 3)
        out = self.root / "out"
        out.mkdir()
        git.export_tree(git_dir, head, out)
        self.assertEqual(sorted(p.name for p in out.iterdir()), ["a", "sub"])
        self.assertEqual((out / "a").read_text(), "3\n")

    def test_apply_patch_reports_path_and_hunk_line(self) -> None:
        self.repo.commit({"f.py": numbered(20)}, "base")
        self.repo.commit({"f.py": numbered(20, {10: "changed"})}, "change")
        patch = self.root / "p.patch"
        patch.write_text(self.repo.format_patch())
        tree = self.root / "tree"
        tree.mkdir()
        (tree / "f.py").write_text(numbered(20, {10: "other"}))
        failure = git.apply_patch(tree, patch)
        self.assertEqual(failure, git.ApplyFailure(reason="patch does not apply", path="f.py",
                                                   line=7, malformed=False))
        (tree / "f.py").write_text(numbered(20))
        self.assertIsNone(git.apply_patch(tree, patch))
        self.assertIn("changed\n", (tree / "f.py").read_text())

    def test_apply_patch_marks_garbage_as_malformed(self) -> None:
        patch = self.root / "p.patch"
        patch.write_text("not a patch\n")
        failure = git.apply_patch(self.repo.path, patch)
        assert failure is not None
        self.assertTrue(failure.malformed)
        self.assertIn("No valid patches", failure.reason)


class ExecTest(unittest.TestCase):
    """Every git call goes through airlock.ext.exec: a missing git, a hang, binary input."""

    def setUp(self) -> None:
        tmp = tempfile.TemporaryDirectory(prefix="airlock-test-git-")
        self.addCleanup(tmp.cleanup)
        self.root = Path(tmp.name)

    def test_missing_git_names_its_package(self) -> None:
        empty = self.root / "bin"
        empty.mkdir()
        with self.assertRaises(ToolError) as caught:
            git.run(["version"], where="https://git.example/x", env={"PATH": str(empty)})
        self.assertEqual(str(caught.exception), "https://git.example/x: git is not installed; "
                         "install the Debian package git (as root: tools/setup-host build-host)")

    def test_a_git_that_hangs_is_stopped(self) -> None:
        fifo = self.root / "fifo"
        os.mkfifo(fifo)  # git blocks opening it: nobody ever writes
        with self.assertRaises(ToolError) as caught:
            git.run(["hash-object", str(fifo)], where="probe", timeout=0.5)
        self.assertEqual(str(caught.exception), "probe: did not finish within 0.5 s")

    def test_snapshot_bytes_reach_fast_import_unchanged(self) -> None:
        git_dir = self.root / "m.git"
        git.init_bare(git_dir)
        blob = bytes(range(256)) * 4  # not text: every byte value, NULs included
        sha = git.write_snapshot(git_dir, [("bin/data", "100644", blob),
                                           ("run", "100755", b"#!/bin/sh\n")],
                                 message="snap\n", ident="A <a@example.org>", when=1700000000)
        stored = git.run(["--git-dir", str(git_dir), "rev-parse", f"{sha}:bin/data"])
        expected = hashlib.sha1(b"blob %d\0" % len(blob) + blob).hexdigest()
        self.assertEqual(stored.stdout.strip(), expected)
        mode = git.run(["--git-dir", str(git_dir), "ls-tree", sha, "run"]).stdout.split()[0]
        self.assertEqual(mode, "100755")


if __name__ == "__main__":
    unittest.main()
