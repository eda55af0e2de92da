"""Wheel tags and platforms: which file of a pin a target platform installs.

The wheelhouse serves docker platforms (``linux/amd64``), which name
themselves three ways: the docker platform, the folder and TARGETARCH
(``amd64``) and the wheel tag machine (``x86_64``). This module keeps that
mapping and answers, from file names alone, what pip would pick and where
a file goes in the wheelhouse.
"""

from __future__ import annotations

import platform as host
from dataclasses import dataclass

from packaging import tags as ptags
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from airlock.data.release import canonical_name
from airlock.errors import AirlockError

PURE = "any"
# The newest manylinux tag both airlock-venv (uv --python-platform) and the
# target distros (Debian 12: glibc 2.36) accept.
GLIBC_MINOR = 28


@dataclass(frozen=True)
class Target:
    """A platform a wheelhouse serves, in the names each tool wants."""

    platform: str  # linux/amd64 (docker)
    arch: str  # amd64 (the folder, TARGETARCH)
    machine: str  # x86_64 (wheel tags)

    @property
    def python_platform(self) -> str:
        """uv's ``--python-platform`` (as airlock-venv installs with)."""
        return f"{self.machine}-manylinux_2_{GLIBC_MINOR}"


TARGETS = {t.platform: t for t in (Target("linux/amd64", "amd64", "x86_64"),
                                   Target("linux/arm64", "arm64", "aarch64"))}


def target(platform: str) -> Target:
    """The Target of ``linux/amd64`` or ``linux/arm64``; anything else is the user's error."""
    try:
        return TARGETS[platform]
    except KeyError:
        raise AirlockError(f"platform {platform}", "no wheelhouse recipe for it",
                           f"use one of: {', '.join(TARGETS)}") from None


def pip_platforms(machine: str, glibc_minor: int = GLIBC_MINOR) -> list[str]:
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


def native_target() -> Target | None:
    """The Target this machine runs natively (no emulation), if it is one."""
    machine = host.machine()
    return next((t for t in TARGETS.values() if t.machine == machine), None)
