"""The CLI with standard output closed: one line on stderr and exit 2, never a silent success."""

from __future__ import annotations

import subprocess
import sys
import unittest


def run_closed(*args: str) -> subprocess.CompletedProcess[str]:
    """``airlock ARGS >&-`` in a new process; its exit code and stderr."""
    return subprocess.run(["sh", "-c", 'exec "$0" -m airlock.cli "$@" >&-', sys.executable,
                           *args], capture_output=True, text=True, timeout=120, check=False)


class ClosedStdoutTest(unittest.TestCase):
    def test_help_with_stdout_closed_is_one_line_and_exit_2(self) -> None:
        done = run_closed("--help")
        self.assertEqual(done.returncode, 2, done.stderr)
        self.assertEqual(done.stderr.splitlines(),
                         ["airlock: standard output is closed; run it with standard output "
                          "open (>/dev/null to discard it)"])

    def test_a_verb_with_stdout_closed_is_refused_before_it_runs(self) -> None:
        done = run_closed("zuul", "jobs", "--root", "/nonexistent-airlock-root")
        self.assertEqual(done.returncode, 2, done.stderr)
        self.assertNotIn("internal error", done.stderr)
        self.assertNotIn("nonexistent", done.stderr)  # refused before the verb looked
