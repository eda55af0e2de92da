"""Results remembered across runs by the digest of their inputs: a no-op build stays a no-op.

A rebuild with nothing changed used to spend its seconds recomputing what
it computed the run before: bindep's parser on the same bindep files, and
digests of the same trees. Inside a :func:`remembering` block (what
``airlock build`` runs in), :func:`recall` and :func:`remember` keep such
results under ``<cache>/memo/<kind>/``: one small JSON file per entry,
named after the sha256 of its key, holding the key itself beside the
value. An entry is used only when the key it holds is the key asked for;
a missing, truncated, corrupt or foreign file is a miss, never an error
(the result is then computed again and the file replaced). Entries are
written atomically and hold only what their inputs decide, so two runs
writing the same entry at once write the same bytes.

Outside a block (a single ``airlock packages``, the unit tests) nothing is
remembered and every result is computed.

What a key must hold is the caller's to say: everything the result
depends on, by content (a digest of a file's text, never its path alone),
plus a version of the code that computes it (bump it when the
computation changes).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path

from airlock import files
from airlock.errors import AirlockError

# The folder of the active block; None outside one.
_root: Path | None = None
# An entry file is a few hundred bytes; anything near this is not ours.
ENTRY_LIMIT = 1 << 20
_KIND = re.compile(r"[a-z][a-z0-9-]{0,31}")


@contextlib.contextmanager
def remembering(cache_dir: Path) -> Iterator[None]:
    """Remember results under ``cache_dir/memo`` and file digests beside it, while it runs.

    Also :func:`airlock.files.remembered_digests` (``file-digests.json``):
    the one block a build opens for every cache of its kind. Nested blocks
    use the outer one's folder.
    """
    global _root
    if _root is not None:
        yield
        return
    with files.remembered_digests(cache_dir / "file-digests.json"):
        _root = cache_dir / "memo"
        try:
            yield
        finally:
            _root = None


def active() -> bool:
    """Whether results are remembered now (inside :func:`remembering`)."""
    return _root is not None


def _entry(kind: str, key: object) -> tuple[Path, str] | None:
    if _root is None:
        return None
    if not _KIND.fullmatch(kind):
        raise ValueError(f"memo kind {kind!r}")  # a caller's bug, never a user's input
    canonical = json.dumps(key, sort_keys=True, separators=(",", ":"))
    name = hashlib.sha256(canonical.encode()).hexdigest()
    return _root / kind / f"{name}.json", canonical


def recall(kind: str, key: object) -> object | None:
    """The value remembered for ``key``; None outside a block, on a miss or a bad entry."""
    entry = _entry(kind, key)
    if entry is None:
        return None
    path, canonical = entry
    doc = files.read_json(path, limit=ENTRY_LIMIT)
    if doc is None or "value" not in doc:
        return None
    if json.dumps(doc.get("key"), sort_keys=True, separators=(",", ":")) != canonical:
        return None
    return doc["value"]


def remember(kind: str, key: object, value: object) -> None:
    """Keep ``value`` for ``key`` (plain JSON data); nothing outside a block.

    A cache that cannot be written (a full disk, a read-only cache folder)
    costs the next run its time, not this run its result: the failure is
    ignored.
    """
    entry = _entry(kind, key)
    if entry is None:
        return
    path, _ = entry
    with contextlib.suppress(OSError, AirlockError):
        path.parent.mkdir(parents=True, exist_ok=True)
        files.write_atomic(path, json.dumps({"key": key, "value": value}, sort_keys=True,
                                            separators=(",", ":")) + "\n")


def text_digest(text: str) -> str:
    """sha256 (hex) of a text: how a key names a file's content."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
