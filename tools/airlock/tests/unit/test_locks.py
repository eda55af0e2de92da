"""Two airlock runs on one host: who waits, what it says, what both keep.

Real processes and real flock: another process holds a release's work
folder, and this one waits, says so once naming the holder's pid, and
continues when the holder is gone. The end-to-end proof (two real builds
started together) is tests/functional/test_concurrent_builds.py.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
import unittest
from pathlib import Path
from unittest import mock

from airlock import cli, files
from airlock.image import build

RELEASE = "2025.2"


class Holder:
    """Another process holding ``path`` (files.locked) until it is told to go."""

    def __init__(self, path: Path) -> None:
        code = textwrap.dedent(f"""
            import sys
            from pathlib import Path
            from airlock import files
            with files.locked(Path({str(path)!r}), "test"):
                print("held", flush=True)
                sys.stdin.readline()
        """)
        self.releaser: subprocess.Popen | None = None
        self.proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != "held":
            raise AssertionError("the holder did not take the lock")

    def release_after(self, seconds: float) -> None:
        """Let go ``seconds`` from now, without blocking the test."""
        assert self.proc.stdin is not None
        fd = self.proc.stdin.fileno()
        code = f"import time, os; time.sleep({seconds}); os.write({fd}, b'\\n')"
        self.releaser = subprocess.Popen([sys.executable, "-c", code],
                                         pass_fds=(fd,))

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        if self.releaser is not None:
            self.releaser.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()


class LockTest(unittest.TestCase):
    def setUp(self) -> None:
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        self.tmp = Path(tmp.name)

    def hold(self, path: Path) -> Holder:
        holder = Holder(path)
        self.addCleanup(holder.close)
        return holder

    def test_the_second_run_says_it_waits_naming_the_pid_then_continues(self) -> None:
        work = self.tmp / RELEASE
        holder = self.hold(work / build.LOCK)
        lines: list[str] = []
        holder.release_after(1.0)
        started = time.monotonic()
        with build.locked_release(work, lines.append):
            waited = time.monotonic() - started
            self.assertEqual((work / build.LOCK).read_text(), f"{os.getpid()}\n")
        self.assertEqual(lines, [f"{work}: in use by airlock pid {holder.proc.pid}; "
                                 "waiting for it to finish"])
        self.assertGreater(waited, 0.5)
        self.assertEqual(holder.proc.wait(10), 0)
        self.assertEqual((work / build.LOCK).read_text(), "", "the pid outlived the lock")

    def test_a_holder_that_has_not_written_its_pid_yet_is_still_named(self) -> None:
        # The moment between a holder's flock and its pid write: two runs
        # started together (test_concurrent_builds) once met it.
        path = self.tmp / RELEASE / build.LOCK
        path.parent.mkdir(parents=True)
        code = textwrap.dedent(f"""
            import fcntl, os, sys, time
            fd = os.open({str(path)!r}, os.O_RDWR | os.O_CREAT)
            fcntl.flock(fd, fcntl.LOCK_EX)
            print("held", flush=True)
            time.sleep(0.5)
            os.pwrite(fd, b"%d\\n" % os.getpid(), 0)
            sys.stdin.readline()
        """)
        holder = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        self.addCleanup(holder.wait)
        self.addCleanup(holder.kill)
        assert holder.stdout is not None and holder.stdin is not None
        self.addCleanup(holder.stdout.close)
        self.addCleanup(holder.stdin.close)
        self.assertEqual(holder.stdout.readline().strip(), "held")
        lines: list[str] = []

        def said(line: str) -> None:
            lines.append(line)
            holder.stdin.write("\n")  # let go once the waiter has spoken
            holder.stdin.flush()

        with files.locked(path, "x", waiting=said):
            pass
        self.assertEqual(lines, [f"x: in use by airlock pid {holder.pid}; "
                                 "waiting for it to finish"])

    def test_a_free_lock_says_nothing_and_is_taken_again_after_a_crash(self) -> None:
        path = self.tmp / "x" / ".lock"
        holder = self.hold(path)
        holder.proc.kill()  # dies holding it: the kernel lets go
        holder.proc.wait()
        lines: list[str] = []
        with files.locked(path, "x", lines.append):
            pass
        self.assertEqual(lines, [])

    def test_other_releases_do_not_wait(self) -> None:
        self.hold(self.tmp / "2025.1" / build.LOCK)
        lines: list[str] = []
        with build.locked_release(self.tmp / RELEASE, lines.append):
            pass
        self.assertEqual(lines, [])

    def test_a_link_at_the_lock_is_refused_not_followed(self) -> None:
        target = self.tmp / "elsewhere"
        target.write_text("keep\n")
        (self.tmp / RELEASE).mkdir()
        (self.tmp / RELEASE / build.LOCK).symlink_to(target)
        with self.assertRaises(files.AirlockError) as caught, \
                build.locked_release(self.tmp / RELEASE):
            pass
        self.assertIn("cannot open the lock file", str(caught.exception))
        self.assertEqual(target.read_text(), "keep\n")

    def test_publish_waits_for_a_build_of_the_same_release(self) -> None:
        work = self.tmp / RELEASE
        work.mkdir()
        (work / "build-record.json").write_text(json.dumps({"release": RELEASE, "images": []}))
        holder = self.hold(work / build.LOCK)
        holder.release_after(1.0)
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main(["publish", "--release", RELEASE, "--work-dir", str(self.tmp)])
        # It waited, then read the record (which holds nothing to publish).
        self.assertEqual(out.getvalue(), f"{work}: in use by airlock pid {holder.proc.pid}; "
                         "waiting for it to finish\n")
        self.assertEqual((code, err.getvalue()),
                         (1, f"{work / 'build-record.json'}:images: no service image to "
                             f"publish; run airlock build --release {RELEASE} first\n"))


class RememberedDigestsTest(unittest.TestCase):
    """The file-digests store is shared: two runs writing it keep both's entries."""

    def test_a_run_that_ends_later_keeps_what_another_wrote_meanwhile(self) -> None:
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        root = Path(tmp.name)
        store = root / "file-digests.json"
        mine, theirs = root / "mine.txt", root / "theirs.txt"
        mine.write_text("mine\n")
        theirs.write_text("theirs\n")
        other_run = textwrap.dedent(f"""
            from pathlib import Path
            from airlock import files
            files.RACY_NS = 0
            with files.remembered_digests(Path({str(store)!r})):
                files.sha256_file(Path({str(theirs)!r}))
        """)
        # RACY_NS = 0: files written a moment ago may be remembered (the
        # guard against same-tick rewrites is not what this test is about).
        with mock.patch.object(files, "RACY_NS", 0):
            with files.remembered_digests(store):
                files.sha256_file(mine)
                # Another run starts after this one and ends before it.
                subprocess.run([sys.executable, "-c", other_run], check=True)
                self.assertEqual(len(json.loads(store.read_text())), 1)
        kept = {entry[4] for entry in json.loads(store.read_text()).values()}
        self.assertEqual(kept, {str(mine), str(theirs)})


class RegistryFirstTest(unittest.TestCase):
    def test_a_malformed_registry_is_the_first_error(self) -> None:
        # The data root does not exist: had anything run before the check,
        # the error would name it instead.
        cases = {
            "http://127.0.0.1:5000/airlock": "--registry: 'http://127.0.0.1:5000/airlock' is "
            "not a repository prefix",
            "127.0.0.1:5000/Airlock": "--registry: '127.0.0.1:5000/Airlock' is not a "
            "repository prefix",
            "airlock": "--registry: 'airlock' is not a repository prefix",
            "127.0.0.1:5000/airlock:latest": "--registry: '127.0.0.1:5000/airlock:latest' is "
            "not a repository prefix",
            "user:secret@registry.example/airlock": "--registry: contains '@' (credentials "
            "or a digest)",
        }
        for prefix, start in cases.items():
            with self.subTest(prefix=prefix):
                out, err = io.StringIO(), io.StringIO()
                with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                    code = cli.main(["build", "--release", RELEASE, "--registry", prefix,
                                     "--root", "/nonexistent", "--work-dir", "/nonexistent"])
                self.assertEqual(code, 1)
                self.assertTrue(err.getvalue().startswith(start), err.getvalue())
                self.assertEqual(len(err.getvalue().splitlines()), 1)
                self.assertNotIn("secret", err.getvalue())
                self.assertEqual(out.getvalue(), "")

    def test_the_environment_variable_is_checked_too(self) -> None:
        err = io.StringIO()
        with mock.patch.dict(os.environ, {"AIRLOCK_REGISTRY": "not a registry"}), \
                contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = cli.main(["build", "--release", RELEASE, "--root", "/nonexistent"])
        self.assertEqual(code, 1)
        self.assertTrue(err.getvalue().startswith("$AIRLOCK_REGISTRY: 'not a registry' is not "
                                                  "a repository prefix"), err.getvalue())


if __name__ == "__main__":
    unittest.main()
