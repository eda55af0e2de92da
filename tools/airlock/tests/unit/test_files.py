"""files: replacing a prepared folder never deletes what airlock did not write."""

from __future__ import annotations

import shutil
import tempfile
import unittest
from pathlib import Path

from airlock import files
from airlock.errors import AirlockError


class CheckReplaceableTest(unittest.TestCase):
    def setUp(self) -> None:
        self.tmp = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.tmp)

    def test_absent_empty_and_ours_are_replaceable(self) -> None:
        (self.tmp / "empty").mkdir()
        ours = self.tmp / "ours"
        ours.mkdir()
        (ours / "manifest.json").write_text("{}")
        (ours / "x.whl").write_text("")
        for dest in (self.tmp / "absent", self.tmp / "empty", ours):
            files.check_replaceable(dest, "manifest.json", "a wheelhouse")

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
