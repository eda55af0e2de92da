"""publish: what it refuses before it talks to a registry.

Real files in a real work folder, through the real CLI where the user
would meet the error: an empty record, a record with no service image, a
malformed record (not JSON, not an object, missing keys, wrong types), a
folder or a FIFO where the record should be. Each is one line and exit 1,
and none reaches the registry (there is none here: the record names
127.0.0.1:9, where nothing listens). What publish does against a registry
(partial platform sets, a changed immutable tag, the order of pushes and
moving tags, a registry stopped mid-way) is proven with real registries in
tests/functional/test_publish_registry.py.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import shutil
import tempfile
import unittest
from pathlib import Path

from airlock import cli
from airlock.errors import AirlockError
from airlock.image import publish, summary

RELEASE = "2025.2"
DIGEST = "sha256:" + "a" * 64
REPO = "127.0.0.1:9/airlock/keystone"


def service_row(**changes) -> dict:
    row = {"image": "keystone", "service": True, "status": "built", "version": "28.1.0",
           "platforms": ["linux/amd64", "linux/arm64"], "digest": DIGEST,
           "tag": "28.1.0-2025.2-bbbbbbbbbbbb", "moving_tags": ["2025.2", "28.1.0"],
           "ref": f"{REPO}@{DIGEST}", "archive": "/nonexistent/keystone.oci.tar"}
    row.update(changes)
    return row


def base_row() -> dict:
    return {"image": "python-base", "service": False, "status": "skipped",
            "platforms": ["linux/amd64"], "digest": DIGEST, "tag": "2025.2-cccccccccccc",
            "moving_tags": [], "ref": f"127.0.0.1:9/airlock/python-base@{DIGEST}"}


def record(*images: dict) -> dict:
    return {"release": RELEASE, "registry": "127.0.0.1:9/airlock", "images": list(images)}


class PublishRecordTest(unittest.TestCase):
    def setUp(self) -> None:
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        self.work = Path(tmp.name)
        self.folder = self.work / RELEASE
        self.folder.mkdir()
        self.path = self.folder / "build-record.json"

    def publish_cli(self) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main(["publish", "--release", RELEASE, "--work-dir", str(self.work)])
        return code, out.getvalue(), err.getvalue()

    def assertRefused(self, line: str) -> None:
        code, out, err = self.publish_cli()
        self.assertEqual((code, err), (1, line + "\n"), out)
        self.assertNotIn("published", out)

    def write(self, data: object) -> None:
        self.path.write_text(json.dumps(data))

    def test_an_empty_record_is_an_error_not_zero_images_published(self) -> None:
        self.write({"images": [], "release": RELEASE})
        self.assertRefused(f"{self.path}:images: no service image to publish; "
                           f"run airlock build --release {RELEASE} first")

    def test_a_record_without_a_service_image_is_an_error(self) -> None:
        self.write(record(base_row()))
        self.assertRefused(f"{self.path}:images: no service image to publish; "
                           f"run airlock build --release {RELEASE} first")

    def test_no_record_or_no_work_folder(self) -> None:
        self.assertRefused(f"{self.path}: no such file; "
                           f"run airlock build --release {RELEASE} first")
        shutil.rmtree(self.folder)
        self.assertRefused(f"{self.path}: no build record (no such folder); "
                           f"run airlock build --release {RELEASE} first")
        self.assertFalse(self.folder.exists(), "publish made the release folder")

    def test_a_folder_or_a_fifo_in_place_of_the_record(self) -> None:
        self.path.mkdir()
        self.assertRefused(f"{self.path}: is a directory, not a regular file; "
                           f"run airlock build --release {RELEASE} first")
        self.path.rmdir()
        os.mkfifo(self.path)
        self.assertRefused(f"{self.path}: is a FIFO, not a regular file; "
                           f"run airlock build --release {RELEASE} first")

    def test_not_json_not_an_object_or_nested_too_deep(self) -> None:
        fix = "run airlock build again (the build record is its output)"
        self.path.write_text("{\"images\": [")
        self.assertRefused(f"{self.path}: not a build record: not JSON (Expecting value: "
                           f"line 1 column 13 (char 12)); {fix}")
        self.write([record(service_row())])
        self.assertRefused(f"{self.path}: not a build record: a JSON list, not an object; "
                           f"{fix}")
        self.path.write_text("[" * 100000 + "]" * 100000)
        self.assertRefused(f"{self.path}: not a build record: nested too deeply; {fix}")

    def test_a_record_of_another_release(self) -> None:
        self.write({**record(service_row()), "release": "2024.1"})
        self.assertRefused(f"{self.path}:release: is '2024.1', not '{RELEASE}'; run airlock "
                           "build again (the build record is its output)")

    def test_missing_keys_and_wrong_types_name_the_field(self) -> None:
        fix = "run airlock build again (the build record is its output)"
        where = f"{self.path}:images[1]"
        cases = {
            "images missing": ({"release": RELEASE},
                               f"{self.path}:images: missing or not a list"),
            "images an object": ({"release": RELEASE, "images": {}},
                                 f"{self.path}:images: missing or not a list"),
            "row a string": (record(base_row(), "keystone"),
                             f"{where}: a JSON string, not an object"),
            "no digest": (record(base_row(), {k: v for k, v in service_row().items()
                                              if k != "digest"}),
                          f"{where}.digest: is missing, not an image digest"),
            "digest a number": (record(base_row(), service_row(digest=1)),
                                f"{where}.digest: is a number, not an image digest"),
            "digest not sha256": (record(base_row(), service_row(digest="sha256:abc")),
                                  f"{where}.digest: 'sha256:abc' is not sha256:<64 hex>"),
            "service a string": (record(base_row(), service_row(service="yes")),
                                 f"{where}.service: is a string, not true or false"),
            "unknown status": (record(base_row(), service_row(status="pushed")),
                               f"{where}.status: is 'pushed', not one of built, kept, "
                               "skipped"),
            "tag with a slash": (record(base_row(), service_row(tag="a/b")),
                                 f"{where}.tag: 'a/b' is not a tag"),
            "moving tags a string": (record(base_row(), service_row(moving_tags="2025.2")),
                                     f"{where}.moving_tags: is a string, not a list of tags"),
            "moving tag null": (record(base_row(), service_row(moving_tags=["2025.2", None])),
                                f"{where}.moving_tags[1]: None is not a tag"),
            "no platforms": (record(base_row(), service_row(platforms=[])),
                             f"{where}.platforms: is not a list of platforms"),
            "built without archive": (record(base_row(), service_row(archive=None)),
                                      f"{where}.archive: is a null, not the path of the OCI "
                                      "archive"),
            "unqualified ref": (record(base_row(), service_row(ref="keystone@" + DIGEST)),
                                f"{where}.ref: does not start with a registry host"),
        }
        for what, (data, line) in cases.items():
            with self.subTest(case=what):
                self.write(data)
                self.assertRefused(f"{line}; {fix}")

    def test_a_release_name_that_leaves_the_work_folder(self) -> None:
        for name in ("../2025.2", "..", "a/b", ""):
            with self.subTest(release=name), self.assertRaises(AirlockError) as caught:
                publish.run(self.work, name)
            self.assertIn("is not a release name", str(caught.exception))

    def test_a_good_record_reads_back(self) -> None:
        data = record(base_row(), service_row(), service_row(image="glance", status="skipped",
                                                              archive=None))
        self.write(data)
        self.assertEqual(publish.load_record(self.path, RELEASE), data)


class ResultTest(unittest.TestCase):
    """The --json documents the roles decide "changed" from."""

    def test_build_changed_only_when_an_image_was_built(self) -> None:
        rows = [dict(base_row(), seconds=0.0), dict(service_row(status="kept"), seconds=0.0)]
        doc = summary.build_result(record(*rows), "work/2025.2/build-record.json")
        self.assertFalse(doc["changed"])
        self.assertEqual(doc["images"][1], {
            "name": "keystone", "image": "keystone", "platforms": ["linux/amd64", "linux/arm64"],
            "digest": DIGEST, "ref": f"{REPO}@{DIGEST}", "status": "kept", "service": True,
            "tags": ["28.1.0-2025.2-bbbbbbbbbbbb", "2025.2", "28.1.0"]})
        # Zuul's artifact format, for zuul_return, by digest: what the build
        # pushed (the service images are publish's artifacts).
        self.assertEqual(doc["zuul_artifacts"], [{
            "name": "python-base", "url": f"docker://127.0.0.1:9/airlock/python-base@{DIGEST}",
            "metadata": {"type": "container_image", "digest": DIGEST,
                         "ref": f"127.0.0.1:9/airlock/python-base@{DIGEST}"}}])
        rows[0]["status"] = "built"
        self.assertTrue(summary.build_result(record(*rows))["changed"])

    def test_publish_changed_only_when_something_was_published(self) -> None:
        rows = [{"name": name, "ref": f"{REPO}@{DIGEST}", "digest": DIGEST,
                 "status": "unchanged"} for name in ("keystone", "nova")]
        self.assertFalse(summary.publish_result(RELEASE, rows)["changed"])
        self.assertEqual(summary.publish_result(RELEASE, rows)["zuul_artifacts"][1],
                         {"name": "nova", "url": f"docker://{REPO}@{DIGEST}",
                          "metadata": {"type": "container_image", "digest": DIGEST,
                                       "ref": f"{REPO}@{DIGEST}"}})
        # A record beside the image is an artifact too (it is where the audit reads).
        rows[1]["record"] = "kept"
        self.assertEqual(summary.publish_result(RELEASE, rows)["zuul_artifacts"][2],
                         {"name": "nova build record",
                          "url": f"docker://{REPO}:sha256-{'a' * 64}.airlock-record",
                          "metadata": {"type": "airlock_build_record", "digest": DIGEST}})
        changed = copy.deepcopy(rows)
        changed[1]["status"] = "published"
        self.assertTrue(summary.publish_result(RELEASE, changed)["changed"])


if __name__ == "__main__":
    unittest.main()
