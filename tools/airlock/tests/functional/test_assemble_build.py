"""A node per platform gives the single build's digest: real builds, joined, pushed.

A small image on the release's base image is built three ways through
the same BuildSpec path ``airlock build`` uses: both platforms in one
call (the single-node build), and each platform alone as a part
(``BuildSpec.index``, what ``build --per-platform`` runs). The parts'
manifests are the single build's, the assembled index has its digest,
the registry takes the assembled archive as it is, and a part of
another image (other annotations) is refused in one line.
"""

from __future__ import annotations

import shutil
import tempfile
import unittest
import uuid
from pathlib import Path

from airlock.errors import AirlockError
from airlock.ext import buildx, registry
from airlock.image import assemble
from airlock.tests.functional import engine

DOCKERFILE = """\
FROM base
ARG TARGETARCH
RUN echo "hello $TARGETARCH" > /hello.txt && uname -m > /machine.txt
"""
NOTES = {"org.opencontainers.image.version": "1.0",
         "io.airlock.input-digest": "sha256:" + "1" * 64}
RUN = {"io.airlock.zuul.buildset": "a&b<c>"}  # escaped by Go's encoder, as buildx does


class AssembleBuildTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        engine.require_engine()
        cls.base, cls.epoch = engine.pinned_base()
        cls.tmp = Path(tempfile.mkdtemp(prefix="airlock-assemble-build-"))
        cls.addClassCleanup(shutil.rmtree, cls.tmp, True)
        (cls.tmp / "context").mkdir()
        (cls.tmp / "Dockerfile").write_text(DOCKERFILE)

    @classmethod
    def build(cls, name: str, platforms: tuple[str, ...], **changes) -> buildx.BuildResult:
        spec = dict(dockerfile=cls.tmp / "Dockerfile", context=cls.tmp / "context",
                    output=cls.tmp / f"{name}.oci.tar", platforms=platforms,
                    contexts={"base": f"docker-image://{cls.base}"}, annotations=NOTES,
                    index_annotations=RUN, source_date_epoch=cls.epoch)
        spec.update(changes)
        return buildx.build(buildx.BuildSpec(**spec))

    def test_parts_assemble_to_the_single_build_digest_and_publish(self):
        whole = self.build("whole", engine.PLATFORMS)
        parts = {p: self.build(p.replace("/", "-"), (p,), index=True) for p in engine.PLATFORMS}
        manifests = {m["platform"]["architecture"]: m["digest"]
                     for m in buildx.archive_manifest(whole.archive)["manifests"]}
        for platform, part in parts.items():
            index = buildx.archive_manifest(part.archive)
            self.assertEqual(index["annotations"], {**NOTES, **RUN})
            self.assertEqual(index["manifests"][0]["digest"],
                             manifests[platform.split("/")[1]],
                             f"the part of {platform} is not the single build's manifest")

        out = self.tmp / "assembled.oci.tar"
        # Given in the reverse order: the index follows --platform's order.
        digest = assemble.write([parts[p].archive for p in reversed(engine.PLATFORMS)], out,
                                platforms=engine.PLATFORMS)
        self.assertEqual(digest, whole.digest)
        self.assertEqual(buildx.archive_digest(out), whole.digest)

        ref = f"{engine.TEST_REPO}/assemble:{uuid.uuid4().hex[:12]}"
        self.addCleanup(registry.delete, ref)
        self.assertEqual(registry.push_archive(out, ref), whole.digest)
        self.assertEqual(registry.digest(ref), whole.digest)
        self.assertEqual(sorted(registry.platforms(ref)), sorted(engine.PLATFORMS))

        # A part built from other inputs (another input digest) is no part of it.
        other = self.build("other-arm64", ("linux/arm64",), index=True,
                           annotations={**NOTES, "io.airlock.input-digest": "sha256:" + "2" * 64})
        with self.assertRaises(AirlockError) as caught:
            assemble.write([parts["linux/amd64"].archive, other.archive],
                           self.tmp / "refused.oci.tar", platforms=engine.PLATFORMS)
        self.assertIn("io.airlock.input-digest", str(caught.exception))
        self.assertEqual(len(str(caught.exception).splitlines()), 1)
        self.assertFalse((self.tmp / "refused.oci.tar").exists())
        # The assembling run's own annotations replace the parts' run ones
        # (a Zuul job per platform): the rest must agree.
        mine = {**NOTES, "io.airlock.zuul.buildset": "final"}
        digest = assemble.write([p.archive for p in parts.values()], out,
                                platforms=engine.PLATFORMS, annotations=mine)
        self.assertEqual(buildx.archive_manifest(out)["annotations"], mine)
        self.assertNotEqual(digest, whole.digest)


if __name__ == "__main__":
    unittest.main()
