"""Small file helpers every preparation step shares.

Caches, wheelhouses, apt repositories and build records are written so that
the same data gives the same bytes (sorted JSON) and a crash never leaves a
half-written file (write to a temporary name, then rename).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from airlock.errors import AirlockError


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's content, read in blocks (wheels can be large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def link_or_copy(src: Path, dest: Path) -> None:
    """Hard-link ``src`` to ``dest`` (a cache and its users share the bytes), else copy."""
    try:
        os.link(src, dest)
    except OSError:
        shutil.copy2(src, dest)


def read_json(path: Path) -> dict | None:
    """A JSON object from ``path``; None when absent, unreadable or not an object."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_json(path: Path, data: dict) -> None:
    """Write JSON atomically, sorted, one key a line: same data, same bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    tmp.replace(path)


def check_replaceable(dest: Path, marker: str, what: str) -> None:
    """Refuse to replace a folder that is not one we wrote: replacing deletes it.

    Ours means it holds ``marker`` (the manifest every prepared tree ends
    with); an empty folder or a missing one is fine too.
    """
    if dest.exists() and (not dest.is_dir() or (any(dest.iterdir())
                                                and not (dest / marker).is_file())):
        raise AirlockError(str(dest), f"exists and is not {what} (no {marker})",
                           "choose a new or empty folder for --dest")


def swap_into_place(stage: Path, dest: Path) -> None:
    """Replace ``dest`` by ``stage`` (same parent): the old tree is gone only once the new is in."""
    old = None
    if dest.exists():
        old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
        os.replace(dest, old)
    os.replace(stage, dest)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
