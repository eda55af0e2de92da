"""What the functional tests share: the real engine and the local base image.

Nothing is skipped silently: without an engine (or QEMU, or the registry)
every test fails with the one line that says to run
``tools/setup-host build-host``.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

from airlock import settings
from airlock.data import platforms
from airlock.data.layout import resolve_layout
from airlock.data.release import load_release
from airlock.ext import buildx, registry
from airlock.inputs import baseimage

REPO_ROOT = Path(__file__).resolve().parents[4]
RELEASE = "2025.2"
PLATFORMS = platforms.NAMES
REGISTRY = "127.0.0.1:5000"
TEST_REPO = f"{REGISTRY}/airlock-test"


def require_engine() -> buildx.EngineInfo:
    """The engine, buildx, the containerd store, QEMU for arm64 and the registry."""
    engine = buildx.check(PLATFORMS)
    registry.list_tags(f"{TEST_REPO}/probe")  # raises "registry unreachable" if it is down
    return engine


@cache
def base_image() -> tuple[baseimage.BaseSpec, baseimage.BaseResult]:
    """The release's base image, made once if the registry lacks it.

    Its first creation bootstraps Debian from the machine's apt mirror (set-up,
    like the packages of tools/setup-host); afterwards this is one registry
    request. The root filesystems are cached in $AIRLOCK_WORK_DIR or ./work.
    """
    layout = resolve_layout(str(REPO_ROOT))
    spec = baseimage.spec_for_release(load_release(layout, RELEASE))
    work = Path(os.environ.get(settings.WORK_ENV) or REPO_ROOT / "work")
    return spec, baseimage.create(spec, layout.images_dir, work)


def by_digest(ref: str, digest: str) -> str:
    """``host/repo@digest`` of ``host/repo:tag``."""
    host, repo, _ = registry.split_ref(ref)
    return f"{host}/{repo}@{digest}"


def pinned_base() -> tuple[str, int]:
    """The base image by digest and its SOURCE_DATE_EPOCH: what a small test image builds on.

    A fixed epoch when the base records none, so that two builds still agree.
    """
    spec, result = base_image()
    return by_digest(spec.ref, result.digest), result.source_date_epoch or 1700000000
