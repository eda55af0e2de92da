"""What a build or a publish reports: a table for people, a document for programs.

Pure formatting of plain data. :func:`table` renders a build record as
text, one row per image: image, platforms, digest, size, time, and built,
kept (built before but not published yet) or skipped (already in the
registry). :func:`build_result` and :func:`publish_result` are the
machine-readable results of ``--json`` (what the Ansible roles decide
"changed" from): one JSON object with every image's name, platforms,
digest, ref, status and tags, a top-level ``changed``, and
``zuul_artifacts``: the images (and, from publish, their build records
in the registry) as Zuul artifacts, for ``zuul_return``.
"""

from __future__ import annotations

from airlock.image import annotations


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


def _tags(image: dict) -> list[str]:
    return [image["tag"], *image.get("moving_tags", [])]


def build_result(record: dict, record_path: str | None = None) -> dict:
    """``airlock build --json``: changed when any image was built by this run.

    ``tags`` are the image's immutable tag, then the moving tags publish
    will point at it. A kept image was built by an earlier run, a skipped
    one is in the registry already: neither changes anything.
    """
    images = [{"name": image["image"], "image": image["image"],
               "platforms": list(image["platforms"]),
               "digest": image["digest"], "ref": image["ref"], "status": image["status"],
               "tags": _tags(image), "service": bool(image.get("service"))}
              for image in record["images"]]
    return {"release": record["release"], "record": record_path,
            "changed": any(image["status"] == "built" for image in images),
            "seconds": record.get("seconds", 0), "images": images,
            # python-base and venv-builder are pushed by the build; the
            # service images by publish, whose result names them.
            "zuul_artifacts": zuul_artifacts([i for i in images if not i["service"]])}


def publish_result(release: str, rows: list[dict]) -> dict:
    """``airlock publish --json``: changed when anything was pushed or a tag moved."""
    images = [dict(row) for row in rows]
    records = [{"name": f"{row['name']} build record",
                "url": artifact_url(f"{row['ref'].split('@', 1)[0]}:"
                                    f"{annotations.record_tag(row['digest'])}"),
                "metadata": {"type": "airlock_build_record", "digest": row["digest"]}}
               for row in images if row.get("record") in ("pushed", "kept")]
    return {"release": release, "changed": any(row["status"] == "published" for row in rows),
            "images": images, "zuul_artifacts": zuul_artifacts(images) + records}


def zuul_artifacts(images: list[dict]) -> list[dict]:
    """The images as Zuul artifacts (``zuul_return``'s ``zuul.artifacts``): name, url, metadata.

    ``url`` is the image by digest (``docker://host/repo@sha256:...``),
    which is what it names wherever its tags move later. The scheme (the
    transport skopeo reads) matters: Zuul joins a URL without one to the
    build's log URL. Each image is an artifact once, of the step that puts
    it in the registry: build for python-base and venv-builder, publish for
    the service images.
    """
    return [{"name": image["name"], "url": artifact_url(image["ref"]),
             "metadata": {"type": "container_image", "digest": image["digest"],
                          "ref": image["ref"]}}
            for image in images]


def artifact_url(ref: str) -> str:
    """An image reference as a Zuul artifact URL (absolute: never joined to the log URL)."""
    return f"docker://{ref}"
