"""manifest.json: what a bundle holds, for which releases, from where; read and written here.

Plain data. The id is derived from the content (the selection and every
artifact's path and sha256, and for a delta where each earlier one
arrived): the same inputs make the same id, so an id names content, not a
moment. ``version`` is for people (``--version``, default the creation
time); ``requires`` lists the earlier bundles a delta builds on.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from airlock import files
from airlock.bundle import layout
from airlock.errors import AirlockError

LIMIT = 256 * files.MiB


def bundle_id(selection: dict, artifacts: list[dict]) -> str:
    """``airlock-<20 hex>`` over the selection and each artifact's path, sha256 and origin bundle.

    An artifact arriving in this bundle counts with an empty origin, so the
    id can be computed before it is written into the artifacts.
    """
    rows = sorted((a["path"], a["sha256"], a.get("bundle") or "") for a in artifacts)
    text = json.dumps({"selection": selection, "artifacts": rows}, sort_keys=True,
                      separators=(",", ":"))
    return "airlock-" + hashlib.sha256(text.encode()).hexdigest()[:20]


def load(path: Path) -> dict:
    """A bundle's manifest, checked enough that every reader can rely on its shape."""
    raw = files.read_bytes(path, limit=LIMIT, fix=FIX)
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise AirlockError(str(path), "is not JSON", FIX) from None
    return checked(data, str(path))


FIX = "pass a bundle folder (or its manifest.json) made by airlock bundle create"


def checked(data: object, where: str) -> dict:
    """``data`` if it has the shape every reader relies on; else one line naming the key."""
    if not isinstance(data, dict) or data.get("schema") != layout.SCHEMA:
        raise AirlockError(where, f"is not an airlock bundle manifest of schema "
                           f"{layout.SCHEMA}", FIX)
    for key, kind in (("id", str), ("version", str), ("artifacts", list), ("releases", dict),
                      ("requires", list)):
        if not isinstance(data.get(key), kind):
            raise AirlockError(f"{where}:{key}", f"missing or not a {kind.__name__}", FIX)
    for number, art in enumerate(data["artifacts"]):
        if not isinstance(art, dict) or not all(isinstance(art.get(k), str) for k in
                                                ("path", "sha256", "kind", "bundle")) \
                or not isinstance(art.get("size"), int):
            raise AirlockError(f"{where}:artifacts[{number}]", "not an artifact (path, sha256, "
                               "size, kind, bundle)", FIX)
    for name, entry in data["releases"].items():
        if not isinstance(entry, dict):
            raise AirlockError(f"{where}:releases.{name}", "not a mapping", FIX)
    return data


def of(folder_or_file: Path) -> Path:
    """The manifest.json of a bundle folder, or the file itself."""
    return folder_or_file / layout.MANIFEST if folder_or_file.is_dir() else folder_or_file


def carried(manifest: dict) -> list[dict]:
    """The artifacts that arrive in this very bundle (all of them, unless it is a delta)."""
    return [a for a in manifest["artifacts"] if a["bundle"] == manifest["id"]]


def totals(artifacts: list[dict]) -> dict[str, dict[str, int]]:
    """``{group: {"artifacts": n, "bytes": n}}`` in the summary's order."""
    result = {group: {"artifacts": 0, "bytes": 0} for group in layout.GROUP_ORDER}
    for art in artifacts:
        row = result.setdefault(layout.group(art["kind"]), {"artifacts": 0, "bytes": 0})
        row["artifacts"] += 1
        row["bytes"] += int(art.get("size") or 0)
    return result
