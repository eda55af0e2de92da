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
