"""The build summary table: what an operator reads at the end of a build.

Pure formatting of a build record (plain data) into text, one row per
image: image, platforms, digest, size, time, and built, kept (built before
but not published yet) or skipped (already in the registry).
"""

from __future__ import annotations


def _size(n: int | None) -> str:
    if not n:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


def table(record: dict) -> str:
    """Render the images of a build record as an aligned text table."""
    header = ("image", "platforms", "digest", "size", "time", "status")
    rows = [header]
    for image in record["images"]:
        rows.append((
            f"{image['image']}:{image['tag']}",
            ",".join(p.split("/", 1)[-1] for p in image["platforms"]),
            image["digest"].split(":", 1)[-1][:12],
            _size(image.get("size")),
            f"{image.get('seconds', 0):.1f}s",
            image["status"],
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
             for row in rows]
    count = {status: sum(1 for image in record["images"] if image["status"] == status)
             for status in ("built", "kept", "skipped")}
    kept = f"{count['kept']} kept (built before, not published), " if count["kept"] else ""
    lines.append(f"{len(record['images'])} image(s): {count['built']} built, {kept}"
                 f"{count['skipped']} skipped, in {record.get('seconds', 0):.1f}s")
    return "\n".join(lines) + "\n"
