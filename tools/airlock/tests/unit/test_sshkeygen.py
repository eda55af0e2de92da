"""ssh-keygen signing and verification: real keys, a real agent, no hang on a passphrase."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
import unittest
from pathlib import Path
from unittest import mock

from airlock.errors import AirlockError
from airlock.ext import sshkeygen
from airlock.tests.unit import bundlefixture as bf


class SshKeygenTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.tmp = Path(tempfile.mkdtemp())
        cls.key = bf.make_key(cls.tmp, "signer")
        cls.locked = bf.make_key(cls.tmp, "locked", passphrase="secret words")
        cls.allowed = bf.allowed_signers(cls.tmp / "allowed", {"release": cls.key})
        cls.data = cls.tmp / "data"
        cls.data.write_bytes(b"some sums\n")

    @classmethod
    def tearDownClass(cls) -> None:
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_sign_then_verify(self) -> None:
        signature = sshkeygen.sign(self.key, self.data)
        self.assertTrue(signature.startswith(b"-----BEGIN SSH SIGNATURE-----"))
        self.assertFalse((self.tmp / "data.sig").exists(), "nothing written beside the data")
        self.assertEqual(sshkeygen.verify(self.allowed, signature, b"some sums\n"), "release")
        with self.assertRaises(AirlockError) as caught:
            sshkeygen.verify(self.allowed, signature, b"other sums\n", where="S.sig",
                             what="SHA256SUMS")
        self.assertEqual(str(caught.exception), "S.sig: does not match SHA256SUMS: it was "
                         "changed after signing; the bundle was changed or damaged in transit; "
                         "get it again")

    def test_a_passphrase_is_one_line_and_no_hang(self) -> None:
        started = time.monotonic()
        with self.assertRaises(AirlockError) as caught:
            sshkeygen.sign(self.locked, self.data)
        self.assertLess(time.monotonic() - started, 10)
        self.assertEqual(str(caught.exception), f"{self.locked}: is protected by a passphrase "
                         "(or unreadable); use an unencrypted key file, or load it in ssh-agent "
                         "and pass the .pub")

    def test_a_missing_key_or_a_folder(self) -> None:
        for key, what in ((self.tmp / "nope", "no such key file"),
                          (self.tmp, "is not a regular file")):
            with self.subTest(key=key), self.assertRaises(AirlockError) as caught:
                sshkeygen.sign(key, self.data)
            self.assertEqual(str(caught.exception), f"{key}: {what}; pass an OpenSSH private "
                             "key file (or its .pub with the key loaded in ssh-agent)")

    def test_a_key_in_ssh_agent_signs_through_its_pub(self) -> None:
        sock = self.tmp / "agent.sock"
        agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.addCleanup(agent.wait)
        self.addCleanup(agent.send_signal, signal.SIGTERM)
        for _ in range(100):
            if sock.exists():
                break
            time.sleep(0.05)
        env = {**os.environ, "SSH_AUTH_SOCK": str(sock)}
        # The locked key, decrypted into the agent once (as an operator would, with ssh-add).
        subprocess.run(["ssh-add", "-q", str(self.locked)], env={
            **env, "SSH_ASKPASS": str(self.askpass()), "SSH_ASKPASS_REQUIRE": "force",
            "DISPLAY": ":0"}, check=True, stdin=subprocess.DEVNULL, timeout=30)
        allowed = bf.allowed_signers(self.tmp / "allowed-locked", {"ops": self.locked})
        with mock.patch.dict(os.environ, {"SSH_AUTH_SOCK": str(sock)}):
            signature = sshkeygen.sign(Path(f"{self.locked}.pub"), self.data)
        self.assertEqual(sshkeygen.verify(allowed, signature, b"some sums\n"), "ops")

    def askpass(self) -> Path:
        script = self.tmp / "askpass"
        script.write_text("#!/bin/sh\necho 'secret words'\n")
        script.chmod(0o700)
        return script

    def test_allowed_signers_faults(self) -> None:
        signature = sshkeygen.sign(self.key, self.data)
        fifo = self.tmp / "fifo"
        os.mkfifo(fifo)
        self.addCleanup(fifo.unlink)
        bad = self.tmp / "bad-allowed"
        bad.write_text("release nothing-here\n")
        for allowed, expected in (
                (self.tmp / "missing", f"{self.tmp}/missing: no such file"),
                (fifo, f"{fifo}: is a FIFO, not a regular file"),
                (bad, f"{bad}:1: not an allowed_signers line")):
            with self.subTest(allowed=allowed.name), self.assertRaises(AirlockError) as caught:
                sshkeygen.verify(allowed, signature, b"some sums\n")
            self.assertTrue(str(caught.exception).startswith(expected), str(caught.exception))

    def test_not_a_signature(self) -> None:
        with self.assertRaises(AirlockError) as caught:
            sshkeygen.verify(self.allowed, b"hello", b"x", where="S.sig")
        self.assertEqual(str(caught.exception), "S.sig: is not an SSH signature (no BEGIN SSH "
                         "SIGNATURE line); get the bundle again")


if __name__ == "__main__":
    unittest.main()
