"""A signal while airlock waits on a server that never answers: one line, at once, nothing left.

A real ``python -m airlock.cli`` resolves refs, prepares a source or
mirrors sdists against a server on 127.0.0.1 that accepts connections
and never answers (git and pip would wait minutes for it). Once the
server has seen the connections, the run gets SIGTERM, SIGHUP or SIGINT
(sent to airlock only, as ``kill PID`` or a CI timeout does, not to its
process group as Ctrl-C does): it must end within seconds with exit 143
or 130 and one line, leave no program it started running, and leave no
file behind (no lock, no staging folder, nothing in $TMPDIR).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from unittest import mock

from airlock.errors import ToolError
from airlock.ext import exec as ext_exec
from airlock.tests.unit.hostile import make_template, snapshot

# Seconds a signalled run may take to end (git's own timeout is 300 s).
PROMPT = 10


class SilentServer:
    """Accepts TCP connections on 127.0.0.1 and never answers; counts them."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.connections: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.connections:
            conn.close()


def programs_naming(text: str) -> list[str]:
    """Command lines of the processes on this machine that hold ``text``."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline:
            found.append(f"{pid}: {cmdline}")
    return found


class SignalTest(unittest.TestCase):
    maxDiff = None

    def setUp(self) -> None:
        tmp = tempfile.TemporaryDirectory(prefix="airlock-hostile-signal-")
        self.addCleanup(tmp.cleanup)
        self.root = make_template(Path(tmp.name) / "s", git=False)
        # Outside what is compared: pip's user agent runs rustc, whose rustup
        # proxy writes ~/.rustup/settings.toml.
        self.home = Path(tmp.name) / "home"
        self.home.mkdir()
        self.server = SilentServer()
        self.addCleanup(self.server.close)
        self.url = f"http://127.0.0.1:{self.server.port}"

    def interrupt(self, signum: int, argv: list[str], connections: int,
                  env: dict[str, str] | None = None) -> tuple[int, str, str, float]:
        """Run airlock until the server holds ``connections``, send ``signum``; the outcome."""
        before = snapshot(self.root)
        environ = {k: v for k, v in os.environ.items() if not k.startswith("AIRLOCK_")}
        environ.update(AIRLOCK_ROOT=str(self.root / "data"), TMPDIR=str(self.root / "tmp"),
                       HOME=str(self.home), **(env or {}))
        proc = subprocess.Popen([sys.executable, "-m", "airlock.cli", *argv], cwd=self.root,
                                env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        try:
            deadline = time.monotonic() + 60
            while len(self.server.connections) < connections and proc.poll() is None \
                    and time.monotonic() < deadline:
                time.sleep(0.02)
            self.assertIsNone(proc.poll(), "the run ended before it could be interrupted")
            self.assertGreaterEqual(len(self.server.connections), connections)
            sent = time.monotonic()
            proc.send_signal(signum)
            out, err = proc.communicate(timeout=120)
            took = time.monotonic() - sent
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        # Nothing written, nothing left to run.
        self.assertEqual(snapshot(self.root), before)
        self.assertEqual(programs_naming(f"127.0.0.1:{self.server.port}"), [])
        return proc.returncode, out, err, took

    def check(self, signum: int, argv: list[str], connections: int, **kwargs) -> None:
        code, out, err, took = self.interrupt(signum, argv, connections, **kwargs)
        line = "airlock: interrupted\n" if signum == signal.SIGINT else "airlock: terminated\n"
        self.assertEqual((code, out, err), (130 if signum == signal.SIGINT else 143, "", line))
        self.assertLess(took, PROMPT, "the run outlived the signal")

    def test_refs_resolve_sigterm_ends_every_git_at_once(self) -> None:
        # Three components, three git ls-remote in worker threads.
        self.check(signal.SIGTERM, ["refs", "resolve", "--release", "2025.2", "--git-base",
                                    self.url, "-o", "out/lock.yaml"], connections=3)

    def test_refs_resolve_sighup(self) -> None:
        self.check(signal.SIGHUP, ["refs", "resolve", "--release", "2025.2", "--git-base",
                                   self.url, "-o", "out/lock.yaml", "--jobs", "1"],
                   connections=1)

    def test_refs_resolve_sigint(self) -> None:
        self.check(signal.SIGINT, ["refs", "resolve", "--release", "2025.2", "--git-base",
                                   self.url], connections=3)

    def test_sources_prepare_sigterm_while_fetching(self) -> None:
        lock = (f"release: '2025.2'\ncomponents:\n  nova:\n    sha: '{'0' * 40}'\n"
                f"    ref: '32.2.1'\n    repo: '{self.url}/openstack/nova'\n"
                "    resolved-at: '2026-01-01T00:00:00Z'\n")
        (self.root / "out" / "nova.lock").write_text(lock)
        self.check(signal.SIGTERM, ["sources", "prepare", "--release", "2025.2", "--component",
                                    "nova", "--dest", "out/nova", "--lock", "out/nova.lock"],
                   connections=1)

    def test_sources_prepare_sigint_while_resolving(self) -> None:
        self.check(signal.SIGINT, ["sources", "prepare", "--release", "2025.2", "--component",
                                   "nova", "--dest", "out/nova", "--git-base", self.url],
                   connections=1)

    def test_mirror_create_sigterm_while_pip_waits_for_the_index(self) -> None:
        # pip downloads run in worker threads, three at a time.
        self.check(signal.SIGTERM, ["mirror", "create", "--release", "2025.2", "--dest",
                                    "out/git", "--index-url", f"{self.url}/simple"],
                   connections=3)


class StopAllTest(unittest.TestCase):
    """What a signal handler's exec.stop_all leaves possible, in-process (real programs)."""

    def test_workers_start_nothing_new_the_main_thread_still_cleans_up(self) -> None:
        # The main thread unwinds after a signal; its cleanups may run a
        # program (docker rm --force of an abandoned container).
        with mock.patch.object(ext_exec, "_stopping", False):
            ext_exec.stop_all()
            self.assertEqual(ext_exec.run(["true"], where="cleanup", timeout=30).returncode, 0)
            with ThreadPoolExecutor(max_workers=1) as pool:
                with self.assertRaises(ToolError) as caught:
                    pool.submit(ext_exec.run, ["true"], where="git", timeout=30).result()
        self.assertEqual(str(caught.exception), "true: not started: airlock is stopping")

    def test_a_running_program_and_what_it_started_get_sigterm(self) -> None:
        started = time.monotonic()
        with mock.patch.object(ext_exec, "_stopping", False), \
                ThreadPoolExecutor(max_workers=1) as pool:
            # A shell whose child holds the output pipe, as git-remote-http does.
            running = pool.submit(ext_exec.run, ["sh", "-c", "sleep 60 & wait"], where="sh",
                                  timeout=120, check=False)
            while not ext_exec._running:
                time.sleep(0.01)
            time.sleep(0.2)
            ext_exec.stop_all()
            proc = running.result(timeout=30)
        self.assertEqual(proc.returncode, -signal.SIGTERM)
        self.assertLess(time.monotonic() - started, 30)


if __name__ == "__main__":
    unittest.main()
