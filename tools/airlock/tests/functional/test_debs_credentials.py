"""An apt mirror that wants a password: apt gets it, no output or file keeps it.

The machine's Debian mirror behind a Basic-auth proxy on 127.0.0.1 (what a
site's Nexus in front of Debian is): ``airlock debs`` runs as a process
with ``AIRLOCK_APT_MIRROR=http://user:password@127.0.0.1:PORT/``, apt
inside the base image reads it through an auth.conf, and afterwards the
password is in no output and no file of the run (repository, manifest,
cache). A wrong password is one line, exit 2, and no password.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

from airlock.inputs import aptmirror
from airlock.tests.functional import engine
from airlock.tests.unit.servers import AuthProxy

USER = "apt-bot"


class CredentialedMirrorTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls) -> None:
        engine.require_engine()
        spec, base = engine.base_image()
        cls.base = engine.by_digest(spec.ref, base.digest)
        cls.secret = "s3cret-" + secrets.token_hex(8)
        cls._tmp = tempfile.TemporaryDirectory(prefix="airlock-debs-auth-")
        cls.tmp = Path(cls._tmp.name)
        cls.images = cls.tmp / "images"
        (cls.images / "nova").mkdir(parents=True)
        (cls.images / "nova" / "bindep.txt").write_text("sudo [runtime]\n")
        cls.proxy = AuthProxy(aptmirror.apt_mirror("bookworm"), {USER: cls.secret})
        cls.proxy.start()

    @classmethod
    def tearDownClass(cls) -> None:
        cls.proxy.stop()
        cls._tmp.cleanup()

    def debs(self, password: str, dest: Path) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRLOCK_")}
        env.update(AIRLOCK_APT_MIRROR=self.proxy.url(USER, password), HOME=str(self.tmp))
        return subprocess.run(
            [sys.executable, "-m", "airlock.cli", "debs", "--release", engine.RELEASE,
             "--service", "nova", "--platform", "linux/amd64", "--dest", str(dest),
             "--cache", str(self.tmp / "cache"), "--base-image", self.base,
             "--root", str(engine.REPO_ROOT), "--images-dir", str(self.images)],
            env=env, capture_output=True, text=True, timeout=1800)

    def leaked(self, *texts: str) -> list[str]:
        found = [f"output: {t}" for t in texts if self.secret in t]
        for path in self.tmp.rglob("*"):
            if path.is_file() and not path.is_symlink() and \
                    self.secret.encode() in path.read_bytes():
                found.append(str(path))
        return found

    def test_apt_uses_the_password_and_nothing_keeps_it(self) -> None:
        served = self.proxy.served
        proc = self.debs(self.secret, self.tmp / "debs")
        self.assertEqual(proc.returncode, 0, proc.stderr)
        # Nothing but the steps' one progress line each (airlock.progress).
        self.assertEqual([line for line in proc.stderr.splitlines()
                          if ": done in " not in line], [], proc.stderr)
        self.assertGreater(self.proxy.served, served)
        repo = self.tmp / "debs" / "amd64"
        manifest = json.loads((repo / "manifest.json").read_text())
        self.assertIn("sudo", [row["package"] for row in manifest["closure"]])
        self.assertEqual(manifest["inputs"]["mirror"], self.proxy.url())
        self.assertEqual(self.leaked(proc.stdout, proc.stderr), [])

    def test_a_wrong_password_is_one_line_exit_2(self) -> None:
        wrong = "wrong-" + secrets.token_hex(8)
        proc = self.debs(wrong, self.tmp / "wrong")
        self.assertEqual(proc.returncode, 2, proc.stderr)
        self.assertEqual(len(proc.stderr.splitlines()), 1, proc.stderr)
        self.assertNotIn(wrong, proc.stdout + proc.stderr)
        self.assertFalse((self.tmp / "wrong" / "amd64").exists())
        self.assertEqual(self.leaked(proc.stdout, proc.stderr), [])


if __name__ == "__main__":
    unittest.main()
