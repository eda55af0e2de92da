"""The build plan: which images, in which order, from which inputs.

Plain data in, plain data out, no effect: the DAG (python-base and
venv-builder before every service), the service x platform matrix, and an
**input digest** per image. The input digest is a sha256 over everything
that decides the image's bytes (its image folder, every named build
context, the build arguments, the platforms, the input digests of the
images it is built on, the base image digest). Builds are reproducible, so
the same input digest means the same image: an image whose input digest is
already in the registry need not be built again (exact skip-existing).
"""

from __future__ import annotations

import hashlib
import os
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path

from airlock import files, memo
from airlock.errors import AirlockError
from airlock.files import sha256_file

DIGEST_LEN = 12  # hex characters of the input digest in tags


@dataclass(frozen=True)
class ImageJob:
    """One image to build: its folder, contexts, arguments and dependencies.

    ``contexts`` maps named build contexts to local folders. ``depends``
    names jobs whose image references are passed as build arguments
    (``arg_for_dep``): the reference is only known once that job has run,
    but its input digest is known now, so this job's input digest is too.
    """

    name: str
    image_dir: Path
    platforms: tuple[str, ...]
    contexts: dict[str, Path] = field(default_factory=dict)
    build_args: dict[str, str] = field(default_factory=dict)
    depends: dict[str, str] = field(default_factory=dict)  # job name -> build arg
    version: str | None = None  # services: the component version (tags)
    source_date_epoch: int = 0
    service: bool = False
    # The deterministic annotations (airlock.image.annotations): they are
    # bytes of the image, so they are inputs too.
    annotations: dict[str, str] = field(default_factory=dict)


# The version of the tree digest's walk and of what a remembered tree
# digest is checked against (airlock.memo "tree"): bump on any change.
TREE_VERSION = 1


def tree_digest(path: Path) -> str:
    """sha256 over a folder: relative paths, entry type, exec bit, content, link targets.

    Times and owners are left out (the build rewrites them), and so are the
    other permission bits (a checkout's umask must not change the digest;
    the images set modes themselves); the exec bit is kept because it ends
    up in the image. Folders count, empty ones too (a build context copies
    them); a symbolic link counts by its target, never followed. Anything
    else (a FIFO, a socket, a device) has no place in a build context and is
    refused: hashing it would hang or read a device.

    Remembered (:mod:`airlock.memo`, kind ``tree``) per folder with the
    *signature* of what the walk saw: every entry's path, type, mode,
    device, inode, size, mtime and ctime, and each link's target. The walk
    and its ``lstat`` of every entry always run; only when the signature is
    the one remembered is the content not read. A write moves the file's
    ctime (which nothing can set back), a new file is a new entry, so a
    changed tree never matches; a tree with an entry changed in the last
    two seconds (:data:`airlock.files.RACY_NS`) is not remembered, as a
    second write in the same clock tick could keep every time.
    """
    if path.is_file():
        digest = hashlib.sha256()
        digest.update(b"F" + sha256_file(path).encode())
        return digest.hexdigest()
    started = time.time_ns()
    entries = _walk(str(path))
    signature = hashlib.sha256()
    racy = False
    for rel, st, target in entries:
        signature.update(f"{rel}\0{st.st_mode:o} {st.st_dev} {st.st_ino} {st.st_size} "
                         f"{st.st_mtime_ns} {st.st_ctime_ns}\0{target}\0".encode())
        racy = racy or max(st.st_mtime_ns, st.st_ctime_ns) >= started - files.RACY_NS
    key = {"version": TREE_VERSION, "path": str(path.absolute())}
    known = memo.recall("tree", key)
    if isinstance(known, dict) and known.get("signature") == signature.hexdigest() \
            and isinstance(known.get("digest"), str):
        return known["digest"]
    digest = hashlib.sha256()
    for rel, st, target in entries:
        name = rel.encode()
        if stat.S_ISLNK(st.st_mode):
            digest.update(b"L" + name + b"\0" + target.encode() + b"\0")
        elif stat.S_ISDIR(st.st_mode):
            digest.update(b"D" + name + b"\0")
        else:
            mode = b"x" if st.st_mode & 0o111 else b"-"
            content = sha256_file(path / rel).encode()
            digest.update(b"F" + name + b"\0" + mode + content + b"\0")
    if not racy:
        memo.remember("tree", key, {"signature": signature.hexdigest(),
                                    "digest": digest.hexdigest()})
    return digest.hexdigest()


def _walk(top: str) -> list[tuple[str, os.stat_result, str]]:
    """Every entry under ``top`` as (relative path, lstat, link target or ""), in digest order.

    The order of ``os.walk`` (top-down, each folder's entries sorted by
    name, then its sub-folders in that order), which the digest has always
    used; links are never followed, and a folder that cannot be listed is
    passed over as ``os.walk`` does. A FIFO, socket or device is refused.
    """
    found: list[tuple[str, os.stat_result, str]] = []
    pending = [("", top)]
    while pending:
        prefix, folder = pending.pop()
        try:
            with os.scandir(folder) as scan:
                listed = sorted(scan, key=lambda entry: entry.name)
        except OSError:
            continue
        subfolders = []
        for entry in listed:
            st = entry.stat(follow_symlinks=False)
            rel = prefix + entry.name
            target = ""
            if stat.S_ISLNK(st.st_mode):
                target = os.readlink(entry.path)
            elif stat.S_ISDIR(st.st_mode):
                subfolders.append((rel + "/", entry.path))
            elif not stat.S_ISREG(st.st_mode):
                raise AirlockError(entry.path, "is not a file, folder or symbolic link",
                                   "remove it: a build context holds only those")
            found.append((rel, st, target))
        pending.extend(reversed(subfolders))
    return found


def job_inputs(job: ImageJob, dep_digests: dict[str, str], base_digest: str,
               engine: dict[str, str] | None = None) -> dict:
    """Everything that decides the job's image, as canonical plain data.

    ``engine`` names the builder (buildx and BuildKit versions,
    :func:`airlock.ext.buildx.engine_identity`): the same inputs built by
    another BuildKit may give other bytes, so an engine upgrade makes a new
    immutable tag instead of silently moving an old one.
    """
    return {
        "engine": dict(sorted((engine or {}).items())),
        "image": job.name,
        "image_dir": tree_digest(job.image_dir),
        "contexts": {name: tree_digest(path) for name, path in sorted(job.contexts.items())},
        "build_args": dict(sorted(job.build_args.items())),
        "platforms": sorted(job.platforms),
        "depends": {dep: dep_digests[dep] for dep in sorted(job.depends)},
        "base_image": base_digest,
        "source_date_epoch": job.source_date_epoch,
        "annotations": dict(sorted(job.annotations.items())),
    }


def short(digest: str) -> str:
    """The tag-sized prefix of an input digest."""
    return digest.split(":", 1)[-1][:DIGEST_LEN]


def immutable_tag(job: ImageJob, release: str, digest: str) -> str:
    """``<version>-<release>-<digest prefix>`` (services) or ``<digest prefix>`` (the rest).

    The one place an image's immutable tag is formed. Never moves: the same
    tag always names the same inputs, so the same bytes.

    A service image's inputs name its release (its annotations, its lock),
    so its tag may too, for people to read. python-base and venv-builder
    do not depend on the release: two releases on the same Debian base
    compute the same input digest, and a tag naming the release would make
    the second build the same image again under its own name. Their tag is
    the input digest alone, so the second release finds the first's image
    and skips it; a release whose base really differs (another Debian
    suite, another platform set) has another digest, so its own image.
    """
    if not job.service:
        return short(digest)
    prefix = f"{job.version}-{release}" if job.version else release
    return f"{prefix}-{short(digest)}"


def moving_tags(job: ImageJob, release: str) -> list[str]:
    """Tags that follow the newest build: ``<release>`` and ``<version>``."""
    tags = [release]
    if job.version:
        tags.append(job.version)
    return tags
