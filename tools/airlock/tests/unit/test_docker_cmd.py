"""How a BuildSpec becomes the ``docker buildx build`` command line.

The flags are the contract with the build host notes: offline (network
none), reproducible (provenance off, SOURCE_DATE_EPOCH, OCI output with
rewrite-timestamp), named contexts, and no secret value on the command line.
"""

from __future__ import annotations

import io
import json
import tarfile
import tempfile
import unittest
from pathlib import Path

from airlock.errors import AirlockError, ToolError
from airlock.ext import buildx, containers


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


if __name__ == "__main__":
    unittest.main()
