"""Where one run of airlock works and publishes: options, then environment, then defaults.

Each location has one home here, so the CLI, the modules and the shell
scripts agree on it. An option given on the command line wins, then the
environment variable, then the local default (the stand-ins of
``tools/run-local``). Standard library only: ``tools/setup-host`` asks this
module (``python3 -m airlock.settings local-registry``) before airlock is
installed.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

WORK_ENV = "AIRLOCK_WORK_DIR"
CACHE_ENV = "AIRLOCK_CACHE_DIR"
REGISTRY_ENV = "AIRLOCK_REGISTRY"
GIT_BASE_ENV = "AIRLOCK_GIT_BASE"
INDEX_URL_ENV = "AIRLOCK_INDEX_URL"

# The local stand-in for the site's Images Nexus (tools/setup-host starts it).
LOCAL_REGISTRY = "127.0.0.1:5000"
DEFAULT_REGISTRY = f"{LOCAL_REGISTRY}/airlock"
DEFAULT_WORK = "work"
# What the work folder holds beside one folder per release (work/<release>/):
# the shared caches, the base image's root filesystems and the local git
# mirror of tools/run-local. A release may not be named after one of them.
WORK_FOLDERS = ("cache", "base", "git")


def _env(env: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if env is None else env


def work_dir(option: str | None = None, env: Mapping[str, str] | None = None) -> Path:
    """Inputs, OCI archives and build records: ``--work-dir``, $AIRLOCK_WORK_DIR, ./work."""
    return Path(option or _env(env).get(WORK_ENV) or DEFAULT_WORK)


def cache_dir(option: str | None = None, env: Mapping[str, str] | None = None,
              work: Path | None = None) -> Path:
    """Downloads shared by every run: ``--cache``, $AIRLOCK_CACHE_DIR, else <work dir>/cache.

    ``work`` is the work folder the run was given, when it was given one.
    """
    return Path(option or _env(env).get(CACHE_ENV) or (work or work_dir(None, env)) / "cache")


def registry(option: str | None = None, env: Mapping[str, str] | None = None) -> str:
    """The repository prefix images go to: ``--registry``, $AIRLOCK_REGISTRY, the local one."""
    return (option or _env(env).get(REGISTRY_ENV) or DEFAULT_REGISTRY).rstrip("/")


def git_base(option: str | None = None, env: Mapping[str, str] | None = None) -> str | None:
    """The git mirror's base: ``--git-base``, else $AIRLOCK_GIT_BASE; no default."""
    return option or _env(env).get(GIT_BASE_ENV) or None


def index_url(option: str | None = None, env: Mapping[str, str] | None = None) -> str | None:
    """The package index: ``--index-url``, else $AIRLOCK_INDEX_URL; None: pip's own config."""
    return option or _env(env).get(INDEX_URL_ENV) or None


def main(argv: list[str]) -> int:
    """Print one setting for a shell script."""
    if argv == ["local-registry"]:
        print(LOCAL_REGISTRY)
        return 0
    print("usage: python3 -m airlock.settings local-registry", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
