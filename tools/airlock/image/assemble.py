"""Join per-platform OCI archives into the multi-platform archive one build would make.

A site with native arm64 nodes builds each platform of an image on its
own node (``airlock build --per-platform``): each part is a one-platform
image index whose manifest is, byte for byte, the manifest the
all-platforms build makes for that platform (the build is reproducible,
and a part's annotations go on its index, never on its manifest). This
module writes the index that build would have written around them, in
buildx's own bytes (Go's ``json.MarshalIndent``: its key order, two-space
indent, ``<``, ``>`` and ``&`` escaped, no final newline), so its digest is
the single-node build's, and an OCI archive holding it and every blob of
the parts, which ``airlock publish`` pushes like any build's archive.

Archives are read as hostile input: a link, anything but a regular file,
a layout index listing other than one image index of one platform, an
``index.json`` or image index over its size limit, a member that is not a
blob of the layout, a blob whose bytes do not have its digest, a manifest
naming a blob the archive lacks (or of another size), or parts
that are not of the same image (another annotation, a platform twice, a
platform missing or not asked for) are one line each, and nothing is
written.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import stat
import tarfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from airlock import files
from airlock.errors import AirlockError

INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CREATED = "org.opencontainers.image.created"
# index.json of a layout names one image (a few hundred bytes); an image
# index of a part names one manifest (under a kilobyte, annotations included).
LAYOUT_INDEX_LIMIT = 64 * 1024
IMAGE_INDEX_LIMIT = 1024 * 1024
# The annotations that name the run, not the image's inputs
# (airlock.image.annotations.run): parts built by different jobs differ there.
RUN_PREFIXES = ("io.airlock.zuul.", "io.airlock.bundle")

_BLOB = re.compile(r"blobs/sha256/([0-9a-f]{64})")
_LAYOUT_MEMBERS = {"blobs": tarfile.DIRTYPE, "blobs/sha256": tarfile.DIRTYPE,
                   "index.json": tarfile.REGTYPE, "oci-layout": tarfile.REGTYPE}
# Go struct field order of the OCI types buildx marshals (image-spec v1.1).
_INDEX_KEYS = ("schemaVersion", "mediaType", "artifactType", "manifests", "subject",
               "annotations")
_DESCRIPTOR_KEYS = ("mediaType", "digest", "size", "urls", "annotations", "data", "platform",
                    "artifactType")
_PLATFORM_KEYS = ("architecture", "os", "os.version", "os.features", "variant")
FIX = "pass the archive of one platform that airlock build --per-platform wrote"


@dataclass(frozen=True)
class Part:
    """One platform's archive: its one-platform image index and that platform's manifest."""

    archive: Path
    platform: str  # os/arch[/variant]
    digest: str  # of its image index
    index: dict  # the image index, parsed
    manifest: dict  # the descriptor of its one manifest
    created: str | None  # index.json's creation annotation (from SOURCE_DATE_EPOCH)
    blobs: tuple[str, ...]  # member names of every blob in the archive


def go_json(doc: object, indent: bool = True) -> bytes:
    """``doc`` as Go's encoding/json writes it (``MarshalIndent(doc, "", "  ")`` or ``Marshal``).

    Keys in the order given (:func:`_ordered` puts them in Go's struct
    order), UTF-8 kept, and the HTML characters and line separators Go
    escapes escaped the same way; they can only occur inside strings.
    """
    text = json.dumps(doc, ensure_ascii=False, indent=2 if indent else None,
                      separators=(",", ": ") if indent else (",", ":"))
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                          ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(char, escaped)
    return text.encode("utf-8")


def _ordered(doc: Mapping, keys: Sequence[str], where: str) -> dict:
    """``doc`` with its keys in Go's struct order; a key Go would not write is refused."""
    unknown = [key for key in doc if key not in keys]
    if unknown:
        raise AirlockError(where, f"has the field {unknown[0]!r}, unknown to an OCI index", FIX)
    out = {key: doc[key] for key in keys if key in doc}
    if "annotations" in out:
        notes = out["annotations"]
        if not isinstance(notes, dict) or not all(isinstance(v, str) for v in notes.values()):
            raise AirlockError(where, "has annotations that are not strings", FIX)
        out["annotations"] = dict(sorted(notes.items())) if notes else None
        if not notes:
            del out["annotations"]  # omitempty
    return out


def _descriptor(entry: Mapping, where: str) -> dict:
    out = _ordered(entry, _DESCRIPTOR_KEYS, where)
    if isinstance(out.get("platform"), Mapping):
        out["platform"] = _ordered(out["platform"], _PLATFORM_KEYS, f"{where}.platform")
    return out


def index_bytes(manifests: Sequence[Mapping], annotations: Mapping[str, str]) -> bytes:
    """The image index buildx writes for these manifest descriptors and index annotations."""
    doc = {"schemaVersion": 2, "mediaType": INDEX,
           "manifests": [_descriptor(m, "manifest") for m in manifests],
           "annotations": dict(annotations)}
    return go_json(_ordered(doc, _INDEX_KEYS, "index"))


def platform_name(platform: object) -> str | None:
    """``os/arch[/variant]`` of a descriptor's platform, None if it has none."""
    if not isinstance(platform, Mapping):
        return None
    os_name, arch = platform.get("os"), platform.get("architecture")
    if not isinstance(os_name, str) or not isinstance(arch, str) or not os_name or not arch:
        return None
    variant = platform.get("variant")
    return f"{os_name}/{arch}" + (f"/{variant}" if isinstance(variant, str) and variant else "")


@contextlib.contextmanager
def _open_archive(path: Path) -> Iterator[tarfile.TarFile]:
    """The archive at ``path`` as an uncompressed tar: a regular file, never through a link."""
    where = str(path)
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        raise AirlockError(where, "no such file", FIX) from None
    if stat.S_ISLNK(mode):
        raise AirlockError(where, "is a symbolic link", "pass the archive itself")
    if not stat.S_ISREG(mode):
        raise AirlockError(where, f"is {files.kind_of(mode)}, not a regular file", FIX)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as error:
        raise AirlockError(where, f"cannot open: {error.strerror}", FIX) from None
    handle = os.fdopen(fd, "rb")
    with handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # replaced since the lstat
            raise AirlockError(where, "is not a regular file", FIX)
        try:
            with tarfile.open(fileobj=handle, mode="r:") as tar:
                yield tar
        except tarfile.TarError as error:
            raise AirlockError(where, f"not an OCI archive (tar: {error})", FIX) from None


def _read_member(tar: tarfile.TarFile, member: tarfile.TarInfo, limit: int,
                 where: str) -> bytes:
    if member.size > limit:
        raise AirlockError(where, f"{member.name} is {member.size} bytes, more than the "
                           f"{limit} an image index may have", FIX)
    handle = tar.extractfile(member)
    if handle is None:
        raise AirlockError(where, f"{member.name} is not a regular file", FIX)
    return handle.read(limit + 1)


def _json(data: bytes, what: str, where: str) -> dict:
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise AirlockError(where, f"{what} is not JSON", FIX) from None
    if not isinstance(doc, dict):
        raise AirlockError(where, f"{what} is not a JSON object", FIX)
    return doc


def _single(doc: Mapping, what: str, where: str) -> dict:
    entries = doc.get("manifests")
    if not isinstance(entries, list) or len(entries) != 1 or not isinstance(entries[0], dict):
        count = len(entries) if isinstance(entries, list) else 0
        raise AirlockError(where, f"{what} lists {count} images, not 1", FIX)
    return entries[0]


def read_part(path: Path) -> Part:
    """Read and check one platform's archive (see the module docstring)."""
    where = str(path)
    with _open_archive(path) as tar:
        members: dict[str, tarfile.TarInfo] = {}
        for member in tar:
            name = member.name.removeprefix("./").rstrip("/")
            expected = tarfile.REGTYPE if _BLOB.fullmatch(name) else _LAYOUT_MEMBERS.get(name)
            kind = tarfile.REGTYPE if member.type == tarfile.AREGTYPE else member.type
            if expected is None or kind != expected:
                raise AirlockError(where, f"holds {member.name[:120]!r}, which is no part of "
                                   "an OCI layout (or not of that type)", FIX)
            if name in members:
                raise AirlockError(where, f"holds {name} twice", FIX)
            members[name] = member
        if "index.json" not in members:
            raise AirlockError(where, "has no index.json: not an OCI archive", FIX)
        layout = _json(_read_member(tar, members["index.json"], LAYOUT_INDEX_LIMIT, where),
                       "index.json", where)
        entry = _single(layout, "index.json", where)
        if entry.get("mediaType") != INDEX:
            raise AirlockError(where, f"holds a {entry.get('mediaType')}, not an image index "
                               "(a one-platform build without --per-platform?)", FIX)
        digest = str(entry.get("digest"))
        blob = _BLOB.fullmatch("blobs/sha256/" + digest.removeprefix("sha256:"))
        if not digest.startswith("sha256:") or not blob or blob.group(0) not in members:
            raise AirlockError(where, f"index.json names {digest[:80]!r}, not a blob it holds",
                               FIX)
        raw = _read_member(tar, members[blob.group(0)], IMAGE_INDEX_LIMIT, where)
        if "sha256:" + hashlib.sha256(raw).hexdigest() != digest:
            raise AirlockError(where, f"the blob of {digest} does not have that digest", FIX)
        index = _json(raw, "the image index", where)
        manifest = _single(index, "the image index", where)
        child = "blobs/sha256/" + str(manifest.get("digest")).removeprefix("sha256:")
        if manifest.get("mediaType") != MANIFEST or child not in members:
            raise AirlockError(where, "the image index does not name a manifest the archive "
                               "holds", FIX)
        _check_manifest(tar, members, manifest, where)
        platform = platform_name(manifest.get("platform"))
        if platform is None:
            raise AirlockError(where, "the image's manifest names no platform", FIX)
        notes = entry.get("annotations")
        created = notes.get(CREATED) if isinstance(notes, dict) else None
        blobs = tuple(sorted(name for name in members if _BLOB.fullmatch(name)))
    return Part(archive=path, platform=platform, digest=digest, index=index, manifest=manifest,
                created=created if isinstance(created, str) else None, blobs=blobs)


def _check_manifest(tar: tarfile.TarFile, members: Mapping[str, tarfile.TarInfo],
                    descriptor: Mapping, where: str) -> None:
    """The part's manifest has its digest, and every blob it names is in the archive.

    Without it, a part lacking a layer made a whole archive that no
    registry takes (exit 0 here, a failure at publish); and a blob of
    another size than its descriptor says is refused before gigabytes of
    it are copied.
    """
    name = "blobs/sha256/" + str(descriptor.get("digest")).removeprefix("sha256:")
    raw = _read_member(tar, members[name], IMAGE_INDEX_LIMIT, where)
    if "sha256:" + hashlib.sha256(raw).hexdigest() != descriptor.get("digest"):
        raise AirlockError(where, f"the blob of {descriptor.get('digest')} does not have "
                           "that digest", FIX)
    doc = _json(raw, "the image's manifest", where)
    layers = doc.get("layers")
    named = [doc.get("config"), *(layers if isinstance(layers, list) else [None])]
    for entry in (descriptor, *named):
        digest = str(entry.get("digest")) if isinstance(entry, Mapping) else ""
        blob = _BLOB.fullmatch("blobs/sha256/" + digest.removeprefix("sha256:"))
        if not digest.startswith("sha256:") or not blob or blob.group(0) not in members:
            raise AirlockError(where, f"the image's manifest names {digest[:80] or 'a blob'}, "
                               "which it does not hold", FIX)
        size = entry.get("size")
        extra = members[blob.group(0)].size - size if isinstance(size, int) else 0
        if extra:
            raise AirlockError(where, f"{blob.group(0)} is {abs(extra)} bytes "
                               f"{'more' if extra > 0 else 'fewer'} than its descriptor says",
                               FIX)


def _deterministic(notes: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in notes.items() if not k.startswith(RUN_PREFIXES)}


def plan(parts: Sequence[Part], platforms: Sequence[str] | None = None,
         annotations: Mapping[str, str] | None = None) -> tuple[list[Part], dict[str, str]]:
    """The parts in index order and the index's annotations; refuse what is not one image.

    ``platforms`` is the order of the index (buildx writes the platforms
    in the order of ``--platform``): every one must have exactly one part,
    and no part another platform. Default: the parts' own order. With
    ``annotations`` (the assembling run's), the parts must agree with
    them but for the run's keys (:data:`RUN_PREFIXES`), and the index
    carries them; without, every part must carry the same, and the index
    does too.
    """
    if not parts:
        raise AirlockError("--archive", "no archive given", "pass one per platform")
    order = list(platforms) if platforms else [part.platform for part in parts]
    by_platform: dict[str, Part] = {}
    for part in parts:
        if part.platform not in order:
            raise AirlockError(str(part.archive), f"holds {part.platform}, not one of "
                               f"{', '.join(order)}", "pass only the archives of this image's "
                               "platforms")
        if part.platform in by_platform:
            raise AirlockError(str(part.archive), f"holds {part.platform}, as "
                               f"{by_platform[part.platform].archive} does",
                               "pass one archive per platform")
        by_platform[part.platform] = part
    missing = [p for p in order if p not in by_platform]
    if missing:
        raise AirlockError("--archive", f"no archive of {', '.join(missing)}",
                           "build it with airlock build --per-platform --platform "
                           f"{missing[0]} and pass its archive")
    first = parts[0]
    first_notes = dict(first.index.get("annotations") or {})
    wanted = _deterministic(annotations) if annotations is not None else first_notes
    for part in parts:
        notes = dict(part.index.get("annotations") or {})
        if annotations is not None:
            notes = _deterministic(notes)
        if notes != wanted:
            keys = sorted(k for k in {*notes, *wanted} if notes.get(k) != wanted.get(k))
            against = "the image's" if annotations is not None else f"{first.archive}'s"
            raise AirlockError(str(part.archive), f"its annotations differ from {against} "
                               f"({', '.join(keys)[:200]}): not a part of the same image",
                               "build every platform from the same inputs and engine")
    final = dict(annotations) if annotations is not None else first_notes
    return [by_platform[p] for p in order], final


class _Hashing(io.RawIOBase):
    """A reader that hashes what goes through it, so a copied blob is checked on the way."""

    def __init__(self, inner: IO[bytes]) -> None:
        self.inner = inner
        self.sha = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        data = self.inner.read(len(buffer))
        buffer[:len(data)] = data
        self.sha.update(data)
        return len(data)


def _info(name: str, size: int = 0, directory: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    info.mode = 0o755 if directory else 0o444
    info.size = size
    info.mtime = 0
    return info


def write(parts: Sequence[Path], out: Path, platforms: Sequence[str] | None = None,
          annotations: Mapping[str, str] | None = None) -> str:
    """Write the multi-platform OCI archive of ``parts`` at ``out``; return its index digest.

    Every part is checked before anything is written; ``out`` appears only
    whole (written beside it under a temporary name, then renamed).
    """
    read = [read_part(Path(p)) for p in parts]
    ordered, notes = plan(read, platforms, annotations)
    raw = index_bytes([part.manifest for part in ordered], notes)
    digest = "sha256:" + hashlib.sha256(raw).hexdigest()
    created = {part.created for part in ordered}
    entry: dict = {"mediaType": INDEX, "digest": digest, "size": len(raw)}
    if len(created) == 1 and None not in created:
        entry["annotations"] = {CREATED: created.pop()}
    layout = go_json({"schemaVersion": 2, "mediaType": INDEX, "manifests": [entry]},
                     indent=False)
    files.check_replaceable_file(out)  # as root, --out /dev/null would replace the device
    _check_not_a_part(out, ordered)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    done = False
    try:
        with open(tmp, "xb") as handle, tarfile.open(fileobj=handle, mode="w",
                                                     format=tarfile.PAX_FORMAT) as dest:
            dest.addfile(_info("blobs", directory=True))
            dest.addfile(_info("blobs/sha256", directory=True))
            written: set[str] = set()
            for part in ordered:  # the layers they share (the base's) once
                written |= _copy_blobs(part, dest, written)
            name = "blobs/sha256/" + digest.split(":", 1)[1]
            if name not in written:
                dest.addfile(_info(name, len(raw)), io.BytesIO(raw))
            dest.addfile(_info("index.json", len(layout)), io.BytesIO(layout))
            oci = b'{"imageLayoutVersion":"1.0.0"}'
            dest.addfile(_info("oci-layout", len(oci)), io.BytesIO(oci))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, out)
        done = True
    finally:
        if not done:
            tmp.unlink(missing_ok=True)
    return digest


def _check_not_a_part(out: Path, parts: Sequence[Part]) -> None:
    """Refuse ``out`` when it is one of the archives read: the part would be lost.

    The whole would hold it, but a part replaced by the whole is surely a
    mistyped command line, and a run repeated after it fails on that part.
    """
    try:
        target = os.lstat(out)  # a link at --out is replaced, not what it names
    except OSError:
        return
    for part in parts:
        with contextlib.suppress(OSError):
            st = os.stat(part.archive)
            if (st.st_dev, st.st_ino) == (target.st_dev, target.st_ino):
                raise AirlockError(str(out), f"is also an --archive ({part.platform})",
                                   "write the whole archive to a new file")


def _copy_blobs(part: Part, dest: tarfile.TarFile, skip: set[str]) -> set[str]:
    """Copy the blobs of ``part`` not in ``skip`` (nor its own index) into ``dest``, checked.

    The part was checked by :func:`read_part`; it is read again here, so a
    file replaced since is caught by the digests (or its new members).
    """
    copied: set[str] = set()
    own_index = "blobs/sha256/" + part.digest.split(":", 1)[1]  # the whole's replaces it
    skip = skip | {own_index}
    with _open_archive(part.archive) as tar:
        for member in tar:
            name = member.name.removeprefix("./").rstrip("/")
            blob = _BLOB.fullmatch(name)
            if not blob or name in skip or name in copied:
                continue
            handle = tar.extractfile(member) if member.isfile() else None
            if handle is None:
                raise AirlockError(str(part.archive), f"{name} is not a regular file", FIX)
            reader = _Hashing(handle)
            dest.addfile(_info(name, member.size), io.BufferedReader(reader))
            if reader.sha.hexdigest() != blob.group(1):
                raise AirlockError(str(part.archive), f"{name} does not have its digest: "
                                   "the archive is damaged", FIX)
            copied.add(name)
    missing = set(part.blobs) - copied - skip
    if missing:
        raise AirlockError(str(part.archive), "changed while it was read", "pass it again")
    return copied
