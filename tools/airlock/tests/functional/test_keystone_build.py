"""keystone for 2025.2, both platforms, offline, published, reproducible.

The issue's proof, end to end with real parts: the local source mirror made
from the released sdist, a wheelhouse from the package index (sdist-only
pins built in venv-builder per platform), an offline apt repository, a
buildx build with the network off, a push to a real registry. Then both
platform images run (arm64 under QEMU), a --no-cache rebuild gives the same
index digest, a plain rebuild skips everything, and the arm64 venv
assembled under emulation gives the arm64 image the cross-assembly made.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
import unittest

import yaml

from airlock.data import services
from airlock.ext import containers, registry
from airlock.image import annotations, check
from airlock.tests.functional import engine, pipeline
from airlock.tests.functional.engine import REPO_ROOT, base_image, require_engine

RELEASE = "2025.2"


def pinned_version() -> str:
    refs = yaml.safe_load((REPO_ROOT / "releases" / RELEASE / "source-refs.yaml").read_text())
    return str(refs["keystone"])


class KeystoneBuildTest(unittest.TestCase):
    record: dict
    prefix: str
    git: str

    @classmethod
    def setUpClass(cls) -> None:
        require_engine()
        base_image()
        # The run's bases, copied in: what a fresh registry does with them is
        # pipeline.bases' own build; here the --no-cache rebuild below makes
        # them again and must find the same digests.
        cls.prefix = pipeline.seeded_prefix("keystone", RELEASE)
        cls.git = pipeline.git_base("keystone")
        cls.record = pipeline.build(RELEASE, cls.prefix, "--service", "keystone",
                                    "--git-base", cls.git)
        pipeline.airlock("publish", "--release", RELEASE)
        cls.keystone = pipeline.image(cls.record, "keystone")
        cls.ref = cls.keystone["ref"]

    def run_in(self, platform: str, *command: str, user: str | None = None) -> str:
        return containers.run(self.ref, list(command), platform=platform, user=user).strip()

    def test_first_build_found_the_bases_and_built_keystone(self) -> None:
        self.assertEqual({row["image"]: row["status"] for row in self.record["images"]},
                         {"python-base": "skipped", "venv-builder": "skipped",
                          "keystone": "built"})
        self.assertEqual(self.keystone["platforms"], list(engine.PLATFORMS))

    def test_keystone_manage_reports_the_pinned_version_on_both_platforms(self) -> None:
        for platform in engine.PLATFORMS:
            with self.subTest(platform=platform):
                self.assertEqual(self.run_in(platform, "keystone-manage", "--version"),
                                 pinned_version())
                machine = self.run_in(platform, "uname", "-m")
                self.assertEqual(machine, {"linux/amd64": "x86_64",
                                           "linux/arm64": "aarch64"}[platform])

    def test_runs_as_42424_without_compiler_uv_or_pip(self) -> None:
        for platform in engine.PLATFORMS:
            with self.subTest(platform=platform):
                self.assertEqual(self.run_in(platform, "id", "-u"), "42424")
                self.assertEqual(self.run_in(platform, "id", "-g"), "42424")
                found = self.run_in(platform, "sh", "-c",
                                    "for c in gcc cc uv pip pip3; do command -v $c; done; "
                                    "python3 -m pip --version 2>/dev/null; "
                                    "ls /usr/include 2>/dev/null; true")
                self.assertEqual(found, "")

    def test_slimmed_image_starts_every_script_offline_as_42424_on_both_platforms(self) -> None:
        # What images/venv-builder/slim.toml removed is recorded, and the
        # check proves it removed nothing a process needs: every script of
        # the venv's bin starts (--help/--version/import), every WSGI module
        # and service.yaml's imports load, offline (containers.run's
        # default), as the image's user 42424.
        spec = services.load(REPO_ROOT / "images", "keystone")
        for platform in engine.PLATFORMS:
            with self.subTest(platform=platform):
                outcome = check.run(self.ref, platform, spec, "keystone", start_emulated=True)
                self.assertEqual(outcome.failures, (), outcome)
                # The dependencies' scripts too, not only the service's.
                for script in ("keystone-manage", "keystone-status", "alembic",
                               "oslo-config-generator", "oslopolicy-checker"):
                    self.assertIn(script, outcome.scripts)
                self.assertGreaterEqual(len(outcome.scripts), 25)
                record = json.loads(self.run_in(
                    platform, "cat", "/var/lib/openstack/share/airlock/slim.json"))
                self.assertIn("lib/python3.11/site-packages/keystone/tests",
                              record["rules"]["tests"]["paths"])
                self.assertGreater(record["rules"]["tests"]["bytes"], 5_000_000)
                self.assertEqual(self.run_in(platform, "sh", "-c",
                                             "find /var/lib/openstack -type d -name tests "
                                             "| head -n 3"), "")
                bytecode = record["bytecode"]
                self.assertLess(bytecode["compiled"], bytecode["modules"])
                self.assertGreater(bytecode["compiled"], 1000)
                # The standard library's bytecode is the image's own, for
                # its closure; what the check's process loaded has bytecode
                # (but the interpreter's per-platform _sysconfigdata).
                self.assertLess(bytecode["stdlib"]["compiled"], bytecode["stdlib"]["modules"])
                self.assertGreater(bytecode["stdlib"]["compiled"], 200)
                self.assertEqual([m for m in outcome.uncompiled
                                  if not m.startswith("_sysconfigdata_")], [], outcome)
                self.assertEqual(record["rules"]["mac-vendor-registries"]["files"], 2)
                # Debug information stripped from the compiled modules, on
                # the arm64 venv assembled on amd64 too (and the modules
                # still load: the check above started every script).
                self.assertGreater(record["strip"]["files"], 0)
                self.assertGreater(record["strip"]["bytes_before"] - record["strip"]["bytes_after"],
                                   1_000_000)

    def test_applied_patch_record_matches_patches_folder(self) -> None:
        patches = sorted((REPO_ROOT / "patches" / "keystone" / RELEASE).glob("*.patch"))
        self.assertTrue(patches, "the release ships at least one keystone patch")
        expected = [{"name": p.name, "sha256": hashlib.sha256(p.read_bytes()).hexdigest()}
                    for p in patches]
        for platform in engine.PLATFORMS:
            with self.subTest(platform=platform):
                record = json.loads(self.run_in(
                    platform, "cat", "/var/lib/openstack/share/airlock/keystone.json"))
                self.assertEqual(record["patches"], expected)
                self.assertEqual(record["version"], pinned_version())

    def test_published_tags_point_at_the_built_index(self) -> None:
        repo = self.ref.split("@", 1)[0]
        for tag in (self.keystone["tag"], RELEASE, pinned_version()):
            with self.subTest(tag=tag):
                self.assertEqual(registry.digest(f"{repo}:{tag}"), self.keystone["digest"])
        self.assertEqual(sorted(registry.platforms(self.ref)), sorted(engine.PLATFORMS))
        self.assertTrue(self.keystone["tag"].startswith(f"{pinned_version()}-{RELEASE}-"))

    def test_the_published_index_names_source_commit_time_release_and_lock(self) -> None:
        # The audit annotations, from the registry; then airlock audit agrees with them.
        found = registry.annotations(self.ref)
        lock = self.record["lock"]
        entry = lock["components"]["keystone"]
        self.assertEqual(found["org.opencontainers.image.source"], entry["repo"])
        self.assertEqual(found["org.opencontainers.image.revision"], entry["sha"])
        self.assertEqual(found["org.opencontainers.image.version"], pinned_version())
        self.assertEqual(found["org.opencontainers.image.created"], annotations.created(
            self.keystone["inputs"]["source_date_epoch"]))
        self.assertEqual(found["io.airlock.release"], RELEASE)
        self.assertEqual(found["io.airlock.refs-lock.sha256"],
                         annotations.lock_sha256(lock, self.keystone["components"]))
        self.assertEqual(found["io.airlock.input-digest"], self.keystone["input_digest"])
        # No --zuul-context, no bundle: nothing of the run, so nothing that differs by run.
        self.assertEqual([k for k in found if k.startswith(("io.airlock.zuul.",
                                                            "io.airlock.bundle"))], [])
        base = registry.annotations(pipeline.image(self.record, "python-base")["ref"])
        self.assertNotIn("io.airlock.release", base)
        self.assertIn("org.opencontainers.image.created", base)
        said = pipeline.airlock("audit", self.ref, "--json")
        doc = json.loads(said.stdout)
        self.assertEqual((doc["audited"], doc["problems"]), (True, []))
        self.assertEqual(doc["record"]["image"]["input_digest"], self.keystone["input_digest"])

    def test_rebuild_without_cache_is_identical_then_nothing_is_rebuilt(self) -> None:
        # Both platforms: an amd64-only build would differ by its config
        # alone, whose history names the build arguments, and so the
        # digests of the (then amd64-only) bases.
        again = pipeline.build(RELEASE, self.prefix, "--service", "keystone",
                               "--git-base", self.git, "--no-cache")
        for name in ("python-base", "venv-builder", "keystone"):
            with self.subTest(image=name):
                self.assertEqual(pipeline.image(again, name)["digest"],
                                 pipeline.image(self.record, name)["digest"])
                self.assertEqual(pipeline.image(again, name)["status"], "built")
        noop = pipeline.build(RELEASE, self.prefix, "--service", "keystone",
                              "--git-base", self.git)
        self.assertEqual({row["image"]: row["status"] for row in noop["images"]},
                         {"python-base": "skipped", "venv-builder": "skipped",
                          "keystone": "skipped"})
        self.assertEqual(pipeline.image(noop, "keystone")["digest"], self.keystone["digest"])

    def test_arm64_venv_assembled_natively_equals_emulated(self) -> None:
        # The venv assembled on arm64 itself (under QEMU) instead of
        # cross-assembled on amd64: the very config and layers of the arm64
        # image of the two-platform index the class built. The bases are
        # found by input digest; the venv stage and all after it run anew
        # (INSTALL_PLATFORM is part of their cache key).
        emulated = pipeline.image(pipeline.build(
            RELEASE, self.prefix, "--service", "keystone", "--git-base", self.git,
            "--platform", "linux/arm64", "--emulate-install"), "keystone")
        self.assertEqual(emulated["status"], "built")
        self.assertEqual(archive_content(emulated["archive"]), child_content(self.ref, "arm64"))


def child_content(ref: str, arch: str) -> tuple[str, list[str]]:
    """Config and layer digests of the ``arch`` image of the index at ``ref``."""
    repo = ref.split("@", 1)[0]
    index = registry.manifest(ref)
    assert index is not None, ref
    child = next(m["digest"] for m in index["manifests"]
                 if m["platform"]["architecture"] == arch)
    doc = registry.manifest(f"{repo}@{child}")
    assert doc is not None, child
    return doc["config"]["digest"], [x["digest"] for x in doc["layers"]]


def archive_content(archive: str) -> tuple[str, list[str]]:
    """Config and layer digests of the single image in an OCI archive."""
    with tarfile.open(archive) as tar:
        def blob(digest: str) -> dict:
            member = tar.extractfile("blobs/sha256/" + digest.split(":", 1)[1])
            assert member is not None
            return json.load(member)

        index_file = tar.extractfile("index.json")
        assert index_file is not None
        manifest = blob(json.load(index_file)["manifests"][0]["digest"])
        return manifest["config"]["digest"], [x["digest"] for x in manifest["layers"]]
