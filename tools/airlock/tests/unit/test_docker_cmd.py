"""How a BuildSpec becomes the ``docker buildx build`` command line, and how docker is run.

The flags are the contract with the build host notes: offline (network
none), reproducible (provenance off, SOURCE_DATE_EPOCH, OCI output with
rewrite-timestamp), named contexts, and no secret value on the command line.
Every docker call goes through airlock.ext.exec (timeout, missing program,
redacted log): the tests of that use a stand-in ``docker`` on PATH
(:mod:`fakeprogram`), because a real engine cannot be made to hang, fail or
report a distribution build's BuildKit version on demand.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import tempfile
import unittest
from pathlib import Path
from unittest import mock

from airlock.errors import AirlockError, ToolError
from airlock.ext import buildx, containers
from airlock.tests.unit import fakeprogram


def spec(**changes) -> buildx.BuildSpec:
    base = dict(dockerfile=Path("/src/images/x/Dockerfile"), context=Path("/src/ctx"),
                output=Path("/out/x.oci.tar"), platforms=("linux/amd64", "linux/arm64"),
                source_date_epoch=1700000000)
    base.update(changes)
    return buildx.BuildSpec(**base)


def values(argv: list[str], flag: str) -> list[str]:
    """Every value given to ``flag`` (as ``--flag value``)."""
    return [argv[i + 1] for i, arg in enumerate(argv) if arg == flag]


class TestBuildCommand(unittest.TestCase):

    def test_offline_and_reproducible_by_default(self):
        argv, env = buildx.build_command(spec())
        self.assertEqual(argv[:3], ["docker", "buildx", "build"])
        self.assertEqual(values(argv, "--network"), ["none"])
        self.assertIn("--provenance=false", argv)
        self.assertNotIn("--no-cache", argv)
        self.assertNotIn("--push", argv)
        self.assertNotIn("--load", argv)
        self.assertEqual(values(argv, "--platform"), ["linux/amd64,linux/arm64"])
        self.assertEqual(values(argv, "--file"), ["/src/images/x/Dockerfile"])
        self.assertEqual(argv[-1], "/src/ctx")
        self.assertEqual(env["SOURCE_DATE_EPOCH"], "1700000000")
        self.assertIn("SOURCE_DATE_EPOCH=1700000000", values(argv, "--build-arg"))

    def test_output_is_an_oci_archive_with_rewritten_timestamps(self):
        argv, _ = buildx.build_command(spec())
        self.assertEqual(values(argv, "--output"),
                         ["type=oci,dest=/out/x.oci.tar,rewrite-timestamp=true"])

    def test_named_contexts_folders_and_references(self):
        argv, _ = buildx.build_command(spec(contexts={
            "source": Path("/work/keystone"),
            "wheels": "/work/wheels",
            "base": "docker-image://127.0.0.1:5000/airlock/debian@sha256:" + "a" * 64,
        }))
        self.assertEqual(values(argv, "--build-context"), [
            "base=docker-image://127.0.0.1:5000/airlock/debian@sha256:" + "a" * 64,
            "source=/work/keystone",
            "wheels=/work/wheels",
        ])

    def test_relative_folders_become_absolute(self):
        argv, _ = buildx.build_command(spec(contexts={"src": "rel/dir"},
                                            context=Path("ctx")))
        (value,) = values(argv, "--build-context")
        self.assertTrue(Path(value.split("=", 1)[1]).is_absolute())
        self.assertTrue(Path(argv[-1]).is_absolute())

    def test_build_args_target_and_no_cache(self):
        argv, _ = buildx.build_command(spec(build_args={"PYTHON": "3.11", "A": "1"},
                                            target="runtime", no_cache=True))
        self.assertEqual(values(argv, "--build-arg"),
                         ["SOURCE_DATE_EPOCH=1700000000", "A=1", "PYTHON=3.11"])
        self.assertEqual(values(argv, "--target"), ["runtime"])
        self.assertIn("--no-cache", argv)

    def test_host_network_only_when_asked(self):
        argv, _ = buildx.build_command(spec(network="host"))
        self.assertEqual(values(argv, "--network"), ["host"])
        self.assertEqual(values(argv, "--allow"), ["network.host"])
        with self.assertRaises(AirlockError):
            buildx.build_command(spec(network="bridge"))

    def test_secrets_are_files_never_values(self):
        with tempfile.TemporaryDirectory() as tmp:
            secret = Path(tmp) / "token"
            secret.write_text("s3cr3t-value")
            argv, env = buildx.build_command(spec(secrets={"index_token": secret}))
        self.assertEqual(values(argv, "--secret"), [f"id=index_token,src={secret.resolve()}"])
        self.assertNotIn("s3cr3t-value", " ".join(argv))
        self.assertNotIn("s3cr3t-value", " ".join(env.values()))

    def test_annotations_on_the_index_quoted_for_buildx(self):
        argv, _ = buildx.build_command(spec(annotations={"io.x.inputs": '{"a":1,"b":2}'}))
        (output,) = values(argv, "--output")
        self.assertTrue(output.endswith(',"annotation-index.io.x.inputs={""a"":1,""b"":2}"'))
        argv, _ = buildx.build_command(spec(platforms=("linux/amd64",),
                                            annotations={"io.x.k": "v"}))
        self.assertTrue(values(argv, "--output")[0].endswith(",annotation-manifest.io.x.k=v"))

    def test_bad_names_are_user_errors(self):
        for bad in (dict(contexts={"Bad Name": "/x"}), dict(build_args={"1X": "y"}),
                    dict(build_args={"SOURCE_DATE_EPOCH": "1"}), dict(platforms=())):
            with self.subTest(bad=bad), self.assertRaises(AirlockError):
                buildx.build_command(spec(**bad))


class TestRunCommand(unittest.TestCase):

    def test_run_is_offline_and_throw_away(self):
        argv = containers.run_spec_command(containers.RunSpec(
            image="r/x@sha256:1", command=("uname", "-m"), platform="linux/arm64",
            user="42424"))
        self.assertEqual(argv[:3], ["docker", "run", "--rm"])
        self.assertEqual(values(argv, "--network"), ["none"])
        self.assertEqual(values(argv, "--platform"), ["linux/arm64"])
        self.assertEqual(values(argv, "--user"), ["42424"])
        self.assertEqual(argv[-3:], ["r/x@sha256:1", "uname", "-m"])
        self.assertNotIn("--read-only", argv)

    def test_a_query_sees_a_read_only_root(self):
        argv = containers.run_spec_command(containers.RunSpec(
            image="r/x@sha256:1", command=("true",), read_only=True))
        self.assertIn("--read-only", argv[:argv.index("r/x@sha256:1")])

    def test_mounts_read_only_unless_said(self):
        argv = containers.run_spec_command(containers.RunSpec(
            image="i", command=(), mounts=(containers.Mount(Path("/w/in"), "/in"),
                                           containers.Mount(Path("/w/out"), "/out", False))))
        self.assertEqual(values(argv, "--mount"), [
            "type=bind,source=/w/in,target=/in,readonly",
            "type=bind,source=/w/out,target=/out"])
        with self.assertRaises(AirlockError):
            containers.run_spec_command(containers.RunSpec(
                image="i", command=(), mounts=(containers.Mount(Path("/w/a,b"), "/x"),)))

    def test_environment_values_stay_off_the_command_line(self):
        argv = containers.run_spec_command(containers.RunSpec(
            image="i", command=("true",), env={"INDEX_TOKEN": "s3cr3t-value"}))
        self.assertEqual(values(argv, "--env"), ["INDEX_TOKEN"])
        self.assertNotIn("s3cr3t-value", " ".join(argv))

    def test_bad_network_is_a_user_error(self):
        with self.assertRaises(AirlockError):
            containers.run_spec_command(containers.RunSpec(image="i", command=(), network="bridge"))


class TestFailureLine(unittest.TestCase):

    LOG = "\n".join([
        "#5 [linux/arm64 2/2] RUN python3 -c 'import socket; socket.create_connection()'",
        "#5 0.512 Traceback (most recent call last):",
        "#5 0.530 OSError: [Errno 101] Network is unreachable",
        "#5 ERROR: process \"/bin/sh -c python3 -c 'import socket'\" did not complete "
        "successfully: exit code: 1",
        "------",
        " > [linux/arm64 2/2] RUN python3 -c 'import socket':",
        "------",
        "ERROR: failed to solve: process \"/bin/sh -c python3 -c 'import socket'\" did not "
        "complete successfully: exit code: 1",
    ])

    def test_quotes_the_failing_step_and_its_last_output(self):
        line = buildx.failure_line(self.LOG)
        self.assertNotIn("\n", line)
        self.assertTrue(line.startswith("failed to solve: process \"/bin/sh -c python3"))
        self.assertIn("exit code: 1", line)
        self.assertIn("Network is unreachable", line)

    def test_output_of_other_steps_is_not_blamed(self):
        log = "\n".join([
            "#4 [linux/amd64 2/3] RUN echo fine",
            "#4 0.211 fine",
            "#4 DONE 0.3s",
            "#5 [linux/amd64 internal] load metadata for 127.0.0.1:5000/x:y",
            "#5 ERROR: 127.0.0.1:5000/x:y: not found",
            "ERROR: failed to solve: 127.0.0.1:5000/x:y: not found",
        ])
        self.assertEqual(buildx.failure_line(log), "failed to solve: 127.0.0.1:5000/x:y: not found")

    def test_without_error_line_keeps_the_last_line(self):
        self.assertEqual(buildx.failure_line("a\nsomething broke\n"), "something broke")


class TestArchiveDigest(unittest.TestCase):

    def _archive(self, index: dict) -> Path:
        tmp = Path(tempfile.mkdtemp())
        self.addCleanup(lambda: [p.unlink() for p in tmp.iterdir()] and tmp.rmdir())
        path = tmp / "image.tar"
        data = json.dumps(index).encode()
        with tarfile.open(path, "w") as tar:
            info = tarfile.TarInfo("index.json")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        return path

    def test_reads_the_one_image_of_index_json(self):
        path = self._archive({"manifests": [{"digest": "sha256:" + "b" * 64}]})
        self.assertEqual(buildx.archive_digest(path), "sha256:" + "b" * 64)

    def test_rejects_archives_with_other_than_one_image(self):
        path = self._archive({"manifests": []})
        with self.assertRaises(ToolError):
            buildx.archive_digest(path)


# ``docker buildx inspect`` of Debian's docker.io 26 (the docker driver).
INSPECT_DEBIAN = """Name:          default
Driver:        docker
Last Activity: 2026-12-01 01:32:04 +0000 UTC

Nodes:
Name:             default
Endpoint:         default
Status:           running
BuildKit version: v0.0.0+unknown
Platforms:        linux/amd64, linux/amd64/v2, linux/arm64
Labels:
 org.mobyproject.buildkit.worker.executor:             containerd
GC Policy rule#0:
 All:           false
"""
# An older buildx, a docker-container builder of two nodes.
INSPECT_TWO_NODES = """Name:   multi
Driver: docker-container

Nodes:
Name:      multi0
Endpoint:  unix:///var/run/docker.sock
Driver Options: image="moby/buildkit:v0.10.6"
Status:    running
Buildkit:  v0.10.6
Platforms: linux/amd64, linux/386

Name:      multi1
Endpoint:  ssh://arm.example
Status:    running
Buildkit:  v0.10.6
Platforms: linux/arm64, linux/386
"""


def fake_docker(test: unittest.TestCase, inspect: str) -> Path:
    """A stand-in docker answering version questions; returns its call log."""
    text = inspect.replace("'", "'\\''")
    return fakeprogram.install(test, "docker", f"""echo "$*" >> "$FAKE_CALLS"
case "$*" in
  "buildx version") echo "github.com/docker/buildx 0.13.1+ds1 0.13.1+ds1-3" ;;
  "buildx inspect") printf '%s' '{text}' ;;
  "version --format {{{{.Server.Version}}}}") echo "26.1.5+dfsg1" ;;
  *) echo "unexpected: $*" >&2; exit 9 ;;
esac
""")


class TestEngineIdentity(unittest.TestCase):

    def setUp(self):
        buildx.engine_identity.cache_clear()
        self.addCleanup(buildx.engine_identity.cache_clear)

    def test_parse_inspect_of_the_docker_driver(self):
        builder = buildx.parse_inspect(INSPECT_DEBIAN)
        self.assertEqual(builder.driver, "docker")
        self.assertEqual(builder.buildkit, ("v0.0.0+unknown",))
        self.assertEqual(builder.platforms, ("linux/amd64", "linux/amd64/v2", "linux/arm64"))

    def test_parse_inspect_of_two_nodes_in_the_older_format(self):
        builder = buildx.parse_inspect(INSPECT_TWO_NODES)
        self.assertEqual(builder.driver, "docker-container")
        self.assertEqual(builder.buildkit, ("v0.10.6", "v0.10.6"))
        self.assertEqual(builder.platforms, ("linux/amd64", "linux/386", "linux/arm64"))

    def test_a_distribution_build_is_named_by_its_dockerd_and_asked_once(self):
        calls = fake_docker(self, INSPECT_DEBIAN)
        first = buildx.engine_identity()
        self.assertEqual(first, {"buildx": "0.13.1+ds1", "buildkit": "dockerd 26.1.5+dfsg1"})
        self.assertEqual(buildx.engine_identity(), first)
        self.assertEqual(fakeprogram.calls(calls), [
            "buildx version", "buildx inspect", "version --format {{.Server.Version}}"])

    def test_a_real_buildkit_version_is_used_as_reported(self):
        fake_docker(self, INSPECT_TWO_NODES)
        self.assertEqual(buildx.engine_identity(),
                         {"buildx": "0.13.1+ds1", "buildkit": "v0.10.6"})


class TestDockerThroughExec(unittest.TestCase):
    """docker runs through airlock.ext.exec: a missing client, a hang, a failure."""

    def setUp(self):
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        self.root = Path(tmp.name)

    def test_missing_client_names_its_package(self):
        empty = self.root / "bin"
        empty.mkdir()
        with mock.patch.dict(os.environ, {"PATH": str(empty)}), \
                self.assertRaises(ToolError) as caught:
            buildx.info()
        self.assertEqual(str(caught.exception), "docker info: docker is not installed; install "
                         "the Debian package docker-cli (as root: tools/setup-host build-host)")

    def test_a_build_that_hangs_is_stopped_and_leaves_no_archive(self):
        fakeprogram.install(self, "docker", "exec sleep 30\n")
        out = self.root / "out"
        with self.assertRaises(ToolError) as caught:
            buildx.build(spec(output=out / "x.oci.tar", context=self.root), timeout=0.5)
        self.assertIn("did not finish within 0.5 s", str(caught.exception))
        self.assertEqual(sorted(p.name for p in out.iterdir()),
                         ["x.oci.tar.log", "x.oci.tar.log.rawjson"])

    def test_a_failed_build_is_its_failing_step_and_the_log_hides_credentials(self):
        fakeprogram.install(self, "docker", "echo '#5 ERROR: process did not complete'\n"
                            "echo 'ERROR: failed to solve: exit code: 1'\nexit 1\n")
        out = self.root / "out"
        with self.assertRaises(ToolError) as caught:
            buildx.build(spec(output=out / "x.oci.tar", context=self.root,
                              build_args={"INDEX": "https://user:s3cr3t@idx.example/simple"}))
        log = out / "x.oci.tar.log"
        self.assertEqual(str(caught.exception), "docker buildx build /src/images/x/Dockerfile: "
                         f"failed to solve: exit code: 1; log: {log}")
        self.assertEqual(sorted(p.name for p in out.iterdir()),
                         ["x.oci.tar.log", "x.oci.tar.log.rawjson"])
        self.assertIn("INDEX=https://***@idx.example/simple", log.read_text())
        self.assertNotIn("s3cr3t", log.read_text())

    def test_a_container_job_failure_quotes_its_last_lines(self):
        fakeprogram.install(self, "docker", "echo 'E: Unable to locate package nosuch'\n"
                            "exit 100\n")
        log = self.root / "job.log"
        with self.assertRaises(ToolError) as caught:
            containers.run_logged(containers.RunSpec(image="127.0.0.1:5000/a/b@sha256:1",
                                                     command=("apt-get",), log=log))
        self.assertEqual(caught.exception.what,
                         "exit code 100: E: Unable to locate package nosuch")

    def test_an_unqualified_image_is_never_pulled(self):
        calls = fakeprogram.install(self, "docker", 'echo "$*" >> "$FAKE_CALLS"\n'
                                    "echo 'Error: No such image: venv-builder' >&2\nexit 1\n")
        self.assertIsNone(containers.image_digest("venv-builder:test"))
        self.assertEqual([c.split()[:2] for c in fakeprogram.calls(calls)],
                         [["image", "inspect"]])


class TestPullFailures(unittest.TestCase):
    """A failed ``docker pull`` is "no such image" only when the registry says the image is absent.

    The engine is a stand-in (its pull fails on demand) and so is the
    registry (:class:`FakeRegistry`, real HTTP on 127.0.0.1).
    """

    def setUp(self):
        from airlock.tests.unit.test_registry_cmd import FakeRegistry

        self.reg = FakeRegistry(self)
        self.calls = fakeprogram.install(self, "docker", 'echo "$*" >> "$FAKE_CALLS"\n'
                                         'case "$1" in image) echo "Error: No such image: x" >&2;;'
                                         '\n  pull) echo "Error response from daemon: Get '
                                         '\\"https://r/v2/\\": tls: bad certificate" >&2;;\nesac\n'
                                         "exit 1\n")
        home = tempfile.TemporaryDirectory()
        self.addCleanup(home.cleanup)
        patch = mock.patch.dict(os.environ, {"AIRLOCK_REGISTRY_RETRIES": "1", "HOME": home.name,
                                             "XDG_RUNTIME_DIR": home.name})
        patch.start()
        self.addCleanup(patch.stop)
        for name in ("AIRLOCK_REGISTRY_AUTH_FILE", "REGISTRY_AUTH_FILE", "XDG_CONFIG_HOME",
                     "DOCKER_CONFIG"):
            os.environ.pop(name, None)

    def test_absent_from_the_registry_is_none(self):
        self.assertIsNone(containers.image_digest(f"{self.reg.host}/a/venv-builder:1"))
        self.assertEqual([c.split()[0] for c in fakeprogram.calls(self.calls)],
                         ["image", "pull", "image"])

    def test_present_in_the_registry_is_the_engines_reason(self):
        from airlock.tests.unit.test_registry_cmd import INDEX

        self.reg.answer("/v2/a/venv-builder/manifests/1", (200, {}, INDEX))
        with self.assertRaises(ToolError) as caught:
            containers.image_digest(f"{self.reg.host}/a/venv-builder:1")
        self.assertEqual(caught.exception.where, f"docker pull {self.reg.host}/a/venv-builder:1")
        self.assertIn("tls: bad certificate", caught.exception.what)

    def test_refused_by_the_registry_is_a_credentials_failure(self):
        from airlock.tests.unit.test_registry_cmd import error_body

        self.reg.answer("/v2/a/venv-builder/manifests/404", (
            401, {}, error_body("UNAUTHORIZED", "authentication required")))
        with self.assertRaises(ToolError) as caught:
            containers.image_digest(f"{self.reg.host}/a/venv-builder:404")
        self.assertIn("asks for credentials and none are configured", str(caught.exception))


if __name__ == "__main__":
    unittest.main()
