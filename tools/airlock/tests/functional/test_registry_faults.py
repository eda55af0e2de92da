"""Registry faults with a real registry: wrong credentials, a tag holding 404, absent images.

A private docker-registry (Debian's, on a free 127.0.0.1 port, htpasswd
users: :mod:`registries`) holds one tiny two-platform image
(:mod:`tinyimage`, no engine needed) pushed by the real skopeo. Then
airlock, in this process and as the ``airlock`` command:

- with wrong credentials fails with one line, exit 2, naming the registry
  and $AIRLOCK_REGISTRY_AUTH_FILE, and the password is in no output;
- an auth failure for a tag holding ``404`` is an auth failure, never
  "absent" (which would make a build rebuild instead of stopping);
- a missing tag or repository on a reachable registry is absent (None, no
  tags) with the right credentials, and on an open registry with none.

Seconds, no image build. Only 127.0.0.1 is spoken to.
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
from unittest import mock

from airlock.errors import ToolError
from airlock.ext import registry
from airlock.tests.functional import tinyimage
from airlock.tests.functional.engine import REPO_ROOT, TEST_REPO
from airlock.tests.functional.registries import PrivateRegistry

USER = "builder"
PASSWORD = "pw-" + uuid.uuid4().hex  # what must never show
WRONG = "wrong-" + uuid.uuid4().hex
PLATFORMS = ["linux/amd64", "linux/arm64"]


class TestRegistryFaults(unittest.TestCase):

    @classmethod
    def setUpClass(cls) -> None:
        cls.registry = PrivateRegistry(users={USER: PASSWORD})
        cls.registry.start()
        cls.tmp = Path(tempfile.mkdtemp(prefix="airlock-faults-"))
        cls.right = cls.registry.auth_file(USER, PASSWORD, cls.tmp / "right.json")
        cls.wrong = cls.registry.auth_file(USER, WRONG, cls.tmp / "wrong.json")
        cls.repo = f"{cls.registry.host}/airlock-test/tiny"
        archive = cls.tmp / "tiny.oci.tar"
        cls.digest = tinyimage.make(archive, PLATFORMS, "faults")
        with mock.patch.dict(os.environ, cls.env(cls.right)):
            pushed = registry.push_archive(archive, f"{cls.repo}:1.0")
        assert pushed == cls.digest, (pushed, cls.digest)

    @classmethod
    def tearDownClass(cls) -> None:
        cls.registry.close()
        for path in sorted(cls.tmp.rglob("*"), reverse=True):
            path.unlink() if not path.is_dir() else path.rmdir()
        cls.tmp.rmdir()

    @classmethod
    def env(cls, auth_file: Path | None) -> dict[str, str]:
        """An environment whose only credentials are ``auth_file`` (none: no file at all)."""
        home = cls.tmp / "home"
        home.mkdir(exist_ok=True)
        env = {"HOME": str(home), "XDG_RUNTIME_DIR": str(home), "XDG_CONFIG_HOME": str(home),
               "DOCKER_CONFIG": str(home), registry.RETRIES_ENV: "2"}
        if auth_file is not None:
            env[registry.AUTH_FILE_ENV] = str(auth_file)
        return env

    def using(self, auth_file: Path | None) -> None:
        """Run the rest of this test with only ``auth_file``'s credentials."""
        patch = mock.patch.dict(os.environ, self.env(auth_file))
        patch.start()
        self.addCleanup(patch.stop)
        if auth_file is None:
            os.environ.pop(registry.AUTH_FILE_ENV, None)

    def assert_one_line_without_secrets(self, text: str) -> None:
        self.assertEqual(len(text.strip().splitlines()), 1, text)
        for secret in (PASSWORD, WRONG):
            self.assertNotIn(secret, text)

    # --- the right credentials -------------------------------------------------

    def test_right_credentials_see_the_image(self) -> None:
        self.using(self.right)
        self.assertEqual(registry.digest(f"{self.repo}:1.0"), self.digest)
        self.assertEqual(registry.platforms(f"{self.repo}:1.0"), PLATFORMS)
        self.assertEqual(registry.list_tags(self.repo), ["1.0"])

    def test_absent_with_the_right_credentials_is_none(self) -> None:
        self.using(self.right)
        self.assertIsNone(registry.digest(f"{self.repo}:2.0-404"))
        self.assertIsNone(registry.digest(f"{self.registry.host}/airlock-test/no-such:1.0"))
        self.assertEqual(registry.list_tags(f"{self.registry.host}/airlock-test/no-such"), [])

    def test_absent_on_an_open_registry_needs_no_credentials(self) -> None:
        self.using(None)
        name = f"{TEST_REPO}/no-such-{uuid.uuid4().hex[:8]}"
        self.assertIsNone(registry.digest(f"{name}:1.0-404"))
        self.assertEqual(registry.list_tags(name), [])

    # --- wrong or missing credentials --------------------------------------------

    def test_wrong_credentials_are_one_line_exit_2(self) -> None:
        self.using(self.wrong)
        with self.assertRaises(ToolError) as caught:
            registry.digest(f"{self.repo}:1.0")
        line = str(caught.exception)
        self.assertEqual(caught.exception.exit_code, 2)
        self.assertIn(f"the registry {self.registry.host} refused the credentials", line)
        self.assertIn("$AIRLOCK_REGISTRY_AUTH_FILE", line)
        self.assert_one_line_without_secrets(line)

    def test_an_auth_failure_on_a_tag_holding_404_is_not_absent(self) -> None:
        for auth_file, said in ((self.wrong, "refused the credentials"),
                                (None, "asks for credentials and none are configured")):
            with self.subTest(auth_file=auth_file):
                self.using(auth_file)
                for ref in (f"{self.repo}:1.0-404", f"{self.repo}:404"):
                    with self.assertRaises(ToolError) as caught:
                        registry.digest(ref)
                    self.assertIn(said, str(caught.exception))
                with self.assertRaises(ToolError) as caught:
                    registry.list_tags(f"{self.registry.host}/airlock-test/x404")
                self.assertIn(said, str(caught.exception))

    def test_a_push_with_wrong_credentials_fails_on_them(self) -> None:
        self.using(self.wrong)
        archive = self.tmp / "again.oci.tar"
        tinyimage.make(archive, PLATFORMS, "again")
        with self.assertRaises(ToolError) as caught:
            registry.push_archive(archive, f"{self.repo}:1.1-404")
        self.assertIn("refused the credentials", str(caught.exception))
        self.assert_one_line_without_secrets(str(caught.exception))

    def test_the_airlock_command_with_wrong_credentials(self) -> None:
        """``airlock base create`` looks the base image up first: that is where it stops."""
        for auth_file, said in ((self.wrong, "refused the credentials"),
                                (None, "asks for credentials and none are configured")):
            with self.subTest(auth_file=auth_file):
                env_ref = f"{self.repo}:bookworm-404"
                proc = self._base_create(env_ref, auth_file)
                self.assertEqual(proc.returncode, 2, proc.stderr)
                self.assertEqual(proc.stdout, "")
                self.assert_one_line_without_secrets(proc.stderr)
                self.assertTrue(proc.stderr.startswith(f"{env_ref}: the registry "
                                                       f"{self.registry.host} {said}"),
                                proc.stderr)
                self.assertIn("$AIRLOCK_REGISTRY_AUTH_FILE", proc.stderr)

    def test_the_airlock_command_with_a_broken_auth_file(self) -> None:
        broken = self.tmp / "broken.json"
        # A raw newline and tab inside a JSON string: what once came back as literal \n\t.
        broken.write_text(json.dumps({"auths": {self.registry.host: {"auth": PASSWORD}}})
                          .replace(PASSWORD, PASSWORD + "\n\t"))
        proc = self._base_create(f"{self.repo}:bookworm", broken)
        self.assertEqual(proc.returncode, 1, proc.stderr)
        self.assert_one_line_without_secrets(proc.stderr)
        self.assertNotIn("\\n", proc.stderr)
        self.assertTrue(proc.stderr.startswith(f"$AIRLOCK_REGISTRY_AUTH_FILE ({broken}): "
                                               "is not JSON"), proc.stderr)

    def _base_create(self, ref: str, auth_file: Path | None) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items()
               if k not in (registry.AUTH_FILE_ENV, "REGISTRY_AUTH_FILE")}
        env.update(self.env(auth_file))
        env.update(AIRLOCK_WORK_DIR=str(self.tmp / "work"), AIRLOCK_BASE_IMAGE=ref)
        return subprocess.run([sys.executable, "-m", "airlock.cli", "base", "create",
                               "--release", "2025.2"], cwd=REPO_ROOT, capture_output=True,
                              text=True, env=env, timeout=300)


if __name__ == "__main__":
    unittest.main()
