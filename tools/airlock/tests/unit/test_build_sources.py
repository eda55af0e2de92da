"""build: prepared trees and the sources context never follow a link out of the work folder.

Real files only: a host folder and a host file that hostile trees point at,
and the two build steps that touch trees (replacing a prepared tree,
assembling the named ``sources`` context).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import unittest
from pathlib import Path

from airlock.errors import AirlockError
from airlock.image import build


class SourcesContextTest(unittest.TestCase):
    def setUp(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="airlock-test-ctx-"))
        self.addCleanup(shutil.rmtree, self.tmp)
        self.host = self.tmp / "host"
        self.host.mkdir()
        (self.host / "shadow").write_text("root:secret\n")
        self.work = self.tmp / "work"
        self.tree = self.work / "src" / "keystone"
        (self.tree / ".airlock").mkdir(parents=True)
        (self.tree / ".airlock" / "source.json").write_text("{}\n")
        (self.tree / "setup.py").write_text("# pbr\n")
        (self.tree / "shadow").symlink_to(self.host / "shadow")
        (self.tree / "etc").symlink_to(self.host)

    def host_untouched(self) -> None:
        self.assertEqual(sorted(p.name for p in self.host.iterdir()), ["shadow"])
        self.assertEqual((self.host / "shadow").read_text(), "root:secret\n")

    def test_links_are_copied_as_links_and_files_hard_linked(self) -> None:
        ctx = build._sources_context([self.tree], self.work / "ctx" / "keystone" / "sources")
        copy = ctx / "00-keystone"
        self.assertEqual(sorted(p.name for p in copy.iterdir()),
                         [".airlock", "etc", "setup.py", "shadow"])
        self.assertEqual(os.readlink(copy / "shadow"), str(self.host / "shadow"))
        self.assertEqual(os.readlink(copy / "etc"), str(self.host))
        self.assertEqual((copy / "setup.py").stat().st_ino, (self.tree / "setup.py").stat().st_ino)
        self.host_untouched()

    def test_a_context_folder_that_is_a_link_is_replaced_not_followed(self) -> None:
        dest = self.work / "ctx" / "keystone" / "sources"
        dest.parent.mkdir(parents=True)
        dest.symlink_to(self.host)
        ctx = build._sources_context([self.tree], dest)
        self.assertFalse(ctx.is_symlink())
        self.assertEqual(sorted(p.name for p in ctx.iterdir()), ["00-keystone"])
        self.host_untouched()

    def test_a_prepared_tree_that_is_a_link_is_refused(self) -> None:
        link = self.work / "src" / "nova"
        link.symlink_to(self.host)
        dest = self.work / "ctx" / "nova" / "sources"
        with self.assertRaises(AirlockError) as caught:
            build._sources_context([link], dest)
        self.assertEqual(str(caught.exception), f"{link}: is a symbolic link, not a prepared "
                         "tree; remove it; airlock prepares the tree again")
        self.assertFalse(os.path.lexists(dest))
        self.host_untouched()

    def test_remove_takes_a_link_away_never_what_it_points_to(self) -> None:
        link = self.work / "src" / "nova"
        link.symlink_to(self.host)
        build._remove(link)
        self.assertFalse(os.path.lexists(link))
        build._remove(self.tree)
        self.assertFalse(os.path.lexists(self.tree))
        build._remove(self.tree)  # nothing there: nothing to do
        self.host_untouched()


if __name__ == "__main__":
    unittest.main()
