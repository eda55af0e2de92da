"""``airlock build --all``: the slice, going on past a failure, the table and the document.

:func:`airlock.image.matrix.run` builds through a function it is given
(``build.run`` by default: the documented seam); here :class:`StandIn`
takes its place, because a real build takes hours and needs the engine.
It plays build.run's contract: progress lines first for what the release
shares, then for the service; an AirlockError where build.run would raise
one; otherwise a build record whose service row names a real OCI archive
(made by tinyimage), from which the sizes are read for real.

The CLI rows run the real ``airlock`` (hostile sandbox: no engine, no
registry, no network reachable), and one whole ``--all`` run goes through
the real build.run, which refuses every release before the engine (its
base image variable is unset): the table, the files and exit code 2.
"""

from __future__ import annotations

import datetime
import io
import json
import os
import re
import subprocess
import tarfile
import tempfile
import unittest
from pathlib import Path

from airlock.data.release import load_release
from airlock.errors import AirlockError, ToolError
from airlock.image import matrix
from airlock.tests.functional import tinyimage
from airlock.tests.unit.gitrepo import GitRepo
from airlock.tests.unit.hostile import HostileTestCase, inside, row, run_cli
from airlock.tests.unit.treefixture import TreeTestCase

BOTH = ("linux/amd64", "linux/arm64")
RY = "releases/{}/release.yaml"
ONLY_AMD64 = ("platforms:\n  - linux/amd64\n  - linux/arm64\n", "platforms:\n  - linux/amd64\n")
NO_NOVA = ("services:\n  - keystone\n  - nova\n", "services:\n  - keystone\n")


class StandIn:
    """build.run's stand-in: records calls, fails where told, else returns a record.

    ``service_fails``: (release, service) pairs that fail in the service's
    own steps (after a ``<service>: wheelhouse for`` line), as a wheelhouse
    that cannot be built would; ``release_fails``: pairs that fail before
    (after only ``base image`` lines), as a missing base image would.
    ``status`` per service: built (an archive made now) or kept (too).
    """

    def __init__(self, out: Path, service_fails=(), release_fails=(), status=None,
                 interrupt=None) -> None:
        self.out = out
        self.service_fails = set(service_fails)
        self.release_fails = set(release_fails)
        self.status = status or {}
        self.interrupt = interrupt
        self.calls: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = []

    def __call__(self, opts, progress) -> dict:
        release, (service,) = opts.release.name, opts.services
        self.calls.append((release, opts.services, opts.platforms))
        if (release, service) == self.interrupt:
            raise KeyboardInterrupt
        progress("base image 127.0.0.1:5000/airlock/debian@sha256:00 (SOURCE_DATE_EPOCH 0)")
        progress("python-base: python-base:x is in the registry, skipped")
        if (release, service) in self.release_fails:
            raise ToolError("127.0.0.1:5000/airlock/debian:bookworm",
                            "the base image is not in the registry",
                            f"run airlock base create --release {release}")
        progress(f"{service}: wheelhouse for {', '.join(opts.platforms)}")
        if (release, service) in self.service_fails:
            raise AirlockError(f"{service} 1.0 for linux/arm64", "scrypt==0.8.20 has no wheel",
                               "declare its build packages")
        archive = self.out / release / f"{service}.oci.tar"
        archive.parent.mkdir(parents=True, exist_ok=True)
        tinyimage.make(archive, list(opts.platforms), f"{release} {service}")
        return {"release": release, "images": [
            {"image": "python-base", "service": False, "status": "skipped",
             "platforms": list(BOTH), "seconds": 0.0},
            {"image": service, "service": True, "status": self.status.get(service, "built"),
             "platforms": list(opts.platforms), "archive": str(archive), "seconds": 61.25}]}


def blob_sizes(archive: Path) -> dict[str, int]:
    """Per platform, from the archive's files themselves: config + layer blobs' real sizes.

    Another way to the number matrix reads from the manifests: every
    manifest blob is found by its media type and its blobs sized as tar
    members, so a manifest lying about a size would not pass.
    """
    with tarfile.open(archive) as tar:
        members = {m.name: m for m in tar.getmembers()}

        def read(name: str) -> dict:
            return json.load(tar.extractfile(members[name]))

        found = {}
        for name in members:
            if not name.startswith("blobs/"):
                continue
            try:
                doc = read(name)
            except ValueError:
                continue
            if not isinstance(doc, dict) or doc.get("mediaType") != tinyimage.MANIFEST:
                continue
            config_name = "blobs/" + doc["config"]["digest"].replace(":", "/")
            config = read(config_name)
            names = [config_name, *("blobs/" + layer["digest"].replace(":", "/")
                                    for layer in doc["layers"])]
            found[f"{config['os']}/{config['architecture']}"] = sum(
                members[n].size for n in names)
    return found


class SelectTest(TreeTestCase):
    """Which releases, services and platforms a slice builds."""

    def plan(self, releases=(), services=(), platforms=()):
        return [(p.release.name, p.services, p.platforms)
                for p in matrix.plan(self.tree.layout, releases, services, platforms)]

    def test_default_is_every_release_service_and_platform(self):
        self.assertEqual(self.plan(), [("2025.1", ("keystone", "nova"), BOTH),
                                       ("2025.2", ("keystone", "nova"), BOTH)])

    def test_slices_keep_the_release_order_and_drop_repeats(self):
        self.assertEqual(
            self.plan(["2025.2", "2025.2"], ["nova", "keystone", "nova"], ["linux/arm64"]),
            [("2025.2", ("keystone", "nova"), ("linux/arm64",))])

    def test_a_release_lacking_a_service_or_platform_is_skipped_for_it(self):
        self.tree.replace(RY.format("2025.1"), *NO_NOVA)
        self.tree.replace(RY.format("2025.2"), *ONLY_AMD64)
        self.assertEqual(self.plan(services=["nova"]),
                         [("2025.2", ("nova",), ("linux/amd64",))])
        self.assertEqual(self.plan(platforms=["linux/arm64"]),
                         [("2025.1", ("keystone",), ("linux/arm64",))])
        self.assertEqual(self.plan(), [("2025.1", ("keystone",), BOTH),
                                       ("2025.2", ("keystone", "nova"), ("linux/amd64",))])

    def test_a_service_no_release_builds_is_one_error(self):
        with self.assertRaises(AirlockError) as caught:
            self.plan(services=["keystone", "glance"])
        self.assertEqual(str(caught.exception), "--service glance: no selected release builds "
                         "it (2025.1, 2025.2); choose from keystone, nova")

    def test_a_platform_only_an_unselected_release_builds_is_an_error(self):
        self.tree.replace(RY.format("2025.1"), *ONLY_AMD64)
        with self.assertRaises(AirlockError) as caught:
            self.plan(["2025.1"], platforms=["linux/arm64"])
        self.assertEqual(str(caught.exception), "--platform linux/arm64: no selected release "
                         "builds it (2025.1); choose from linux/amd64")

    def test_a_slice_that_selects_nothing_is_an_error(self):
        self.tree.replace(RY.format("2025.1"), *NO_NOVA)
        self.tree.replace(RY.format("2025.2"), *ONLY_AMD64)
        with self.assertRaises(AirlockError) as caught:
            self.plan(services=["nova"], platforms=["linux/arm64"])
        self.assertIn("the slice selects no image", str(caught.exception))

    def test_an_unknown_release_is_one_error(self):
        with self.assertRaises(AirlockError) as caught:
            self.plan(["2025.2", "2099.1"])
        self.assertEqual(str(caught.exception),
                         f"{self.tree.root}/releases/2099.1: no such release; "
                         "known: 2025.1, 2025.2")


class RunTest(TreeTestCase):
    """Going on past a failure; what a failure marks; sizes from real archives."""

    def setUp(self):
        super().setUp()
        tmp = tempfile.TemporaryDirectory(prefix="airlock-matrix-")
        self.addCleanup(tmp.cleanup)
        self.out = Path(tmp.name)
        self.opts = matrix.Options(layout=self.tree.layout, registry="127.0.0.1:5000/x",
                                   work_dir=self.out / "work", cache_dir=self.out / "cache")
        self.lines: list[str] = []

    def run_matrix(self, build, **slice_):
        plans = matrix.plan(self.tree.layout, **slice_)
        return matrix.run(plans, self.opts, progress=self.lines.append, build=build)

    def test_a_failing_service_does_not_stop_the_others(self):
        build = StandIn(self.out, service_fails={("2025.1", "keystone")})
        rows = self.run_matrix(build)
        self.assertEqual([(r.release, r.service, r.platform, r.status) for r in rows], [
            ("2025.1", "keystone", "linux/amd64", "failed"),
            ("2025.1", "keystone", "linux/arm64", "failed"),
            ("2025.1", "nova", "linux/amd64", "built"),
            ("2025.1", "nova", "linux/arm64", "built"),
            ("2025.2", "keystone", "linux/amd64", "built"),
            ("2025.2", "keystone", "linux/arm64", "built"),
            ("2025.2", "nova", "linux/amd64", "built"),
            ("2025.2", "nova", "linux/arm64", "built")])
        # One build per service, each with that one service and the release's platforms.
        self.assertEqual(build.calls, [(rel, (svc,), BOTH) for rel in ("2025.1", "2025.2")
                                       for svc in ("keystone", "nova")])
        reason = ("keystone 1.0 for linux/arm64: scrypt==0.8.20 has no wheel; declare its "
                  "build packages")
        self.assertEqual({r.reason for r in rows[:2]}, {reason})
        self.assertEqual({r.reason for r in rows[2:]}, {""})
        self.assertIn(f"2025.1 keystone: failed: {reason}", self.lines)

    def test_the_release_record_names_every_service_for_publish_and_check(self):
        build = StandIn(self.out, service_fails={("2025.2", "nova")})
        self.run_matrix(build)
        record = json.loads((self.out / "work" / "2025.1" / "build-record.json").read_text())
        self.assertEqual([i["image"] for i in record["images"]],
                         ["python-base", "keystone", "nova"])
        # 2025.2: one service built, its own build's record stands (none written here).
        self.assertFalse((self.out / "work" / "2025.2" / "build-record.json").exists())

    def test_merge_records_unions_locks_and_keeps_the_last_base_rows(self):
        first = {"lock": {"release": "r", "components": {"keystone": {"sha": "a"}}},
                 "images": [{"image": "python-base", "service": False, "status": "built"},
                            {"image": "keystone", "service": True}], "seconds": 10,
                 "sources": {"keystone": {"patches": [{"name": "k.patch"}]}}}
        second = {"lock": {"release": "r", "components": {"nova": {"sha": "b"}}},
                  "images": [{"image": "python-base", "service": False, "status": "skipped"},
                             {"image": "nova", "service": True}], "seconds": 5,
                  "sources": {"nova": {"patches": []}}}
        merged = matrix.merge_records([first, second])
        self.assertEqual(merged["lock"]["components"], {"keystone": {"sha": "a"},
                                                        "nova": {"sha": "b"}})
        self.assertEqual([(i["image"], i.get("status")) for i in merged["images"]],
                         [("python-base", "skipped"), ("keystone", None), ("nova", None)])
        self.assertEqual(merged["seconds"], 15)
        # Each service's patch series stays for its record in the registry (audit).
        self.assertEqual(merged["sources"], {"keystone": {"patches": [{"name": "k.patch"}]},
                                             "nova": {"patches": []}})

    def test_images_a_later_release_found_by_input_digest_are_counted_as_shared(self):
        """python-base of 2025.1 serves 2025.2; a venv-builder of other inputs does not."""
        digests = {"python-base": {"2025.1": "sha256:" + "a" * 64, "2025.2": "sha256:" + "a" * 64},
                   "venv-builder": {"2025.1": "sha256:" + "b" * 64,
                                    "2025.2": "sha256:" + "c" * 64}}
        made: set[str] = set()

        def build(opts, progress):
            record = StandIn(self.out)(opts, progress)
            release = opts.release.name
            bases = []
            for image, seconds in (("python-base", 300.0), ("venv-builder", 150.0)):
                digest = digests[image][release]
                status = "skipped" if digest in made else "built"
                made.add(digest)
                bases.append({"image": image, "service": False, "status": status,
                              "input_digest": digest, "platforms": list(BOTH),
                              "seconds": seconds if status == "built" else 0.0})
            record["images"][:1] = bases
            return record

        shared: list[matrix.Shared] = []
        plans = matrix.plan(self.tree.layout)
        rows = matrix.run(plans, self.opts, progress=self.lines.append, build=build,
                          shared=shared)
        # Found again by 2025.1's nova: the same release, nothing shared.
        self.assertEqual(shared, [matrix.Shared("python-base", "sha256:" + "a" * 64,
                                                "2025.2", "2025.1", 300.0)])
        rep = matrix.report(rows, self.tree.layout, shared=shared)
        line = matrix.shared_line(rep)
        self.assertEqual(line, "shared: 1 image(s) reused by 2025.2 instead of built again "
                         "(python-base aaaaaaaaaaaa of 2025.1), 300.0 s not spent")
        self.assertEqual(matrix.table(rep).splitlines()[-1], line)
        self.assertIn(line, matrix.markdown(rep))
        self.assertEqual(matrix.document(rep)["saved_seconds"], 300.0)

    def test_a_shared_image_built_before_the_run_says_its_time_is_not_known(self):
        rep = sample_report()
        rep.shared = [matrix.Shared("python-base", "sha256:" + "a" * 64, "2024.1", "2025.2"),
                      matrix.Shared("venv-builder", "sha256:" + "b" * 64, "2024.1", "2025.2",
                                    150.0)]
        self.assertEqual(matrix.shared_line(rep), (
            "shared: 2 image(s) reused by 2024.1 instead of built again (python-base "
            "aaaaaaaaaaaa of 2025.2, venv-builder bbbbbbbbbbbb of 2025.2), 150.0 s not spent; "
            "1 of them built before this run (time not known)"))
        self.assertIsNone(matrix.shared_line(sample_report()))

    def test_a_release_wide_failure_fails_its_rows_once_and_spares_other_releases(self):
        build = StandIn(self.out, release_fails={("2025.1", "keystone")})
        rows = self.run_matrix(build)
        failed = [r for r in rows if r.status == "failed"]
        self.assertEqual([(r.release, r.service, r.platform) for r in failed],
                         [("2025.1", s, p) for s in ("keystone", "nova") for p in BOTH])
        self.assertEqual({r.reason for r in failed}, {
            "127.0.0.1:5000/airlock/debian:bookworm: the base image is not in the registry; "
            "run airlock base create --release 2025.1"})
        # Tried once for the release: nova was not built to fail the same way.
        self.assertEqual([c[:2] for c in build.calls], [("2025.1", ("keystone",)),
                                                        ("2025.2", ("keystone",)),
                                                        ("2025.2", ("nova",))])
        self.assertEqual([r.seconds is None for r in failed], [False, False, True, True])
        self.assertEqual([r.status for r in rows[4:]], ["built"] * 4)

    def test_a_release_wide_failure_after_a_built_service_keeps_that_service(self):
        build = StandIn(self.out, release_fails={("2025.2", "nova")})
        rows = self.run_matrix(build, releases=["2025.2"])
        self.assertEqual([(r.service, r.status) for r in rows],
                         [("keystone", "built"), ("keystone", "built"),
                          ("nova", "failed"), ("nova", "failed")])

    def test_interrupt_and_internal_errors_stop_the_whole_run(self):
        build = StandIn(self.out, interrupt=("2025.1", "nova"))
        with self.assertRaises(KeyboardInterrupt):
            self.run_matrix(build)
        self.assertEqual(len(build.calls), 2)

        def broken(opts, progress):
            raise RuntimeError("a bug")

        with self.assertRaises(RuntimeError):
            self.run_matrix(broken)

    def test_each_platform_row_has_its_own_size_and_the_shared_time(self):
        build = StandIn(self.out, status={"nova": "kept"})
        rows = self.run_matrix(build, releases=["2025.2"])
        for service in ("keystone", "nova"):
            expected = blob_sizes(self.out / "2025.2" / f"{service}.oci.tar")
            got = {r.platform: r.size for r in rows if r.service == service}
            self.assertEqual(got, expected)
            self.assertEqual({r.seconds for r in rows if r.service == service}, {61.25})
        self.assertEqual([r.status for r in rows], ["built", "built", "kept", "kept"])

    def test_a_single_platform_archive_is_that_platform(self):
        rows = self.run_matrix(StandIn(self.out), releases=["2025.2"], services=["keystone"],
                               platforms=["linux/arm64"])
        expected = blob_sizes(self.out / "2025.2" / "keystone.oci.tar")
        self.assertEqual([(r.platform, r.size) for r in rows],
                         [("linux/arm64", expected["linux/arm64"])])

    def test_an_unreadable_archive_leaves_the_size_unknown_not_the_row_failed(self):
        def build(opts, progress):
            record = StandIn(self.out)(opts, progress)
            Path(record["images"][1]["archive"]).write_bytes(b"not a tar")
            return record

        rows = self.run_matrix(build, releases=["2025.2"], services=["nova"])
        self.assertEqual([(r.status, r.size) for r in rows], [("built", None)] * 2)
        self.assertTrue(any("size unknown" in line and "not a readable OCI archive" in line
                            for line in self.lines), self.lines)


class SizesTest(unittest.TestCase):
    """The size of a platform: its manifest's layers and config."""

    MANIFEST = {"config": {"size": 100}, "layers": [{"size": 1000}, {"size": 20}]}

    def test_an_index_as_a_registry_serves_it(self):
        index = {"manifests": [
            {"digest": "sha256:a", "platform": {"os": "linux", "architecture": "amd64"}},
            {"digest": "sha256:b", "platform": {"os": "linux", "architecture": "arm64",
                                                "variant": "v8"}},
            {"digest": "sha256:c", "platform": {"os": "unknown", "architecture": "unknown"}}]}
        children = {"sha256:a": self.MANIFEST, "sha256:b": {"layers": [{"size": 7}]},
                    "sha256:c": {"layers": [{"size": 99999}]}}
        asked = []

        def child(digest):
            asked.append(digest)
            return children[digest]

        self.assertEqual(matrix.manifest_sizes(index, child, BOTH),
                         {"linux/amd64": 1120, "linux/arm64/v8": 7})
        self.assertEqual(asked, ["sha256:a", "sha256:b"], "an attestation is no image")

    def test_a_single_manifest_belongs_to_the_one_platform_built(self):
        self.assertEqual(matrix.manifest_sizes(self.MANIFEST, dict, ["linux/arm64"]),
                         {"linux/arm64": 1120})
        self.assertEqual(matrix.manifest_sizes(self.MANIFEST, dict, BOTH), {})

    def test_an_archive_with_two_images_is_refused(self):
        with tempfile.TemporaryDirectory() as tmp:
            archive = Path(tmp) / "x.oci.tar"
            tinyimage.make(archive, list(BOTH), "x")
            with tarfile.open(archive, "a") as tar:
                data = json.dumps({"manifests": [{"digest": "sha256:1"},
                                                 {"digest": "sha256:2"}]}).encode()
                info = tarfile.TarInfo("index.json")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))  # the last member of a name wins
            with self.assertRaises(ToolError) as caught:
                matrix.archive_sizes(archive, BOTH)
        self.assertIn("index.json lists 2 images, expected 1", str(caught.exception))


def sample_report() -> matrix.Report:
    rows = [matrix.Row("2024.1", "keystone", "linux/amd64", "built", size=123_456_789,
                       seconds=612.0),
            matrix.Row("2024.1", "keystone", "linux/arm64", "built", size=120_000_000,
                       seconds=612.0),
            matrix.Row("2024.1", "nova", "linux/amd64", "failed",
                       reason="nova: scrypt has no wheel | build it", seconds=3.5),
            matrix.Row("2025.2", "nova", "linux/amd64", "skipped", size=900, seconds=0.0),
            matrix.Row("2025.2", "glance", "linux/amd64", "kept", size=2_000_000_000,
                       seconds=0.0),
            matrix.Row("2026.1", "nova", "linux/amd64", "failed", reason="base missing")]
    return matrix.Report(rows=rows, date="2026-01-02 03:04 UTC", commit="c" * 40,
                         selection={"releases": [], "services": ["nova"], "platforms": []})


class RenderTest(unittest.TestCase):
    maxDiff = None

    def test_table(self):
        self.assertEqual(matrix.table(sample_report()), (
            "release  service   platform     status   size      time    reason\n"
            "2024.1   keystone  linux/amd64  built    123.5 MB  612.0s\n"
            "2024.1   keystone  linux/arm64  built    120.0 MB  612.0s\n"
            "2024.1   nova      linux/amd64  failed   -         3.5s    nova: scrypt has no "
            "wheel | build it\n"
            "2025.2   nova      linux/amd64  skipped  900 B     0.0s\n"
            "2025.2   glance    linux/amd64  kept     2.0 GB    0.0s\n"
            "2026.1   nova      linux/amd64  failed   -         -       base missing\n"
            "2 built, 1 kept, 1 skipped, 2 failed\n"))

    def test_markdown_names_date_commit_and_slice(self):
        lines = matrix.markdown(sample_report()).splitlines()
        self.assertEqual(lines[0], f"Built 2026-01-02 03:04 UTC at commit {'c' * 40} "
                         "(services: nova)")
        self.assertEqual(lines[2], "| release | service | platform | status | size | time "
                         "| reason |")
        self.assertEqual(lines[6], "| 2024.1 | nova | linux/amd64 | failed | - | 3.5s | "
                         "nova: scrypt has no wheel \\| build it |")
        self.assertEqual(lines[-1], "2 built, 1 kept, 1 skipped, 2 failed")

    def test_document(self):
        doc = matrix.document(sample_report())
        self.assertEqual(doc["counts"], {"built": 2, "kept": 1, "skipped": 1, "failed": 2})
        self.assertTrue(doc["changed"])
        self.assertEqual((doc["date"], doc["commit"]), ("2026-01-02 03:04 UTC", "c" * 40))
        self.assertEqual(doc["rows"][2], {"release": "2024.1", "service": "nova",
                                          "platform": "linux/amd64", "status": "failed",
                                          "reason": "nova: scrypt has no wheel | build it",
                                          "size": None, "seconds": 3.5})
        json.dumps(doc)  # plain data

    def test_report_names_the_checkout_commit_or_unknown(self):
        with tempfile.TemporaryDirectory() as tmp:
            repo = GitRepo(Path(tmp) / "checkout")
            sha = repo.commit({"releases/README.md": "x\n"})
            layout = type("L", (), {"releases_dir": repo.path / "releases"})()
            when = datetime.datetime(2026, 1, 2, 4, 4, tzinfo=datetime.timezone(
                datetime.timedelta(hours=1)))
            rep = matrix.report([], layout, now=when)
            self.assertEqual((rep.commit, rep.date), (sha, "2026-01-02 03:04 UTC"))
            (Path(tmp) / "plain" / "releases").mkdir(parents=True)
            layout.releases_dir = Path(tmp) / "plain" / "releases"
            self.assertEqual(matrix.report([], layout).commit, "unknown")

    def test_write_report_keeps_both_files(self):
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp) / "work"
            md, js = matrix.write_report(sample_report(), work)
            self.assertEqual((md, js), (work / "matrix.md", work / "matrix.json"))
            self.assertEqual(md.read_text(), matrix.markdown(sample_report()))
            self.assertEqual(json.loads(js.read_text()), matrix.document(sample_report()))
            self.assertEqual(sorted(p.name for p in work.iterdir()),
                             ["matrix.json", "matrix.md"], "no temporary file left")


ALL = ["build", "--all", "--work-dir", "out/work"]
LOCK = ("release: '2025.2'\ncomponents:\n  nova:\n    sha: '" + "0" * 40 + "'\n"
        "    ref: '32.2.1'\n    repo: '{S}/git/openstack/nova'\n"
        "    resolved-at: '2026-01-01T00:00:00Z'\n")


class CliTest(HostileTestCase):
    """``build --all`` and ``build`` without it: refused before the engine, one line."""

    def test_refusals(self):
        self.run_rows([
            row("an unknown release", [*ALL, "--release", "2025.2", "--release", "2099.1"],
                "{D}/releases/2099.1: no such release; known: 2025.1, 2025.2"),
            row("a service no release builds", [*ALL, "--service", "glance"],
                "--service glance: no selected release builds it (2025.1, 2025.2); choose "
                "from keystone, nova"),
            row("a platform no release builds", [*ALL, "--platform", "linux/s390x"],
                "--platform linux/s390x: no selected release builds it (2025.1, 2025.2); "
                "choose from linux/amd64, linux/arm64"),
            row("--lock with two releases", [*ALL, "--lock", "out/x.lock"],
                "--lock: names the refs of one release, and --all selects 2 (2025.1, "
                "2025.2); pass one --release with --lock, or leave --lock out",
                setup=[("write", "out/x.lock", LOCK)]),
            row("--lock of another release", [*ALL, "--release", "2025.1", "--lock",
                                              "out/x.lock"],
                "out/x.lock: is the lock of release 2025.2, not 2025.1; write one with: "
                "airlock refs resolve --release 2025.1 -o FILE",
                setup=[("write", "out/x.lock", LOCK)]),
            row("--emulate-install for two platforms", [*ALL, "--emulate-install"],
                "--emulate-install: assembles the venv on one target platform; pass exactly "
                "one --platform"),
            row("build without --release", ["build", "--work-dir", "out/work"],
                "airlock build: the following arguments are required: --release; pass one "
                "--release, or --all to build several"),
            row("build with two releases", ["build", "--release", "2025.1", "--release",
                                            "2025.2", "--work-dir", "out/work"],
                "airlock build: --release is given more than once; pass one --release, or "
                "--all to build several"),
        ])

    def test_every_release_failing_still_ends_in_the_table_and_exit_2(self):
        """The real build.run refuses each release before the engine: an unset variable."""
        box = self.new_sandbox()
        for release in ("2025.1", "2025.2"):
            box.edit("replace", f"data/releases/{release}/release.yaml",
                     "${AIRLOCK_BASE_IMAGE:-127.0.0.1:5000/airlock/debian:bookworm}",
                     "${SITE_BASE}")
        with inside(box, {}):
            code, out, err, reached = run_cli([*ALL, "--service", "nova", "--platform",
                                               "linux/arm64"])
        self.assertEqual((code, reached), (2, []), err)
        reason = ("{}/releases/{}/release.yaml:base_image: ${{SITE_BASE}} is not set and has "
                  "no default; export SITE_BASE=... or write ${{SITE_BASE:-default}}")
        data = box.root / "data"
        # The time column: how long build.run took to refuse (a few milliseconds).
        lines = [re.sub(r"  \d+\.\ds  ", "  T  ", line) for line in out.splitlines()]
        # Progress first (stdout without --json), then the table, its totals line last.
        self.assertEqual(lines[:2], ["== 2025.1 nova (linux/arm64): 1/2",
                                     f"2025.1: failed for nova: {reason.format(data, '2025.1')}"])
        self.assertIn("matrix: out/work/matrix.md and out/work/matrix.json", lines)
        self.assertEqual(lines[-4:], [
            "release  service  platform     status  size  time  reason",
            f"2025.1   nova     linux/arm64  failed  -     T  {reason.format(data, '2025.1')}",
            f"2025.2   nova     linux/arm64  failed  -     T  {reason.format(data, '2025.2')}",
            "0 built, 0 kept, 0 skipped, 2 failed"])
        doc = json.loads((box.root / "out/work/matrix.json").read_text())
        self.assertEqual((doc["commit"], doc["counts"]["failed"], doc["selection"]),
                         ("unknown", 2, {"releases": [], "services": ["nova"],
                                         "platforms": ["linux/arm64"]}))
        md = (box.root / "out/work/matrix.md").read_text()
        self.assertTrue(md.startswith("Built "), md)
        self.assertIn("at commit unknown (platforms: linux/arm64; services: nova)", md)
        self.assertEqual(err, "")

    def test_json_puts_the_document_alone_on_stdout(self):
        box = self.new_sandbox()
        box.edit("replace", "data/releases/2025.2/release.yaml",
                 "${AIRLOCK_BASE_IMAGE:-127.0.0.1:5000/airlock/debian:bookworm}",
                 "${SITE_BASE}")
        with inside(box, {}):
            code, out, err, _ = run_cli([*ALL, "--release", "2025.2", "--json"])
        self.assertEqual(code, 2, err)
        doc = json.loads(out)
        self.assertEqual([(r["service"], r["platform"], r["status"]) for r in doc["rows"]],
                         [(s, p, "failed") for s in ("keystone", "nova") for p in BOTH])
        self.assertIn("0 built, 0 kept, 0 skipped, 4 failed", err)


class ScriptTest(unittest.TestCase):
    """tools/build-matrix refuses what it chooses itself, before it installs anything."""

    def run_script(self, *args: str):
        script = Path(__file__).resolve().parents[3] / "build-matrix"
        return subprocess.run(["bash", str(script), *args], capture_output=True, text=True,
                              timeout=60, env={"PATH": os.environ["PATH"]})

    def test_refusals(self):
        for args, line in [
                (["--service", "nova", "--git-base", "/x"],
                 "build-matrix: --git-base is chosen here (the local mirror in "
                 "$AIRLOCK_WORK_DIR/git); set AIRLOCK_WORK_DIR instead"),
                (["--work-dir=/x"], "build-matrix: --work-dir=/x is chosen here (the local "
                 "mirror in $AIRLOCK_WORK_DIR/git); set AIRLOCK_WORK_DIR instead"),
                (["--json"], "build-matrix: --json is not for this script: it runs build "
                 "--all and prints the table"),
                (["--release"], "build-matrix: --release needs a value")]:
            with self.subTest(args):
                proc = self.run_script(*args)
                self.assertEqual((proc.returncode, proc.stdout, proc.stderr.splitlines()),
                                 (1, "", [f"{line}; see the comment at the top of "
                                          "tools/build-matrix"]))


class LoadedReleaseTest(TreeTestCase):
    def test_select_takes_loaded_releases(self):
        releases = [load_release(self.tree.layout, "2025.2")]
        self.assertEqual([(p.services, p.platforms) for p in
                          matrix.select(releases, ["nova"], ["linux/amd64"])],
                         [(("nova",), ("linux/amd64",))])


if __name__ == "__main__":
    unittest.main()
