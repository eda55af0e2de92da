"""The one home of the OCI annotations airlock writes, and of the values they take.

Two kinds, kept apart because the image digest depends on both:

- **Deterministic** (:func:`service`, :func:`base`): functions of the build's
  inputs only (the lock's commits and repositories, the release, the
  version, ``SOURCE_DATE_EPOCH``), never of the wall clock nor of the run.
  They enter the image's input digest (:attr:`airlock.image.plan.ImageJob.annotations`):
  the same inputs keep making the same image, to the digest, and other
  values make another immutable tag instead of moving one.
- **Of the run** (:func:`run`): the bundle the inputs came from and the
  Zuul build that ran airlock. Written on the image *index* only, never on
  a platform's manifest, and never part of the input digest: a second
  build of the same inputs, in another buildset or from a later bundle,
  finds its immutable tag and skips it, so the index keeps naming the run
  that made it.

The build record that goes beside the image in the registry
(:mod:`airlock.image.audit`) is found by :func:`record_tag`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from datetime import UTC, datetime
from pathlib import Path

from airlock import files
from airlock.errors import AirlockError
from airlock.urls import strip_userinfo

# The OCI pre-defined keys (image-spec annotations.md).
VERSION = "org.opencontainers.image.version"
SOURCE = "org.opencontainers.image.source"
REVISION = "org.opencontainers.image.revision"
CREATED = "org.opencontainers.image.created"
# airlock's own.
INPUT_DIGEST = "io.airlock.input-digest"
RELEASE = "io.airlock.release"
LOCK_SHA256 = "io.airlock.refs-lock.sha256"
BUNDLE = "io.airlock.bundle"
ZUUL_PREFIX = "io.airlock.zuul."

# The build record beside an image: an OCI artifact under a tag of the
# image's repository named after the image digest (cosign's convention; a
# registry without the referrers API still serves a tag).
RECORD_TYPE = "application/vnd.airlock.build-record.v1+json"
RECORD_SUFFIX = ".airlock-record"

# What a Zuul context may hold (zuul.* of the job, flattened by the role).
ZUUL_KEYS = ("tenant", "pipeline", "project", "buildset", "build", "job", "ref", "newrev",
             "oldrev", "change", "patchset")
ZUUL_REQUIRED = ("tenant", "pipeline", "project", "buildset", "build", "job", "ref")
ZUUL_VALUE_MAX = 256
ZUUL_FILE_LIMIT = 64 * 1024
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
BUNDLE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def created(epoch: int) -> str:
    """``SOURCE_DATE_EPOCH`` as RFC 3339 UTC: the image's creation time, never the clock's."""
    return datetime.fromtimestamp(int(epoch), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def lock_entries(lock: dict, components: list[str]) -> dict:
    """The part of a refs lock an image was built from: its components' sha, ref and repo.

    ``resolved-at`` is left out (it is the clock of the resolution, not an
    input), and so are the components of other services: building one
    service or all of them must give that service the same image.
    """
    entries = lock["components"]
    return {"release": lock["release"],
            "components": {name: {"sha": entries[name]["sha"], "ref": entries[name]["ref"],
                                  "repo": strip_userinfo(entries[name]["repo"])}
                           for name in sorted(components)}}


def lock_sha256(lock: dict, components: list[str]) -> str:
    """sha256 (hex) of :func:`lock_entries` as canonical JSON: ``io.airlock.refs-lock.sha256``.

    ``airlock audit`` computes it again from the lock in the build record.
    """
    return files.json_digest(lock_entries(lock, components)).split(":", 1)[1]


def service(release: str, lock: dict, components: list[str], version: str | None,
            epoch: int) -> dict[str, str]:
    """The deterministic annotations of a service image (``components``: service last)."""
    entry = lock["components"][components[-1]]
    return {VERSION: version or "", SOURCE: strip_userinfo(entry["repo"]),
            REVISION: entry["sha"], CREATED: created(epoch), RELEASE: release,
            LOCK_SHA256: lock_sha256(lock, components)}


def base(epoch: int) -> dict[str, str]:
    """python-base and venv-builder: what does not depend on the release, nor on a checkout.

    airlock's own repository URL and commit are not here: both depend on
    the checkout a build runs from (a site clones ``<git base>/airlock``),
    and every new commit would make new base images and so rebuild every
    service. The build record names airlock's version and commit.
    """
    return {CREATED: created(epoch)}


def run(bundle: str | None, zuul: dict[str, str] | None) -> dict[str, str]:
    """The index-only annotations of one run: the bundle, the Zuul build."""
    notes = {ZUUL_PREFIX + key: value for key, value in sorted((zuul or {}).items())}
    if bundle:
        notes[BUNDLE] = bundle
    return notes


def same_but_run(held: dict | None, ours: dict | None) -> bool:
    """Whether two image indexes hold the same platform images (they may differ by the run).

    The run's annotations are on the index only and are no input: a
    ``--no-cache`` build of published inputs in another buildset makes an
    index with the same manifests and other ``io.airlock.zuul.*``. That is
    the same image; the registry's, the first, stays.
    """
    def children(doc: dict) -> list[tuple[str, str]]:
        return sorted((str(m.get("digest")), json.dumps(m.get("platform"), sort_keys=True))
                      for m in doc.get("manifests") or [] if isinstance(m, dict))

    if not held or not ours or not held.get("manifests") or not ours.get("manifests"):
        return False
    return children(held) == children(ours)


def record_tag(digest: str) -> str:
    """``sha256-<hex>.airlock-record``: where the build record of image ``digest`` is."""
    algorithm, _, hexdigest = digest.partition(":")
    if algorithm != "sha256" or not re.fullmatch(r"[0-9a-f]{64}", hexdigest):
        raise AirlockError(digest, "is not an image digest", "pass sha256:<64 hex digits>")
    return f"sha256-{hexdigest}{RECORD_SUFFIX}"


def check_bundle_id(value: str, where: str) -> str:
    """A bundle id as ``bundle create`` makes them (``airlock-<hex>``): a safe path part."""
    if not BUNDLE_ID.fullmatch(value):
        raise AirlockError(where, f"{value[:80]!r} is not a bundle id",
                           "pass the id bundle import printed (airlock-<20 hex digits>)")
    return value


def load_zuul_context(path: Path) -> dict[str, str]:
    """Read ``--zuul-context FILE``: a JSON object of the Zuul build, checked.

    Known keys only (:data:`ZUUL_KEYS`; others are ignored), each a string
    of at most 256 characters with no control character;
    :data:`ZUUL_REQUIRED` must be there. The file must be a regular file
    (not a link) of at most 64 KiB. Anything else is one line, exit 1:
    these values end up in image annotations and must be what Zuul said.
    """
    where = str(path)
    fix = "pass the JSON file the airlock-build role writes from zuul.*"
    try:
        if stat.S_ISLNK(os.lstat(path).st_mode):
            raise AirlockError(where, "is a symbolic link", "pass the file itself")
    except FileNotFoundError:
        raise AirlockError(where, "no such file", fix) from None
    data = files.read_bytes(path, limit=ZUUL_FILE_LIMIT, fix=fix)
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise AirlockError(where, "is not a JSON document", fix) from None
    if not isinstance(doc, dict):
        raise AirlockError(where, "is not a JSON object", fix)
    context: dict[str, str] = {}
    for key in ZUUL_KEYS:
        if key not in doc or doc[key] is None:
            continue
        value = doc[key]
        if not isinstance(value, str):
            raise AirlockError(f"{where}:{key}", f"is a {type(value).__name__}, not a string",
                               fix)
        if len(value) > ZUUL_VALUE_MAX:
            raise AirlockError(f"{where}:{key}", f"is longer than {ZUUL_VALUE_MAX} characters",
                               fix)
        if _CONTROL.search(value):
            raise AirlockError(f"{where}:{key}", "holds a control character", fix)
        context[key] = value
    missing = [key for key in ZUUL_REQUIRED if not context.get(key)]
    if missing:
        raise AirlockError(where, f"lacks {', '.join(missing)}", fix)
    return context


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()
