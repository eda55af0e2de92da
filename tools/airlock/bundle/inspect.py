"""``airlock bundle inspect``: what a bundle holds, from its manifest alone (pure).

An operator on either side of the gap decides from it what to carry and
what to import: nothing is extracted and nothing is verified here (that is
``bundle verify``); the text says so when the bundle is not complete.
"""

from __future__ import annotations

from airlock.bundle import layout
from airlock.bundle import manifest as manifest_mod


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n} B"
        n /= 1024
    return f"{n} B"


def _repository(entry: dict) -> str:
    """Where airlock's repository is in the bundle: its commit, and whether it is a snapshot."""
    if not entry.get("commit"):
        return "  (its repository is not in this bundle)"
    kind = "snapshot of uncommitted changes" if entry.get("uncommitted") else "committed"
    return f"  repository at {entry['commit']} ({kind}) in {entry['bundle']}"


def render(doc: dict) -> str:
    """The text of ``bundle inspect`` for a manifest."""
    sel = doc.get("selection") or {}
    carried = manifest_mod.carried(doc)
    lines = [f"bundle   {doc['id']}  version {doc['version']}  created {doc.get('created_at')}",
             f"airlock  {(doc.get('airlock') or {}).get('version', 'unknown')}"
             f"{_repository(doc.get('airlock') or {})}",
             "complete " + ("yes" if doc.get("complete") else
                            "NO (bundle check names what is missing)"),
             f"releases {', '.join(sel.get('releases') or sorted(doc['releases']))}",
             f"services {', '.join(sel.get('services') or [])}",
             f"platforms {', '.join(sel.get('platforms') or [])}"]
    if doc.get("requires"):
        lines.append(f"delta    builds on {', '.join(doc['requires'])} (the site must hold "
                     f"them); carries {len(carried)} of {len(doc['artifacts'])} artifacts")
    for name, entry in sorted(doc["releases"].items()):
        base = entry.get("base_image") or {}
        lines.append(f"release {name}: base image {base.get('ref')}@{base.get('digest')}")
        for component, comp in sorted((entry.get("components") or {}).items()):
            patches = comp.get("patches") or []
            shown = f", {len(patches)} patch(es): " + ", ".join(
                p["path"].rsplit("/", 1)[-1] for p in patches) if patches else ""
            lines.append(f"  {component:<12} {comp['ref']} at {comp['sha'][:12]}{shown}")
    lines.append(f"{'kind':<9}{'artifacts':>10}{'bytes':>12}   (in this bundle; all)")
    mine, every = manifest_mod.totals(carried), manifest_mod.totals(doc["artifacts"])
    for group in every:
        lines.append(f"{group:<9}{mine.get(group, {}).get('artifacts', 0):>10}"
                     f"{_size(mine.get(group, {}).get('bytes', 0)):>12}   "
                     f"({every[group]['artifacts']}, {_size(every[group]['bytes'])})")
    for note in doc.get("notes") or []:
        lines.append(f"note: {note}")
    return "\n".join(lines) + "\n"


def summary(doc: dict, reused: dict[str, int], seconds: float) -> str:
    """The last lines of ``bundle create``: per kind, artifacts, bytes and reused."""
    mine = manifest_mod.totals(manifest_mod.carried(doc))
    lines = [f"{'kind':<9}{'artifacts':>10}{'bytes':>12}{'reused':>8}"]
    for group in layout.GROUP_ORDER:
        row = mine.get(group, {"artifacts": 0, "bytes": 0})
        lines.append(f"{group:<9}{row['artifacts']:>10}{_size(row['bytes']):>12}"
                     f"{reused.get(group, 0):>8}")
    lines.append(f"bundle {doc['id']} version {doc['version']}: "
                 f"{'complete' if doc.get('complete') else 'INCOMPLETE'} in {seconds} s")
    return "\n".join(lines) + "\n"
