"""The audit trail without a registry: annotations, the Zuul context, the record, the chain.

Plain data in, plain data out: the annotation set a build writes (from a
lock as ``refs resolve`` makes them), the ``--zuul-context`` file (hostile:
too large, a link, a device behind a link, values that are no strings,
missing keys), the record artifact's bytes (deterministic), the buildx
command line (the run's annotations on the index only), and
``airlock audit``'s chain and its unaudited line. Pushing a record and
reading it back from a real registry is tests/functional/test_audit_registry.py.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import json
import os
import tempfile
import types
import unittest
from pathlib import Path

from airlock import cli, files
from airlock.errors import AirlockError
from airlock.ext import buildx
from airlock.image import annotations, audit, plan
from airlock.site import access, importer, stores
from airlock.site.config import Store
from airlock.tests.unit.davserver import DavServer
from airlock.tests.unit.treefixture import run_cli

SHA_KS = "1" * 40
SHA_OSLO = "2" * 40
DIGEST = "sha256:" + "d" * 64
INPUT = "sha256:" + "e" * 64


def lock(**changes) -> dict:
    entries = {
        "keystone": {"sha": SHA_KS, "ref": "28.1.0", "resolved-at": "2026-12-01T10:00:00Z",
                     "repo": "https://user:s3cret@git.example/openstack/keystone"},
        "oslo.db": {"sha": SHA_OSLO, "ref": "17.4.0", "resolved-at": "2026-12-01T10:00:00Z",
                    "repo": "https://git.example/openstack/oslo.db"},
        "nova": {"sha": "3" * 40, "ref": "32.0.0", "resolved-at": "2026-12-01T10:00:00Z",
                 "repo": "https://git.example/openstack/nova"},
    }
    for name, change in changes.items():
        entries[name] = {**entries[name], **change}
    return {"release": "2025.2", "components": entries}


class AnnotationSetTest(unittest.TestCase):
    def test_a_service_image_names_its_source_commit_time_release_and_lock(self) -> None:
        notes = annotations.service("2025.2", lock(), ["oslo.db", "keystone"], "28.1.0",
                                    1_760_000_000)
        self.assertEqual(notes, {
            "org.opencontainers.image.version": "28.1.0",
            "org.opencontainers.image.source": "https://git.example/openstack/keystone",
            "org.opencontainers.image.revision": SHA_KS,
            "org.opencontainers.image.created": "2025-10-09T08:53:20Z",
            "io.airlock.release": "2025.2",
            "io.airlock.refs-lock.sha256": annotations.lock_sha256(
                lock(), ["oslo.db", "keystone"])})
        self.assertNotIn("s3cret", json.dumps(notes))

    def test_the_lock_sha256_is_of_the_images_components_without_the_clock(self) -> None:
        mine = ["oslo.db", "keystone"]
        first = annotations.lock_sha256(lock(), mine)
        # Resolved again an hour later, or with other services in the lock: the same.
        later = lock(keystone={"resolved-at": "2026-12-01T11:00:00Z"})
        self.assertEqual(annotations.lock_sha256(later, mine), first)
        self.assertEqual(annotations.lock_sha256(lock(nova={"sha": "4" * 40}), mine), first)
        # A password in a repository URL is no input either.
        bare = lock(keystone={"repo": "https://git.example/openstack/keystone"})
        self.assertEqual(annotations.lock_sha256(bare, mine), first)
        # Another commit of one of its components is another lock.
        self.assertNotEqual(annotations.lock_sha256(lock(**{"oslo.db": {"sha": "5" * 40}}),
                                                    mine), first)
        # ... and it is the sha256 of the canonical JSON audit computes again.
        text = json.dumps(annotations.lock_entries(lock(), mine), sort_keys=True,
                          separators=(",", ":"))
        self.assertEqual(first, hashlib.sha256(text.encode()).hexdigest())

    def test_base_images_carry_nothing_of_a_release_or_a_checkout(self) -> None:
        self.assertEqual(annotations.base(0), {"org.opencontainers.image.created":
                                               "1970-01-01T00:00:00Z"})

    def test_the_annotations_are_inputs_and_the_run_is_not(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            (folder / "Dockerfile").write_text("FROM scratch\n")

            def digest(**notes: str) -> tuple[dict, str]:
                job = plan.ImageJob("x", folder, ("linux/amd64",), annotations=notes)
                inputs = plan.job_inputs(job, {}, DIGEST)
                return inputs["annotations"], files.json_digest(inputs)

            one = digest(**{annotations.REVISION: SHA_KS})
            self.assertEqual(one[0], {annotations.REVISION: SHA_KS})
            self.assertNotEqual(one[1], digest(**{annotations.REVISION: SHA_OSLO})[1])
        # The run's annotations are not a field of the job at all.
        self.assertEqual(annotations.run("airlock-" + "a" * 20, {"buildset": "b1", "build": "u"}),
                         {"io.airlock.bundle": "airlock-" + "a" * 20,
                          "io.airlock.zuul.build": "u", "io.airlock.zuul.buildset": "b1"})
        self.assertEqual(annotations.run(None, None), {})

    def test_indexes_of_the_same_platform_images_differ_only_by_the_run(self) -> None:
        child = {"mediaType": "m", "digest": "sha256:" + "1" * 64, "size": 1,
                 "platform": {"os": "linux", "architecture": "amd64"}}
        arm = {**child, "digest": "sha256:" + "2" * 64,
               "platform": {"os": "linux", "architecture": "arm64"}}
        one = {"manifests": [child, arm], "annotations": {"io.airlock.zuul.build": "a"}}
        two = {"manifests": [arm, child], "annotations": {"io.airlock.zuul.build": "b"}}
        self.assertTrue(annotations.same_but_run(one, two))
        self.assertFalse(annotations.same_but_run(one, {"manifests": [child]}))
        self.assertFalse(annotations.same_but_run(one, {"manifests": [
            child, {**arm, "digest": "sha256:" + "3" * 64}]}))
        self.assertFalse(annotations.same_but_run({"layers": []}, {"layers": []}))
        self.assertFalse(annotations.same_but_run(None, one))

    def test_the_record_tag_is_named_after_the_image_digest(self) -> None:
        self.assertEqual(annotations.record_tag(DIGEST), f"sha256-{'d' * 64}.airlock-record")
        for bad in ("sha256:abc", "md5:" + "d" * 64, "d" * 64, "sha256:" + "D" * 64):
            with self.subTest(bad=bad), self.assertRaises(AirlockError):
                annotations.record_tag(bad)


class BuildCommandTest(unittest.TestCase):
    def output(self, platforms: tuple[str, ...], **kwargs) -> tuple[list[str], str]:
        spec = buildx.BuildSpec(dockerfile=Path("/x/Dockerfile"), context=Path("/x"),
                                output=Path("/x/out.tar"), platforms=platforms, **kwargs)
        argv, _ = buildx.build_command(spec)
        return argv, argv[argv.index("--output") + 1]

    def test_the_run_goes_on_the_index_only_even_for_one_platform(self) -> None:
        argv, out = self.output(("linux/amd64",), annotations={"a.b": "1"},
                                index_annotations={"io.airlock.zuul.build": "u1"})
        self.assertIn("annotation-manifest.a.b=1", out.split(","))
        self.assertIn("annotation-index.io.airlock.zuul.build=u1", out.split(","))
        self.assertIn("BUILDKIT_MULTI_PLATFORM=1", argv)  # an index to carry them

    def test_without_a_run_nothing_changes_for_one_platform(self) -> None:
        argv, out = self.output(("linux/amd64",), annotations={"a.b": "1"})
        self.assertNotIn("BUILDKIT_MULTI_PLATFORM=1", argv)
        self.assertNotIn("annotation-index", out)

    def test_two_platforms_have_an_index_of_their_own(self) -> None:
        argv, out = self.output(("linux/amd64", "linux/arm64"), annotations={"a.b": "1"},
                                index_annotations={"io.airlock.bundle": "airlock-1"})
        self.assertNotIn("BUILDKIT_MULTI_PLATFORM=1", argv)
        self.assertIn("annotation-index.a.b=1", out.split(","))
        self.assertIn("annotation-index.io.airlock.bundle=airlock-1", out.split(","))

    def test_a_value_that_would_break_the_output_line_is_refused(self) -> None:
        for notes in ({"a": "x\ny"}, {"a=b": "x"}, {"": "x"}):
            with self.subTest(notes=notes), self.assertRaises(AirlockError):
                self.output(("linux/amd64",), index_annotations=notes)
        with self.assertRaises(AirlockError):
            self.output(("linux/amd64",), build_args={"BUILDKIT_MULTI_PLATFORM": "1"})


GOOD = {"tenant": "site", "pipeline": "manual", "project": "example.org/airlock",
        "buildset": "bs-1", "build": "b-1", "job": "airlock-build-2025.2-keystone",
        "ref": "refs/heads/master", "newrev": "a" * 40, "oldrev": "b" * 40}


class ZuulContextTest(unittest.TestCase):
    def setUp(self) -> None:
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        self.dir = Path(tmp.name)

    def write(self, data: object, name: str = "zuul.json") -> Path:
        path = self.dir / name
        path.write_bytes(data if isinstance(data, bytes) else json.dumps(data).encode())
        return path

    def refused(self, path: Path) -> str:
        with self.assertRaises(AirlockError) as caught:
            annotations.load_zuul_context(path)
        text = str(caught.exception)
        self.assertEqual(len(text.splitlines()), 1)
        self.assertEqual(caught.exception.exit_code, 1)
        return text

    def test_the_known_keys_are_read_and_the_others_ignored(self) -> None:
        path = self.write({**GOOD, "secret": {"password": "x"}, "change": "1234",
                           "patchset": "2", "oldrev": None})
        context = annotations.load_zuul_context(path)
        self.assertEqual(context, {**{k: v for k, v in GOOD.items() if k != "oldrev"},
                                   "change": "1234", "patchset": "2"})

    def test_values_that_are_no_short_one_line_string(self) -> None:
        for key, value, said in (("build", 12, "is a int, not a string"),
                                 ("newrev", ["a"], "is a list, not a string"),
                                 ("tenant", {"name": "x"}, "is a dict, not a string"),
                                 ("job", True, "is a bool, not a string"),
                                 ("ref", "r" * 257, "is longer than 256 characters"),
                                 ("pipeline", "check\nio.airlock.zuul.x=y",
                                  "holds a control character")):
            with self.subTest(key=key):
                text = self.refused(self.write({**GOOD, key: value}))
                self.assertIn(f"zuul.json:{key}: {said}", text)
        self.assertEqual(annotations.load_zuul_context(self.write({**GOOD, "ref": "r" * 256}))
                         ["ref"], "r" * 256)

    def test_missing_keys_are_named(self) -> None:
        doc = {k: v for k, v in GOOD.items() if k not in ("buildset", "build")}
        self.assertIn("lacks buildset, build", self.refused(self.write(doc)))
        self.assertIn("lacks tenant", self.refused(self.write({**GOOD, "tenant": ""})))

    def test_not_json_not_an_object_too_large(self) -> None:
        self.assertIn("not a JSON document", self.refused(self.write(b"{nope")))
        self.assertIn("not a JSON object", self.refused(self.write([GOOD])))
        self.assertIn("not a JSON document", self.refused(self.write(b"[" * 50000)))
        huge = self.write({**GOOD, "padding": "x" * (annotations.ZUUL_FILE_LIMIT)})
        self.assertIn("larger", self.refused(huge).lower())

    def test_links_folders_and_devices_are_refused(self) -> None:
        good = self.write(GOOD)
        (self.dir / "link.json").symlink_to(good)
        self.assertIn("is a symbolic link", self.refused(self.dir / "link.json"))
        (self.dir / "zero.json").symlink_to("/dev/zero")
        self.assertIn("is a symbolic link", self.refused(self.dir / "zero.json"))
        self.assertIn("no such file", self.refused(self.dir / "absent.json"))
        self.assertIn("directory", self.refused(self.dir))
        os.mkfifo(self.dir / "fifo")
        self.assertIn("FIFO", self.refused(self.dir / "fifo"))  # and no hang

    def test_the_cli_refuses_a_bad_context_before_any_work(self) -> None:
        bad = self.write({**GOOD, "build": 1})
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = cli.main(["build", "--release", "2025.2", "--registry", "127.0.0.1:9/x",
                             "--zuul-context", str(bad)])
        self.assertEqual(code, 1)
        self.assertEqual(err.getvalue(),
                         f"{bad}:build: is a int, not a string; pass the JSON file the "
                         "airlock-build role writes from zuul.*\n")

    def test_bundle_is_for_a_site_build_and_must_look_like_an_id(self) -> None:
        for argv, said in ((["--bundle", "airlock-" + "a" * 20], "--bundle: names the bundle"),
                           (["--bundle", "../x", "--site", "/nonexistent/site.yaml"],
                            "--bundle: '../x' is not a bundle id")):
            err = io.StringIO()
            with self.subTest(argv=argv), contextlib.redirect_stderr(err), \
                    contextlib.redirect_stdout(io.StringIO()):
                code = cli.main(["build", "--release", "2025.2", *argv])
                self.assertEqual(code, 1)
                self.assertTrue(err.getvalue().startswith(said), err.getvalue())


class BundleImportedTest(unittest.TestCase):
    """build --site --bundle ID: the raw store must hold ID's import record (a real DAV server)."""

    def test_an_imported_bundle_passes_another_is_one_line_without_the_password(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            server = DavServer(root / "root", {"importer": "s3cret"})
            server.start()
            self.addCleanup(server.stop)
            (root / "cred").write_text("importer:s3cret\n")
            raw = Store("raw", {"url": server.url("airlock/")}, credentials_file=root / "cred",
                        where="site.yaml:3")
            site = types.SimpleNamespace(raw=raw)
            stores.RawStore(raw).put(importer.record_path("airlock-" + "1" * 20), b"{}")
            access.check_imported(site, "airlock-" + "1" * 20)  # there: no error
            with self.assertRaises(AirlockError) as caught:
                access.check_imported(site, "airlock-" + "2" * 20)
            text = str(caught.exception)
            self.assertEqual(text, f"--bundle airlock-{'2' * 20}: the site imported no such "
                             f"bundle (no {server.url('airlock/')}airlock/imports/"
                             f"airlock-{'2' * 20}.json); pass the id airlock bundle import "
                             "printed, or import it first")
            self.assertNotIn("s3cret", text)


def build_record() -> dict:
    """A build record as ``airlock build`` writes it (the fields the audit reads)."""
    keystone = {
        "image": "keystone", "service": True, "version": "28.1.0", "status": "built",
        "platforms": ["linux/amd64", "linux/arm64"], "digest": DIGEST, "input_digest": INPUT,
        "inputs": {"image": "keystone"}, "tag": "28.1.0-2025.2-eeeeeeeeeeee",
        "moving_tags": ["2025.2", "28.1.0"], "ref": f"127.0.0.1:5000/a/keystone@{DIGEST}",
        "components": ["oslo.db", "keystone"], "archive": "/home/zuul/work/keystone.oci.tar",
        "log": "/home/zuul/work/keystone.log", "contexts": {"wheels": "/home/zuul/w"},
        "annotations": {**annotations.service("2025.2", lock(), ["oslo.db", "keystone"],
                                              "28.1.0", 1_760_000_000),
                        annotations.INPUT_DIGEST: INPUT},
        "index_annotations": annotations.run("airlock-" + "f" * 20,
                                             {k: v for k, v in GOOD.items()})}
    base = {"image": "python-base", "service": False, "status": "skipped",
            "digest": "sha256:" + "1" * 64, "input_digest": "sha256:" + "2" * 64,
            "ref": "127.0.0.1:5000/a/python-base@sha256:" + "1" * 64}
    builder = {**base, "image": "venv-builder", "digest": "sha256:" + "3" * 64,
               "input_digest": "sha256:" + "4" * 64}
    return {"release": "2025.2", "registry": "127.0.0.1:5000/a",
            "base_image": "127.0.0.1:5000/a/debian@sha256:" + "5" * 64,
            "lock": {**lock(), "components": {
                name: {**entry, "repo": entry["repo"].replace("user:s3cret@", "")}
                for name, entry in lock()["components"].items()}},
            "sources": {"keystone": {"sha": SHA_KS, "patches": [
                {"name": "0001-fix.patch", "sha256": "9" * 64}]},
                "oslo.db": {"sha": SHA_OSLO, "patches": []},
                "nova": {"sha": "3" * 40, "patches": []}},
            "tools": {"airlock": {"version": "0.1.0", "commit": "c" * 40},
                      "engine": {"buildx": "0.13.1", "buildkit": "v0.13.2"}},
            "zuul": dict(GOOD), "bundle": None, "images": [base, builder, keystone]}


class RecordTest(unittest.TestCase):
    def test_the_record_of_an_image_holds_what_made_it_and_no_host_path(self) -> None:
        record = build_record()
        doc = audit.image_record(record, record["images"][2])
        self.assertEqual(doc["image"]["digest"], DIGEST)
        self.assertEqual(sorted(doc["sources"]), ["keystone", "oslo.db"])  # not nova's
        self.assertEqual(doc["sources"]["keystone"]["patches"][0]["sha256"], "9" * 64)
        self.assertEqual(doc["depends"]["venv-builder"]["input_digest"], "sha256:" + "4" * 64)
        self.assertEqual(doc["zuul"], GOOD)
        self.assertEqual(doc["bundle"], "airlock-" + "f" * 20)
        self.assertEqual(doc["tools"]["engine"]["buildkit"], "v0.13.2")
        text = json.dumps(doc)
        self.assertNotIn("/home/zuul", text)
        self.assertNotIn("s3cret", text)

    def test_the_record_artifact_is_the_same_bytes_for_the_same_record(self) -> None:
        record = build_record()
        shuffled = copy.deepcopy(record)
        shuffled["images"][2] = dict(reversed(list(shuffled["images"][2].items())))
        one = audit.record_bytes(audit.image_record(record, record["images"][2]))
        two = audit.record_bytes(audit.image_record(shuffled, shuffled["images"][2]))
        self.assertEqual(one, two)
        subject = {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": DIGEST,
                   "size": 1234}
        manifest = audit.record_manifest(one, subject)
        self.assertEqual(manifest, audit.record_manifest(two, dict(reversed(subject.items()))))
        doc = json.loads(manifest)
        self.assertEqual(doc["artifactType"], "application/vnd.airlock.build-record.v1+json")
        self.assertEqual(doc["mediaType"], "application/vnd.oci.image.manifest.v1+json")
        # OCI 1.1's empty descriptor: the digest of the two bytes "{}".
        self.assertEqual(doc["config"], {
            "mediaType": "application/vnd.oci.empty.v1+json", "size": 2, "data": "e30=",
            "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"})
        self.assertEqual(doc["layers"][0]["digest"], "sha256:" + hashlib.sha256(one).hexdigest())
        self.assertEqual(doc["layers"][0]["size"], len(one))
        self.assertEqual(doc["subject"], subject)


class ChainTest(unittest.TestCase):
    def doc(self, **record_changes) -> dict:
        record = build_record()
        stored = audit.image_record(record, record["images"][2])
        stored.update(record_changes)
        found = {**record["images"][2]["annotations"], **record["images"][2]["index_annotations"]}
        return {"ref": f"127.0.0.1:5000/a/keystone@{DIGEST}", "digest": DIGEST,
                "annotations": found, "audited": True, "record": stored,
                "problems": audit._problems(DIGEST, found, stored)}

    def test_the_chain_from_the_digest_to_the_trigger(self) -> None:
        doc = self.doc()
        self.assertEqual(doc["problems"], [])
        lines = audit.chain(doc).splitlines()
        self.assertEqual(lines[0], f"127.0.0.1:5000/a/keystone@{DIGEST}")
        self.assertEqual(lines[1:6], [
            "  release     2025.2",
            "  image       keystone 28.1.0 (linux/amd64, linux/arm64)",
            "  created     2025-10-09T08:53:20Z",
            "  source      https://git.example/openstack/keystone",
            f"  revision    {SHA_KS}"])
        text = "\n".join(lines)
        for line in (f"  component   oslo.db 17.4.0 at {SHA_OSLO} from "
                     "https://git.example/openstack/oslo.db",
                     f"  component   keystone 28.1.0 at {SHA_KS} from "
                     "https://git.example/openstack/keystone",
                     f"    patch     0001-fix.patch sha256:{'9' * 64}",
                     "  lock        sha256:"
                     + annotations.lock_sha256(lock(), ["oslo.db", "keystone"]),
                     f"  inputs      {INPUT}",
                     f"    venv-builder sha256:{'3' * 64} (inputs sha256:{'4' * 64})",
                     f"  bundle      airlock-{'f' * 20}",
                     "  zuul        tenant site, pipeline manual, project example.org/airlock, "
                     "buildset bs-1, build b-1, job airlock-build-2025.2-keystone",
                     f"  trigger     ref refs/heads/master, newrev {'a' * 40}, oldrev {'b' * 40}"):
            self.assertIn(line, lines, text)
        self.assertIn(f"airlock 0.1.0 at {'c' * 40}", text)

    def test_a_record_that_does_not_match_the_image_is_a_problem(self) -> None:
        other_lock = build_record()["lock"]
        other_lock["components"]["keystone"]["sha"] = "7" * 40
        doc = self.doc(lock=other_lock)
        self.assertEqual(len(doc["problems"]), 2)  # the lock sha256 and the revision
        self.assertTrue(any("org.opencontainers.image.revision" in p for p in doc["problems"]))
        self.assertIn("  PROBLEM     ", audit.chain(doc))
        record = build_record()
        image = dict(audit.image_record(record, record["images"][2])["image"],
                     digest="sha256:" + "0" * 64)
        self.assertIn(f"the record is of sha256:{'0' * 64}, not of this image",
                      self.doc(image=image)["problems"])

    def test_an_image_without_a_record_is_unaudited(self) -> None:
        doc = {"ref": f"127.0.0.1:5000/a/keystone@{DIGEST}", "digest": DIGEST,
               "annotations": {}, "audited": False, "problems": []}
        self.assertEqual(audit.chain(doc),
                         f"unaudited: 127.0.0.1:5000/a/keystone@{DIGEST} has no build record\n")

    def test_outside_zuul_the_chain_says_so(self) -> None:
        doc = self.doc(zuul={}, bundle=None)
        self.assertIn("  zuul        - (built outside Zuul)", audit.chain(doc).splitlines())
        self.assertIn("  bundle      -", audit.chain(doc).splitlines())


class AuditCliTest(unittest.TestCase):
    """What ``airlock audit`` refuses, and a registry that does not answer (127.0.0.1:9)."""

    def run_cli(self, *argv: str) -> tuple[int, str, str]:
        return run_cli(["audit", *argv])

    def test_a_reference_that_is_no_image_reference_is_exit_1(self) -> None:
        self.assertEqual(self.run_cli("127.0.0.1:9/x@sha256:abc"), (1, "", (
            "image reference '127.0.0.1:9/x@sha256:abc': has a malformed digest; write "
            "host[:port]/repo@sha256:<64 hex digits>\n")))
        code, _, err = self.run_cli("keystone:2025.2")
        self.assertEqual((code, len(err.splitlines())), (1, 1))
        self.assertIn("does not start with a registry host", err)

    def test_a_registry_that_does_not_answer_is_exit_2_in_one_line(self) -> None:
        os.environ["AIRLOCK_REGISTRY_RETRIES"] = "1"
        self.addCleanup(os.environ.pop, "AIRLOCK_REGISTRY_RETRIES", None)
        code, out, err = self.run_cli(f"127.0.0.1:9/airlock/keystone@{DIGEST}", "--json")
        self.assertEqual((code, out, len(err.splitlines())), (2, "", 1))
        self.assertIn("registry unreachable: 127.0.0.1:9", err)

    def test_a_registry_auth_file_that_is_no_auth_file_is_exit_1(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            bad = Path(tmp) / "auth.json"
            bad.write_text('{"auths": {"127.0.0.1:9": {"auth": "not base64 s3cret"}}}')
            before = os.environ.get("AIRLOCK_REGISTRY_AUTH_FILE")
            self.addCleanup(lambda: os.environ.__setitem__("AIRLOCK_REGISTRY_AUTH_FILE", before)
                            if before is not None else
                            os.environ.pop("AIRLOCK_REGISTRY_AUTH_FILE", None))
            code, _, err = self.run_cli("127.0.0.1:9/x:y", "--registry-auth", str(bad))
        self.assertEqual((code, len(err.splitlines())), (1, 1))
        self.assertNotIn("s3cret", err)


if __name__ == "__main__":
    unittest.main()
