"""Run the real airlock pipeline from functional tests: CLI in a subprocess.

The tests drive ``airlock`` exactly as an operator or a role does (a new
process, real git, pip, docker, skopeo, registry), each test class under a
fresh registry prefix so that its first build really builds.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

from airlock import cli
from airlock.ext import registry
from airlock.tests.functional.engine import REGISTRY, REPO_ROOT

WORK = Path(os.environ.get("AIRLOCK_FUNCTIONAL_WORK_DIR") or REPO_ROOT / "work" / "functional")


def fresh_prefix(name: str) -> str:
    """A registry prefix no earlier run has used."""
    return f"{REGISTRY}/airlock-test/{name}-{uuid.uuid4().hex[:8]}"


# One prefix for the whole test run: python-base and venv-builder are built
# into it once (per release and platform set) and copied into the fresh
# prefixes of the classes that only need them there (seeded_prefix). Each
# build into a fresh prefix would otherwise export them again: the
# exporter rewrites every layer for SOURCE_DATE_EPOCH even when every step
# is cached, about a minute per class on two cores.
RUN_PREFIX = fresh_prefix("run")
_BASES: dict[tuple[str, tuple[str, ...]], dict[str, dict]] = {}


def bases(release: str = "2025.2", platforms: tuple[str, ...] = ()) -> dict[str, dict]:
    """python-base's and venv-builder's record rows, built once per run into RUN_PREFIX."""
    key = (release, tuple(platforms))
    if key not in _BASES:
        args = [arg for p in platforms for arg in ("--platform", p)]
        record = build(release, RUN_PREFIX, "--bases-only", *args)
        _BASES[key] = {row["image"]: row for row in record["images"]}
    return _BASES[key]


def seeded_prefix(name: str, release: str = "2025.2", platforms: tuple[str, ...] = ()) -> str:
    """A fresh prefix already holding the run's python-base and venv-builder.

    For classes that prove something about a service image or a bundle, not
    about building the bases: their first build finds both by input digest
    (status skipped) and builds only what the class is about. Call it
    before the class's own build: the first call per release writes that
    release's build record (a bases-only one), which publish reads.
    """
    prefix = fresh_prefix(name)
    for row in bases(release, platforms).values():
        registry.copy(row["ref"], f"{prefix}/{row['image']}:{row['tag']}")
    return prefix


def airlock(*args: str, check: bool = True, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
    """Run ``airlock ARGS`` from the repository root; fail with its output."""
    proc = subprocess.run([sys.executable, "-m", "airlock.cli", *args], cwd=REPO_ROOT,
                          capture_output=True, text=True,
                          env={**os.environ, "AIRLOCK_WORK_DIR": str(WORK), **(env or {})})
    if check and proc.returncode != 0:
        raise AssertionError(f"airlock {' '.join(args)} exited {proc.returncode}:\n"
                             f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def airlock_here(*args: str) -> str:
    """``airlock ARGS`` in this process (the caller's environment); its standard output.

    For steps whose output the test reads and whose work folder the test
    chooses itself; a failure raises with airlock's own error lines.
    """
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(list(args))
    if code != 0:
        raise AssertionError(f"airlock {' '.join(args)} exited {code}: {err.getvalue()}")
    return out.getvalue()


def git_base(*components: str, release: str = "2025.2") -> str:
    """The local source mirror with ``components`` of ``release`` in it."""
    base = WORK / "git"
    args = [arg for c in components for arg in ("--component", c)]
    airlock("mirror", "create", "--release", release, "--dest", str(base), *args)
    return str(base)


def build(release: str, prefix: str, *extra: str) -> dict:
    """``airlock build`` and its build record."""
    airlock("build", "--release", release, "--registry", prefix, "--work-dir", str(WORK),
            *extra)
    return json.loads((WORK / release / "build-record.json").read_text())


def image(record: dict, name: str) -> dict:
    """The record row of image ``name``."""
    return next(row for row in record["images"] if row["image"] == name)
