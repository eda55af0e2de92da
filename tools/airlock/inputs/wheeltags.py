"""Wheel tags and platforms: which file of a pin a target platform installs.

The wheelhouse serves the platforms of :mod:`airlock.data.platforms`. This
module answers, from file names alone, what pip would pick for one of them
and where a file goes in the wheelhouse.
"""

from __future__ import annotations

from packaging import tags as ptags
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from airlock.data import platforms
from airlock.data.release import canonical_name

PURE = "any"
def pip_platforms(machine: str, glibc_minor: int = platforms.GLIBC_MINOR) -> list[str]:
    """pip's ``--platform`` values for ``machine``, most preferred first.

    Every manylinux_2_N from the newest accepted down (pip does not expand
    them itself), the legacy aliases (manylinux2014 = 2_17, 2010 = 2_12,
    manylinux1 = 2_5; aarch64 starts at 2_17), then plain ``linux_<machine>``
    (what a wheel built from an sdist is tagged).
    """
    legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
    lowest = 17 if machine == "aarch64" else 5
    names = []
    for minor in range(glibc_minor, lowest - 1, -1):
        names.append(f"manylinux_2_{minor}_{machine}")
        if minor in legacy and (machine in ("x86_64", "i686") or minor == 17):
            names.append(f"{legacy[minor]}_{machine}")
    return [*names, f"linux_{machine}"]


def supported_tags(python_version: str, machine: str) -> list[ptags.Tag]:
    """The wheel tags a CPython ``python_version`` on ``machine`` accepts, best first."""
    major, minor = (int(part) for part in python_version.split(".")[:2])
    platforms = pip_platforms(machine)
    return [*ptags.cpython_tags((major, minor), abis=[f"cp{major}{minor}"],
                                platforms=platforms),
            *ptags.compatible_tags((major, minor), interpreter=f"cp{major}{minor}",
                                   platforms=platforms)]


def is_pure(filename: str) -> bool:
    """Whether a wheel serves every platform (all its tags are ``none-any``)."""
    if not filename.endswith(".whl"):
        return False
    _, _, _, found = parse_wheel_filename(filename)
    return all(tag.abi == "none" and tag.platform == "any" for tag in found)


def dist_of(filename: str) -> tuple[str, Version] | None:
    """(canonical name, version) of a wheel or sdist file name; None for other files."""
    try:
        if filename.endswith(".whl"):
            name, version, _, _ = parse_wheel_filename(filename)
        else:
            name, version = parse_sdist_filename(filename)
    except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion):
        return None
    return str(name), version


def choose(filenames: list[str], name: str, version: str,
           supported: list[ptags.Tag]) -> str | None:
    """The file pip would install for pin ``name==version``: best-tagged wheel, else sdist.

    ``supported`` is the target's tag list, best first (:func:`supported_tags`).
    """
    rank = {tag: i for i, tag in enumerate(supported)}
    wanted = (canonical_name(name), Version(version))
    best: tuple[int, int, str] | None = None
    for filename in filenames:
        if dist_of(filename) != wanted:
            continue
        if filename.endswith(".whl"):
            ranks = [rank[t] for t in parse_wheel_filename(filename)[3] if t in rank]
            if not ranks:
                continue
            candidate = (0, min(ranks), filename)
        else:
            candidate = (1, 0, filename)
        best = candidate if best is None or candidate < best else best
    return best[2] if best else None


def place(filename: str, arch: str) -> str:
    """Where a wheel goes in the wheelhouse: ``any/`` if pure, else ``<arch>/``."""
    return f"{PURE if is_pure(filename) else arch}/{filename}"
