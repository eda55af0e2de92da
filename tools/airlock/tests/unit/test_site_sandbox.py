"""tools/site-up's exec and stop, attacked: signals, HOME and stale pid files.

Real processes throughout (a Python child that handles or ignores
signals, a pid file naming a live process); nothing needs root, a network
namespace or an engine: the parts under test are the seal's script, the
signal forwarding and the pid checks, which run before or around those.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from pathlib import Path

from airlock.sandbox import site_stores
from airlock.sandbox.site_seal import Engine, SealError, sealed_argv


def _child(path: Path, on_term: str) -> list[str]:
    """A Python child that writes 'ready' to PATH, then sleeps; ON_TERM: exit or ignore."""
    handler = ("lambda *a: (open(p, 'w').write('term'), sys.exit(7))" if on_term == "exit"
               else "signal.SIG_IGN")
    return [sys.executable, "-c",
            "import signal, sys, time\n"
            f"p = {str(path)!r}\n"
            f"signal.signal(signal.SIGTERM, {handler})\n"
            "open(p, 'w').write('ready')\n"
            "time.sleep(60)\n"]


class RunForwardingTest(unittest.TestCase):
    """exec passes SIGTERM on to CMD (whose pid is its child's) instead of orphaning it."""

    def _signal_self_when_ready(self, path: Path, signum: int) -> None:
        def later() -> None:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                if path.is_file() and path.read_text() == "ready":
                    os.kill(os.getpid(), signum)
                    return
                time.sleep(0.05)
        threading.Thread(target=later, daemon=True).start()

    def test_sigterm_reaches_the_command_and_exits_143(self) -> None:
        before = signal.getsignal(signal.SIGTERM)
        with tempfile.TemporaryDirectory() as tmp:
            mark = Path(tmp) / "mark"
            self._signal_self_when_ready(mark, signal.SIGTERM)
            start = time.monotonic()
            code = site_stores._run_forwarding(_child(mark, "exit"))
            self.assertEqual(code, 143)
            self.assertEqual(mark.read_text(), "term")  # CMD saw SIGTERM itself
            self.assertLess(time.monotonic() - start, 15)
        # The handler it found is back.
        self.assertEqual(signal.getsignal(signal.SIGTERM), before)

    def test_a_command_ignoring_sigterm_is_killed_after_the_grace(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            mark = Path(tmp) / "mark"
            self._signal_self_when_ready(mark, signal.SIGTERM)
            start = time.monotonic()
            code = site_stores._run_forwarding(_child(mark, "ignore"), grace=1)
            self.assertEqual(code, 143)
            self.assertLess(time.monotonic() - start, 15)

    def test_exit_status_and_death_by_signal_pass_through(self) -> None:
        self.assertEqual(site_stores._run_forwarding(
            [sys.executable, "-c", "raise SystemExit(5)"]), 5)
        self.assertEqual(site_stores._run_forwarding(
            [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"]),
            137)


class ExecCommandLineTest(unittest.TestCase):
    """A mistake on exec's command line is named first, site or no site."""

    def run_main(self, *argv: str) -> tuple[int, str]:
        import contextlib
        import io

        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = site_stores.main(list(argv))
        return code, err.getvalue()

    def test_bad_env_and_missing_command_before_the_site(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            for argv, said in ((["--env", "=x", "--", "true"], "--env '=x': give NAME=VALUE"),
                               (["--env", "A\nB=1", "--", "true"], "give NAME=VALUE"),
                               (["--env", "NOEQUALS", "--", "true"], "give NAME=VALUE"),
                               (["--"], "give the command to run after --"),
                               ([], "give the command to run after --"),
                               (["--", "true"], "no sealed site runs")):
                with self.subTest(argv=argv):
                    code, err = self.run_main("exec", "--dir", tmp, *argv)
                    self.assertEqual(code, 1)
                    self.assertIn(said, err)
                    self.assertEqual(len(err.strip().splitlines()), 1)


class SealedHomeTest(unittest.TestCase):
    """--env HOME=H: H's pip, uv and Docker settings are covered too."""

    def test_home_given_with_env_is_covered(self) -> None:
        engine = Engine(Path("/tmp/hostile-site"), "hostile-ns")
        argv = sealed_argv("hostile-ns", engine, ["true"], {"HOME": "/srv/other home"})
        script = argv[argv.index("-c") + 1]
        self.assertIn("'/srv/other home/.config/pip'", script)
        self.assertIn("'/srv/other home/.docker'", script)
        # The caller's own HOME stays covered.
        caller = os.environ.get("HOME") or "/root"
        self.assertIn(f"{caller.rstrip('/')}/.config/pip", script)



class SealedWheelFoldersTest(unittest.TestCase):
    """$PIP_FIND_LINKS's folders are covered, unless that would hide the command itself."""

    def test_a_folder_holding_what_the_command_needs_is_refused(self) -> None:
        engine = Engine(Path("/tmp/hostile-site"), "hostile-ns")
        old_cwd, old_links = os.getcwd(), os.environ.get("PIP_FIND_LINKS")
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "work").mkdir()
            (Path(tmp) / "wheels").mkdir()
            os.chdir(Path(tmp) / "work")
            try:
                os.environ["PIP_FIND_LINKS"] = f"file://{tmp}/wheels"
                argv = sealed_argv("hostile-ns", engine, ["true"])
                self.assertIn(f"airlock-sealed {tmp}/wheels", argv[argv.index("-c") + 1])
                # Its parent holds the working folder; / and /usr hold PATH.
                for links in (tmp, "/", "/usr"):
                    os.environ["PIP_FIND_LINKS"] = links
                    with self.subTest(links=links), self.assertRaises(SealError) as caught:
                        sealed_argv("hostile-ns", engine, ["true"])
                    self.assertIn("unset PIP_FIND_LINKS", str(caught.exception))
            finally:
                os.chdir(old_cwd)
                if old_links is None:
                    os.environ.pop("PIP_FIND_LINKS", None)
                else:
                    os.environ["PIP_FIND_LINKS"] = old_links


class StalePidTest(unittest.TestCase):
    """A pid file naming a live process of another program or folder is not 'running'."""

    def _alive_with(self, base: Path, store: str, args: list[str]) -> bool:
        proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", *args])
        try:
            (base / "run").mkdir(parents=True, exist_ok=True)
            (base / "run" / f"{store}.pid").write_text(f"{proc.pid}\n")
            deadline = time.monotonic() + 10
            while f"{args[-1]}" not in Path(f"/proc/{proc.pid}/cmdline").read_bytes().decode():
                self.assertLess(time.monotonic(), deadline)
                time.sleep(0.05)
            return site_stores.Site(base=base, ports=dict(site_stores.DEFAULT_PORTS)).alive(store)
        finally:
            proc.kill()
            proc.wait()

    def test_a_process_merely_naming_the_folder_is_not_the_store(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            base = Path(tmp) / "site"
            # tail -f DIR/logs/pypi.log, and the server of a folder DIR2 = DIR + "2".
            self.assertFalse(self._alive_with(base, "pypi", [f"{base}/logs/pypi.log"]))
            self.assertFalse(self._alive_with(base, "registry", [f"{base}2/registry.yml"]))
            self.assertFalse(self._alive_with(base, "git", [f"--base-path={base}/git2"]))

    def test_the_stores_own_argument_is_recognised(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            base = Path(tmp) / "site"
            self.assertTrue(self._alive_with(base, "registry", [f"{base}/registry.yml"]))
            self.assertTrue(self._alive_with(base, "git", [f"--base-path={base}/git"]))
            self.assertTrue(self._alive_with(base, "pypi", ["-P", f"{base}/auth/pypi.htpasswd"]))
            # nginx's master joins its arguments with spaces in one.
            self.assertTrue(self._alive_with(
                base, "raw", [f"nginx: master process nginx -c {base}/nginx/nginx.conf -e x"]))

    def test_engine_pid_file_naming_an_editor_is_not_the_engine(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            engine = Engine(Path(tmp) / "site", "hostile-ns")
            proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)",
                                     f"{engine.data_root}/x"])
            try:
                engine.pidfile = Path(tmp) / "docker.pid"  # not /run: no root needed
                engine.pidfile.write_text(f"{proc.pid}\n")
                time.sleep(0.2)
                self.assertFalse(engine.alive())
            finally:
                proc.kill()
                proc.wait()
            proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)",
                                     "--data-root", str(engine.data_root), "--pidfile", "x"])
            try:
                engine.pidfile.write_text(f"{proc.pid}\n")
                time.sleep(0.2)
                self.assertTrue(engine.alive())
            finally:
                proc.kill()
                proc.wait()


if __name__ == "__main__":
    unittest.main()
