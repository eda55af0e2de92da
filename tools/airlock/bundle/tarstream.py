"""A bundle folder as one tar, streamed, optionally split into parts for removable media.

The tar is written in one pass, reading each file once (and checking it
against SHA256SUMS on the way), never staged twice on disk: a bundle of
tens of GB needs its own size in free space, not twice that. Members are
normalised (pax format, uid/gid 0, mtime 0, mode 0644 / 0755 dirs) in the
contract's order, so the same folder gives the same bytes.

``--max-part-size`` splits the byte stream anywhere, like ``split -b``:
``cat FILE.tar.0* > FILE.tar`` gives the tar back. Parts are written under
temporary names and renamed only once all of them are complete, so an
interrupted write leaves nothing that looks like a bundle.

:func:`open_parts` reads FILE.tar, or FILE.tar.000, .001, ... in order, as
one stream; a gap in the numbers or a part that is no regular file is one
line before anything is read.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import os
import re
import stat
import tarfile
import time
from pathlib import Path

from airlock import files
from airlock.bundle import sums
from airlock.errors import AirlockError

BLOCK = 1 << 20
RECORD = tarfile.RECORDSIZE  # 10240: tar pads its end to a multiple of this
SUMS_LIMIT = 256 * files.MiB
SIG_LIMIT = 64 * 1024
MIN_PART = 4096
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40,
          "KIB": 1 << 10, "MIB": 1 << 20, "GIB": 1 << 30, "TIB": 1 << 40,
          "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12, "B": 1}
_PART = re.compile(r"(.+)\.([0-9]{3,})")
Progress = sums.Progress


def parse_size(text: str) -> int:
    """Bytes for "4GiB", "4G" (both 2**32), "4700MB" (4.7e9), "1000000": ``split -b``'s units."""
    found = re.fullmatch(r"\s*([0-9]+)\s*([A-Za-z]*)\s*", text)
    unit = found.group(2).upper() if found else ""
    if not found or unit not in _UNITS:
        raise AirlockError(f"--max-part-size {text}", "not a size",
                           "give bytes, or a number with K/M/G (KiB/MiB/GiB, powers of 1024) "
                           "or KB/MB/GB (powers of 1000): 4GiB for FAT32, 4700MB for a DVD")
    size = int(found.group(1)) * _UNITS[unit]
    if size < MIN_PART:
        raise AirlockError(f"--max-part-size {text}", f"is {size} bytes, below {MIN_PART}",
                           "give a unit: 4GiB, 4700MB")
    return size


def part_name(out: Path, index: int) -> Path:
    return out.with_name(f"{out.name}.{index:03d}")


class _PartWriter:
    """A file-like sink that rolls over to the next part when this one is full."""

    def __init__(self, out: Path, max_part_size: int | None) -> None:
        self.out = out
        self.max = max_part_size
        self.temps: list[Path] = []
        self.finals: list[Path] = []
        self.handle: io.BufferedWriter | None = None
        self.used = 0
        self.total = 0

    def _next(self) -> None:
        self._close_current()
        index = len(self.finals)
        final = self.out if self.max is None else part_name(self.out, index)
        temp = final.with_name(f".{final.name}.partial-{os.getpid()}")
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                         | os.O_CLOEXEC, 0o644)
        except OSError as error:
            raise AirlockError(str(final), f"cannot create: {error.strerror}",
                               "write somewhere else, or fix the permissions") from None
        self.temps.append(temp)
        self.finals.append(final)
        self.handle = open(fd, "wb", buffering=BLOCK)
        self.used = 0

    def write(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        while len(view):
            if self.handle is None or (self.max is not None and self.used >= self.max):
                self._next()
            room = len(view) if self.max is None else min(len(view), self.max - self.used)
            try:
                self.handle.write(view[:room])  # type: ignore[union-attr]
            except OSError as error:
                raise AirlockError(str(self.finals[-1]), f"cannot write: {error.strerror}",
                                   "free some space, or write somewhere else") from None
            self.used += room
            self.total += room
            view = view[room:]

    def _close_current(self) -> None:
        if self.handle is not None:
            handle, self.handle = self.handle, None
            try:
                handle.flush()
                os.fsync(handle.fileno())  # a stick pulled out after "done" holds it all
            except OSError as error:
                raise AirlockError(str(self.finals[-1]), f"cannot write: {error.strerror}",
                                   "free some space, or write somewhere else") from None
            finally:
                handle.close()

    def finish(self) -> list[Path]:
        if self.handle is None:
            self._next()
        self._close_current()
        for temp, final in zip(self.temps, self.finals, strict=True):
            if os.path.lexists(final):
                raise AirlockError(str(final), "appeared while the tar was written",
                                   "write somewhere else")
            os.rename(temp, final)
        return list(self.finals)

    def discard(self) -> None:
        """Remove every part written so far, complete or not: nothing that looks done stays."""
        if self.handle is not None:
            with contextlib.suppress(OSError):
                self.handle.close()
            self.handle = None
        for temp in self.temps:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)


def _header(name: str, size: int = 0, directory: bool = False) -> bytes:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    info.mode = 0o755 if directory else 0o644
    info.size = size
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "strict")


def _existing_outputs(out: Path) -> list[Path]:
    found = [out] if os.path.lexists(out) else []
    with contextlib.suppress(OSError):
        for entry in os.scandir(out.parent):
            match = _PART.fullmatch(entry.name)
            if match and match.group(1) == out.name:
                found.append(out.parent / entry.name)
    return sorted(found)


def check_free(out: Path, replace: bool = False) -> None:
    """``out`` (the tar) and any part of it must not exist yet: checked before a create too.

    With ``replace`` (a create writing the tar of its own folder again) an
    earlier tar is replaced; only a folder in its place is refused.
    """
    existing = _existing_outputs(Path(out))
    if replace:
        existing = [p for p in existing if stat.S_ISDIR(os.lstat(p).st_mode)]
    if existing:
        raise AirlockError(str(existing[0]), "already exists",
                           "remove it (and its other parts) or choose another file")


def write(dir: Path, out: Path, max_part_size: int | None = None,
          progress: Progress | None = None, replace: bool = False) -> list[Path]:
    """Stream the bundle folder ``dir`` into ``out`` (or out.000, .001, ...); return the files.

    Every file is hashed while it is copied and must match SHA256SUMS: a
    file changed since SHA256SUMS was written never reaches the tar.
    With ``max_part_size`` the output is always parts, even one. With
    ``replace`` (``bundle create`` writing the tar of its own folder again)
    an earlier tar and its parts are removed first, links themselves and
    never what they point to; anything else there is refused.
    """
    dir, out = Path(dir), Path(out)
    if max_part_size is not None and max_part_size < 512:
        raise AirlockError(str(out), f"parts of {max_part_size} bytes", "give at least 512")
    existing = _existing_outputs(out)
    check_free(out, replace)
    for old in existing:  # with replace: files and links (never followed)
        os.unlink(old)
    if not out.parent.is_dir():
        raise AirlockError(str(out.parent), "no such folder", "create it first")
    with contextlib.suppress(ValueError):
        out.parent.resolve().relative_to(dir.resolve())
        raise AirlockError(str(out), f"is inside the bundle {dir}",
                           "write the tar outside the bundle folder")
    listed = sums.parse(files.read_bytes(dir / sums.SUMS, limit=SUMS_LIMIT),
                        f"{dir}/{sums.SUMS}")
    if sums.MANIFEST not in listed:
        raise AirlockError(f"{dir}/{sums.SUMS}", f"does not list {sums.MANIFEST}",
                           "create the bundle again")
    head: list[tuple[str, bytes]] = [
        (sums.SUMS, files.read_bytes(dir / sums.SUMS, limit=SUMS_LIMIT))]
    if os.path.lexists(dir / sums.SIGNATURE):
        head.append((sums.SIGNATURE, files.read_bytes(dir / sums.SIGNATURE, limit=SIG_LIMIT)))
    order = [sums.MANIFEST] + [path for path in listed if path != sums.MANIFEST]
    sizes = {}
    for path in order:
        try:
            sizes[path] = os.lstat(dir / path).st_size
        except OSError:
            sizes[path] = 0  # named when it is opened
    total_files = len(head) + len(order)
    total_bytes = sum(len(data) for _, data in head) + sum(sizes.values())
    writer = _PartWriter(out, max_part_size)
    done_files = done_bytes = 0
    last = time.monotonic()
    try:
        for name, data in head:
            writer.write(_header(name, len(data)))
            writer.write(data)
            writer.write(bytes(-len(data) % 512))
            done_files += 1
            done_bytes += len(data)
        made: set[str] = set()
        buffer = bytearray(BLOCK)
        view = memoryview(buffer)
        for path in order:
            parent = path.rpartition("/")[0]
            missing = []
            while parent and parent not in made:
                missing.append(parent)
                made.add(parent)
                parent = parent.rpartition("/")[0]
            for folder in reversed(missing):
                writer.write(_header(folder, directory=True))
            written = _copy_file(dir, path, listed[path], writer, view)
            done_files += 1
            done_bytes += written
            if progress is not None and time.monotonic() - last > sums.PROGRESS_EVERY:
                progress(done_files, total_files, done_bytes, total_bytes)
                last = time.monotonic()
        end = bytes(1024)
        writer.write(end)
        writer.write(bytes(-writer.total % RECORD))
        parts = writer.finish()
    except BaseException:
        writer.discard()
        for final in writer.finals:  # renamed before an error in finish: undone too
            if os.path.lexists(final) and final not in existing:
                with contextlib.suppress(OSError):
                    os.unlink(final)
        raise
    if progress is not None:
        progress(total_files, total_files, done_bytes, total_bytes)
    return parts


def _copy_file(dir: Path, path: str, expected: str, writer: _PartWriter,
               view: memoryview) -> int:
    where = f"{dir}/{path}"
    try:
        fd = os.open(dir / path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise AirlockError(where, "is missing (SHA256SUMS lists it)",
                           "create the bundle again") from None
    except OSError as error:
        what = ("is a symbolic link; a bundle holds regular files only"
                if error.errno == errno.ELOOP else f"cannot open: {error.strerror}")
        raise AirlockError(where, what, "create the bundle again") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise AirlockError(where, "is not a regular file", "create the bundle again")
        size = st.st_size
        writer.write(_header(path, size))
        digest = hashlib.sha256()
        left = size
        while left:
            n = os.readv(fd, [view[:min(left, BLOCK)]])
            if not n:
                raise AirlockError(where, "shrank while it was written into the tar",
                                   "nothing may write into the bundle meanwhile; run again")
            digest.update(view[:n])
            writer.write(view[:n])
            left -= n
        writer.write(bytes(-size % 512))
    finally:
        os.close(fd)
    if digest.hexdigest() != expected:
        raise AirlockError(where, f"sha256 {digest.hexdigest()[:12]}… but SHA256SUMS says "
                           f"{expected[:12]}…", "the file changed since the bundle was "
                           "made; create the bundle again")
    return size


class PartsReader(io.RawIOBase):
    """FILE.tar, or FILE.tar.000, .001, ... read in order as one stream (read-only)."""

    def __init__(self, parts: list[Path], sizes: list[int]) -> None:
        super().__init__()
        self.parts = parts
        self.sizes = sizes
        self.index = -1
        self.fd: int | None = None
        self.position = 0

    @property
    def name(self) -> str:
        return str(self.parts[max(self.index, 0)])

    @property
    def total(self) -> int:
        return sum(self.sizes)

    def readable(self) -> bool:
        return True

    def _open_next(self) -> bool:
        self._close_fd()
        self.index += 1
        if self.index >= len(self.parts):
            self.index = len(self.parts) - 1
            return False
        part = self.parts[self.index]
        try:
            fd = os.open(part, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as error:
            raise AirlockError(str(part), f"cannot open: {error.strerror}",
                               "check the medium") from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise AirlockError(str(part), "is not a regular file", "pass the bundle's tar")
        self.fd = fd
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        while True:
            if self.fd is None and not self._open_next():
                return 0
            try:
                n = os.readv(self.fd, [buffer])  # type: ignore[arg-type]
            except OSError as error:
                raise AirlockError(self.name, f"cannot read: {error.strerror}",
                                   "check the medium") from None
            if n:
                self.position += n
                return n
            self._close_fd()

    def _close_fd(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def close(self) -> None:
        self._close_fd()
        super().close()


def find_parts(path: Path) -> list[Path]:
    """The files of a tar bundle named by ``path``: [FILE.tar] or its parts, in order."""
    path = Path(path)
    match = _PART.fullmatch(path.name)
    if match and not os.path.lexists(path.with_name(match.group(1))):
        if int(match.group(2)) != 0:
            base = path.with_name(match.group(1))
            raise AirlockError(str(path), "is not the first part",
                               f"pass {part_name(base, 0)}")
        base = path.with_name(match.group(1))
    elif os.path.lexists(path):
        return [path]
    elif os.path.lexists(part_name(path, 0)):
        base = path
    else:
        raise AirlockError(str(path), f"no such file (nor {part_name(path, 0).name})",
                           "check the path")
    numbers = []
    for entry in os.scandir(base.parent):
        found = _PART.fullmatch(entry.name)
        if found and found.group(1) == base.name:
            numbers.append(int(found.group(2)))
    numbers.sort()
    for expected, number in enumerate(numbers):
        if number != expected:
            raise AirlockError(str(part_name(base, expected)),
                               f"is missing ({part_name(base, number).name} exists)",
                               "copy every part of the bundle; get the missing part")
    return [part_name(base, number) for number in numbers]


def open_parts(path: Path) -> PartsReader:
    """A read-only stream of FILE.tar, or of FILE.tar.000, .001, ... in order.

    ``path`` is FILE.tar (or, when that does not exist, the base of its
    parts) or FILE.tar.000. Every part must be a regular file, numbered
    without a gap; a missing last part shows as a truncated tar.
    """
    parts = find_parts(path)
    sizes = []
    for part in parts:
        try:
            st = os.stat(part)
        except OSError as error:
            raise AirlockError(str(part), f"cannot open: {error.strerror}",
                               "check the path") from None
        if not stat.S_ISREG(st.st_mode):
            raise AirlockError(str(part), "is not a regular file", "pass the bundle's tar")
        sizes.append(st.st_size)
    return PartsReader(parts, sizes)

