"""airlock's own repository in the bundle: which refs cross, and the snapshot of a dirty tree.

Real git throughout: a checkout in a temporary folder stands for the one
airlock runs from, and every assertion reads what git itself says (the
refs of the git bundle, the files of the commit, the checkout's refs and
index before and after).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import unittest
from pathlib import Path

from airlock.bundle import check, gather, inspect, layout, manifest
from airlock.errors import AirlockError
from airlock.ext import git
from airlock.tests.unit.gitrepo import GitRepo


class AirlockRepositoryTest(unittest.TestCase):
    def setUp(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="airlock-self-"))
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.repo = GitRepo(self.tmp / "airlock", branch="master")
        self.c1 = self.repo.commit({"releases/2025.2/release.yaml": "name: '2025.2'\n",
                                    "images/keystone/bindep.txt": "libffi-dev\n",
                                    "README.md": "airlock\n"})
        self.old_tag = self.repo.tag("0.9")
        self.c2 = self.repo.commit({"README.md": "airlock, later\n"})
        self.tag = self.repo.tag("1.0")
        self.light = self.repo.tag("light", annotated=False)

    def gather(self, cache: str = "cache") -> tuple[Path, dict]:
        return gather.airlock_repository(self.repo.path, self.tmp / cache)

    def unbundled(self, bundle: Path) -> Path:
        """A bare repository holding exactly what ``bundle`` carries."""
        bare = Path(tempfile.mkdtemp(prefix="unbundled-", dir=self.tmp)) / "r.git"
        git.init_bare(bare)
        git.unbundle(bare, bundle)
        return bare

    def checkout_state(self) -> tuple[str, bytes, str, str]:
        """Everything of the checkout that bundle create must leave as it was."""
        return (self.repo.git("for-each-ref"), (self.repo.path / ".git/index").read_bytes(),
                self.repo.git("count-objects"), self.repo.git("status", "--porcelain"))

    def test_a_clean_tree_crosses_as_head_under_its_branch_and_the_tags_on_it(self) -> None:
        bundle, info = self.gather()
        self.assertEqual(info, {"commit": self.c2, "bundle": layout.airlock_git_bundle(self.c2),
                                "uncommitted": False,
                                "heads": {"refs/heads/master": self.c2, "refs/tags/1.0": self.tag,
                                          "refs/tags/light": self.c2}})
        self.assertEqual(info["bundle"], f"sources/git/airlock-{self.c2[:12]}.bundle")
        bare = self.unbundled(bundle)
        self.assertTrue(git.has_object(bare, self.c1))  # the history crosses with it
        self.assertEqual(git.remote_refs(str(bare)), info["heads"])  # 0.9 is not on HEAD

    def test_a_detached_clean_head_without_tags_crosses_under_its_sha(self) -> None:
        c3 = self.repo.commit({"README.md": "airlock, detached\n"})
        self.repo.git("switch", "--quiet", "--detach", c3)
        _bundle, info = self.gather()
        self.assertEqual(info["heads"], {f"refs/airlock/commits/{c3}": c3})
        self.assertFalse(info["uncommitted"])

    def test_uncommitted_changes_cross_as_a_snapshot_and_the_checkout_is_untouched(self) -> None:
        (self.repo.path / "README.md").write_text("airlock, edited\n")
        (self.repo.path / "images/new.txt").write_text("staged\n")
        self.repo.git("add", "images/new.txt")
        (self.repo.path / "images/keystone/bindep.txt").unlink()
        (self.repo.path / "untracked.txt").write_text("not part of it\n")
        before = self.checkout_state()
        bundle, info = self.gather()
        self.assertEqual(self.checkout_state(), before)
        commit = info["commit"]
        self.assertTrue(info["uncommitted"])
        self.assertNotEqual(commit, self.c2)
        # Under its own ref only: no branch, no tag.
        self.assertEqual(info["heads"], {f"refs/airlock/snapshots/{commit}": commit})
        bare = self.unbundled(bundle)
        self.assertEqual(git.run(["--git-dir", str(bare), "rev-parse", f"{commit}^"]
                                 ).stdout.strip(), self.c2)
        listed = git.run(["--git-dir", str(bare), "ls-tree", "-r", "--name-only", commit]
                         ).stdout.split()
        self.assertEqual(listed, ["README.md", "images/new.txt",
                                  "releases/2025.2/release.yaml"])
        self.assertEqual(git.run(["--git-dir", str(bare), "show", f"{commit}:README.md"]
                                 ).stdout, "airlock, edited\n")

    def test_the_same_content_is_the_same_snapshot_whatever_the_cache_or_the_clock(self) -> None:
        readme = self.repo.path / "README.md"
        readme.write_text("airlock, edited\n")
        first, info = self.gather("one")
        kept = first.stat()
        # Touched (a new mtime), gathered into another cache: the same commit, the same name.
        os.utime(readme, (2_000_000_000, 2_000_000_000))
        other, again = self.gather("two")
        self.assertEqual(again, info)
        self.assertEqual(other.name, first.name)
        # The same bytes too: a delta (--since), which keys artifacts by sha256,
        # leaves an unchanged airlock out even when made with another cache.
        self.assertEqual(other.read_bytes(), first.read_bytes())
        # The same cache: the kept file itself, not written again.
        same, _ = self.gather("one")
        self.assertEqual((same, same.stat().st_ino, same.stat().st_mtime_ns),
                         (first, kept.st_ino, kept.st_mtime_ns))
        readme.write_text("airlock, edited twice\n")
        self.assertNotEqual(self.gather("one")[1]["commit"], info["commit"])
        readme.write_text("airlock, edited\n")
        self.assertEqual(self.gather("one")[1]["commit"], info["commit"])
        # Committed, the tree is clean again: HEAD crosses, under the branch.
        readme.write_text("airlock, later\n")
        self.assertEqual(self.gather("one")[1]["commit"], self.c2)

    def test_a_folder_that_is_not_a_checkout_is_one_line(self) -> None:
        plain = self.tmp / "plain"
        (plain / "releases").mkdir(parents=True)
        with self.assertRaises(AirlockError) as caught:
            gather.airlock_repository(plain, self.tmp / "cache")
        self.assertIn("not the top of a git checkout", str(caught.exception))
        with self.assertRaises(AirlockError):  # a folder inside a checkout is not its top
            gather.airlock_repository(self.repo.path / "releases", self.tmp / "cache")

    def test_check_finds_the_commit_in_its_git_bundle_or_says_it_is_not(self) -> None:
        bundle, info = self.gather()

        def where(path: str) -> Path | None:
            return bundle if path == info["bundle"] else None

        doc = {"artifacts": [], "releases": {}, "airlock": {"version": "0.1.0", **info}}
        self.assertEqual(check.check(doc, where, "B"), [])
        wrong = {**doc, "airlock": {**doc["airlock"], "commit": "0" * 40}}
        problems = check.check(wrong, where, "B")
        self.assertEqual([str(p).split(";")[0] for p in problems],
                         [f"B: airlock: commit {'0' * 40} is not in {info['bundle']}"])
        gone = check.check(doc, lambda path: None, "B")
        self.assertEqual(len(gone), 1)
        self.assertIn("no git bundle", str(gone[0]))


class ManifestAirlockTest(unittest.TestCase):
    ENTRY = {"version": "0.1.0+gabc", "python": "3.11", "commit": "c" * 40,
             "bundle": layout.airlock_git_bundle("c" * 40), "uncommitted": True,
             "heads": {f"refs/airlock/snapshots/{'c' * 40}": "c" * 40}}

    def doc(self, **airlock) -> dict:
        return {"schema": layout.SCHEMA, "id": "airlock-x", "version": "1", "requires": [],
                "releases": {}, "artifacts": [], "airlock": {**self.ENTRY, **airlock}}

    def test_a_wrong_airlock_entry_is_one_line_naming_the_key(self) -> None:
        for bad, key in (({"commit": "HEAD"}, "airlock.commit"),
                         ({"bundle": "../x.bundle"}, "airlock.bundle"),
                         ({"uncommitted": "yes"}, "airlock.uncommitted"),
                         ({"heads": ["refs/heads/x"]}, "airlock.heads")):
            with self.subTest(key=key), self.assertRaises(AirlockError) as caught:
                manifest.parse(json.dumps(self.doc(**bad)).encode(), "m.json")
            self.assertTrue(str(caught.exception).startswith(f"m.json:{key}:"),
                            str(caught.exception))
        # A bundle made before airlock's repository crossed has no commit: still read.
        manifest.parse(json.dumps({**self.doc(), "airlock": {"version": "0.1.0"}}).encode(),
                       "m.json")

    def test_inspect_shows_the_commit_and_whether_it_is_a_snapshot(self) -> None:
        text = inspect.render(self.doc())
        self.assertIn(f"repository at {'c' * 40} (snapshot of uncommitted changes) in "
                      f"sources/git/airlock-{'c' * 12}.bundle", text)
        self.assertIn("(committed)", inspect.render(self.doc(uncommitted=False)))
        self.assertIn("not in this bundle",
                      inspect.render({**self.doc(), "airlock": {"version": "0.1.0"}}))


if __name__ == "__main__":
    unittest.main()
