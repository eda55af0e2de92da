"""Verify a bundle on the air-gapped side: the signature first, then every byte.

The order is the point. The signature over SHA256SUMS is checked before
anything else is believed (an unsigned bundle is refused); SHA256SUMS then
says what the bundle holds, and nothing else may be there: a file it does
not list, a file it lists that is missing, a link, a device, a FIFO are
each one line. Every file is hashed (a folder on both cores; a tar in one
streaming pass) and the first bad artifact is named, in SHA256SUMS order.
Last, the manifest (hashed like the rest) must agree with SHA256SUMS.

A tar is read once, as a stream (a bundle of tens of GB never sits in
memory or twice on disk), and every member is judged before its bytes are
used: absolute names, ``..``, hidden names, links, hard links, devices,
FIFOs, duplicates and unlisted members are refused. With ``extract`` the
members go into a staging folder beside the destination, which becomes the
destination only once all of the tar verified; on any failure, or Ctrl-C,
the staging folder is removed: nothing is extracted.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import stat
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from airlock import files
from airlock.bundle import layout, sums, tarstream
from airlock.bundle import manifest as manifest_mod
from airlock.errors import AirlockError
from airlock.ext import sshkeygen

GET_AGAIN = sums.GET_AGAIN
NOT_OURS = "a bundle tar holds regular files only; it was not made by airlock bundle create " \
    "or was changed: get it again"
SUMS_LIMIT = tarstream.SUMS_LIMIT
SIG_LIMIT = tarstream.SIG_LIMIT
MANIFEST_LIMIT = files.RECORD_LIMIT
PAX_LIMIT = 1 << 20
BLOCK = 1 << 20
_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass
class Verified:
    """What a verified bundle is: who signed it, what it holds, what it needs first."""

    id: str
    version: str
    requires: list[str]
    principal: str
    files: int
    bytes: int
    manifest: dict = field(repr=False)


def _show(name: str) -> str:
    """A member name as it can be printed on one line (a hostile name may hold anything)."""
    return name.encode("ascii", "backslashreplace").decode().replace("\n", "\\n") \
        if not name.isprintable() else name


# -- the manifest --------------------------------------------------------------------------


def check_manifest(where: str, data: bytes, listed: dict[str, str]) -> dict:
    """The manifest, once it agrees with SHA256SUMS per the contract; else one line.

    Every artifact arriving in this bundle (its "bundle" is the manifest's
    "id") is in SHA256SUMS with the same sha256; every SHA256SUMS entry but
    manifest.json is such an artifact; an artifact arriving in another
    bundle is not here, and that bundle is in "requires".
    """
    try:
        manifest = json.loads(data)
    except (ValueError, RecursionError) as error:
        at = f" (line {error.lineno})" if isinstance(error, json.JSONDecodeError) else ""
        raise AirlockError(where, f"not valid JSON{at}", GET_AGAIN) from None
    if not isinstance(manifest, dict):
        raise AirlockError(where, "not a JSON object", GET_AGAIN)
    if manifest.get("schema") != layout.SCHEMA:
        raise AirlockError(f"{where}:schema", f"is {manifest.get('schema')!r}; this airlock "
                           f"reads schema {layout.SCHEMA}",
                           "verify with the airlock release that made it")
    for key in ("id", "version"):
        if not isinstance(manifest.get(key), str) or not manifest[key]:
            raise AirlockError(f"{where}:{key}", "missing or not a string", GET_AGAIN)
    bundle_id = manifest["id"]
    requires = manifest.get("requires")
    if not isinstance(requires, list) or not all(isinstance(r, str) for r in requires):
        raise AirlockError(f"{where}:requires", "missing or not a list of bundle ids",
                           GET_AGAIN)
    artifacts = manifest.get("artifacts")
    if not isinstance(artifacts, list):
        raise AirlockError(f"{where}:artifacts", "missing or not a list", GET_AGAIN)
    seen: set[str] = set()
    for index, artifact in enumerate(artifacts):
        at = f"{where}:artifacts[{index}]"
        if not isinstance(artifact, dict):
            raise AirlockError(at, "not an object", GET_AGAIN)
        path, digest = artifact.get("path"), artifact.get("sha256")
        size, arrives = artifact.get("size"), artifact.get("bundle")
        if not isinstance(path, str) or sums.safe_path(path):
            problem = sums.safe_path(path) if isinstance(path, str) else "is not a string"
            raise AirlockError(f"{at}.path", f"{_show(str(path))!r} {problem}", GET_AGAIN)
        at = f"{where}:{path}"
        if path in seen:
            raise AirlockError(at, "listed twice among the artifacts", GET_AGAIN)
        seen.add(path)
        if not isinstance(digest, str) or not _HEX64.fullmatch(digest):
            raise AirlockError(f"{at}.sha256", "not a sha256", GET_AGAIN)
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise AirlockError(f"{at}.size", "not a size in bytes", GET_AGAIN)
        if not isinstance(arrives, str) or not arrives:
            raise AirlockError(f"{at}.bundle", "missing or not a bundle id", GET_AGAIN)
        if arrives == bundle_id:
            if path not in listed:
                raise AirlockError(at, "is in the manifest but not in SHA256SUMS", GET_AGAIN)
            if listed[path] != digest:
                raise AirlockError(at, f"the manifest says sha256 {digest[:12]}… but "
                                   f"SHA256SUMS says {listed[path][:12]}…", GET_AGAIN)
        else:
            if path in listed:
                raise AirlockError(at, f"is in SHA256SUMS but the manifest says it arrives "
                                   f"in bundle {arrives}", GET_AGAIN)
            if arrives not in requires:
                raise AirlockError(at, f"arrives in bundle {arrives}, which \"requires\" "
                                   "does not name", GET_AGAIN)
    for path in listed:
        if path != sums.MANIFEST and path not in seen:
            raise AirlockError(f"{where}:{path}", "is in SHA256SUMS but not among the "
                               "manifest's artifacts", GET_AGAIN)
    return manifest


def own_sizes(manifest: dict) -> dict[str, int]:
    return {a["path"]: a["size"] for a in manifest["artifacts"] if a["bundle"] == manifest["id"]}


def _check_sizes(root: str, manifest: dict, sizes: dict[str, int]) -> None:
    for path, size in own_sizes(manifest).items():
        if sizes.get(path, size) != size:
            raise AirlockError(f"{root}/{path}", f"is {sizes[path]} bytes but the manifest says "
                               f"{size}", GET_AGAIN)


def _verified(manifest: dict, principal: str, listed: dict[str, str],
              sizes: dict[str, int]) -> Verified:
    return Verified(id=manifest["id"], version=manifest["version"],
                    requires=list(manifest["requires"]), principal=principal,
                    files=len(listed), bytes=sum(sizes.get(p, 0) for p in listed),
                    manifest=manifest)


# -- a folder ------------------------------------------------------------------------------


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def _walk(root: Path) -> dict[str, int]:
    """Every regular file under ``root`` (relative path -> size); anything else is an error."""
    found: dict[str, int] = {}
    stack = [""]
    while stack:
        rel = stack.pop()
        try:
            with os.scandir(root / rel if rel else root) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as error:
            raise AirlockError(f"{root}/{rel}".rstrip("/"), f"cannot list: {error.strerror}",
                               "check the permissions") from None
        subdirs = []
        for entry in entries:
            path = f"{rel}/{entry.name}" if rel else entry.name
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError as error:
                raise AirlockError(f"{root}/{path}", f"cannot stat: {error.strerror}",
                                   "check the permissions") from None
            if stat.S_ISDIR(st.st_mode):
                subdirs.append(path)
            elif stat.S_ISREG(st.st_mode):
                found[path] = st.st_size
            else:
                raise AirlockError(f"{root}/{_show(path)}", f"is {_kind(st.st_mode)}; a bundle "
                                   "holds regular files only", "remove it, or get the bundle "
                                   "again")
        stack.extend(reversed(subdirs))
    return found


def _signature(where: str, allowed_signers: Path, signature: bytes, sums_data: bytes) -> str:
    return sshkeygen.verify(allowed_signers, signature, sums_data, where=where,
                            what=sums.SUMS)


def verify_dir(dir: Path, allowed_signers: Path,
               progress: sums.Progress | None = None) -> Verified:
    """Verify the bundle folder ``dir``; return what it is, or raise one AirlockError."""
    dir = Path(dir)
    root = str(dir).rstrip("/") or "/"
    if not dir.is_dir():
        raise AirlockError(root, "no such folder" if not os.path.lexists(dir)
                           else "is not a folder", "pass the bundle folder (or its tar)")
    sig_path = dir / sums.SIGNATURE
    if not os.path.lexists(sig_path):
        raise AirlockError(f"{root}/{sums.SIGNATURE}", "no signature: the bundle is unsigned",
                           "verify refuses an unsigned bundle; create it with --key")
    sums_data = files.read_bytes(dir / sums.SUMS, limit=SUMS_LIMIT, fix=GET_AGAIN)
    signature = files.read_bytes(sig_path, limit=SIG_LIMIT, fix=GET_AGAIN)
    principal = _signature(f"{root}/{sums.SIGNATURE}", allowed_signers, signature, sums_data)
    listed = sums.parse(sums_data, f"{root}/{sums.SUMS}")
    if sums.MANIFEST not in listed:
        raise AirlockError(f"{root}/{sums.SUMS}", f"does not list {sums.MANIFEST}", GET_AGAIN)
    found = _walk(dir)
    for path in listed:
        if path not in found:
            raise AirlockError(f"{root}/{path}", "is missing (SHA256SUMS lists it)", GET_AGAIN)
    for path in found:
        if path not in listed and path not in sums.UNLISTED:
            raise AirlockError(f"{root}/{_show(path)}", "is not listed in SHA256SUMS (a file "
                               "the signer did not put there)", "remove it, or get the bundle "
                               "again")
    got = sums.hash_files(dir, listed, jobs=2, progress=progress,
                          sizes={p: found[p] for p in listed})
    sums.first_mismatch(root, listed, got)
    manifest_data = files.read_bytes(dir / sums.MANIFEST, limit=MANIFEST_LIMIT, fix=GET_AGAIN)
    if hashlib.sha256(manifest_data).hexdigest() != listed[sums.MANIFEST]:
        raise AirlockError(f"{root}/{sums.MANIFEST}", "changed while it was verified",
                           "nothing may write into the bundle meanwhile; verify again")
    manifest = check_manifest(f"{root}/{sums.MANIFEST}", manifest_data, listed)
    sizes = {path: size for path, (_, size) in got.items()}
    _check_sizes(root, manifest, sizes)
    return _verified(manifest, principal, listed, sizes)


# -- a tar ---------------------------------------------------------------------------------


class _Truncated(Exception):
    pass


@dataclass
class _Member:
    name: str
    type: bytes
    size: int
    linkname: str


class _TarStream:
    """Members of a tar read from a stream, one pass, with big reads for the data.

    tarfile's stream mode reads through a 10 KiB record buffer and copies
    each block several times; this reads headers with
    ``tarfile.TarInfo.frombuf`` (checksums, number fields) and member data
    straight into one buffer that is hashed (and written) in place.
    """

    def __init__(self, raw: tarstream.PartsReader) -> None:
        self.raw = raw
        self.stream = io.BufferedReader(raw, BLOCK)
        self.offset = 0
        self.current = ""  # the member being read, for "truncated at member X"

    def read_exact(self, n: int) -> bytes:
        data = self.stream.read(n)
        self.offset += len(data)
        if len(data) < n:
            raise _Truncated()
        return data

    def readinto(self, view: memoryview) -> int:
        n = self.stream.readinto(view)
        self.offset += n
        if n < len(view):
            raise _Truncated()
        return n

    def skip_padding(self, size: int) -> None:
        self.read_exact(-size % 512)

    def next(self) -> _Member | None:
        pax: dict[str, str] = {}
        while True:
            block = self.stream.read(512)
            self.offset += len(block)
            if len(block) < 512:
                raise _Truncated()
            if block == bytes(512):
                return None
            try:
                info = tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
            except tarfile.HeaderError as error:
                raise AirlockError(self.raw.name, f"not a tar, or damaged at byte "
                                   f"{self.offset - 512} ({error})", GET_AGAIN) from None
            if info.type == tarfile.XHDTYPE:
                if info.size > PAX_LIMIT:
                    raise AirlockError(self.raw.name, f"a pax header of {info.size} bytes",
                                       GET_AGAIN)
                data = self.read_exact(info.size)
                self.skip_padding(info.size)
                pax.update(_pax_records(self.raw.name, data))
                continue
            if info.type == tarfile.XGLTYPE:
                raise AirlockError(self.raw.name, "holds a pax global header", NOT_OURS)
            if info.type in tarfile.GNU_TYPES:
                raise AirlockError(self.raw.name, f"holds a GNU extension member "
                                   f"({info.type.decode(errors='replace')}) at "
                                   f"{_show(info.name)}", NOT_OURS)
            name = pax.get("path", info.name)
            if info.type == tarfile.DIRTYPE:
                name = name.rstrip("/") if name.rstrip("/") else name
            if "size" in pax and not re.fullmatch(r"[0-9]{1,20}", pax["size"]):
                raise AirlockError(self.raw.name, f"a pax size {pax['size']!r} at "
                                   f"{_show(name)}", NOT_OURS)
            size = int(pax["size"]) if "size" in pax else info.size
            if info.type not in (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE):
                size = 0 if info.type != tarfile.DIRTYPE else size
            return _Member(name, info.type, size, pax.get("linkpath", info.linkname))


def _pax_records(where: str, data: bytes) -> dict[str, str]:
    records: dict[str, str] = {}
    pos = 0
    while pos < len(data) and data[pos:pos + 1] != b"\0":
        found = re.match(rb"(\d+) ", data[pos:pos + 24])
        length = int(found.group(1)) if found else 0
        record = data[pos:pos + length]
        if not found or length < len(found.group(0)) + 2 or not record.endswith(b"\n") \
                or b"=" not in record:
            raise AirlockError(where, f"a damaged pax header at byte {pos}", GET_AGAIN)
        key, _, value = record[len(found.group(0)):-1].partition(b"=")
        records[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8",
                                                                        "surrogateescape")
        pos += length
    return records


_TYPES = {tarfile.SYMTYPE: "a symbolic link", tarfile.LNKTYPE: "a hard link",
          tarfile.CHRTYPE: "a character device", tarfile.BLKTYPE: "a block device",
          tarfile.FIFOTYPE: "a FIFO", tarfile.CONTTYPE: "a contiguous file"}


def _leaves(target: str) -> bool:
    return target.startswith("/") or ".." in target.split("/")


def _judge(tar: str, member: _Member) -> None:
    """Refuse a member that is not a plain file or folder with a contract name."""
    where = f"{tar}: {_show(member.name)}"
    problem = sums.safe_path(member.name)
    if problem:
        raise AirlockError(where, f"member name {problem}", NOT_OURS)
    if member.type in (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.DIRTYPE):
        return
    kind = _TYPES.get(member.type, f"a member of type {member.type!r}")
    if member.type == tarfile.SYMTYPE:
        kind += f" to {_show(member.linkname)}"
    if member.type == tarfile.LNKTYPE:
        leaves = _leaves(member.linkname)
        kind += f" to {_show(member.linkname)}, " + (
            "which leaves the bundle" if leaves else "within the bundle")
    raise AirlockError(where, f"is {kind}", NOT_OURS)


class _Stage:
    """The staging folder an extraction writes into; renamed to DEST only when all verified."""

    def __init__(self, dest: Path) -> None:
        self.dest = Path(dest)
        if os.path.lexists(self.dest):
            if not self.dest.is_dir() or self.dest.is_symlink():
                raise AirlockError(str(dest), "exists and is not a folder",
                                   "choose a new or empty folder to extract into")
            with os.scandir(self.dest) as entries:
                full = any(entries)
            if full:
                raise AirlockError(str(dest), "exists and is not empty",
                                   "choose a new or empty folder to extract into")
        try:
            self.dest.parent.mkdir(parents=True, exist_ok=True)
            self.path = Path(tempfile.mkdtemp(prefix=f".{self.dest.name}.new-",
                                              dir=self.dest.parent))
        except OSError as error:
            raise AirlockError(str(dest), f"cannot create a folder beside it: "
                               f"{error.strerror}", "extract somewhere else") from None

    def folder(self, path: str) -> None:
        os.makedirs(self.path / path, mode=0o755, exist_ok=True)

    def create(self, path: str) -> int:
        parent = path.rpartition("/")[0]
        if parent:
            self.folder(parent)
        return os.open(self.path / path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                       | os.O_CLOEXEC, 0o644)

    def commit(self) -> None:
        os.chmod(self.path, 0o755)
        files.swap_into_place(self.path, self.dest)

    def discard(self) -> None:
        files.remove_tree(self.path)


def _write_all(fd: int, view: memoryview) -> None:
    while len(view):
        view = view[os.write(fd, view):]


def verify_tar(path: Path, allowed_signers: Path, extract: Path | None = None,
               progress: sums.Progress | None = None) -> Verified:
    """Verify the bundle tar ``path`` (or its parts) in one pass; with ``extract``, unpack it.

    The first three members are SHA256SUMS, SHA256SUMS.sig and
    manifest.json; the signature is checked before any other member is
    read. ``extract`` must be a new or empty folder; it receives the bundle
    only when every member verified.
    """
    tar = str(path)
    reader = tarstream.open_parts(Path(path))
    stage = None
    try:
        stage = _Stage(Path(extract)) if extract is not None else None
        stream = _TarStream(reader)
        try:
            result = _verify_stream(tar, stream, allowed_signers, stage, progress)
        except _Truncated:
            at = f"at member {_show(stream.current)}" if stream.current else \
                "before its first member"
            part = f" (in {Path(reader.name).name}, the last part)" if len(reader.parts) > 1 \
                else ""
            raise AirlockError(tar, f"truncated {at}{part}", "get the missing bytes or part "
                               "(copy every part of the bundle, whole)") from None
        if stage is not None:
            stage.commit()
        return result
    finally:
        reader.close()
        if stage is not None:
            stage.discard()


def read_manifest(path: Path) -> dict:
    """The manifest of a bundle tar, read from its first members: nothing is verified.

    For ``bundle inspect``: what a tar holds, without extracting it and
    without reading past the manifest, however large the tar. Its members
    are judged as verify judges them, and the manifest is checked as
    :func:`airlock.bundle.manifest.load` checks a folder's.
    """
    tar = str(path)
    reader = tarstream.open_parts(Path(path))
    try:
        stream = _TarStream(reader)
        try:
            for _ in (sums.SUMS, sums.SIGNATURE, sums.MANIFEST):
                member = stream.next()
                if member is None:
                    break
                stream.current = member.name
                _judge(tar, member)
                if member.name == sums.MANIFEST and member.type != tarfile.DIRTYPE:
                    if member.size > MANIFEST_LIMIT:
                        raise AirlockError(f"{tar}: {sums.MANIFEST}", "is too large",
                                           GET_AGAIN)
                    return manifest_mod.parse(stream.read_exact(member.size),
                                              f"{tar}: {sums.MANIFEST}", GET_AGAIN)
                if member.name not in sums.UNLISTED or member.size > SUMS_LIMIT:
                    break
                stream.read_exact(member.size)
                stream.skip_padding(member.size)
        except _Truncated:
            raise AirlockError(tar, "truncated before its manifest", GET_AGAIN) from None
    finally:
        reader.close()
    raise AirlockError(tar, f"holds no {sums.MANIFEST} among its first members", NOT_OURS)


def _verify_stream(tar: str, stream: _TarStream, allowed_signers: Path,
                   stage: _Stage | None, progress: sums.Progress | None) -> Verified:
    head: dict[str, bytes] = {}
    limits = {sums.SUMS: SUMS_LIMIT, sums.SIGNATURE: SIG_LIMIT, sums.MANIFEST: MANIFEST_LIMIT}
    for expected in (sums.SUMS, sums.SIGNATURE, sums.MANIFEST):
        member = stream.next()
        if member is None:
            raise AirlockError(tar, f"ends before {expected}", GET_AGAIN)
        stream.current = member.name
        _judge(tar, member)
        if member.name != expected:
            if expected == sums.SIGNATURE and member.name == sums.MANIFEST:
                raise AirlockError(f"{tar}: {sums.SIGNATURE}",
                                   "no signature: the bundle is unsigned",
                                   "verify refuses an unsigned bundle; create it with --key")
            raise AirlockError(tar, f"member {len(head) + 1} is {_show(member.name)}, not "
                               f"{expected}", NOT_OURS)
        if member.type == tarfile.DIRTYPE or member.size > limits[expected]:
            raise AirlockError(f"{tar}: {expected}", "is too large or not a file", GET_AGAIN)
        head[expected] = stream.read_exact(member.size)
        stream.skip_padding(member.size)
        if expected == sums.SIGNATURE:
            principal = _signature(f"{tar}: {sums.SIGNATURE}", allowed_signers,
                                   head[sums.SIGNATURE], head[sums.SUMS])
            listed = sums.parse(head[sums.SUMS], f"{tar}: {sums.SUMS}")
            if sums.MANIFEST not in listed:
                raise AirlockError(f"{tar}: {sums.SUMS}", f"does not list {sums.MANIFEST}",
                                   GET_AGAIN)
    manifest_sha = hashlib.sha256(head[sums.MANIFEST]).hexdigest()
    if manifest_sha != listed[sums.MANIFEST]:
        raise AirlockError(f"{tar}: {sums.MANIFEST}", f"sha256 {manifest_sha[:12]}… but "
                           f"SHA256SUMS says {listed[sums.MANIFEST][:12]}…", GET_AGAIN)
    manifest = check_manifest(f"{tar}: {sums.MANIFEST}", head[sums.MANIFEST], listed)
    expected_sizes = own_sizes(manifest)
    if stage is not None:
        for name, data in head.items():
            fd = stage.create(name)
            try:
                _write_all(fd, memoryview(data))
            finally:
                os.close(fd)
    seen: dict[str, str] = {sums.SUMS: "", sums.SIGNATURE: "", sums.MANIFEST: manifest_sha}
    sizes = {sums.MANIFEST: len(head[sums.MANIFEST])}
    buffer = bytearray(BLOCK)
    view = memoryview(buffer)
    total = sum(expected_sizes.get(p, 0) for p in listed)
    done_bytes, last = 0, time.monotonic()
    while True:
        member = stream.next()
        if member is None:
            break
        stream.current = member.name
        _judge(tar, member)
        where = f"{tar}: {_show(member.name)}"
        if member.type == tarfile.DIRTYPE:
            if member.name in listed:
                raise AirlockError(where, "is a folder, but SHA256SUMS lists it as a file",
                                   GET_AGAIN)
            if stage is not None:
                stage.folder(member.name)
            continue
        duplicate = member.name in seen
        if not duplicate and member.name not in listed:
            raise AirlockError(where, "is not listed in SHA256SUMS (a member the signer did "
                               "not put there)", GET_AGAIN)
        want = expected_sizes.get(member.name)
        if not duplicate and want is not None and member.size != want:
            raise AirlockError(where, f"is {member.size} bytes but the manifest says {want}",
                               GET_AGAIN)
        fd = stage.create(member.name) if stage is not None and not duplicate else None
        digest = hashlib.sha256()
        try:
            left = member.size
            while left:
                chunk = view[:min(left, BLOCK)]
                stream.readinto(chunk)
                digest.update(chunk)
                if fd is not None:
                    _write_all(fd, chunk)
                left -= len(chunk)
                done_bytes += len(chunk)
                if progress is not None and time.monotonic() - last > sums.PROGRESS_EVERY:
                    progress(len(seen) - 3, len(listed) - 1, done_bytes, total)
                    last = time.monotonic()
        finally:
            if fd is not None:
                os.close(fd)
        stream.skip_padding(member.size)
        actual = digest.hexdigest()
        if duplicate:
            first = seen[member.name] or hashlib.sha256(head.get(member.name, b"")).hexdigest()
            differs = "and the second copy differs" if actual != first else \
                "(the copies are identical)"
            raise AirlockError(where, f"appears twice in the tar {differs}", NOT_OURS)
        if actual != listed[member.name]:
            raise AirlockError(where, f"sha256 {actual[:12]}… but SHA256SUMS says "
                               f"{listed[member.name][:12]}…", GET_AGAIN)
        seen[member.name] = actual
        sizes[member.name] = member.size
    stream.current = ""
    _check_trailer(tar, stream)
    for name in listed:
        if name not in seen:
            raise AirlockError(f"{tar}: {name}", "is missing from the tar (SHA256SUMS lists "
                               "it)", GET_AGAIN)
    if progress is not None:
        progress(len(listed) - 1, len(listed) - 1, done_bytes, total)
    return _verified(manifest, principal, listed, sizes)


def _check_trailer(tar: str, stream: _TarStream) -> None:
    """After the end-of-archive block: zeros only (the record padding), nothing appended."""
    while True:
        block = stream.stream.read(BLOCK)
        if not block:
            return
        if block.count(0) != len(block):
            raise AirlockError(tar, "holds data after the end of the tar",
                               "the parts were joined with something else; get it again")

