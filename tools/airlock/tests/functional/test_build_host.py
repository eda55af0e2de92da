"""The build host for real: buildx, QEMU, the 127.0.0.1:5000 registry, skopeo.

A tiny two-platform image is built offline (``--network none``) from a named
context on top of the local base image, exported as an OCI archive, pushed,
rebuilt with ``--no-cache`` to the same digest, and run on both platforms.
It uses the base image's SOURCE_DATE_EPOCH, as real builds should, so that
rewrite-timestamp leaves the base layers (and their digests) alone.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import unittest
import uuid
from pathlib import Path
from unittest import mock

from airlock.errors import ToolError
from airlock.ext import buildx, containers, registry
from airlock.tests.functional import engine

DOCKERFILE = """\
FROM base
ARG TARGETARCH
ARG SOURCE_DATE_EPOCH
COPY --from=payload hello.txt /srv/hello.txt
RUN uname -m > /srv/built-on && echo "$TARGETARCH" > /srv/targetarch
"""

NETWORK_DOCKERFILE = """\
FROM base
RUN python3 -c "import socket; socket.create_connection(('127.0.0.1', 5000), timeout=5)"
"""


class BuildHostTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        engine.require_engine()
        cls.base, cls.epoch = engine.pinned_base()
        cls.tmp = Path(tempfile.mkdtemp(prefix="airlock-build-host-"))
        cls.addClassCleanup(shutil.rmtree, cls.tmp, True)
        (cls.tmp / "payload").mkdir()
        (cls.tmp / "payload" / "hello.txt").write_text("hello from a named context\n")
        (cls.tmp / "context").mkdir()
        (cls.tmp / "Dockerfile").write_text(DOCKERFILE)
        cls.first = buildx.build(cls.spec("first"))

    @classmethod
    def spec(cls, name: str, **changes) -> buildx.BuildSpec:
        base = dict(dockerfile=cls.tmp / "Dockerfile", context=cls.tmp / "context",
                    output=cls.tmp / f"{name}.oci.tar", platforms=engine.PLATFORMS,
                    contexts={"base": f"docker-image://{cls.base}",
                              "payload": cls.tmp / "payload"},
                    source_date_epoch=cls.epoch)
        base.update(changes)
        return buildx.BuildSpec(**base)

    def test_offline_multiplatform_build_push_reproduce_run(self):
        first = self.first
        self.assertTrue(first.archive.is_file())
        self.assertIn("--network none", first.log.read_text().splitlines()[0])

        ref = f"{engine.TEST_REPO}/hello:{uuid.uuid4().hex[:12]}"
        pushed = registry.push_archive(first.archive, ref)
        self.addCleanup(registry.delete, ref)
        self.assertEqual(pushed, first.digest)
        self.assertEqual(registry.digest(ref), first.digest)
        self.assertEqual(sorted(registry.platforms(ref)), sorted(engine.PLATFORMS))

        again = buildx.build(self.spec("again", no_cache=True))
        self.assertEqual(again.digest, first.digest,
                         "two --no-cache builds of the same inputs differ")
        # BuildKit's own progress: each step's time, the arm64 RUN among them.
        runs = {row.platform: row for row in again.steps if row.command.startswith("RUN uname")}
        self.assertEqual(sorted(runs), sorted(engine.PLATFORMS))
        self.assertTrue(all(row.seconds > 0 and not row.cached for row in runs.values()))
        self.assertTrue(any(row.name == "exporting to oci image format" for row in again.steps))

        image = engine.by_digest(ref, first.digest)
        # The base layers are the base image's own: shared, not uploaded again.
        base_repo = self.base.split("@")[0]
        for entry, base_entry in zip(registry.manifest(image)["manifests"],
                                     registry.manifest(self.base)["manifests"], strict=True):
            self.assertEqual(entry["platform"], base_entry["platform"])
            layers = registry.manifest(f"{engine.TEST_REPO}/hello@{entry['digest']}")["layers"]
            base_layers = registry.manifest(f"{base_repo}@{base_entry['digest']}")["layers"]
            self.assertEqual(layers[:len(base_layers)], base_layers)
        self.assertEqual(containers.run(image, ["uname", "-m"], platform="linux/arm64").strip(),
                         "aarch64")
        self.assertEqual(containers.run(image, ["uname", "-m"], platform="linux/amd64").strip(),
                         "x86_64")
        # The RUN step itself ran under QEMU for arm64.
        self.assertEqual(containers.run(image, ["cat", "/srv/built-on", "/srv/targetarch"],
                                    platform="linux/arm64").split(), ["aarch64", "arm64"])
        self.assertEqual(containers.run(image, ["cat", "/srv/hello.txt"], platform="linux/arm64"),
                         "hello from a named context\n")
        self.assertEqual(containers.run(image, ["id", "-u"], user="65534").strip(), "65534")

    def test_build_step_cannot_reach_the_network(self):
        dockerfile = self.tmp / "Dockerfile.network"
        dockerfile.write_text(NETWORK_DOCKERFILE)
        with self.assertRaises(ToolError) as caught:
            buildx.build(self.spec("network", dockerfile=dockerfile,
                                   platforms=("linux/amd64",), contexts={
                                       "base": f"docker-image://{self.base}"}))
        line = str(caught.exception)
        self.assertNotIn("\n", line)
        self.assertIn("did not complete successfully", line)
        self.assertIn("socket.create_connection", line)
        self.assertIn("Connection refused", line)  # the step's own last words
        self.assertIn("log: ", line)
        self.assertFalse((self.tmp / "network.oci.tar").exists())
        # The same step passes with the host's network (the registry listens
        # on its 127.0.0.1): what failed above was the network, nothing else.
        buildx.build(self.spec("network-host", dockerfile=dockerfile, network="host",
                               platforms=("linux/amd64",),
                               contexts={"base": f"docker-image://{self.base}"}))

    def test_tag_and_copy_by_digest(self):
        repo = f"{engine.TEST_REPO}/tagged"
        ref = f"{repo}:{uuid.uuid4().hex[:12]}"
        digest = registry.push_archive(self.first.archive, ref)
        self.addCleanup(registry.delete, ref)
        promoted = uuid.uuid4().hex[:12]
        self.assertEqual(registry.tag(f"{repo}@{digest}", promoted), digest)
        self.assertIn(promoted, registry.list_tags(repo))
        other = f"{engine.TEST_REPO}/promoted:{promoted}"
        self.assertEqual(registry.copy(ref, other), digest)
        self.addCleanup(registry.delete, other)
        self.assertEqual(registry.digest(other), digest)
        index = registry.manifest(other)
        self.assertEqual(len(index["manifests"]), len(engine.PLATFORMS))

    def test_job_container_with_mounts_env_and_log(self):
        out = self.tmp / "job-out"
        out.mkdir()
        log = self.tmp / "job.log"
        containers.run_logged(containers.RunSpec(
            image=self.base, platform="linux/arm64", log=log,
            command=("sh", "-c", 'echo "$GREETING $(uname -m)" > /out/said; cat /in/hello.txt'),
            mounts=(containers.Mount(self.tmp / "payload", "/in"),
                    containers.Mount(out, "/out", read_only=False)),
            env={"GREETING": "not-on-the-command-line"},
            user=f"{os.getuid()}:{os.getgid()}"))
        self.assertEqual((out / "said").read_text(), "not-on-the-command-line aarch64\n")
        command_line, *output = log.read_text().splitlines()
        self.assertNotIn("not-on-the-command-line", command_line)
        self.assertEqual(output, ["hello from a named context"])
        with self.assertRaises(ToolError) as caught:
            containers.run_logged(containers.RunSpec(image=self.base, log=log,
                                             command=("sh", "-c", "echo doomed; exit 3")))
        self.assertIn("exit code 3: doomed", str(caught.exception))

    def test_absent_and_unreachable_are_told_apart(self):
        self.assertIsNone(registry.digest(f"{engine.TEST_REPO}/nothing:{uuid.uuid4().hex}"))
        self.assertEqual(registry.list_tags(f"{engine.TEST_REPO}/no-such-repo"), [])
        with mock.patch.dict(os.environ, {registry.RETRIES_ENV: "1"}), \
                self.assertRaises(ToolError) as caught:
            registry.digest("127.0.0.1:1/airlock-test/x:y")
        self.assertIn("registry unreachable", str(caught.exception))


if __name__ == "__main__":
    unittest.main()
