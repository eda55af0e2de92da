"""Registry references, TLS choice and the skopeo command lines (no registry)."""

from __future__ import annotations

import tempfile
import unittest
from pathlib import Path
from unittest import mock

from airlock.errors import AirlockError
from airlock.ext import registry


class TestSplitRef(unittest.TestCase):

    def test_tag_digest_and_default_tag(self):
        self.assertEqual(registry.split_ref("127.0.0.1:5000/airlock/debian:bookworm"),
                         ("127.0.0.1:5000", "airlock/debian", "bookworm"))
        self.assertEqual(registry.split_ref("nexus.site:8443/a/b@sha256:" + "c" * 64),
                         ("nexus.site:8443", "a/b", "sha256:" + "c" * 64))
        self.assertEqual(registry.split_ref("localhost:5000/x"), ("localhost:5000", "x", "latest"))

    def test_unqualified_names_are_refused(self):
        # skopeo would complete them from registries.conf: an upstream host.
        for ref in ("debian:bookworm", "library/debian", "docker://127.0.0.1:5000/x:y"):
            with self.subTest(ref=ref), self.assertRaises(AirlockError):
                registry.split_ref(ref)


class TestInsecure(unittest.TestCase):

    def test_loopback_only_by_default(self):
        for ref in ("127.0.0.1:5000/x:y", "localhost:5000/x:y", "[::1]:5000/x:y"):
            self.assertTrue(registry.is_insecure(ref, env={}), ref)
        self.assertFalse(registry.is_insecure("nexus.site/x:y", env={}))

    def test_configurable(self):
        env = {registry.INSECURE_ENV: "nexus.site:8082, other.site"}
        self.assertTrue(registry.is_insecure("nexus.site:8082/x:y", env=env))
        self.assertTrue(registry.is_insecure("other.site:443/x:y", env=env))
        self.assertFalse(registry.is_insecure("nexus.site:9000/x:y", env=env))


class TestCopyCommand(unittest.TestCase):

    def test_all_platforms_digests_kept(self):
        argv = registry.copy_command("oci-archive:/w/x.tar", "docker://127.0.0.1:5000/a:b",
                                     dest_insecure=True, env={})
        self.assertEqual(argv[:2], ["skopeo", "copy"])
        self.assertIn("--all", argv)
        self.assertIn("--preserve-digests", argv)
        self.assertIn("--dest-tls-verify=false", argv)
        self.assertFalse([a for a in argv if a.startswith("--src-tls-verify")])
        self.assertEqual(argv[-2:], ["oci-archive:/w/x.tar", "docker://127.0.0.1:5000/a:b"])

    def test_tls_verified_for_other_registries(self):
        argv = registry.copy_command("docker://a.site/x:1", "docker://b.site/x:1", env={})
        self.assertIn("--src-tls-verify=true", argv)
        self.assertIn("--dest-tls-verify=true", argv)

    def test_credentials_come_from_a_file_never_the_command_line(self):
        with tempfile.NamedTemporaryFile("w", suffix=".json") as auth:
            auth.write('{"auths": {"a.site": {"auth": "dXNlcjpzM2NyM3Q="}}}')
            auth.flush()
            argv = registry.copy_command("docker://a.site/x:1", "docker://a.site/x:2",
                                         env={registry.AUTH_FILE_ENV: auth.name})
        self.assertEqual(argv[argv.index("--authfile") + 1], auth.name)
        joined = " ".join(argv)
        self.assertNotIn("dXNlcjpzM2NyM3Q=", joined)
        self.assertNotIn("--creds", joined)

    def test_missing_auth_file_is_a_user_error(self):
        with self.assertRaises(AirlockError):
            registry.copy_command("docker://a.site/x:1", "docker://a.site/x:2",
                                  env={registry.AUTH_FILE_ENV: "/nonexistent/auth.json"})


class TestSkopeoErrors(unittest.TestCase):
    """How skopeo's failures are told apart (its stderr is all we have)."""

    def _fail(self, stderr: str):
        proc = mock.Mock(returncode=1, stdout="", stderr=stderr)
        with mock.patch.object(registry.subprocess, "run", return_value=proc) as run, \
                mock.patch.object(registry.time, "sleep"), \
                mock.patch.dict(registry.os.environ, {registry.RETRIES_ENV: "3"}):
            try:
                return registry.digest("127.0.0.1:5000/a/b:c"), run.call_count
            except AirlockError as error:
                return error, run.call_count

    def test_absent_is_none(self):
        result, calls = self._fail('time="x" level=fatal msg="reading manifest c in '
                                   '127.0.0.1:5000/a/b: manifest unknown: manifest unknown"')
        self.assertIsNone(result)
        self.assertEqual(calls, 1)

    def test_unreachable_is_an_error_after_retries(self):
        result, calls = self._fail('time="x" level=fatal msg="pinging container registry '
                                   '127.0.0.1:5000: dial tcp: connect: connection refused"')
        self.assertIsInstance(result, AirlockError)
        self.assertIn("registry unreachable", str(result))
        self.assertNotIn("level=fatal", str(result))
        self.assertEqual(calls, 3)


class TestPushArchive(unittest.TestCase):

    def test_missing_archive_is_a_user_error(self):
        with self.assertRaises(AirlockError):
            registry.push_archive(Path("/nonexistent.tar"), "127.0.0.1:5000/a:b")


if __name__ == "__main__":
    unittest.main()
