"""The only module that talks to a Python package index: ``pip download``.

pip rather than plain HTTP because pip already speaks every index a site may
have (PEP 503/691 simple indexes, Nexus and devpi proxies, local
``--find-links`` folders), with the site's certificates, proxies and
credentials.

Where the index is, and why it is never written here:

- ``index_url`` given: that index and nothing else, handed to pip as
  ``PIP_INDEX_URL`` in its environment, never on its command line (any
  user of the machine can read a command line; the URL may hold a token).
  pip's configuration
  files (``PIP_CONFIG_FILE=/dev/null``) and the ``PIP_*`` variables that
  choose indexes, links or constraints are shut out, so no extra index of
  the machine can supply a different file. Variables about *how* to connect
  (``PIP_CERT``, ``PIP_PROXY``, ``PIP_TIMEOUT``, ...) still apply. A local
  folder (a path, not a URL) is read as a flat folder of files
  (``--no-index --find-links``): tests and air-gapped copies use that.
- ``index_url`` None: the machine's own pip configuration decides, exactly as
  ``pip download`` on that machine would. :func:`locations` tells other
  tools (uv, which ignores pip's configuration) what that configuration says.

Two kinds of download: :func:`download_sdist` (one released sdist, for the
local git mirror) and :func:`download_platform` (the best file of many pins
for one target platform, for the wheelhouse).
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from airlock.errors import AirlockError, ToolError
from airlock.ext import exec as ext_exec

# pip variables that choose where packages come from (or pin them): these
# must not leak in when the caller names the index.
_WHERE_FROM = ("PIP_CONFIG_FILE", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS",
               "PIP_NO_INDEX", "PIP_CONSTRAINT", "PIP_REQUIREMENT", "PIP_PRE",
               "PIP_ONLY_BINARY", "PIP_NO_BINARY")

# What pip prints when it could not talk to the index (as opposed to an
# index that answered but has no such version: pip ends both cases with
# "No matching distribution found").
_UNREACHABLE = ("Could not fetch URL", "NewConnectionError", "Max retries exceeded",
                "Failed to establish a new connection", "Name or service not known",
                "Temporary failure in name resolution", "Connection refused",
                "SSLError", "ProxyError", "Read timed out", "ConnectTimeoutError")
# Seconds: one sdist (its build backend may be installed to read its
# metadata), every pin of a service for one platform, a look at pip's
# configuration.
SDIST_TIMEOUT = 900
PINS_TIMEOUT = 3600
CONFIG_TIMEOUT = 60

# pip's list of the versions it saw: "(from versions: 1.0, 2.0)" or "(from versions: none)".
_FROM_VERSIONS = re.compile(r"\(from versions: ([^)]*)\)")
# The OS's reason inside urllib3's exception text: "[Errno 111] Connection refused".
_ERRNO = re.compile(r"\[Errno -?\d+\] ([^'\")\]]+)")


def download_sdist(package: str, version: str, dest_dir: Path,
                   index_url: str | None = None) -> Path:
    """Download the source distribution of ``package==version`` into ``dest_dir``.

    Returns the file's path (its name is the index's, e.g.
    ``openstack_placement-14.0.0.tar.gz``). Only the sdist is fetched: no
    dependency, no wheel. A version the index does not have is the user's
    error (AirlockError); an index that cannot be reached is a ToolError.
    """
    dest_dir.mkdir(parents=True, exist_ok=True)
    spec = f"{package}=={version}"
    with tempfile.TemporaryDirectory(prefix=".airlock-pip-", dir=dest_dir) as tmp, \
            tempfile.TemporaryDirectory(prefix="airlock-pip-tmp-") as scratch:
        proc = ext_exec.run(pip_command(spec, package, Path(tmp), index_url),
                            where=f"pip download {spec}", timeout=SDIST_TIMEOUT,
                            env=pip_env(index_url, scratch), check=False)
        if proc.returncode != 0:
            raise download_error(spec, index_url, proc.stdout + proc.stderr)
        found = sorted(Path(tmp).iterdir())
        if len(found) != 1:
            raise ToolError(f"pip download {spec}", f"expected one file, got "
                            f"{[p.name for p in found] or 'none'}")
        target = dest_dir / found[0].name
        shutil.move(found[0], target)
    return target


def pip_command(spec: str, package: str, dest: Path, index_url: str | None) -> list[str]:
    """The ``pip download`` command line for one sdist.

    ``--no-binary PACKAGE`` (not ``:all:``) makes the package come as an sdist
    while pip may still use wheels for the build backend it installs to read
    the sdist's metadata: faster, and the backend is not what we mirror.
    """
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", package,
           "--disable-pip-version-check", "--no-input", "--progress-bar", "off",
           "--dest", str(dest)]
    if index_url is not None:
        cmd += index_options(index_url)
    return [*cmd, spec]


def is_url(index_url: str) -> bool:
    """Whether ``index_url`` is an index URL (else: a local folder of files)."""
    return "://" in index_url


def index_options(index_url: str) -> list[str]:
    """pip options for a local folder of files (``--no-index --find-links``).

    An index URL needs no option: it reaches pip through its environment
    (:func:`pip_env`), where no other user of the machine can read it.
    """
    if is_url(index_url):
        return []
    folder = Path(index_url)
    if not folder.is_dir():
        what = "is not a folder" if os.path.lexists(folder) else "no such folder"
        raise AirlockError(index_url, f"{what} (a local index is a folder of "
                           "sdists and wheels)", "pass an index URL or an existing folder")
    return ["--no-index", "--find-links", str(folder.resolve())]


def pip_env(index_url: str | None, scratch: str | None = None) -> dict[str, str]:
    """pip's environment: the machine's own, or sealed off when the index is named.

    A named index URL is ``PIP_INDEX_URL``: a command line is readable by
    every user of the machine (``ps``), an environment only by its owner.
    ``scratch``: pip's temporary folder (``TMPDIR``), one airlock removes
    whatever happens: pip killed on a signal cannot clean up after itself.
    """
    env = dict(os.environ)
    if scratch is not None:
        env["TMPDIR"] = scratch
    if index_url is not None:
        for name in _WHERE_FROM:
            env.pop(name, None)
        env["PIP_CONFIG_FILE"] = os.devnull
        # Only the named index answers: not pip's HTTP cache of what some
        # index once said (at a site, a file the store no longer holds).
        env["PIP_NO_CACHE_DIR"] = "1"
        if is_url(index_url):
            env["PIP_INDEX_URL"] = index_url
    return env


def download_error(spec: str, index_url: str | None, output: str) -> AirlockError:
    """Turn pip's output into one line: missing version, unreachable index, or pip's reason."""
    where = index_url or "the package index of pip's configuration"
    package = spec.partition("==")[0]
    errors = [line.removeprefix("ERROR: ").strip() for line in output.splitlines()
              if line.startswith("ERROR: ")]
    if any(marker in output for marker in _UNREACHABLE):
        errno = _ERRNO.search(output)
        detail = errno[1].strip() if errno else next(
            m for m in _UNREACHABLE if m in output)
        return ToolError(where, f"cannot reach the package index while fetching {spec} "
                         f"({_shorten(detail)})",
                         "check the index URL (--index-url or $AIRLOCK_INDEX_URL), "
                         "the network and pip's configuration")
    versions = _FROM_VERSIONS.search(output)
    if versions and versions[1].strip() == "none":
        return AirlockError(spec, f"{where} has no {package} at all, or could not be read",
                            "check the package name and that the index is reachable")
    if versions or any("No matching distribution found" in e for e in errors):
        known = versions[1].split(", ")[-5:] if versions else []
        has = f" (latest there: {', '.join(known)})" if known else ""
        return AirlockError(spec, f"no such version on {where}{has}",
                            "check the version (a released tag) in the release's "
                            "source-refs.yaml, or use an index that has it")
    last = errors[-1] if errors else (output.strip().splitlines() or ["pip failed"])[-1]
    return ToolError(f"pip download {spec}", _shorten(last))


def _shorten(text: str, limit: int = 200) -> str:
    """One line of at most ``limit`` characters: pip's lines can be very long."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


# --- many pins for one target platform (airlock wheels) ---------------------


@dataclass(frozen=True)
class Locations:
    """Where packages come from, as plain data another tool (uv) can be given.

    ``index_url`` None means the tool's own default index (pip and uv share
    it); ``no_index`` means only ``find_links``. Computed by
    :func:`locations` under the same rule as every pip call of this module.
    """

    index_url: str | None = None
    extra_index_urls: tuple[str, ...] = ()
    find_links: tuple[str, ...] = ()
    no_index: bool = False

    def key(self) -> str:
        """A short stable name of these locations (download caches are kept per index)."""
        text = json.dumps(dataclasses.asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


# pip's configuration keys that say where packages come from, in the
# sections that apply to ``pip download`` (later sections win).
_LOCATION_KEYS = ("index-url", "extra-index-url", "find-links", "no-index")
_CONFIG_SECTIONS = ("global", "download", ":env:")
_CONFIG_LINE = re.compile(r"^(?P<section>[^.]+|:env:)\.(?P<key>[a-z0-9-]+)=(?P<value>.*)$")


def locations(index_url: str | None) -> Locations:
    """The package locations a pip call of this module would use, for another tool.

    A given ``index_url`` is the only location (a folder: ``--no-index
    --find-links``). None reads the machine's pip configuration
    (``pip config list``: files and ``PIP_*`` variables), so that uv resolves
    against exactly what pip then downloads from.
    """
    if index_url is not None:
        options = index_options(index_url)
        if options:
            return Locations(find_links=(options[2],), no_index=True)
        return Locations(index_url=index_url)
    proc = ext_exec.run([sys.executable, "-m", "pip", "config", "list"], where="pip config list",
                        timeout=CONFIG_TIMEOUT, env=pip_env(None), check=False)
    if proc.returncode != 0:
        raise ToolError("pip config list", _shorten(proc.stderr or proc.stdout or "failed"))
    return parse_pip_config(proc.stdout)


def parse_pip_config(text: str) -> Locations:
    """:class:`Locations` from ``pip config list`` output (pure, for the tests).

    Lines read ``section.key='value'``; ``:env:`` holds the ``PIP_*``
    variables. As pip does: ``download`` overrides ``global``, the
    environment overrides both; list options are split on whitespace.
    """
    found: dict[str, dict[str, str]] = {}
    for line in text.splitlines():
        match = _CONFIG_LINE.match(line.strip())
        if not match or match["key"] not in _LOCATION_KEYS:
            continue
        value = match["value"]
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            pass
        found.setdefault(match["key"], {})[match["section"]] = str(value)

    def pick(key: str) -> str | None:
        values = found.get(key, {})
        return next((values[s] for s in reversed(_CONFIG_SECTIONS) if s in values), None)

    no_index = (pick("no-index") or "").lower() in ("1", "true", "yes", "on")
    return Locations(index_url=pick("index-url"),
                     extra_index_urls=tuple((pick("extra-index-url") or "").split()),
                     find_links=tuple((pick("find-links") or "").split()), no_index=no_index)


def platform_download_command(requirements: Path, dest: Path, *, python_version: str,
                              platforms: list[str], index_url: str | None) -> list[str]:
    """The ``pip download`` command line fetching pinned files for one target platform.

    ``--no-deps``: the pins are already the complete, resolved set.
    ``--python-version``/``--implementation``/``--abi``/``--platform`` make pip
    choose for the target (``platforms`` in order of preference), not for
    the machine running it; a pin with no wheel for it comes as an sdist.
    pip leaves a file already in ``dest`` alone, so a shared ``dest`` is a
    download cache.
    """
    nodot = python_version.replace(".", "")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--prefer-binary",
           "--disable-pip-version-check", "--no-input", "--progress-bar", "off",
           "--python-version", python_version, "--implementation", "cp",
           "--abi", f"cp{nodot}"]
    for platform in platforms:
        cmd += ["--platform", platform]
    cmd += ["--dest", str(dest)]
    if index_url is not None:
        cmd += index_options(index_url)
    return [*cmd, "--requirement", str(requirements)]


_NO_MATCH = re.compile(r"No matching distribution found for (\S+)")


def download_platform(pins: list[str], dest: Path, *, python_version: str,
                      platforms: list[str], index_url: str | None = None) -> None:
    """Download the files of ``pins`` (``name==version``) for one platform into ``dest``.

    Files already in ``dest`` are not fetched again. A pin the index does
    not have is the user's error; an unreachable index is a ToolError.
    """
    if not pins:
        return
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="airlock-pins-") as tmp:
        requirements = Path(tmp) / "pins.txt"
        requirements.write_text("".join(f"{pin}\n" for pin in pins))
        proc = ext_exec.run(
            platform_download_command(requirements, dest, python_version=python_version,
                                      platforms=platforms, index_url=index_url),
            where=f"pip download ({len(pins)} pins for {platforms[0]})", timeout=PINS_TIMEOUT,
            env=pip_env(index_url, tmp), check=False)
    if proc.returncode != 0:
        output = proc.stdout + proc.stderr
        missing = _NO_MATCH.search(output)
        spec = missing[1] if missing else f"{len(pins)} pins for {platforms[0]}"
        if "Traceback (most recent call last)" in output and not missing:
            # pip crashed (often: reading an sdist's metadata): its last line says why.
            raise ToolError(f"pip download ({spec})", _shorten(output.strip().splitlines()[-1]),
                            "run the pip download by hand to see the whole output")
        raise download_error(spec, index_url, output)
