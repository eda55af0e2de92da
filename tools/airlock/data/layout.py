"""Where the repository's data lives: releases/, patches/, images/.

The tool is installed as a package, so it cannot find its data next to its
code. The data root is, in order: ``--root``, ``$AIRLOCK_ROOT``, or the first
directory from the current one upwards that holds ``releases/``. A site may
keep any of the three folders elsewhere (``--releases-dir`` and friends).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from airlock.errors import AirlockError


@dataclass(frozen=True)
class Layout:
    """The three data folders one run of airlock reads."""

    releases_dir: Path
    patches_dir: Path
    images_dir: Path

    def release_dir(self, release: str) -> Path:
        return self.releases_dir / release


def find_root(start: Path | None = None) -> Path | None:
    """Return the nearest directory at or above ``start`` holding releases/."""
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / "releases").is_dir():
            return candidate
    return None


def resolve_layout(
    root: str | None = None,
    releases_dir: str | None = None,
    patches_dir: str | None = None,
    images_dir: str | None = None,
) -> Layout:
    """Build the Layout from options, the environment and the working directory."""
    base: Path | None
    if root:
        base = Path(root)
    elif os.environ.get("AIRLOCK_ROOT"):
        base = Path(os.environ["AIRLOCK_ROOT"])
    else:
        base = find_root()
        if base is not None:
            # Messages name files as the user sees them from here:
            # "releases/2025.2/source-refs.yaml:4", not an absolute path.
            base = Path(os.path.relpath(base))
    if base is None and not (releases_dir and patches_dir and images_dir):
        raise AirlockError(
            str(Path.cwd()),
            "no releases/ folder here or above",
            "run airlock inside an airlock checkout, or pass --root DIR or set AIRLOCK_ROOT",
        )
    if patches_dir and not Path(patches_dir).is_dir():
        # A default patches/ may be absent (nothing is patched); a folder the
        # user named must be there, or a typo would build without patches.
        what = "is not a folder" if os.path.lexists(patches_dir) else "no such folder"
        raise AirlockError(patches_dir, f"{what} (given with --patches-dir)",
                           "pass the folder that holds <component>/<release>/*.patch")
    return Layout(
        releases_dir=Path(releases_dir) if releases_dir else base / "releases",
        patches_dir=Path(patches_dir) if patches_dir else base / "patches",
        images_dir=Path(images_dir) if images_dir else base / "images",
    )
