"""mmdebstrap and arch-test run through airlock.ext.exec: a missing program, a failure.

mmdebstrap's own failures (a mirror without the suite, a missing helper)
take minutes and a network to provoke for real; a stand-in ``mmdebstrap``
on PATH (:mod:`fakeprogram`) prints what the real one prints.
"""

from __future__ import annotations

import os
import tempfile
import unittest
from pathlib import Path
from unittest import mock

from airlock.errors import ToolError
from airlock.inputs import baseimage
from airlock.tests.unit import fakeprogram

SPEC = baseimage.BaseSpec(ref="127.0.0.1:5000/airlock/debian:bookworm", codename="bookworm",
                          platforms=("linux/amd64",), mirror="http://deb.example/debian")


class TestBootstrapThroughExec(unittest.TestCase):

    def setUp(self) -> None:
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        self.root = Path(tmp.name)

    def test_missing_mmdebstrap_names_its_package(self) -> None:
        empty = self.root / "bin"
        empty.mkdir()
        with mock.patch.dict(os.environ, {"PATH": str(empty)}), \
                self.assertRaises(ToolError) as caught:
            baseimage.bootstrap(SPEC, "linux/amd64", self.root / "rootfs.tar", 1700000000,
                                self.root / "mmdebstrap.log")
        self.assertEqual(str(caught.exception), "mmdebstrap bookworm linux/amd64: mmdebstrap is "
                         "not installed; install the Debian package mmdebstrap (as root: "
                         "tools/setup-host build-host)")

    def test_a_failure_is_its_error_line_and_leaves_no_tarball(self) -> None:
        fakeprogram.install(self, "mmdebstrap", 'echo "I: SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH"\n'
                            'eval "dest=\\${$(($# - 1))}"; : > "$dest"  # a half-written tarball\n'
                            'echo "E: install arch-test for foreign architecture support"\n'
                            "echo 'I: cleaning up'\nexit 1\n")
        log = self.root / "mmdebstrap.log"
        with self.assertRaises(ToolError) as caught:
            baseimage.bootstrap(SPEC, "linux/amd64", self.root / "rootfs.tar", 1700000000, log)
        self.assertEqual(caught.exception.what,
                         "E: install arch-test for foreign architecture support")
        self.assertIn("I: SOURCE_DATE_EPOCH=1700000000", log.read_text())
        self.assertEqual(sorted(p.name for p in self.root.iterdir()), ["mmdebstrap.log"])

    def test_arch_test_answers_through_its_exit_code(self) -> None:
        fakeprogram.install(self, "arch-test", '[ "$1" = arm64 ] && exit 0\n'
                            'echo "$1: not supported on this machine/kernel"; exit 2\n')
        self.assertTrue(baseimage._arch_runs("arm64"))
        self.assertFalse(baseimage._arch_runs("riscv64"))


if __name__ == "__main__":
    unittest.main()
