"""The cache every wheelhouse draws on: downloads and wheels built from sdists.

Shared by every service and release (and by concurrent airlock runs, under
a lock), so that no file is fetched twice and no sdist is built twice for
the same inputs. Building an sdist happens here too: its result is a cache
entry keyed by everything its bytes depend on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from airlock import files, progress
from airlock.data.platforms import Platform
from airlock.data.release import canonical_name
from airlock.errors import ToolError
from airlock.ext import containers, index
from airlock.files import link_or_copy, sha256_file, swap_into_place
from airlock.files import read_json as _read_json
from airlock.files import write_json as _write_json
from airlock.inputs import sharedlibs
from airlock.inputs.wheeltags import choose, pip_platforms, supported_tags
from airlock.urls import strip_userinfo

# Bump with any change to how a wheelhouse is made: the input digest changes.
RECIPE = "airlock-wheels/1"
BUILD_CONSTRAINTS = "build-constraints.txt"
# Wheels built from sdists carry this time stamp in their zip entries.
SDIST_EPOCH = 315532800  # 1980-01-01, the earliest a zip file can hold


@dataclass(frozen=True)
class Cache:
    """Files shared by every wheelhouse: downloads, wheels built from sdists, choices.

    ``files/`` holds what pip downloaded (a file name names one file on an
    index); ``built/<key>/`` a wheel built from an sdist, ``key`` hashing the
    sdist, the build pins, the builder image and the platform;
    ``choices/<index>/<arch>.json`` which file pip picked for each pin, so a
    pin already seen is not asked for again.
    """

    root: Path

    @property
    def files(self) -> Path:
        return self.root / "files"

    def choices_path(self, where: index.Locations, arch: str) -> Path:
        """Where the choices made on the index ``where`` are kept (per index, not per token)."""
        bare = dataclasses.replace(
            where, index_url=strip_userinfo(where.index_url) if where.index_url else None,
            extra_index_urls=tuple(strip_userinfo(u) for u in where.extra_index_urls),
            find_links=tuple(strip_userinfo(u) for u in where.find_links))
        key = hashlib.sha256(f"{RECIPE} {bare.key()}".encode()).hexdigest()[:16]
        return self.root / "choices" / key / f"{arch}.json"

    def built_dir(self, key: str) -> Path:
        return self.root / "built" / key

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the cache for this process: two airlock runs may share it.

        The lock file is opened without following a link and never
        truncated: a link planted at it cannot make root empty a host file.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # and with it the lock


def fetch(cache: Cache, pins: list[tuple[str, str]], tgt: Platform, python_version: str,
          index_url: str | None, where: index.Locations) -> dict[str, str]:
    """The cached file of every pin for ``tgt``: ``{"name==version": filename}``.

    Pins pip already chose a file for (recorded in the cache) cost nothing;
    the others are downloaded in one pip call (files already in the cache
    are not fetched again), then matched to their files by tag.
    """
    supported = supported_tags(python_version, tgt.machine)
    wanted = sorted({f"{canonical_name(n)}=={v}" for n, v in pins})
    with cache.locked():
        path = cache.choices_path(where, tgt.arch)
        known = _read_json(path) or {}
        missing = [pin for pin in wanted
                   if pin not in known or not (cache.files / known[pin]).is_file()]
        if missing:
            before = set(os.listdir(cache.files)) if cache.files.is_dir() else set()
            with progress.step(f"pip download for {tgt.platform}", total=len(missing),
                               unit="files") as step, \
                    step.follow(lambda: len(set(os.listdir(cache.files)) - before)):
                index.download_platform(missing, cache.files, python_version=python_version,
                                        platforms=pip_platforms(tgt.machine),
                                        index_url=index_url)
                step.finish(f"{len(missing)} pins, {step.done} files new")
            names = sorted(p.name for p in cache.files.iterdir())
            for pin in missing:
                name, _, version = pin.partition("==")
                found = choose(names, name, version, supported)
                if found is None:
                    raise ToolError(f"pip download {pin}", f"left no file for {tgt.platform} "
                                    f"in {cache.files}", "see pip's output by running it by hand")
                known[pin] = found
            _write_json(path, known)
    return {pin: known[pin] for pin in wanted}


def build_key(sdist_sha256: str, build_constraints: str, builder: str, tgt: Platform,
              debs_key: str = "") -> str:
    """The cache key of one wheel built from an sdist: everything its bytes depend on.

    ``debs_key`` names the OS packages installed for the build (the sha256
    of their repository's index); none installed, the key is as before.
    """
    parts = [RECIPE, sdist_sha256, build_constraints, builder, tgt.platform]
    text = json.dumps([*parts, debs_key] if debs_key else parts)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


DEBS_MOUNT = "/airlock-debs"
# With packages to install the container runs as root (apt needs it) and
# hands what it wrote back to the caller's user however the build ends.
_AS_ROOT = """set -eu
owner=$1; shift
trap 'chown -R "$owner" /airlock' EXIT
airlock-apt-install "$AIRLOCK_DEBS"
"$@"
sh -c "$AIRLOCK_OWNERS" > /airlock/out/owners.txt
"""
# Kept beside a wheel built with declared packages: which package owns each
# shared library in the container that built it (the wheel links against
# some of them: libssl3 for scrypt), read by :mod:`airlock.inputs.sharedlibs`.
OWNERS = "owners.txt"
OWNERS_LIMIT = 32 * 1024 * 1024


def build_command(sdist_name: str, owner: str | None = None) -> tuple[str, ...]:
    """What runs in the venv-builder container to build one sdist (see :func:`build_sdist`).

    ``owner`` (``uid:gid``) is given when declared OS packages are
    installed first, as root, from the repository mounted at DEBS_MOUNT.
    """
    build = ("airlock-venv", "wheel", "--out", "/airlock/out", "--wheelhouse", "/airlock/wheels",
             "--build-constraints", f"/airlock/{BUILD_CONSTRAINTS}",
             f"/airlock/sdist/{sdist_name}")
    if owner is None:
        return build
    return ("sh", "-c", _AS_ROOT, "airlock-sdist", owner, *build)


class SdistBuildError(ToolError):
    """An sdist did not build; ``missing`` is the header or library the compiler named."""

    def __init__(self, where: str, what: str, fix: str, missing: str | None, log: Path) -> None:
        super().__init__(where, what, fix)
        self.missing, self.log = missing, log


# What a compiler, a linker or pkg-config says when the build lacks an OS
# package: the file or library it could not find. The log is the sdist's
# output (4 MiB of it): each pattern scans a bounded stretch from where it
# starts (an unbounded ".*" made a line of repeated "Package a required by "
# quadratic: minutes), and takes only the characters of a file name (what
# it finds is printed: no terminal escape of the build's choosing).
_MISSING = (
    re.compile(r"fatal error: (?P<what>[A-Za-z0-9_./+-]{1,200}): No such file or directory"),
    re.compile(r"cannot find -l(?P<what>[A-Za-z0-9_.+-]{1,200})"),
    re.compile(r"Package '?(?P<what>[A-Za-z0-9_.+-]{1,200})'?,? (?:was not found in the "
               r"pkg-config|required by [^\n]{0,400}? not found)"),
    re.compile(r"(?P<what>pkg-config): (?:not found|command not found)"),
)


def missing_from_log(text: str) -> str | None:
    """The header, library or tool a failed build names as missing (first one), if any."""
    for pattern in _MISSING:
        found = pattern.search(text)
        if found:
            what = found.group("what")
            if pattern is _MISSING[1]:
                return f"lib{what} (-l{what})"
            if pattern is _MISSING[2]:
                return f"pkg-config module {what}"
            return what
    return None


def build_sdist(cache: Cache, sdist: Path, build_files: list[Path], build_constraints: str,
                builder: str, builder_digest: str, tgt: Platform, *,
                debs: Path | None = None, debs_key: str = "") -> tuple[Path, bool]:
    """Build ``sdist`` into a wheel inside ``builder`` for ``tgt``, offline.

    The container sees only the sdist, the build requirements' wheels and
    build-constraints.txt, with no network: what the build needs must be in
    the wheelhouse. A wheel built before from the same inputs is reused.
    Returns the wheel (in the cache) and whether it was built just now.

    The container runs as this process's user (root on a build host) and
    may leave anything in the folder it sees: its log is kept outside that
    folder, only a regular file is taken as the wheel (a link is neither
    taken nor followed), and the staging folder is removed however the run
    ends. The log of a failed build stays beside the cache entry, for the
    error message to name (:class:`SdistBuildError`, with what the compiler
    missed when it says so).

    ``debs`` is an offline apt repository (``airlock debs`` layout) of the OS
    packages this sdist declares: mounted read-only and installed first.
    """
    key = build_key(sha256_file(sdist), build_constraints, builder_digest, tgt, debs_key)
    done = cache.built_dir(key)
    found = sorted(done.glob("*.whl")) if done.is_dir() else []
    if len(found) == 1:
        return found[0], False
    done.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=done.parent))
    log = stage.with_name(stage.name + ".log")
    what = f"building {sdist.name} for {tgt.platform}"
    keep_log = False
    try:
        seen = stage / "io"  # the only folder the container sees, as /airlock
        for sub in ("wheels", "sdist", "out"):
            (seen / sub).mkdir(parents=True)
        for path in build_files:
            link_or_copy(path, seen / "wheels" / path.name)
        link_or_copy(sdist, seen / "sdist" / sdist.name)
        (seen / BUILD_CONSTRAINTS).write_text(build_constraints)
        owner = f"{os.getuid()}:{os.getgid()}"
        mounts = [containers.Mount(seen, "/airlock", read_only=False)]
        if debs is not None:
            mounts.append(containers.Mount(debs, DEBS_MOUNT, read_only=True))
        try:
            with progress.step(what) as step, \
                    step.follow(lambda: 0, detail=lambda: progress.last_line_of(log)):
                containers.run_logged(containers.RunSpec(
                    image=builder, command=build_command(sdist.name, owner if debs else None),
                    platform=tgt.platform, network="none", log=log,
                    user="0:0" if debs is not None else owner, mounts=tuple(mounts),
                    env={"SOURCE_DATE_EPOCH": str(SDIST_EPOCH), "HOME": "/tmp",
                         "AIRLOCK_DEBS": DEBS_MOUNT,
                         "AIRLOCK_OWNERS": sharedlibs.OWNERS_SCRIPT}))
            wheel = built_wheel(seen / "out", what, log)
        except ToolError as error:
            keep_log = True
            raise SdistBuildError(error.where, error.what, error.fix,
                                  missing_from_log(_tail(log)), log) from None
        os.replace(wheel, stage / wheel.name)
        if debs is not None:
            # within: the container ran as root and may have left a link
            # there (to /etc/shadow): its target would be copied into the cache.
            files.write_atomic(stage / OWNERS, files.read_bytes(
                seen / "out" / OWNERS, limit=OWNERS_LIMIT, within=seen / "out",
                fix=f"the build of {sdist.name} left no readable {OWNERS}; log: {log}"))
        shutil.rmtree(seen)  # never follows a link inside
        os.replace(log, stage / "build.log")
        os.chmod(stage, 0o755)
        swap_into_place(stage, done)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        if not keep_log:
            log.unlink(missing_ok=True)
    return done / wheel.name, True


def built_owners(wheel: Path, tgt: Platform) -> dict[str, str]:
    """Owners of the shared libraries where ``wheel`` was built (none: venv-builder's own)."""
    path = wheel.parent / OWNERS
    if not os.path.lexists(path):
        return {}
    text = files.read_text(path, limit=OWNERS_LIMIT, fix="remove the cache entry "
                           f"{wheel.parent}; it is built again")
    return sharedlibs.parse_owners(text, tgt.multiarch, where=str(path))


def _tail(log: Path, limit: int = 4 * 1024 * 1024) -> str:
    """The end of a build log (a container wrote it: bounded, never a link followed)."""
    try:
        fd = os.open(log, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return ""
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return ""
        size = os.fstat(fd).st_size
        handle.seek(max(0, size - limit))
        return handle.read(limit).decode("utf-8", "replace")


def built_wheel(out: Path, what: str, log: Path) -> Path:
    """The one wheel a build left in ``out``: a regular file, found without following links.

    ``out`` was filled by a container running as root: a link there (to a
    file of the host, or ``out`` itself replaced by a link to a host folder)
    is an error, never a wheel.
    """
    fix = f"log: {log}"
    try:
        is_folder = stat.S_ISDIR(os.lstat(out).st_mode)
    except FileNotFoundError:
        is_folder = False
    if not is_folder:
        raise ToolError(what, "the build removed or replaced its out/ folder", fix)
    wheels, others = [], []
    with os.scandir(out) as entries:
        for entry in entries:
            if entry.name.endswith(".whl"):
                (wheels if entry.is_file(follow_symlinks=False) else others).append(entry.name)
    if others:
        raise ToolError(what, f"the build left {sorted(others)[0]}, which is not a regular "
                        "file (a symbolic link?)", fix)
    if len(wheels) != 1:
        raise ToolError(what, f"expected one wheel, got {sorted(wheels) or 'none'}", fix)
    return out / wheels[0]
