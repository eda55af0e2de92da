"""The build record beside an image, in a real registry, and ``airlock audit`` reading it back.

A private registry with a password (tests/functional/registries.py:
Debian's docker-registry, which is what a site runs and which has no
referrers API) and tiny real OCI archives (tinyimage.py): the record and
the audit depend on the registry and the record, not on what the layers
hold. publish pushes each image and its record, then the moving tags;
``airlock audit`` by tag and by digest prints the chain to the Zuul
trigger; publishing again keeps the first record; an image published
without a record is unaudited (exit 1); a registry that does not answer
is exit 2; the password is in no output.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import unittest
import uuid
from pathlib import Path

from airlock.ext import registry
from airlock.image import annotations, audit, publish
from airlock.tests.functional import tinyimage
from airlock.tests.functional.registries import PrivateRegistry, free_port

PLATFORMS = ["linux/amd64", "linux/arm64"]
RELEASE = "2099.1"
PASSWORD = "audit-pw-" + uuid.uuid4().hex[:8]
ZUUL = {"tenant": "site", "pipeline": "manual", "project": "example.org/airlock",
        "buildset": "bs-" + uuid.uuid4().hex[:8], "build": uuid.uuid4().hex,
        "job": "airlock-build", "ref": "refs/heads/master", "newrev": "a" * 40}


def airlock(*args: str) -> subprocess.CompletedProcess[str]:
    """``airlock ARGS`` in a process of its own (this one's environment: the auth file)."""
    return subprocess.run([sys.executable, "-m", "airlock.cli", *args], capture_output=True,
                          text=True, timeout=120, check=False)


class AuditRegistryTest(unittest.TestCase):
    registry: PrivateRegistry

    @classmethod
    def setUpClass(cls) -> None:
        cls.registry = PrivateRegistry({"builder": PASSWORD})
        cls.registry.start()
        cls.tmp = Path(tempfile.mkdtemp(prefix="airlock-audit-"))
        cls.auth = cls.registry.auth_file("builder", PASSWORD, cls.tmp / "auth.json")
        os.environ["AIRLOCK_REGISTRY_AUTH_FILE"] = str(cls.auth)
        cls.prefix = f"{cls.registry.host}/airlock-test/{uuid.uuid4().hex[:8]}"

    @classmethod
    def tearDownClass(cls) -> None:
        os.environ.pop("AIRLOCK_REGISTRY_AUTH_FILE", None)
        cls.registry.close()

    def record(self, name: str, seed: str, zuul: dict | None = None) -> dict:
        """A build record of one service image built by the Zuul build ``zuul`` (ZUUL)."""
        zuul = ZUUL if zuul is None else zuul
        archive = self.tmp / f"{name}-{seed}-{uuid.uuid4().hex[:6]}.oci.tar"
        run = annotations.run("airlock-" + "b" * 20, zuul)
        digest = tinyimage.make(archive, PLATFORMS, seed, index_annotations=run)
        lock = {"release": RELEASE, "components": {name: {
            "sha": "1" * 40, "ref": "1.0.0", "repo": f"git://127.0.0.1:9418/openstack/{name}",
            "resolved-at": "2026-12-01T10:00:00Z"}}}
        notes = annotations.service(RELEASE, lock, [name], "1.0.0", 0)
        row = {"image": name, "service": True, "status": "built", "version": "1.0.0",
               "platforms": PLATFORMS, "digest": digest, "input_digest": "sha256:" + "e" * 64,
               "tag": f"1.0.0-{RELEASE}-{uuid.uuid4().hex[:12]}",
               "moving_tags": [RELEASE], "ref": f"{self.prefix}/{name}@{digest}",
               "archive": str(archive), "components": [name], "annotations": notes,
               "index_annotations": run}
        return {"release": RELEASE, "registry": self.prefix, "lock": lock,
                "sources": {name: {"sha": "1" * 40, "patches": [
                    {"name": "0001-x.patch", "sha256": "9" * 64}]}},
                "tools": {"airlock": {"version": "0.1.0", "commit": None},
                          "engine": {"buildx": "test"}},
                "zuul": zuul, "images": [row]}

    def test_publish_puts_the_record_beside_the_image_and_audit_reads_the_chain(self) -> None:
        record = self.record("keystone", "audited")
        rows = publish.publish(record)
        image = record["images"][0]
        self.assertEqual((rows[0]["status"], rows[0]["record"]), ("published", "pushed"))
        repo = f"{self.prefix}/keystone"
        tag = annotations.record_tag(image["digest"])
        self.assertIn(tag, registry.list_tags(repo))
        stored = audit.read_record(repo, image["digest"])
        self.assertEqual(stored, json.loads(audit.record_bytes(audit.image_record(
            record, image))))
        # By the moving tag, as an operator would ask; and by digest, as JSON.
        said = airlock("audit", f"{repo}:{RELEASE}")
        self.assertEqual(said.returncode, 0, said.stderr)
        lines = said.stdout.splitlines()
        self.assertEqual(lines[0], f"{repo}@{image['digest']}")
        self.assertIn("  release     2099.1", lines)
        self.assertIn(f"  component   keystone 1.0.0 at {'1' * 40} from "
                      "git://127.0.0.1:9418/openstack/keystone", lines)
        self.assertIn(f"    patch     0001-x.patch sha256:{'9' * 64}", lines)
        self.assertIn(f"  bundle      airlock-{'b' * 20}", lines)
        self.assertIn(f"  zuul        tenant site, pipeline manual, project example.org/airlock, "
                      f"buildset {ZUUL['buildset']}, build {ZUUL['build']}, job airlock-build",
                      lines)
        self.assertIn(f"  trigger     ref refs/heads/master, newrev {'a' * 40}", lines)
        doc = json.loads(airlock("audit", f"{repo}@{image['digest']}", "--json").stdout)
        self.assertTrue(doc["audited"])
        self.assertEqual(doc["problems"], [])
        self.assertEqual(doc["record"]["zuul"]["build"], ZUUL["build"])
        self.assertNotIn(PASSWORD, said.stdout + said.stderr + json.dumps(doc))

        # Published again from the same archive (another publish): the record stays.
        rows = publish.publish(record)
        self.assertEqual((rows[0]["status"], rows[0]["record"]), ("unchanged", "kept"))
        # Rebuilt with --no-cache in another buildset: the same platform images
        # under another index. The first image and its record stay, no error.
        other = dict(ZUUL, buildset="bs-other", build="b-other")
        again = self.record("keystone", "audited", zuul=other)
        self.assertNotEqual(again["images"][0]["digest"], image["digest"])
        again["images"][0].update(tag=image["tag"])
        rows = publish.publish(again)
        self.assertEqual((rows[0]["digest"], rows[0]["status"], rows[0]["record"]),
                         (image["digest"], "unchanged", "skipped"))
        self.assertEqual(audit.read_record(repo, image["digest"])["zuul"], ZUUL)
        self.assertEqual(registry.digest(f"{repo}:{RELEASE}"), image["digest"])

    def test_an_image_without_a_record_is_unaudited(self) -> None:
        archive = self.tmp / "bare.oci.tar"
        digest = tinyimage.make(archive, PLATFORMS, "no record")
        ref = f"{self.prefix}/glance:bare"
        registry.push_archive(archive, ref)
        said = airlock("audit", ref)
        self.assertEqual(said.returncode, 1)
        self.assertEqual(said.stdout,
                         f"unaudited: {self.prefix}/glance@{digest} has no build record\n")
        said = airlock("audit", ref, "--json")
        self.assertEqual(said.returncode, 1)
        self.assertFalse(json.loads(said.stdout)["audited"])
        # Not there at all: a user error naming the reference.
        said = airlock("audit", f"{self.prefix}/glance:absent")
        self.assertEqual(said.returncode, 1)
        self.assertIn("no such image in the registry", said.stderr)

    def test_without_the_password_or_the_registry(self) -> None:
        ref = f"{self.prefix}/keystone:{RELEASE}"
        env_less = dict(os.environ)
        env_less.pop("AIRLOCK_REGISTRY_AUTH_FILE", None)
        said = subprocess.run([sys.executable, "-m", "airlock.cli", "audit", ref],
                              capture_output=True, text=True, env=env_less, timeout=120,
                              check=False)
        self.assertEqual(said.returncode, 2, said.stderr)
        self.assertEqual(len(said.stderr.splitlines()), 1)
        # --registry-auth gives the file as $AIRLOCK_REGISTRY_AUTH_FILE does.
        said = subprocess.run([sys.executable, "-m", "airlock.cli", "audit", ref,
                               "--registry-auth", str(self.auth)], capture_output=True,
                              text=True, env=env_less, timeout=120, check=False)
        self.assertIn(said.returncode, (0, 1), said.stderr)  # reached (audited or not)
        self.assertNotIn(PASSWORD, said.stdout + said.stderr)
        nobody = f"127.0.0.1:{free_port()}/airlock-test/x:y"
        said = airlock("audit", nobody)
        self.assertEqual(said.returncode, 2)
        self.assertEqual(len(said.stderr.splitlines()), 1)
        self.assertIn("unreachable", said.stderr)


class RunAnnotationsBuildTest(unittest.TestCase):
    """A real buildx build (FROM scratch, seconds): where the run's annotations land.

    One platform with a Zuul context: an index of one manifest, the run on
    the index, the inputs' annotations on the manifest; two runs differ by
    their index only, and a build without a run is the plain manifest.
    """

    def build(self, folder: Path, name: str, run: dict[str, str]) -> dict:
        from airlock.ext import buildx

        (folder / "Dockerfile").write_text("FROM scratch\nCOPY x /x\n")
        (folder / "x").write_text("x\n")
        archive = folder / f"{name}.oci.tar"
        buildx.build(buildx.BuildSpec(
            dockerfile=folder / "Dockerfile", context=folder, output=archive,
            platforms=("linux/amd64",), annotations={annotations.RELEASE: "2099.1"},
            index_annotations=run, source_date_epoch=0))
        return dict(buildx.archive_manifest(archive), digest=buildx.archive_digest(archive))

    def test_one_platform_gets_an_index_for_the_run_and_the_same_manifest(self) -> None:
        from airlock.tests.functional.engine import require_engine

        require_engine()
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            one = self.build(folder, "one", annotations.run(None, dict(ZUUL, build="b1")))
            two = self.build(folder, "two", annotations.run(None, dict(ZUUL, build="b2")))
            plain = self.build(folder, "plain", {})
        self.assertEqual(one["mediaType"], "application/vnd.oci.image.index.v1+json")
        self.assertEqual(len(one["manifests"]), 1)
        self.assertEqual(one["annotations"]["io.airlock.zuul.build"], "b1")
        self.assertNotIn(annotations.RELEASE, one["annotations"])
        self.assertEqual(two["annotations"]["io.airlock.zuul.build"], "b2")
        self.assertTrue(annotations.same_but_run(one, two))
        # Without a run: the manifest itself, the same one the indexes name.
        self.assertEqual(plain["mediaType"], "application/vnd.oci.image.manifest.v1+json")
        self.assertEqual(plain["annotations"][annotations.RELEASE], "2099.1")
        self.assertNotIn("manifests", plain)
        self.assertEqual(one["manifests"][0]["digest"], plain["digest"])


if __name__ == "__main__":
    unittest.main()
