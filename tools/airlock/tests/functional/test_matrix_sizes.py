"""``build --all``'s size column: the same number from the archive and from the registry.

A built or kept image is sized from its OCI archive, a skipped one from the
registry that has it; the table must not change when an image goes from
kept to skipped. A tiny real image (tinyimage) for both platforms is pushed
to the local registry (under airlock-test/) and read both ways.
"""

from __future__ import annotations

import tempfile
import unittest
from pathlib import Path

from airlock.ext import registry
from airlock.image import matrix
from airlock.tests.functional import tinyimage
from airlock.tests.functional.engine import PLATFORMS
from airlock.tests.functional.pipeline import fresh_prefix


class MatrixSizesTest(unittest.TestCase):
    def test_registry_and_archive_agree_per_platform(self):
        with tempfile.TemporaryDirectory() as tmp:
            archive = Path(tmp) / "tiny.oci.tar"
            digest = tinyimage.make(archive, list(PLATFORMS), "matrix sizes")
            ref = f"{fresh_prefix('matrix')}/tiny:1"
            self.assertEqual(registry.push_archive(archive, ref), digest)
            from_archive = matrix.archive_sizes(archive, PLATFORMS)
            skipped = {"status": "skipped", "platforms": list(PLATFORMS),
                       "ref": f"{ref.rsplit(':', 1)[0]}@{digest}"}
            self.assertEqual(matrix.image_sizes(skipped), from_archive)
        self.assertEqual(sorted(from_archive), sorted(PLATFORMS))
        self.assertTrue(all(size > 0 for size in from_archive.values()), from_archive)


if __name__ == "__main__":
    unittest.main()
