"""build: an unpublished archive of the same inputs is kept, anything else is built."""

from __future__ import annotations

import io
import json
import tarfile
import tempfile
import unittest
from pathlib import Path

from airlock import files
from airlock.image import build, summary

DIGEST = "sha256:" + "a" * 64
INPUTS = "sha256:" + "b" * 64
REF = "127.0.0.1:5000/airlock/keystone:28.1.0-2025.2-bbbbbbbbbbbb"


def write_archive(path: Path, digest: str) -> None:
    """A minimal OCI archive: just the index.json the digest is read from."""
    data = json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": digest,
         "size": 1}]}).encode()
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo("index.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))


class KeptArchiveTest(unittest.TestCase):
    def setUp(self) -> None:
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        self.archive = Path(tmp.name) / "keystone.oci.tar"
        write_archive(self.archive, DIGEST)
        files.write_json(Path(tmp.name) / "keystone.oci.json",
                         {"input_digest": INPUTS, "ref": REF, "digest": DIGEST})

    def test_same_inputs_and_destination_keep_the_archive(self) -> None:
        self.assertEqual(build._kept_archive(self.archive, INPUTS, REF), DIGEST)

    def test_other_inputs_or_destination_build_again(self) -> None:
        self.assertIsNone(build._kept_archive(self.archive, "sha256:" + "c" * 64, REF))
        self.assertIsNone(build._kept_archive(self.archive, INPUTS, REF.replace("airlock/",
                                                                                  "site/")))

    def test_an_archive_replaced_since_is_not_kept(self) -> None:
        write_archive(self.archive, "sha256:" + "d" * 64)
        self.assertIsNone(build._kept_archive(self.archive, INPUTS, REF))

    def test_a_broken_archive_or_no_note_is_not_kept(self) -> None:
        self.archive.write_bytes(b"not a tar")
        self.assertIsNone(build._kept_archive(self.archive, INPUTS, REF))
        build._archive_note(self.archive).unlink()
        self.assertIsNone(build._kept_archive(self.archive, INPUTS, REF))


class SummaryTest(unittest.TestCase):
    def row(self, image: str, status: str) -> dict:
        return {"image": image, "tag": "t", "platforms": ["linux/amd64"], "digest": DIGEST,
                "size": 1000, "seconds": 1.0, "status": status}

    def test_the_last_line_counts_each_status(self) -> None:
        text = summary.table({"seconds": 2.0, "images": [
            self.row("python-base", "skipped"), self.row("keystone", "kept"),
            self.row("nova", "built")]})
        self.assertEqual(text.splitlines()[-1], "3 image(s): 1 built, 1 kept (built before, "
                         "not published), 1 skipped, in 2.0s")
        self.assertIn("kept", text.splitlines()[2])

    def test_without_kept_images_the_line_is_as_before(self) -> None:
        text = summary.table({"seconds": 2.0, "images": [self.row("keystone", "built")]})
        self.assertEqual(text.splitlines()[-1], "1 image(s): 1 built, 0 skipped, in 2.0s")
