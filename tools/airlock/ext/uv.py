"""The only module that runs uv on the host: resolving pins for a target platform.

uv rather than pip because it resolves for a platform other than the one it
runs on (``--python-platform aarch64-manylinux_2_28`` on an x86_64 machine)
in a couple of seconds, reading only package metadata. pip then downloads
the resolved pins (:mod:`airlock.ext.index`): resolution and download speak to
the same locations, so uv is given exactly the index, extra indexes and
find-links pip would use (:func:`airlock.ext.index.locations`), never its own
configuration (``--no-config`` and the ``UV_*`` variables that choose
indexes are shut out). Index URLs reach uv through its environment
(``UV_DEFAULT_INDEX``, ``UV_INDEX``; :func:`index_env`), never its command
line, which every user of the machine can read.

:data:`UV_VERSION` is the uv that goes *into* the venv-builder image (its
wheel is part of every wheelhouse). It is a constant, not whatever this
machine happens to run, so that two machines make the same wheelhouse; a
site changes it with a pin of ``uv`` in constraint-overrides.txt.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from airlock.errors import AirlockError, ToolError
from airlock.ext import exec as ext_exec
from airlock.ext.index import Locations
from airlock.urls import has_userinfo

# The uv of the venv-builder image (the one the development venv installs).
UV_VERSION = "0.13.9"

SETUP_FIX = ext_exec.OTHER_FIXES["uv"]
# Seconds a resolution may take (metadata only: usually a few).
TIMEOUT = 600

# uv variables that choose where packages come from or what they resolve to.
_WHERE_FROM = ("UV_INDEX", "UV_INDEX_URL", "UV_DEFAULT_INDEX", "UV_EXTRA_INDEX_URL",
               "UV_FIND_LINKS", "UV_NO_INDEX", "UV_CONSTRAINT", "UV_OVERRIDE",
               "UV_BUILD_CONSTRAINT", "UV_PRERELEASE", "UV_INDEX_STRATEGY",
               "UV_EXCLUDE_NEWER", "UV_RESOLUTION", "UV_CONFIG_FILE", "UV_PYTHON",
               "UV_OFFLINE", "UV_NO_BINARY", "UV_NO_BUILD")
_PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s;#]+)\s*$")
_FAILED_BUILD = re.compile(r"Failed to build `([^`\s]+)`")
_NOT_FOUND = re.compile(r"(?:Because|because) (?:there is no version of|there are no "
                        r"versions of) (\S+)")


def binary() -> str:
    """The uv to run: next to this Python (the venv airlock lives in), else on PATH."""
    beside = Path(sys.executable).with_name("uv")
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("uv")
    if not found:
        raise ToolError("uv", "is not installed", SETUP_FIX)
    return found


def index_args(where: Locations) -> list[str]:
    """uv options for the locations that are no secret (see :func:`index_env`).

    ``unsafe-best-match``: pip picks the best version across every index;
    uv's default (the first index that has the name) could miss a pin that
    only a later index holds.
    """
    args: list[str] = []
    if where.no_index:
        args.append("--no-index")
    if not _links_in_env(where):
        for link in where.find_links:
            args += ["--find-links", link]
    return [*args, "--index-strategy", "unsafe-best-match"]


def _links_in_env(where: Locations) -> bool:
    # UV_FIND_LINKS is comma-separated: used only when a link holds credentials.
    return any(has_userinfo(link) for link in where.find_links)


def index_env(where: Locations) -> dict[str, str]:
    """The index URLs of ``where`` as uv's variables: they may hold credentials.

    ``UV_DEFAULT_INDEX`` is pip's ``--index-url``; ``UV_INDEX`` (space
    separated) its ``--extra-index-url``s. A find-links URL with credentials
    moves them all to ``UV_FIND_LINKS`` (comma separated).
    """
    env: dict[str, str] = {}
    if where.index_url and not where.no_index:
        env["UV_DEFAULT_INDEX"] = where.index_url
    if where.extra_index_urls:
        env["UV_INDEX"] = " ".join(where.extra_index_urls)
    if _links_in_env(where):
        env["UV_FIND_LINKS"] = ",".join(where.find_links)
    return env


def compile_command(requirements: Path, constraints: list[Path], *, python_version: str,
                    python_platform: str, where: Locations,
                    cache_dir: Path | None = None, only_binary: bool = False,
                    uv: str = "uv") -> list[str]:
    """The ``uv pip compile`` command line resolving ``requirements`` for one platform (pure).

    No header or annotations: the output is just ``name==version`` lines,
    for that Python and platform (markers already evaluated).
    ``only_binary`` accepts wheels only: resolving against a wheelhouse
    with it proves every pin installs on that platform without a build.
    """
    cmd = [uv, "pip", "compile", "--no-config", "--no-header", "--no-annotate",
           "--no-progress", "--quiet", "--python-version", python_version,
           "--python-platform", python_platform, *index_args(where)]
    if only_binary:
        cmd += ["--only-binary", ":all:"]
    if cache_dir is not None:
        cmd += ["--cache-dir", str(cache_dir)]
    for path in constraints:
        cmd += ["--constraint", str(path)]
    return [*cmd, str(requirements)]


def env(base: dict[str, str] | None = None) -> dict[str, str]:
    """uv's environment: the machine's, minus the variables that choose packages.

    ``PIP_CERT`` (the CA bundle pip is told to trust) becomes
    ``SSL_CERT_FILE`` unless that is set: uv then connects as pip does.
    """
    result = dict(os.environ if base is None else base)
    for name in _WHERE_FROM:
        result.pop(name, None)
    if result.get("PIP_CERT") and not result.get("SSL_CERT_FILE"):
        result["SSL_CERT_FILE"] = result["PIP_CERT"]
    result["UV_NO_PROGRESS"] = "1"
    return result


def parse_pins(text: str, where: str = "uv pip compile") -> list[tuple[str, str]]:
    """The ``(name, version)`` pairs of uv's output; anything else is a ToolError."""
    pins = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = _PIN.match(line)
        if not match:
            raise ToolError(where, f"unexpected line in uv's output: {line!r}")
        pins.append((match["name"], match["version"]))
    return pins


def resolve(requirements: Path, constraints: list[Path], *, python_version: str,
            python_platform: str, where: Locations, cache_dir: Path | None = None,
            only_binary: bool = False, label: str | None = None) -> list[tuple[str, str]]:
    """Resolve ``requirements`` under ``constraints`` for one platform: ``(name, version)``.

    A resolution that cannot succeed (a requirement no version of which
    satisfies the constraints) is the user's error, named ``label`` (default:
    the file); the index or uv failing is a ToolError.
    """
    cmd = compile_command(requirements, constraints, python_version=python_version,
                          python_platform=python_platform, where=where,
                          cache_dir=cache_dir, only_binary=only_binary, uv=binary())
    proc = _run(cmd, f"uv pip compile ({python_platform})", check=False,
                extra_env=index_env(where))
    if proc.returncode != 0:
        raise compile_error(proc.stderr, label or str(requirements), python_platform)
    return parse_pins(proc.stdout)


def compile_error(stderr: str, requirements: str, python_platform: str) -> AirlockError:
    """One line from uv's error: no solution (user) or uv/index failure (tool)."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    text = " ".join(lines)
    if "No solution found" in text or _NOT_FOUND.search(text):
        because = re.search(r"\b[Bb]ecause\b.*", text)
        reason = because[0] if because else text
        return AirlockError(requirements, f"cannot be resolved for {python_platform}: "
                            f"{_shorten(reason)}",
                            "check the requirements against the release's constraints "
                            "(constraint-overrides.txt)")
    failed = _FAILED_BUILD.search(stderr)
    if failed:
        # An sdist's metadata is prepared on this host: its setup.py may
        # need a system package here (pkg-config and libvirt's .pc file for
        # libvirt-python). The last line of its own output says what.
        said = [line for line in lines if not line.startswith(("hint:", "cause:", "File ",
                                                                "^", "Traceback", "["))]
        return ToolError(f"{requirements} ({python_platform})",
                         f"reading the metadata of {failed[1]} on this host failed: "
                         f"{_shorten(said[-1] if said else 'see uv')}",
                         "its setup.py needs a system package on the connected host: add it "
                         "to bindep.txt (profile build-host) and run tools/setup-host")
    return ToolError(f"uv pip compile ({python_platform})",
                     _shorten(lines[-1] if lines else "failed"),
                     "check the package index and the network")


def _run(cmd: list[str], where: str, check: bool = True,
         extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    proc = ext_exec.run(cmd, where=where, timeout=TIMEOUT, env={**env(), **(extra_env or {})},
                        check=False)
    if check and proc.returncode != 0:
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        raise ToolError(where, _shorten(lines[-1] if lines else "failed"))
    return proc


def _shorten(text: str, limit: int = 240) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def build_wheel(project: Path, out_dir: Path, *, where: Locations) -> Path:
    """Build the wheel of the Python project at ``project`` into ``out_dir``; return it.

    Its build backend comes from the package index (the connected side
    only). ``SOURCE_DATE_EPOCH`` fixes the zip's time stamps: the same tree
    gives the same wheel, and a delta bundle does not carry it again.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    cmd = [binary(), "build", "--wheel", "--no-config", "--quiet", "--no-progress",
           *index_args(where), "--out-dir", str(out_dir), str(project)]
    proc = ext_exec.run(cmd, where=f"uv build {project}", timeout=TIMEOUT, check=False,
                        env={**env(), **index_env(where), "SOURCE_DATE_EPOCH": "315532800"})
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        raise ToolError(f"uv build {project}", _shorten(lines[-1] if lines else "failed"),
                        "check the package index and the network")
    built = sorted(out_dir.glob("*.whl"))
    if len(built) != 1:
        raise ToolError(f"uv build {project}", f"left {len(built)} wheels in {out_dir}")
    return built[0]
