"""The platforms airlock builds for: one table, every name each tool gives them.

A platform is named four ways: docker's ``linux/arm64``, the folder and
TARGETARCH ``arm64``, Debian's architecture ``arm64`` (``ppc64el`` for
ppc64le, where they part) and the machine of ``uname -m`` and wheel tags
``aarch64``. Every module asks this table; none writes the mapping again.
"""

from __future__ import annotations

import platform as _host
from dataclasses import dataclass

from airlock.errors import AirlockError

# The newest manylinux tag both airlock-venv (uv --python-platform) and the
# target distros (Debian 12: glibc 2.36) accept.
GLIBC_MINOR = 28


@dataclass(frozen=True)
class Platform:
    """One platform, in the names each tool wants."""

    platform: str  # linux/arm64 (docker, release.yaml)
    arch: str  # arm64 (TARGETARCH, wheelhouse and apt repository folders)
    debian: str  # arm64 (dpkg, mmdebstrap --architectures, arch-test)
    machine: str  # aarch64 (uname -m, wheel tags, QEMU)

    @property
    def multiarch(self) -> str:
        """Debian's multiarch triplet, the library folder ``/usr/lib/<triplet>``.

        ``<machine>-linux-gnu`` for both platforms here (not for every
        Debian architecture: ppc64el's is powerpc64le-linux-gnu).
        """
        return f"{self.machine}-linux-gnu"

    @property
    def python_platform(self) -> str:
        """uv's ``--python-platform`` (as airlock-venv installs with)."""
        return f"{self.machine}-manylinux_2_{GLIBC_MINOR}"


PLATFORMS: dict[str, Platform] = {p.platform: p for p in (
    Platform("linux/amd64", "amd64", "amd64", "x86_64"),
    Platform("linux/arm64", "arm64", "arm64", "aarch64"),
)}
NAMES = tuple(PLATFORMS)


def get(name: str) -> Platform:
    """The Platform called ``name``; anything else is the user's error."""
    try:
        return PLATFORMS[name]
    except KeyError:
        raise AirlockError(f"platform {name}", "not a platform airlock builds for",
                           f"use one of: {', '.join(NAMES)}") from None


def by_arch(arch: str) -> Platform:
    """The platform whose folder name (TARGETARCH) is ``arch``: ``arm64`` -> linux/arm64."""
    for platform in PLATFORMS.values():
        if platform.arch == arch:
            return platform
    raise AirlockError(arch, "is not an architecture airlock builds for",
                       f"choose from {', '.join(p.arch for p in PLATFORMS.values())}")


def native(machine: str | None = None) -> Platform | None:
    """The platform this machine runs without emulation, if airlock builds for it."""
    machine = machine or _host.machine()
    return next((p for p in PLATFORMS.values() if p.machine == machine), None)


def foreign(names) -> list[Platform]:
    """The platforms of ``names`` that this machine runs only under emulation."""
    here = native()
    return [get(n) for n in names if get(n) != here]

