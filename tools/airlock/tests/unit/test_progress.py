"""How long steps are drawn: a live line on a terminal, one plain line per step in a log."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import unittest

from airlock import progress


class Clock:
    """A clock the test moves: elapsed times are exact."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def renderer(mode: str, width: int = 80) -> tuple[progress.Renderer, io.StringIO, Clock]:
    out, clock = io.StringIO(), Clock()
    return progress.Renderer(out, mode, clock=clock, width=lambda: width, ticker=False), \
        out, clock


class TestChooseMode(unittest.TestCase):

    def test_a_terminal_gets_the_live_line(self):
        self.assertEqual(progress.choose_mode({"TERM": "xterm"}, FakeTerminal()), "tty")

    def test_a_pipe_or_a_file_gets_plain_lines(self):
        self.assertEqual(progress.choose_mode({}, io.StringIO()), "plain")

    def test_a_ci_job_gets_plain_lines_even_on_a_terminal(self):
        for name in ("ZUUL_JOB", "CI"):
            self.assertEqual(progress.choose_mode({name: "x"}, FakeTerminal()), "plain", name)
        self.assertEqual(progress.choose_mode({"TERM": "dumb"}, FakeTerminal()), "plain")

    def test_the_variable_overrides_the_rule(self):
        self.assertEqual(progress.choose_mode({"AIRLOCK_PROGRESS": "tty", "CI": "1"},
                                              io.StringIO()), "tty")
        self.assertEqual(progress.choose_mode({"AIRLOCK_PROGRESS": "plain"}, FakeTerminal()),
                         "plain")
        self.assertEqual(progress.choose_mode({"AIRLOCK_PROGRESS": "auto"}, FakeTerminal()),
                         "tty")


class TestPlain(unittest.TestCase):

    def test_a_step_is_one_line_at_its_end_with_elapsed_and_how_far(self):
        draw, out, clock = renderer("plain")
        step = draw.start("keystone: wheels linux/arm64", total=40, unit="wheels")
        for n in range(1, 41):
            clock.now += 0.5
            step.update(done=n, detail=f"pkg{n}-1.0.whl")
        draw.end(step)
        self.assertEqual(out.getvalue(),
                         "keystone: wheels linux/arm64: done in 20.0 s (40 of 40 wheels)\n")

    def test_a_failed_step_leaves_its_one_line_to_the_error(self):
        draw, out, clock = renderer("plain")
        old = progress.use(draw)
        self.addCleanup(progress.use, old)
        with self.assertRaises(RuntimeError), progress.step("push", total=3_000_000,
                                                            unit="bytes") as step:
            clock.now += 75
            step.update(done=1_500_000)
            raise RuntimeError("registry went away")
        # The error airlock prints next is the one line: nothing beside it.
        self.assertEqual(out.getvalue(), "")

    def test_the_result_replaces_the_count_on_the_end_line(self):
        draw, out, clock = renderer("plain")
        step = draw.start("mmdebstrap linux/arm64")
        step.finish("212 MiB")
        draw.end(step)
        self.assertTrue(out.getvalue().endswith(
            "mmdebstrap linux/arm64: done in 0.0 s (212 MiB)\n"))

    def test_credentials_never_reach_the_screen(self):
        draw, out, _ = renderer("plain")
        step = draw.start("wheels from https://user:s3cr3t@nexus.example/simple")
        draw.end(step)
        draw.say("index https://user:s3cr3t@nexus.example/simple")
        self.assertNotIn("s3cr3t", out.getvalue())
        self.assertIn("https://***@nexus.example/simple", out.getvalue())


class TestTty(unittest.TestCase):

    def test_one_live_line_rewritten_then_its_final_line(self):
        draw, out, clock = renderer("tty", width=120)
        step = draw.start("keystone: build linux/amd64", unit="steps")
        clock.now += 3
        step.update(done=2, total=9, detail="[linux/amd64 build 2/2] RUN airlock-venv install")
        clock.now += 1
        draw.end(step)
        text = out.getvalue()
        self.assertEqual(text.count("\n"), 1)  # the final line only
        self.assertIn("\rkeystone: build linux/amd64 3.0 s, 2 of 9 steps: [linux/amd64 build "
                      "2/2] RUN airlock-venv install\x1b[K", text)
        self.assertTrue(text.endswith("\r\x1b[Kkeystone: build linux/amd64: done in 4.0 s "
                                      "(2 of 9 steps)\n"))

    def test_a_long_line_is_cut_keeping_time_and_count(self):
        draw, out, clock = renderer("tty", width=60)
        step = draw.start("keystone: build linux/amd64", unit="steps")
        clock.now += 12
        step.update(done=5, total=31, detail="x" * 200)
        live = out.getvalue().split("\r")[-1].replace("\x1b[K", "")
        self.assertLessEqual(len(live), 59)
        self.assertTrue(live.startswith("keystone: build linux/amd64 12.0 s, 5 of 31 steps"))
        self.assertTrue(live.endswith("…"))

    def test_a_line_said_meanwhile_goes_above_the_live_line(self):
        draw, out, clock = renderer("tty")
        other = io.StringIO()
        step = draw.start("keystone: build linux/amd64")
        draw.say("keystone: built sha256:abc", other)
        self.assertEqual(other.getvalue(), "keystone: built sha256:abc\n")
        # the live line was wiped before the line and drawn again after it
        self.assertRegex(out.getvalue(), r"\r\x1b\[K\rkeystone: build linux/amd64 0\.0 s"
                                         r"\x1b\[K$")
        draw.end(step)

    def test_two_steps_at_once_show_the_latest_and_how_many_more(self):
        draw, out, clock = renderer("tty")
        first = draw.start("wheels linux/amd64")
        second = draw.start("wheels linux/arm64")
        self.assertTrue(out.getvalue().endswith("\rwheels linux/arm64 0.0 s (+1 more)\x1b[K"))
        draw.end(second)
        self.assertTrue(out.getvalue().endswith("\rwheels linux/amd64 0.0 s\x1b[K"))
        draw.end(first)
        self.assertTrue(out.getvalue().endswith("wheels linux/amd64: done in 0.0 s\n"))


class TestFollow(unittest.TestCase):

    def test_what_a_silent_program_leaves_on_disk_is_how_far_it_is(self):
        import tempfile
        from pathlib import Path

        draw, out, clock = renderer("plain")
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            step = draw.start("pip download linux/arm64", total=3, unit="files")
            with step.follow(lambda: len(list(folder.iterdir())), every=0.01):
                for n in range(3):
                    (folder / f"{n}.whl").write_text("x")
                    clock.now += 1
            draw.end(step)
        self.assertEqual(out.getvalue().splitlines()[-1],
                         "pip download linux/arm64: done in 3.0 s (3 of 3 files)")


# A step drawn on stderr, then the work's own result on stdout.
_STEP = """
import sys, time
from airlock import progress
time.sleep(0.3)  # the pipe's reader is gone by now
with progress.step("fetch https://robot:s3cret@host/x", total=2) as s:
    s.update(advance=1, detail="GET https://robot:s3cret@host/y")
    progress.say("said https://robot:s3cret@host/z")
    time.sleep(0.3)
    s.update(advance=1)
print("work done")
"""


class TestGoneReader(unittest.TestCase):
    """Progress is not the work: a closed stderr or a reader gone never fails the run."""

    def run_step(self, mode: str, stderr: str) -> subprocess.CompletedProcess:
        # Real file descriptors: 2>&- closes stderr (sys.stderr is None); in
        # "2>&1 >&3 | true" stderr is a pipe whose reader has exited (the
        # step waits for it first), so every write is an EPIPE.
        env = {**os.environ, progress.ENV: mode}
        shell = f'"$0" -c "$1" {stderr}; echo "rc=${{PIPESTATUS[0]}}"'
        return subprocess.run(["bash", "-c", "{ " + shell + "; } 3>&1", sys.executable,
                               _STEP], env=env, capture_output=True, text=True, timeout=60)

    def test_a_closed_stderr(self):
        for mode in ("plain", "tty"):
            with self.subTest(mode=mode):
                done = self.run_step(mode, "2>&-")
                self.assertEqual(done.stdout, "work done\nrc=0\n", done.stderr)

    def test_a_reader_gone_away(self):
        for mode in ("plain", "tty"):
            with self.subTest(mode=mode):
                done = self.run_step(mode, "2>&1 >&3 | true")
                self.assertEqual(done.stdout, "work done\nrc=0\n", done.stderr)


class TestUnits(unittest.TestCase):

    def test_bytes_and_seconds_as_people_read_them(self):
        self.assertEqual([progress.bytes_text(n) for n in (0, 999, 1000, 123_456_789, 4.2e9)],
                         ["0 B", "999 B", "1.00 kB", "123.5 MB", "4.20 GB"])
        self.assertEqual([progress.seconds_text(s) for s in (0.04, 59.9, 60, 125.4)],
                         ["0.0 s", "59.9 s", "1 min 00 s", "2 min 05 s"])


if __name__ == "__main__":
    unittest.main()
