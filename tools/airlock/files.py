"""Small file helpers every preparation step shares.

Caches, wheelhouses, apt repositories and build records are written so that
the same data gives the same bytes (sorted JSON) and a crash never leaves a
half-written file (write to a temporary name, then rename).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

from airlock.errors import AirlockError

# File digests remembered while a ``remembered_digests`` block runs:
# "dev:ino" -> [size, mtime_ns, ctime_ns, hex digest, path]. A build hashes
# every file of its contexts to compute input digests, and wheelhouses share
# their wheels by hard link, so most files are seen many times in one run and
# again in the next; re-reading them is what made a no-op rebuild slow.
_memo: dict[str, list] | None = None
# A file whose last change is this close to the moment it is hashed is not
# remembered: the kernel stamps times from a coarse clock, so a second write
# in the same tick could keep size, mtime and ctime (git's "racy" files).
RACY_NS = 2_000_000_000


def _content_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's content, read in blocks (wheels can be large).

    Inside ``remembered_digests`` a file already hashed is not read again
    while its inode, size, mtime and ctime are unchanged. ctime cannot be set
    by hand and moves on every write, so an edited file is always re-read.
    """
    if _memo is None:
        return _content_sha256(path)
    before = os.stat(path)
    key = f"{before.st_dev}:{before.st_ino}"
    seen = [before.st_size, before.st_mtime_ns, before.st_ctime_ns]
    hit = _memo.get(key)
    if hit is not None and hit[:3] == seen:
        return hit[3]
    started = time.time_ns()
    hexdigest = _content_sha256(path)
    after = os.stat(path)
    if ([after.st_size, after.st_mtime_ns, after.st_ctime_ns] == seen
            and max(before.st_mtime_ns, before.st_ctime_ns) < started - RACY_NS):
        _memo[key] = [*seen, hexdigest, str(Path(path).absolute())]
    return hexdigest


@contextlib.contextmanager
def remembered_digests(store: Path) -> Iterator[None]:
    """Remember file digests in ``store`` across runs (see ``sha256_file``).

    A missing or unreadable store starts empty: it is only a cache. On the
    way out, entries whose path no longer names the same inode are dropped,
    so the store stays the size of the files that still exist.
    """
    global _memo
    if _memo is not None:  # nested: the outer block owns the store
        yield
        return
    loaded = read_json(store) or {}
    _memo = {key: entry for key, entry in loaded.items()
             if isinstance(entry, list) and len(entry) == 5}
    try:
        yield
    finally:
        memo, _memo = _memo, None
        write_json(store, {key: entry for key, entry in memo.items() if _same_inode(key, entry[4])})


def _same_inode(key: str, path: str) -> bool:
    try:
        st = os.stat(path)
    except OSError:
        return False
    return f"{st.st_dev}:{st.st_ino}" == key


def link_or_copy(src: Path, dest: Path) -> None:
    """Hard-link ``src`` to ``dest`` (a cache and its users share the bytes), else copy."""
    try:
        os.link(src, dest)
    except OSError:
        shutil.copy2(src, dest)


def json_digest(data: object) -> str:
    """``sha256:<hex>`` of the canonical JSON of ``data``: every input digest is one.

    Sorted keys and no spaces: the same data gives the same digest, however
    it was assembled.
    """
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


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
