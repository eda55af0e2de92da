"""Publish the service images of a build record to the registry.

Order matters, so that nobody ever pulls a partial image by a tag, nor a
release whose images do not all exist:

1. for EVERY service image of the record: push its OCI archive whole
   (every platform, digests kept) under its immutable tag
   ``<version>-<release>-<input digest prefix>``, then check that the
   registry serves exactly that index digest with every platform the
   record asks for. An immutable tag that already holds another image is
   never overwritten: publishing stops there.
2. push each image's build record beside it (:mod:`airlock.image.audit`;
   the first record of a digest is kept, never replaced);
3. only when every image passed 1 and 2: point the moving tags (``<release>``,
   ``<version>``) of every image at its digest. A failure anywhere in 1
   leaves every moving tag where it was; publishing again completes the
   work (what is already pushed is not pushed again).

Images the build skipped are already in the registry: they are verified
and their moving tags (re)written. A tag that already points at the right
digest is not written again, so publishing twice changes nothing the
second time (the result says ``unchanged``). Registry errors are retried
by :mod:`airlock.ext.registry`; credentials come from its auth file
variable, never from the command line.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

from airlock import files
from airlock.errors import AirlockError, ToolError
from airlock.ext import buildx, registry
from airlock.image import annotations, audit, build

Progress = Callable[[str], None]

RECORD = "build-record.json"
STATUSES = ("built", "kept", "skipped")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
# What a release folder name may be here: one path component.
_RELEASE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")


def _noop(_: str) -> None:
    pass


def run(work_dir: Path, release: str, progress: Progress = _noop,
        move_tags: bool = True) -> list[dict]:
    """Publish the last build of ``release`` in ``work_dir``: see the module docstring.

    Holds the release's work folder (:func:`airlock.image.build.locked_release`)
    so that a build of the same release cannot replace the record or the
    archives while they are pushed.
    """
    if not _RELEASE.fullmatch(release) or release.strip(".") == "":
        raise AirlockError(f"--release {release}", "is not a release name",
                           "name a folder of releases/, e.g. 2025.2")
    folder = work_dir / release
    if not folder.is_dir():
        raise AirlockError(str(folder / RECORD), "no build record (no such folder)",
                           f"run airlock build --release {release} first")
    with build.locked_release(folder, progress):
        return publish(load_record(folder / RECORD, release), progress, move_tags)


def load_record(path: Path, release: str | None = None) -> dict:
    """Read and check a build record written by ``airlock build``.

    The record is airlock's own output, but a file anyone can edit or break:
    anything that is not a record with at least one service image, each
    with the fields publishing needs, is one line naming the field.
    """
    fix = "run airlock build again (the build record is its output)"
    data = files.read_bytes(path, limit=files.RECORD_LIMIT,
                            fix=f"run airlock build --release {release or 'REL'} first")
    try:
        record = json.loads(data)
    except RecursionError:
        raise AirlockError(str(path), "not a build record: nested too deeply", fix) from None
    except ValueError as error:
        raise AirlockError(str(path), f"not a build record: not JSON ({error})", fix) from None
    if not isinstance(record, dict):
        raise AirlockError(str(path), f"not a build record: a JSON {_kind(record)}, "
                           "not an object", fix)
    if release is not None and record.get("release") != release:
        got = repr(record["release"]) if "release" in record else "missing"
        raise AirlockError(f"{path}:release", f"is {got}, not {release!r}", fix)
    images = record.get("images")
    if not isinstance(images, list):
        raise AirlockError(f"{path}:images", "missing or not a list", fix)
    for number, image in enumerate(images):
        _check_image(f"{path}:images[{number}]", image, fix)
    if not any(image["service"] for image in images):
        raise AirlockError(f"{path}:images", "no service image to publish",
                           f"run airlock build --release {release or 'REL'} first")
    return record


def _kind(value: object) -> str:
    return {list: "list", str: "string", bool: "boolean", int: "number", float: "number",
            type(None): "null", dict: "object"}.get(type(value), type(value).__name__)


def _check_image(where: str, image: object, fix: str) -> None:
    """One row of the record: the fields :func:`publish` reads, with their types."""
    if not isinstance(image, dict):
        raise AirlockError(where, f"a JSON {_kind(image)}, not an object", fix)

    def field(key: str, kind: type, what: str) -> object:
        value = image.get(key)
        if not isinstance(value, kind) or (kind is str and not value):
            got = "missing" if key not in image else f"a {_kind(value)}"
            raise AirlockError(f"{where}.{key}", f"is {got}, not {what}", fix)
        return value

    field("image", str, "an image name")
    if not field("service", bool, "true or false"):
        return
    if field("status", str, "a status") not in STATUSES:
        raise AirlockError(f"{where}.status", f"is {image['status']!r}, not one of "
                           f"{', '.join(STATUSES)}", fix)
    tags = [("tag", image.get("tag"))]
    moving = field("moving_tags", list, "a list of tags")
    tags += [(f"moving_tags[{number}]", tag) for number, tag in enumerate(moving)]
    for key, tag in tags:
        if not isinstance(tag, str) or not _TAG.fullmatch(tag):
            what = "is missing" if key == "tag" and tag is None else f"{tag!r} is not a tag"
            raise AirlockError(f"{where}.{key}", what, fix)
    if not _DIGEST.fullmatch(str(field("digest", str, "an image digest"))):
        raise AirlockError(f"{where}.digest", f"{image['digest']!r} is not sha256:<64 hex>",
                           fix)
    ref = str(field("ref", str, "an image reference"))
    try:
        registry.split_ref(ref)
    except AirlockError as error:
        raise AirlockError(f"{where}.ref", error.what, fix) from None
    platforms = field("platforms", list, "a list of platforms")
    if not platforms or not all(isinstance(p, str) and p for p in platforms):
        raise AirlockError(f"{where}.platforms", "is not a list of platforms", fix)
    if image["status"] != "skipped":
        field("archive", str, "the path of the OCI archive")


def publish(record: dict, progress: Progress = _noop, move_tags: bool = True) -> list[dict]:
    """Push and verify every service image, then move every moving tag.

    Returns one row per service image: name (and image), ref, platforms,
    digest, tags, record (``pushed``, ``kept``: one was there, ``skipped``:
    the build did not make the image) and status ``published`` (something
    was pushed or a tag moved) or ``unchanged`` (the registry already held
    all of it). Without ``move_tags`` step 2 is left out (the rows' ``tags``
    are then only the immutable one): a Zuul service job pushes side by
    side with the others and moves the release's tags later, under the
    release's semaphore.
    """
    images = [image for image in record.get("images", []) if image.get("service")]
    if not images:
        raise AirlockError("build record", "no service image to publish",
                           "run airlock build first")
    verified = [_push_and_verify(image, progress) for image in images]
    # Each image's build record beside it, before any tag that moves points
    # at it: a moving tag never names an image without its record.
    audit.publish_records(record, verified, progress)
    if not move_tags:
        return [{**row, "tags": row["tags"][:1]} for row in verified]
    # Every image is whole in the registry: only now may a tag that moves
    # point at any of them.
    return [_move_tags(row, progress) for row in verified]


def _push_and_verify(image: dict, progress: Progress) -> dict:
    """Put the image under its immutable tag (unless there) and check what is served."""
    name, digest = image["image"], image["digest"]
    repo = image["ref"].split("@", 1)[0]
    immutable = f"{repo}:{image['tag']}"
    held = registry.digest(immutable)
    if held is not None and held != digest and image["status"] != "skipped" and \
            annotations.same_but_run(registry.manifest(immutable),
                                     buildx.archive_manifest(Path(image["archive"]))):
        # Rebuilt (--no-cache) by another run: the same platform images,
        # another run's index. The registry's, the first, stays.
        progress(f"{name}: {immutable} holds these platform images from an earlier run, kept")
        digest = held
    if held is not None and held != digest:
        raise AirlockError(immutable, f"this immutable tag holds {held}, the build record "
                           f"says {digest}", "an immutable tag never moves: find out why "
                           "the same inputs gave another image (engine version? a build "
                           "that is not reproducible?); no moving tag was written")
    pushed = False
    if held is None:
        if image["status"] == "skipped":
            raise ToolError(immutable, "is no longer in the registry (the build found it "
                            "there and skipped it)", "run airlock build again; no moving "
                            "tag was written")
        archive = Path(image["archive"])
        found = buildx.archive_digest(archive)
        if found != digest:
            raise AirlockError(str(archive), f"holds {found}, the build record says {digest}",
                               "run airlock build again; no moving tag was written")
        progress(f"{name}: pushing {immutable}")
        stored = registry.push_archive(archive, immutable)
        if stored != digest:
            raise ToolError(immutable, f"the registry stored {stored}, the build made "
                            f"{digest}", "use a registry that keeps OCI indexes as pushed; "
                            "no moving tag was written")
        pushed = True
        progress(f"{name}: pushed {immutable}")
    served = registry.digest(immutable)
    if served != digest:
        raise ToolError(immutable, f"the registry serves {served}, expected {digest}",
                        "no moving tag was written; publish again")
    present = set(registry.platforms(f"{repo}@{digest}"))
    missing = [p for p in image["platforms"] if p not in present]
    if missing:
        raise ToolError(immutable, f"platform(s) {', '.join(missing)} missing from the index",
                        "no moving tag was written; rebuild and publish again")
    progress(f"{name}: {digest} verified ({', '.join(image['platforms'])})")
    return {"name": name, "image": name, "ref": f"{repo}@{digest}",
            "platforms": list(image["platforms"]),
            "digest": digest, "tags": [image["tag"], *image["moving_tags"]],
            "status": "published" if pushed else "unchanged"}


def _move_tags(row: dict, progress: Progress) -> dict:
    """Point every moving tag of a verified image at it (those already there stay)."""
    repo = row["ref"].split("@", 1)[0]
    moved = []
    for tag in row["tags"][1:]:
        if registry.digest(f"{repo}:{tag}") != row["digest"]:
            registry.tag(row["ref"], tag)
            moved.append(tag)
    if moved:
        row["status"] = "published"
    progress(f"{row['name']}: {row['digest']} tagged {', '.join(row['tags'])}"
             f"{'' if row['status'] == 'published' else ' (unchanged)'}")
    return row
