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
from dataclasses import dataclass, field
from pathlib import Path

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


def tree_digest(path: Path) -> str:
    """sha256 over a folder: relative paths, entry type, exec bit, content, link targets.

    Times and owners are left out (the build rewrites them), and so are the
    other permission bits (a checkout's umask must not change the digest;
    the images set modes themselves); the exec bit is kept because it ends
    up in the image. Folders count, empty ones too (a build context copies
    them); a symbolic link counts by its target, never followed. Anything
    else (a FIFO, a socket, a device) has no place in a build context and is
    refused: hashing it would hang or read a device.
    """
    digest = hashlib.sha256()
    if path.is_file():
        digest.update(b"F" + sha256_file(path).encode())
        return digest.hexdigest()
    for top, dirs, files in os.walk(path):
        dirs.sort()
        rel_top = Path(top).relative_to(path)
        for name in sorted(files + dirs):
            full = Path(top, name)
            rel = str(rel_top / name).encode()
            st = full.lstat()
            if stat.S_ISLNK(st.st_mode):
                digest.update(b"L" + rel + b"\0" + os.readlink(full).encode() + b"\0")
            elif stat.S_ISDIR(st.st_mode):
                digest.update(b"D" + rel + b"\0")
            elif stat.S_ISREG(st.st_mode):
                mode = b"x" if st.st_mode & 0o111 else b"-"
                digest.update(b"F" + rel + b"\0" + mode + sha256_file(full).encode() + b"\0")
            else:
                raise AirlockError(str(full), "is not a file, folder or symbolic link",
                                   "remove it: a build context holds only those")
    return digest.hexdigest()


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
