"""files: replacing a prepared folder never deletes what airlock did not write;
remembered digests are never stale."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
import unittest
from pathlib import Path
from unittest import mock

from airlock import files
from airlock.errors import AirlockError


class CheckReplaceableTest(unittest.TestCase):
    def setUp(self) -> None:
        self.tmp = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.tmp)

    def test_absent_empty_and_ours_are_replaced_whole(self) -> None:
        (self.tmp / "empty").mkdir()
        ours = self.tmp / "ours"
        ours.mkdir()
        (ours / "manifest.json").write_text("{}")
        (ours / "x.whl").write_text("")
        for dest in (self.tmp / "absent", self.tmp / "empty", ours):
            with self.subTest(dest=dest.name):
                files.check_replaceable(dest, "manifest.json", "a wheelhouse")
                stage = self.tmp / f".{dest.name}.new"
                stage.mkdir()
                (stage / "manifest.json").write_text('{"new": 1}')
                files.swap_into_place(stage, dest)
                self.assertEqual(sorted(p.name for p in dest.iterdir()), ["manifest.json"])
                self.assertEqual((dest / "manifest.json").read_text(), '{"new": 1}')
        self.assertEqual(sorted(p.name for p in self.tmp.iterdir()), ["absent", "empty", "ours"])

    def test_the_swap_is_one_step_and_leaves_no_old_folder(self) -> None:
        # The kernel's exchange: dest is the old or the new tree at every moment.
        dest, stage = self.tmp / "dest", self.tmp / ".dest.new"
        dest.mkdir()
        (dest / "old").write_text("old")
        stage.mkdir()
        (stage / "new").write_text("new")
        self.assertTrue(files._exchange(stage, dest))
        self.assertEqual([p.name for p in dest.iterdir()], ["new"])
        self.assertEqual([p.name for p in stage.iterdir()], ["old"])
        files.swap_into_place(self.tmp / ".dest.new", dest)  # swaps back, drops the other
        self.assertEqual([p.name for p in dest.iterdir()], ["old"])
        self.assertEqual(sorted(p.name for p in self.tmp.iterdir()), ["dest"])

    def test_a_foreign_folder_is_refused_with_one_line(self) -> None:
        foreign = self.tmp / "home"
        foreign.mkdir()
        (foreign / "notes.txt").write_text("precious")
        with self.assertRaises(AirlockError) as caught:
            files.check_replaceable(foreign, "manifest.json", "a wheelhouse")
        self.assertEqual(str(caught.exception),
                         f"{foreign}: exists and is not a wheelhouse (no manifest.json); "
                         "choose a new or empty folder for --dest")
        self.assertEqual((foreign / "notes.txt").read_text(), "precious")

    def test_a_file_is_refused(self) -> None:
        plain = self.tmp / "plain"
        plain.write_text("")
        with self.assertRaises(AirlockError):
            files.check_replaceable(plain, "manifest.json", "an airlock apt repository")


class LinkOrCopyTest(unittest.TestCase):
    """Only a regular file itself is linked or copied: never a link, never a FIFO."""

    def setUp(self) -> None:
        self.tmp = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.tmp)
        self.outside = self.tmp / "outside"
        self.outside.write_text("secret of the host\n")
        self.cache = self.tmp / "cache"
        self.cache.mkdir()

    def test_a_regular_file_is_hard_linked(self) -> None:
        src = self.cache / "a-1.0-py3-none-any.whl"
        src.write_bytes(b"wheel")
        files.link_or_copy(src, self.tmp / "linked.whl")
        self.assertEqual((self.tmp / "linked.whl").stat().st_ino, src.stat().st_ino)

    def test_a_symbolic_link_is_refused_and_nothing_is_made(self) -> None:
        for target in (self.outside, Path("/nonexistent")):
            src = self.cache / "evil.whl"
            src.unlink(missing_ok=True)
            src.symlink_to(target)
            with self.subTest(target=str(target)), self.assertRaises(AirlockError) as caught:
                files.link_or_copy(src, self.tmp / "taken.whl")
            self.assertEqual(str(caught.exception), f"{src}: is a symbolic link, not a "
                             "regular file; remove it; airlock takes regular files only")
            self.assertFalse(os.path.lexists(self.tmp / "taken.whl"))
        self.assertEqual(self.outside.read_text(), "secret of the host\n")

    def test_a_fifo_is_refused_without_hanging(self) -> None:
        src = self.cache / "fifo.deb"
        os.mkfifo(src)
        with self.assertRaises(AirlockError) as caught:
            files.link_or_copy(src, self.tmp / "taken.deb")
        self.assertIn("is a FIFO, not a regular file", str(caught.exception))
        self.assertFalse(os.path.lexists(self.tmp / "taken.deb"))

    def test_across_file_systems_the_file_is_copied_with_its_mode_and_time(self) -> None:
        shm = Path("/dev/shm")
        if not shm.is_dir() or shm.stat().st_dev == self.tmp.stat().st_dev:
            self.skipTest("needs /dev/shm on another file system than the temp folder")
        other = Path(tempfile.mkdtemp(dir=shm))
        self.addCleanup(shutil.rmtree, other)
        src = self.cache / "run.sh"
        src.write_bytes(b"#!/bin/sh\n")
        src.chmod(0o750)
        os.utime(src, (1000000000, 1000000000))
        files.link_or_copy(src, other / "run.sh")
        copied = (other / "run.sh").stat()
        self.assertNotEqual(copied.st_ino, src.stat().st_ino)
        self.assertEqual(((other / "run.sh").read_bytes(), copied.st_mode & 0o777,
                          copied.st_mtime), (b"#!/bin/sh\n", 0o750, 1000000000))


class SwapIntoPlaceTest(unittest.TestCase):
    def test_the_new_tree_replaces_the_old_and_nothing_is_left_over(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            dest, stage = root / "repo", root / ".repo.new"
            dest.mkdir()
            (dest / "old").write_text("old")
            stage.mkdir()
            (stage / "new").write_text("new")
            files.swap_into_place(stage, dest)
            self.assertEqual(sorted(p.name for p in root.iterdir()), ["repo"])
            self.assertEqual(sorted(p.name for p in dest.iterdir()), ["new"])

    def test_a_first_install_needs_no_old_tree(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            stage = root / ".repo.new"
            stage.mkdir()
            files.swap_into_place(stage, root / "repo")
            self.assertTrue((root / "repo").is_dir())
            self.assertFalse(stage.exists())


class RememberedDigestsTest(unittest.TestCase):
    """A no-op build must not re-read unchanged files, and never trust a changed one."""

    def setUp(self) -> None:
        self.tmp = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.tmp)
        self.store = self.tmp / "cache" / "file-digests.json"
        self.file = self.tmp / "a.whl"
        self.file.write_bytes(b"first content")
        self.first = hashlib.sha256(b"first content").hexdigest()

    def not_racy(self):
        """Trust files changed just now (the test cannot wait for the real window)."""
        return mock.patch.object(files, "RACY_NS", -10**12)

    def test_a_remembered_file_is_not_read_again_in_this_run_or_the_next(self) -> None:
        no_read = mock.patch.object(files, "_content_sha256", side_effect=AssertionError("read"))
        with self.not_racy():
            with files.remembered_digests(self.store):
                self.assertEqual(files.sha256_file(self.file), self.first)
                with no_read:
                    self.assertEqual(files.sha256_file(self.file), self.first)
            with no_read, files.remembered_digests(self.store):
                self.assertEqual(files.sha256_file(self.file), self.first)

    def test_an_edited_file_is_read_again_even_with_size_and_mtime_restored(self) -> None:
        with self.not_racy(), files.remembered_digests(self.store):
            self.assertEqual(files.sha256_file(self.file), self.first)
            st = self.file.stat()
            time.sleep(0.05)  # a later clock tick: the edit gets a new ctime
            self.file.write_bytes(b"other content")  # same size
            os.utime(self.file, ns=(st.st_atime_ns, st.st_mtime_ns))
            self.assertEqual(files.sha256_file(self.file),
                             hashlib.sha256(b"other content").hexdigest())

    def test_a_file_changed_just_now_is_not_remembered(self) -> None:
        with files.remembered_digests(self.store):
            self.assertEqual(files.sha256_file(self.file), self.first)
        self.assertEqual(files.read_json(self.store), {})

    def test_entries_of_removed_files_are_dropped_and_a_broken_store_starts_empty(self) -> None:
        self.store.parent.mkdir()
        self.store.write_text("{not json")
        kept = self.tmp / "b.whl"
        kept.write_bytes(b"kept")
        with self.not_racy(), files.remembered_digests(self.store):
            files.sha256_file(self.file)
            files.sha256_file(kept)
            self.file.unlink()
        entries = files.read_json(self.store)
        self.assertEqual([entry[4] for entry in entries.values()], [str(kept)])

    def test_outside_a_block_nothing_is_remembered(self) -> None:
        files.sha256_file(self.file)
        with mock.patch.object(files, "_content_sha256", return_value="x") as read:
            files.sha256_file(self.file)
        read.assert_called_once()
        self.assertFalse(self.store.exists())
