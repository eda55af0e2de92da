"""A stand-in program on PATH, for the failures a real engine cannot be made to show.

A unit test cannot make dockerd hang, report a distribution build's
BuildKit version or refuse a pull on demand; a shell script named
``docker`` first on PATH can, and it is run through the real
:func:`airlock.ext.exec.run` (PATH lookup, timeout, log), so only the
program's answers are fake. Each test that uses one says so.
"""

from __future__ import annotations

import os
import tempfile
import unittest
from pathlib import Path
from unittest import mock


def install(test: unittest.TestCase, name: str, script: str) -> Path:
    """Put ``name`` (a /bin/sh ``script``) first on PATH for the rest of ``test``.

    The script may append to ``$FAKE_CALLS`` (returned) to count its runs.
    """
    tmp = tempfile.TemporaryDirectory(prefix="airlock-fake-")
    test.addCleanup(tmp.cleanup)
    bindir = Path(tmp.name) / "bin"
    bindir.mkdir()
    program = bindir / name
    program.write_text("#!/bin/sh\n" + script)
    program.chmod(0o755)
    calls = Path(tmp.name) / "calls"
    patch = mock.patch.dict(os.environ, {"PATH": f"{bindir}:{os.environ.get('PATH', '')}",
                                         "FAKE_CALLS": str(calls)})
    patch.start()
    test.addCleanup(patch.stop)
    return calls


def calls(path: Path) -> list[str]:
    """The lines the fake program appended to ``$FAKE_CALLS``."""
    return path.read_text().splitlines() if path.exists() else []
