"""publish against a real registry: all images whole, or no moving tag moves.

A private registry (tests/functional/registries.py: Debian's
docker-registry on its own port and storage, stopped and started by the
test) and real skopeo. The images are tiny real OCI archives
(tinyimage.py): what publish does depends on the registry and the record,
not on what the layers hold, and a build of several services would cost
minutes for the same proof.

Proven here: several images publish and a second publish changes nothing;
an index missing a platform is refused, and so is an immutable tag that
holds another image, each before any moving tag is written; a registry
stopped in the middle of a multi-image publish leaves every moving tag
where it was, and publishing again completes it. At every moment a moving
tag is written, every image of the record is already verified in the
registry.
"""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
import unittest
import uuid
from pathlib import Path

from airlock import cli
from airlock.errors import AirlockError, ToolError
from airlock.ext import registry
from airlock.image import publish
from airlock.tests.functional import tinyimage
from airlock.tests.functional.registries import PrivateRegistry

PLATFORMS = ["linux/amd64", "linux/arm64"]
RELEASE = "2099.1"
VERSION = "1.0.0"


class PublishRegistryTest(unittest.TestCase):
    registry: PrivateRegistry

    @classmethod
    def setUpClass(cls) -> None:
        cls.registry = PrivateRegistry()
        cls.registry.start()

    @classmethod
    def tearDownClass(cls) -> None:
        cls.registry.close()

    def setUp(self) -> None:
        self.registry.start()  # a test that failed half-way may have left it stopped
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        self.tmp = Path(tmp.name)
        self.prefix = f"{self.registry.host}/airlock-test/{uuid.uuid4().hex[:8]}"

    def generation(self, names: list[str], seed: str, *, partial: str = "",
                   tag_of: dict[str, str] | None = None) -> dict:
        """A build record of ``names``, each a new image (``seed``) of every platform.

        ``partial``: that image's archive holds linux/amd64 only, though the
        record asks for both. ``tag_of``: immutable tags to use instead of
        fresh ones (the same inputs, so the same tag, as another record's).
        """
        rows = []
        for name in names:
            archive = self.tmp / f"{name}-{seed}.oci.tar"
            digest = tinyimage.make(archive, PLATFORMS[:1] if name == partial else PLATFORMS,
                                    f"{name} {seed}")
            tag = (tag_of or {}).get(name) or f"{VERSION}-{RELEASE}-{uuid.uuid4().hex[:12]}"
            rows.append({"image": name, "service": True, "status": "built",
                         "version": VERSION, "platforms": PLATFORMS, "digest": digest,
                         "tag": tag, "moving_tags": [RELEASE, VERSION],
                         "ref": f"{self.prefix}/{name}@{digest}", "archive": str(archive)})
        return {"release": RELEASE, "registry": self.prefix, "images": rows}

    def tag_digest(self, image: dict, tag: str) -> str | None:
        return registry.digest(f"{self.prefix}/{image['image']}:{tag}")

    def moving(self, record: dict) -> dict[str, list[str | None]]:
        return {image["image"]: [self.tag_digest(image, tag) for tag in image["moving_tags"]]
                for image in record["images"]}

    def assertAllVerified(self, record: dict) -> None:
        """Every image of ``record`` is in the registry under its immutable tag, whole."""
        for image in record["images"]:
            self.assertEqual(self.tag_digest(image, image["tag"]), image["digest"],
                             f"{image['image']} not pushed while a moving tag moved")
            self.assertEqual(sorted(registry.platforms(
                f"{self.prefix}/{image['image']}@{image['digest']}")), PLATFORMS)

    def checking(self, record: dict, stop_after_first_push: bool = False):
        """A progress callback: checks the invariant at every tag, may stop the registry."""
        lines: list[str] = []

        def progress(line: str) -> None:
            lines.append(line)
            if " tagged " in line:
                self.assertAllVerified(record)
            if stop_after_first_push and " pushed " in line \
                    and sum(" pushed " in seen for seen in lines) == 1:
                self.registry.stop()
        return progress, lines

    def publish_cli(self, record: dict, *extra: str) -> dict:
        """``airlock publish --json`` of ``record`` from a work folder; its document."""
        work = self.tmp / "work"
        (work / RELEASE).mkdir(parents=True, exist_ok=True)
        (work / RELEASE / "build-record.json").write_text(json.dumps(record))
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main(["publish", "--release", RELEASE, "--work-dir", str(work),
                             "--json", *extra])
        self.assertEqual(code, 0, err.getvalue())
        self.last_progress = err.getvalue()
        return json.loads(out.getvalue())

    def test_no_tags_pushes_by_digest_and_a_later_publish_only_moves_the_tags(self) -> None:
        # A Zuul service job: push side by side (--no-tags), then move the
        # release's tags in a second publish held by the release's semaphore.
        record = self.generation(["keystone", "glance"], "split")
        pushed = self.publish_cli(record, "--no-tags")
        self.assertTrue(pushed["changed"])
        self.assertEqual([(row["name"], row["status"], row["tags"]) for row in pushed["images"]],
                         [(image["image"], "published", [image["tag"]])
                          for image in record["images"]])
        self.assertAllVerified(record)
        self.assertEqual(self.moving(record), {image["image"]: [None, None]
                                               for image in record["images"]})
        tagged = self.publish_cli(record)
        self.assertNotIn("pushing", self.last_progress)
        self.assertEqual({row["status"] for row in tagged["images"]}, {"published"})
        for image in record["images"]:
            for tag in (RELEASE, VERSION):
                self.assertEqual(self.tag_digest(image, tag), image["digest"])
        again = self.publish_cli(record, "--no-tags")
        self.assertFalse(again["changed"])

    def test_every_image_is_published_and_a_second_publish_changes_nothing(self) -> None:
        record = self.generation(["keystone", "glance"], "one")
        first = self.publish_cli(record)
        self.assertTrue(first["changed"])
        self.assertEqual([(row["name"], row["status"], row["digest"]) for row in first["images"]],
                         [(image["image"], "published", image["digest"])
                          for image in record["images"]])
        for image in record["images"]:
            for tag in (image["tag"], RELEASE, VERSION):
                self.assertEqual(self.tag_digest(image, tag), image["digest"])
        self.assertAllVerified(record)
        second = self.publish_cli(record)
        self.assertFalse(second["changed"])
        self.assertEqual({row["status"] for row in second["images"]}, {"unchanged"})

    def test_a_partial_platform_set_is_refused_before_any_moving_tag(self) -> None:
        record = self.generation(["keystone", "glance"], "partial", partial="glance")
        with self.assertRaises(ToolError) as caught:
            publish.publish(record, self.checking(record)[0])
        glance = record["images"][1]
        self.assertEqual(str(caught.exception),
                         f"{self.prefix}/glance:{glance['tag']}: platform(s) linux/arm64 "
                         "missing from the index; no moving tag was written; rebuild and "
                         "publish again")
        self.assertEqual(self.moving(record), {"keystone": [None, None],
                                               "glance": [None, None]})

    def test_an_immutable_tag_holding_another_image_is_never_moved(self) -> None:
        old = self.generation(["keystone", "glance"], "old")
        publish.publish(old)
        glance_tag = old["images"][1]["tag"]
        # Same inputs (so the same immutable tag) but other bytes: a build
        # that is not reproducible, or another engine.
        new = self.generation(["keystone", "glance"], "new", tag_of={"glance": glance_tag})
        with self.assertRaises(AirlockError) as caught:
            publish.publish(new, self.checking(new)[0])
        self.assertEqual(caught.exception.exit_code, 1)
        self.assertTrue(str(caught.exception).startswith(
            f"{self.prefix}/glance:{glance_tag}: this immutable tag holds "
            f"{old['images'][1]['digest']}, the build record says {new['images'][1]['digest']}"),
            str(caught.exception))
        self.assertEqual(self.tag_digest(old["images"][1], glance_tag), old["images"][1]["digest"])
        self.assertEqual(self.moving(old), {image["image"]: [image["digest"]] * 2
                                            for image in old["images"]})

    def test_a_registry_stopped_mid_publish_moves_nothing_and_the_rerun_completes(self) -> None:
        names = ["keystone", "glance", "nova"]
        old = self.generation(names, "old")
        publish.publish(old)
        new = self.generation(names, "new")
        progress, lines = self.checking(new, stop_after_first_push=True)
        with self.assertRaises(ToolError) as caught:
            publish.publish(new, progress)
        self.assertIn("registry unreachable", str(caught.exception))
        self.assertFalse([line for line in lines if " tagged " in line], lines)
        self.registry.start()
        # Right after the failure: every moving tag still names the old images.
        self.assertEqual(self.moving(new), {image["image"]: [image["digest"]] * 2
                                            for image in old["images"]})
        # The first image did reach the registry, under its immutable tag only.
        self.assertEqual(self.tag_digest(new["images"][0], new["images"][0]["tag"]),
                         new["images"][0]["digest"])

        progress, lines = self.checking(new)
        rows = publish.publish(new, progress)
        self.assertEqual([row["status"] for row in rows], ["published"] * 3)
        said = [line.split(": ", 1)[1] for line in lines if ": " in line]
        self.assertEqual([text for text in said if text.startswith("pushed ")],
                         [f"pushed {self.prefix}/{name}:{image['tag']}"
                          for name, image in zip(names[1:], new["images"][1:], strict=True)],
                         "the rerun pushed the first image again")
        # The first run stopped before any record: the rerun pushes all three.
        self.assertEqual(len([t for t in said if t.startswith("build record pushed")]), 3,
                         said)
        self.assertEqual(self.moving(new), {image["image"]: [image["digest"]] * 2
                                            for image in new["images"]})
        self.assertEqual({row["status"] for row in publish.publish(new)}, {"unchanged"})

    def test_a_skipped_image_is_tagged_without_a_push(self) -> None:
        record = self.generation(["keystone"], "skipped")
        image = record["images"][0]
        registry.push_archive(Path(image["archive"]), f"{self.prefix}/keystone:{image['tag']}")
        image.update(status="skipped", archive=None)
        progress, lines = self.checking(record)
        self.assertEqual([row["status"] for row in publish.publish(record, progress)],
                         ["published"])
        self.assertFalse([line for line in lines if "push" in line], lines)
        self.assertEqual(self.moving(record), {"keystone": [image["digest"]] * 2})
        # ... and one the registry lost since the build is an error, not a push.
        record["images"][0]["tag"] = f"{VERSION}-{RELEASE}-{uuid.uuid4().hex[:12]}"
        with self.assertRaises(ToolError) as caught:
            publish.publish(record)
        self.assertIn("is no longer in the registry", str(caught.exception))


if __name__ == "__main__":
    unittest.main()
