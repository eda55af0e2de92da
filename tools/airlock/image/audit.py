"""The audit trail: each image's build record beside it in the registry, and ``airlock audit``.

At publish, every service image gets its build record (:func:`image_record`:
its row of the build record, plus what the whole build shares: the lock,
the patch series with their sha256s, the input digests below it, the
tools and the engine, the bundle and the Zuul build) as an OCI artifact
(:func:`record_manifest`: artifactType ``application/vnd.airlock.build-record.v1+json``,
one blob, the empty config of OCI 1.1) under the tag
``sha256-<hex of the image digest>.airlock-record`` of the same repository
(:func:`airlock.image.annotations.record_tag`). A tag, because a registry
without the referrers API (Debian's docker-registry) still serves one.
The first record of an image digest stays: publishing the same image
again keeps it (``kept``), so the record names the build that made it.

``airlock audit IMAGE[@DIGEST|:TAG]`` (:func:`audit`, :func:`chain`)
reads the image's annotations and its record back and prints the chain
digest -> release, components, commits, patches, lock -> inputs ->
bundle -> Zuul buildset and build -> the ref and newrev that started it.
It checks the record against the image (same digest, same lock sha256,
same commit); an image without a record is *unaudited*.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from airlock import files
from airlock.errors import AirlockError, ToolError
from airlock.ext import registry
from airlock.image import annotations as notes_mod

Progress = Callable[[str], None]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
EMPTY_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY = b"{}"
EMPTY_DESCRIPTOR = {"mediaType": EMPTY_TYPE, "digest": notes_mod.digest_of(EMPTY),
                    "size": len(EMPTY), "data": "e30="}
TITLE = "org.opencontainers.image.title"
RECORD_NAME = "build-record.json"
# What ``airlock audit`` shows of the Zuul context, in the chain's order.
ZUUL_SHOWN = ("tenant", "pipeline", "project", "buildset", "build", "job")
TRIGGER_SHOWN = ("ref", "newrev", "oldrev", "change", "patchset")
BASE_IMAGES = ("python-base", "venv-builder")
# The fields of a build record row that say what the image is (not where
# its files were on the build host).
_ROW_FIELDS = ("image", "service", "version", "platforms", "digest", "input_digest",
               "inputs", "tag", "moving_tags", "status", "components", "annotations",
               "index_annotations")


def _noop(_: str) -> None:
    pass


# --- the record ----------------------------------------------------------------

def _zuul_of(row: dict) -> dict[str, str]:
    """The Zuul context the image's index carries (the run that built it)."""
    index = row.get("index_annotations") or {}
    return {key[len(notes_mod.ZUUL_PREFIX):]: value for key, value in sorted(index.items())
            if key.startswith(notes_mod.ZUUL_PREFIX)}


def image_record(record: dict, row: dict) -> dict:
    """The record of one image: its row, and what of the whole build concerns it.

    Plain data from the build record; no local path of the build host and no
    credential (the lock's repositories are stripped of any when the lock is
    read, the registry prefix cannot hold one).
    """
    components = list(row.get("components") or [])
    sources = record.get("sources") or {}
    below = {image["image"]: {"input_digest": image.get("input_digest"),
                              "digest": image.get("digest"), "ref": image.get("ref")}
             for image in record.get("images", []) if image.get("image") in BASE_IMAGES}
    index = row.get("index_annotations") or {}
    return {
        "kind": "airlock-build-record", "schema": 1,
        "release": record.get("release"),
        "registry": record.get("registry"),
        "image": {key: row[key] for key in _ROW_FIELDS if key in row},
        "lock": record.get("lock"),
        "sources": {name: sources[name] for name in components if name in sources},
        "base_image": record.get("base_image"),
        "depends": below,
        "tools": record.get("tools") or {},
        "bundle": index.get(notes_mod.BUNDLE),
        "zuul": _zuul_of(row),
    }


def record_bytes(doc: dict) -> bytes:
    """The record as stored: canonical JSON (sorted keys, no spaces), so deterministic."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode() + b"\n"


def record_manifest(blob: bytes, subject: dict | None = None) -> bytes:
    """The OCI 1.1 artifact manifest of a record ``blob`` (canonical JSON).

    ``subject``: the image's descriptor (mediaType, digest, size), for
    registries that index referrers; the tag finds it everywhere else.
    """
    doc: dict = {
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": notes_mod.RECORD_TYPE,
        "config": dict(EMPTY_DESCRIPTOR),
        "layers": [{"mediaType": notes_mod.RECORD_TYPE, "digest": notes_mod.digest_of(blob),
                    "size": len(blob), "annotations": {TITLE: RECORD_NAME}}],
    }
    if subject is not None:
        doc["subject"] = subject
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def push_record(repo: str, digest: str, doc: dict) -> str:
    """Put ``doc`` beside image ``repo@digest``: ``pushed``, or ``kept`` when one is there.

    Never overwritten: the first record of a digest is the build that made it.
    """
    tag_ref = f"{repo}:{notes_mod.record_tag(digest)}"
    if registry.manifest_raw(tag_ref) is not None:
        return "kept"
    image = registry.manifest_raw(f"{repo}@{digest}")
    if image is None:
        raise ToolError(f"{repo}@{digest}", "is not in the registry; its record has no image",
                        "publish again")
    media_type = json.loads(image).get("mediaType") or OCI_MANIFEST
    blob = record_bytes(doc)
    registry.put_blob(repo, EMPTY)
    registry.put_blob(repo, blob)
    registry.put_manifest(tag_ref, record_manifest(
        blob, {"mediaType": media_type, "digest": digest, "size": len(image)}),
        OCI_MANIFEST)
    return "pushed"


def publish_records(record: dict, rows: list[dict], progress: Progress = _noop) -> None:
    """Push the record of every service image of ``rows`` this build made (built or kept).

    A skipped image was in the registry before this build, and so was one
    whose immutable tag publish found holding an earlier run's index of the
    same platform images: the record, if any, is the one of the build that
    made it. Sets ``row["record"]``.
    """
    by_name = {image["image"]: image for image in record.get("images", [])}
    for row in rows:
        image = by_name[row["name"]]
        if image.get("status") == "skipped" or image.get("digest") != row["digest"]:
            # In the registry before this build (or its first run's index of
            # the same platform images): its record is that first build's.
            row["record"] = "skipped"
            continue
        repo = row["ref"].split("@", 1)[0]
        row["record"] = push_record(repo, row["digest"], image_record(record, image))
        if row["record"] == "pushed":
            row["status"] = "published"
        progress(f"{row['name']}: build record {row['record']} "
                 f"({repo}:{notes_mod.record_tag(row['digest'])})")


def read_record(repo: str, digest: str) -> dict | None:
    """The record beside ``repo@digest``; None when there is none."""
    tag_ref = f"{repo}:{notes_mod.record_tag(digest)}"
    doc = registry.manifest(tag_ref)
    if doc is None:
        return None
    layers = doc.get("layers") or []
    if doc.get("artifactType") != notes_mod.RECORD_TYPE or len(layers) != 1 \
            or not isinstance(layers[0], dict) or not isinstance(layers[0].get("digest"), str):
        raise ToolError(tag_ref, "is not an airlock build record",
                        "the tag is airlock's: remove what was pushed there")
    data = registry.blob(tag_ref, layers[0]["digest"], limit=files.RECORD_LIMIT)
    try:
        found = json.loads(data)
    except (ValueError, RecursionError):
        found = None
    if not isinstance(found, dict):
        raise ToolError(tag_ref, "holds a build record that is not a JSON object",
                        "the tag is airlock's: remove what was pushed there")
    return found


# --- audit -----------------------------------------------------------------------

def _image_annotations(repo: str, digest: str) -> dict[str, str]:
    """The index's annotations, over those of its (first) manifest.

    A multi-platform image has them on the index; a single-platform one
    on its manifest, with an index of one (and the run's) when it has one.
    """
    doc = registry.manifest(f"{repo}@{digest}") or {}
    found = dict(doc.get("annotations") or {})
    children = doc.get("manifests") or []
    if children and notes_mod.INPUT_DIGEST not in found and isinstance(children[0], dict):
        child = registry.manifest(f"{repo}@{children[0].get('digest')}") or {}
        found = {**dict(child.get("annotations") or {}), **found}
    return found


def audit(ref: str) -> dict:
    """The audit document of ``ref`` (a tag or a digest reference).

    ``audited`` is False when the image has no record; ``problems`` lists
    where the record and the image disagree. An image not in the registry
    is an AirlockError (exit 1), an unreachable registry a ToolError (2).
    """
    host, repo_name, pointer = registry.split_ref(ref)
    repo = f"{host}/{repo_name}"
    if "@" in ref:
        registry.pinned(ref)  # a malformed digest is one line, before any question
    digest = pointer if "@" in ref else registry.digest(ref)
    if digest is None or ("@" in ref and not registry.exists(ref)):
        raise AirlockError(ref, "no such image in the registry",
                           "check the name, the tag or the digest")
    found = _image_annotations(repo, digest)
    doc: dict = {"ref": f"{repo}@{digest}", "digest": digest, "annotations": found,
                 "audited": False, "problems": []}
    record = read_record(repo, digest)
    if record is None:
        return doc
    doc["audited"] = True
    doc["record"] = record
    doc["problems"] = _problems(digest, found, record)
    return doc


def _problems(digest: str, found: dict[str, str], record: dict) -> list[str]:
    """Where the record and the image's own annotations disagree (none: consistent)."""
    problems = []
    image = record.get("image") or {}
    if image.get("digest") != digest:
        problems.append(f"the record is of {image.get('digest')}, not of this image")
    for key, want in ((notes_mod.INPUT_DIGEST, image.get("input_digest")),
                      (notes_mod.RELEASE, record.get("release"))):
        if key in found and found[key] != want:
            problems.append(f"{key} is {found[key]}, the record says {want}")
    lock, components = record.get("lock"), image.get("components") or []
    if notes_mod.LOCK_SHA256 in found:
        try:
            computed = notes_mod.lock_sha256(lock or {}, components)
        except (KeyError, TypeError, AttributeError):
            computed = None
        if computed != found[notes_mod.LOCK_SHA256]:
            problems.append(f"{notes_mod.LOCK_SHA256} is {found[notes_mod.LOCK_SHA256]}, the "
                            f"record's lock gives {computed}")
    if notes_mod.REVISION in found and components:
        sha = ((lock or {}).get("components") or {}).get(components[-1], {}).get("sha")
        if sha != found[notes_mod.REVISION]:
            problems.append(f"{notes_mod.REVISION} is {found[notes_mod.REVISION]}, the "
                            f"record's lock says {sha}")
    return problems


def _short(digest: str | None) -> str:
    return str(digest or "-")


def chain(doc: dict) -> str:
    """The audit document as text: the chain from the digest to the trigger."""
    found = doc.get("annotations") or {}
    if not doc.get("audited"):
        return f"unaudited: {doc['ref']} has no build record\n"
    record = doc["record"]
    image = record.get("image") or {}
    lines = [doc["ref"],
             f"  release     {record.get('release')}",
             f"  image       {image.get('image')} {image.get('version') or ''} "
             f"({', '.join(image.get('platforms') or [])})".replace("  (", " ("),
             f"  created     {found.get(notes_mod.CREATED, '-')}",
             f"  source      {found.get(notes_mod.SOURCE, '-')}",
             f"  revision    {found.get(notes_mod.REVISION, '-')}"]
    lock = (record.get("lock") or {}).get("components") or {}
    sources = record.get("sources") or {}
    for name in image.get("components") or []:
        entry = lock.get(name) or {}
        lines.append(f"  component   {name} {entry.get('ref', '')} at {entry.get('sha', '-')} "
                     f"from {entry.get('repo', '-')}")
        for patch in (sources.get(name) or {}).get("patches") or []:
            lines.append(f"    patch     {patch.get('name')} sha256:{patch.get('sha256')}")
    lines.append(f"  lock        sha256:{found.get(notes_mod.LOCK_SHA256, '-')}")
    lines.append(f"  inputs      {_short(image.get('input_digest'))}")
    lines.append(f"    base      {record.get('base_image') or '-'}")
    for name, below in sorted((record.get("depends") or {}).items()):
        lines.append(f"    {name:<9} {_short(below.get('digest'))} "
                     f"(inputs {_short(below.get('input_digest'))})")
    tools = record.get("tools") or {}
    own = tools.get("airlock") or {}
    engine = tools.get("engine") or {}
    lines.append(f"  tools       airlock {own.get('version') or '?'} at "
                 f"{own.get('commit') or 'an unknown commit'}; "
                 + ", ".join(f"{k} {v}" for k, v in sorted(engine.items())))
    lines.append(f"  bundle      {record.get('bundle') or '-'}")
    zuul = record.get("zuul") or {}
    if zuul:
        lines.append("  zuul        " + ", ".join(f"{key} {zuul[key]}" for key in ZUUL_SHOWN
                                                  if key in zuul))
        lines.append("  trigger     " + ", ".join(f"{key} {zuul[key]}"
                                                  for key in TRIGGER_SHOWN if key in zuul))
    else:
        lines.append("  zuul        - (built outside Zuul)")
    lines += [f"  PROBLEM     {problem}" for problem in doc.get("problems") or []]
    return "\n".join(lines) + "\n"
