"""The only module that runs git.

Everything else asks this module for plain data (SHAs, ref lists) or for an
effect on a directory. Failures become one-line :class:`ToolError`/
:class:`AirlockError` messages naming the repository.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from airlock.errors import ToolError

# git must never prompt (no terminal in CI or Zuul) nor read the user's
# configuration (hooks, signing, url rewrites would make runs differ).
_ENV = {
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_ASKPASS": "/bin/false",
    "LC_ALL": "C",
}


def run(args: list[str], cwd: Path | str | None = None, *, where: str = "git",
        check: bool = True, input: str | None = None,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``git ARGS`` and return the completed process (text mode).

    With ``check`` a non-zero exit raises ToolError whose message is
    ``where`` plus git's last stderr line, the one that says what went wrong.
    """
    full_env = {**os.environ, **_ENV, **(env or {})}
    proc = subprocess.run(["git", *args], cwd=cwd, input=input, env=full_env,
                          capture_output=True, text=True)
    if check and proc.returncode != 0:
        lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
        last = lines[-1] if lines else f"git {args[0]} exited {proc.returncode}"
        raise ToolError(where, last)
    return proc
