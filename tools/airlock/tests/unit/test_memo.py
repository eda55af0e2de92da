"""memo: results remembered by their inputs; a changed input is never served a stale result.

Real files and the real bindep parser. The caches are what make a no-op
build fast; these tests only check what they return (hit, miss on a
changed input, a damaged entry ignored), never how long anything takes.
Files written by a test are "racy" (changed in the last two seconds) and
would never be remembered; ``not_racy`` trusts them, as test_files does.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import unittest
from pathlib import Path
from unittest import mock

from airlock import files, memo
from airlock.data import packages
from airlock.image import plan
from airlock.inputs import sources
from airlock.tests.unit.test_packages import UPSTREAM, make_release


def not_racy():
    """Trust files changed just now (the test cannot wait for the real window)."""
    return mock.patch.object(files, "RACY_NS", -10**12)


class TmpCase(unittest.TestCase):
    def setUp(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="airlock-test-memo-"))
        self.addCleanup(shutil.rmtree, self.tmp)
        self.cache = self.tmp / "cache"

    def entries(self, kind: str) -> list[Path]:
        return sorted((self.cache / "memo" / kind).glob("*.json"))


class StoreTest(TmpCase):
    def test_outside_a_block_nothing_is_remembered(self) -> None:
        memo.remember("bindep", {"a": 1}, ["x"])
        self.assertIsNone(memo.recall("bindep", {"a": 1}))
        self.assertFalse(self.cache.exists())

    def test_hit_and_miss_on_another_key(self) -> None:
        with memo.remembering(self.cache):
            memo.remember("bindep", {"a": 1}, ["x"])
        with memo.remembering(self.cache):
            self.assertEqual(memo.recall("bindep", {"a": 1}), ["x"])
            self.assertIsNone(memo.recall("bindep", {"a": 2}))
            self.assertIsNone(memo.recall("tree", {"a": 1}))

    def test_a_corrupt_or_foreign_entry_is_a_miss(self) -> None:
        with memo.remembering(self.cache):
            memo.remember("bindep", {"a": 1}, ["x"])
        (entry,) = self.entries("bindep")
        for damaged in ('{"key":{"a":1},"val', "[]", '{"key":{"a":2},"value":["y"]}',
                        '{"key":{"a":1}}', "\0\xff"):
            entry.write_text(damaged, errors="surrogateescape")
            with memo.remembering(self.cache):
                self.assertIsNone(memo.recall("bindep", {"a": 1}), damaged)
        entry.unlink()
        entry.mkdir()  # not even a file: still only a miss, and remember gives up quietly
        with memo.remembering(self.cache):
            self.assertIsNone(memo.recall("bindep", {"a": 1}))
            memo.remember("bindep", {"a": 1}, ["x"])

    def test_an_unwritable_cache_costs_time_not_the_result(self) -> None:
        self.cache.mkdir()
        (self.cache / "memo").write_text("a file where the folder goes")
        with memo.remembering(self.cache):
            memo.remember("bindep", {"a": 1}, ["x"])
            self.assertIsNone(memo.recall("bindep", {"a": 1}))


class BindepTest(TmpCase):
    """packages.resolve through the memo: the result of the same texts, never of a path."""

    def setUp(self) -> None:
        super().setUp()
        self.images = self.tmp / "images"
        (self.images / "keystone").mkdir(parents=True)
        self.ours = self.images / "keystone" / "bindep.txt"
        self.ours.write_text("libldap-2.5-0 [runtime]\ngcc [build]\n")
        self.source = self.tmp / "src"
        self.source.mkdir()
        (self.source / "bindep.txt").write_text(UPSTREAM)
        self.release = make_release()

    def resolve(self, profile: str = "runtime") -> list[str]:
        return packages.resolve(self.release, self.images, "keystone", profile, self.source)

    def test_the_same_texts_are_not_parsed_again_a_changed_one_is(self) -> None:
        with memo.remembering(self.cache):
            first = self.resolve()
        self.assertEqual(first, ["libldap-2.5-0", "lsscsi", "qemu-utils"])
        parse = mock.patch.object(packages, "_parse", side_effect=AssertionError("parsed"))
        with parse, memo.remembering(self.cache):
            self.assertEqual(self.resolve(), first)
        # Another profile is another result; so is an edit of either file.
        with memo.remembering(self.cache):
            self.assertEqual(self.resolve("build"), ["gcc", "python3-dev"])
            self.ours.write_text("libldap-2.5-0 [runtime]\nsudo [runtime]\n")
            self.assertEqual(self.resolve(), ["libldap-2.5-0", "lsscsi", "qemu-utils", "sudo"])
            (self.source / "bindep.txt").write_text("lsscsi [runtime]\n")
            self.assertEqual(self.resolve(), ["libldap-2.5-0", "lsscsi", "sudo"])
            (self.source / "bindep.txt").unlink()
            self.assertEqual(self.resolve(), ["libldap-2.5-0", "sudo"])

    def test_a_damaged_entry_is_computed_again(self) -> None:
        with memo.remembering(self.cache):
            first = self.resolve()
        for entry in self.entries("bindep"):
            doc = json.loads(entry.read_text())
            entry.write_text(json.dumps({"key": doc["key"], "value": [1, 2]}))
        with memo.remembering(self.cache):
            self.assertEqual(self.resolve(), first)
        for entry in self.entries("bindep"):
            entry.write_text("{")
        with memo.remembering(self.cache):
            self.assertEqual(self.resolve(), first)

    def test_a_syntax_error_is_never_remembered_away(self) -> None:
        self.ours.write_text("foo [test\n")
        for _ in range(2):
            with memo.remembering(self.cache), self.assertRaises(packages.AirlockError) as bad:
                self.resolve()
            self.assertIn("bindep.txt:1: not a bindep entry", str(bad.exception))


class TreeDigestTest(TmpCase):
    """plan.tree_digest through the memo: the same walk, content read only on a change."""

    def setUp(self) -> None:
        super().setUp()
        self.tree = self.tmp / "ctx"
        (self.tree / "pkg" / "sub").mkdir(parents=True)
        (self.tree / "pkg" / "a.py").write_text("print('a')\n")
        (self.tree / "pkg" / "sub" / "b.txt").write_text("bbbb\n")
        (self.tree / "link").symlink_to("pkg/a.py")
        self.plain = plan.tree_digest(self.tree)  # no block: computed from the content

    def digest(self) -> str:
        with memo.remembering(self.cache):
            return plan.tree_digest(self.tree)

    def test_a_remembered_tree_is_not_read_again_and_gives_the_same_digest(self) -> None:
        with not_racy():
            self.assertEqual(self.digest(), self.plain)
            with mock.patch.object(plan, "sha256_file", side_effect=AssertionError("read")):
                self.assertEqual(self.digest(), self.plain)

    def test_an_edit_keeping_size_and_mtime_changes_the_digest(self) -> None:
        with not_racy():
            self.digest()
            target = self.tree / "pkg" / "sub" / "b.txt"
            st = target.stat()
            time.sleep(0.05)  # a later clock tick: the edit gets a new ctime
            target.write_text("cccc\n")
            os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
            changed = self.digest()
        self.assertNotEqual(changed, self.plain)
        self.assertEqual(changed, plan.tree_digest(self.tree))

    def test_added_removed_exec_bit_and_link_target_each_change_the_digest(self) -> None:
        seen = set()
        with not_racy():
            seen.add(self.digest())
            (self.tree / "pkg" / "new").mkdir()
            seen.add(self.digest())
            os.chmod(self.tree / "pkg" / "a.py", 0o755)
            seen.add(self.digest())
            (self.tree / "link").unlink()
            (self.tree / "link").symlink_to("pkg/sub/b.txt")
            seen.add(self.digest())
            (self.tree / "pkg" / "sub" / "b.txt").unlink()
            seen.add(self.digest())
        self.assertEqual(len(seen), 5)
        self.assertEqual(self.digest(), plan.tree_digest(self.tree))

    def test_a_tree_changed_just_now_is_not_remembered(self) -> None:
        self.assertEqual(self.digest(), self.plain)
        self.assertEqual(self.entries("tree"), [])

    def test_a_corrupt_entry_is_ignored(self) -> None:
        with not_racy():
            self.digest()
            (entry,) = self.entries("tree")
            doc = json.loads(entry.read_text())
            doc["value"]["digest"] = "0" * 64  # a lie under the right signature...
            doc["value"]["signature"] = "1" * 64  # ...but not the tree's signature
            entry.write_text(json.dumps(doc))
            self.assertEqual(self.digest(), self.plain)
            entry.write_text("not json")
            self.assertEqual(self.digest(), self.plain)


class SourcesContextTest(TmpCase):
    """sources.links_match: a context is reused only while it is the trees' hard links."""

    def setUp(self) -> None:
        super().setUp()
        self.src = self.tmp / "src" / "keystone"
        (self.src / "keystone").mkdir(parents=True)
        (self.src / "keystone" / "__init__.py").write_text("")
        (self.src / "setup.cfg").write_text("[metadata]\n")
        (self.src / "doc").symlink_to("keystone")
        self.dest = self.tmp / "ctx" / "sources"
        copy = self.dest / "00-keystone"
        self.dest.mkdir(parents=True)
        shutil.copytree(self.src, copy, symlinks=True, copy_function=os.link)

    def test_the_same_links_match_any_difference_does_not(self) -> None:
        self.assertTrue(sources.links_match([self.src], self.dest))
        self.assertFalse(sources.links_match([self.src, self.src], self.dest))
        self.assertFalse(sources.links_match([self.tmp / "src"], self.dest))
        (self.src / "keystone" / "new.py").write_text("")
        self.assertFalse(sources.links_match([self.src], self.dest))
        (self.src / "keystone" / "new.py").unlink()
        self.assertTrue(sources.links_match([self.src], self.dest))
        # The same content in another inode (a tree prepared again) is no match.
        (self.src / "setup.cfg").unlink()
        (self.src / "setup.cfg").write_text("[metadata]\n")
        self.assertFalse(sources.links_match([self.src], self.dest))

    def test_a_link_target_or_a_folder_mode_that_differs_is_no_match(self) -> None:
        (self.src / "doc").unlink()
        (self.src / "doc").symlink_to("setup.cfg")
        self.assertFalse(sources.links_match([self.src], self.dest))
        (self.src / "doc").unlink()
        (self.src / "doc").symlink_to("keystone")
        os.chmod(self.src / "keystone", 0o700)
        self.assertFalse(sources.links_match([self.src], self.dest))

    def test_a_build_keeps_a_matching_context_and_so_every_file_s_ctime(self) -> None:
        from airlock.image import build

        before = (self.src / "setup.cfg").stat().st_ctime_ns
        time.sleep(0.05)
        self.assertEqual(build._sources_context([self.src], self.dest), self.dest)
        self.assertEqual((self.src / "setup.cfg").stat().st_ctime_ns, before)
        (self.src / "keystone" / "new.py").write_text("")
        build._sources_context([self.src], self.dest)
        self.assertTrue((self.dest / "00-keystone" / "keystone" / "new.py").is_file())
        self.assertTrue(sources.links_match([self.src], self.dest))

    def test_a_context_that_is_a_link_or_missing_is_no_match(self) -> None:
        self.assertFalse(sources.links_match([self.src], self.tmp / "nothing"))
        link = self.tmp / "ctx" / "link"
        link.symlink_to(self.dest)
        self.assertFalse(sources.links_match([self.src], link))


if __name__ == "__main__":
    unittest.main()
