"""Which shared libraries a wheel's compiled modules need that the wheel does not carry.

A wheel built from an sdist links its extension modules against the build
image's system libraries (libssl, libldap, libsasl2, libvirt...); a
manylinux wheel bundles most of its own (auditwheel copies them into
``<pkg>.libs/`` under hashed names) and still leaves libc and friends
outside. Either way an image that lacks one of them starts with
``ImportError: libfoo.so.N`` at the site. The ELF files themselves say what
they need (``DT_NEEDED``) and what they are (``DT_SONAME``): this module
reads those, in pure Python, straight out of the wheel (a zip) without
extracting it, so that :mod:`airlock.inputs.sharedlibs` can name the Debian
packages the image must hold.

Wheels come from an index or from sdists airlock did not write: every
offset, count and size read from a file is checked against the file before
it is used, a member is read only in the ranges the parse needs (never
whole), and a member larger than :data:`MEMBER_LIMIT` is refused. A file
that is not ELF is ``None``; a broken ELF file, zip or member is one
AirlockError naming the wheel and the member, never a traceback.
"""

from __future__ import annotations

import io
import os
import re
import stat
import struct
import zipfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from airlock.errors import AirlockError

MiB = 1 << 20
# Larger members are refused. Members are never read whole (memory does
# not grow with them): this bounds the time a zip bomb can cost, while the
# largest real ones (tensorflow's 750 MiB library) still pass.
MEMBER_LIMIT = 1024 * MiB
# More members than this is no wheel airlock installs (the largest have a
# few thousand).
MEMBERS_LIMIT = 100_000
# Real dynamic sections hold a few hundred bytes and a few dozen needed
# libraries; a file claiming more is not read further.
TABLE_LIMIT = 1 * MiB
NEEDED_LIMIT = 1024
NAME_LIMIT = 4096

MAGIC = b"\x7fELF"
# What zipfile raises for a damaged or unsupported archive or member (an
# encrypted one is a RuntimeError, an unknown compression NotImplementedError).
ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, RuntimeError,
              EOFError, zlib.error, ValueError, OverflowError)
FIX = "the file is damaged or not a real shared object: fetch or build it again"
# A soname as the dynamic loader sees it, in a form safe for one-line errors.
_NAME = re.compile(rb"[\x21-\x7e]{1,%d}" % NAME_LIMIT)

PT_LOAD, PT_DYNAMIC = 1, 2
PN_XNUM = 0xFFFF
SHT_DYNAMIC = 6
DT_NULL, DT_NEEDED, DT_STRTAB, DT_STRSZ, DT_SONAME = 0, 1, 5, 10, 14


class Malformed(Exception):
    """An ELF file whose structures point outside it (turned into an AirlockError)."""


@dataclass(frozen=True)
class ElfInfo:
    """What the dynamic loader reads of one ELF file."""

    bits: int  # 32 or 64
    little_endian: bool
    machine: int  # e_machine: 62 x86_64, 183 aarch64, 3 i386, 20 ppc, 22 s390
    needed: tuple[str, ...]  # DT_NEEDED, in file order
    soname: str | None  # DT_SONAME


@dataclass(frozen=True)
class _Layout:
    """The struct formats of one ELF class and byte order."""

    bits: int
    order: str

    def fmt(self, fields: str) -> struct.Struct:
        return struct.Struct(self.order + fields)

    @property
    def header(self) -> struct.Struct:
        # e_type e_machine e_version e_entry e_phoff e_shoff e_flags e_ehsize
        # e_phentsize e_phnum e_shentsize e_shnum e_shstrndx
        return self.fmt("HHIQQQIHHHHHH" if self.bits == 64 else "HHIIIIIHHHHHH")

    @property
    def phdr(self) -> struct.Struct:
        # 64: type flags offset vaddr paddr filesz memsz align
        # 32: type offset vaddr paddr filesz memsz flags align
        return self.fmt("IIQQQQQQ" if self.bits == 64 else "IIIIIIII")

    @property
    def shdr(self) -> struct.Struct:
        # name type flags addr offset size link info addralign entsize
        return self.fmt("IIQQQQIIQQ" if self.bits == 64 else "IIIIIIIIII")

    @property
    def dyn(self) -> struct.Struct:
        return self.fmt("qQ" if self.bits == 64 else "iI")


class _Reader:
    """Bounded random access to ``size`` bytes of a seekable binary file."""

    def __init__(self, handle: BinaryIO, size: int) -> None:
        self.handle = handle
        self.size = size

    def read(self, offset: int, length: int, what: str) -> bytes:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise Malformed(f"{what} (bytes {offset}..{offset + length}) lies beyond the "
                            f"end of the file ({self.size} bytes)")
        if length > TABLE_LIMIT:
            raise Malformed(f"{what} claims {length} bytes")
        self.handle.seek(offset)
        data = self.handle.read(length)
        if len(data) != length:
            raise Malformed(f"{what} is cut short (the file ends early)")
        return data


def _size(limit: int) -> str:
    return f"{limit // MiB} MiB" if limit >= MiB else f"{limit} bytes"


def is_elf(head: bytes) -> bool:
    """Whether ``head`` (the first bytes of a file) starts like an ELF file."""
    return head[:4] == MAGIC


def parse(data: bytes, where: str = "ELF file") -> ElfInfo | None:
    """The dynamic-loader view of the ELF file ``data``; None when it is not ELF at all."""
    return parse_stream(io.BytesIO(data), len(data), where)


def read_elf(path: Path, limit: int = MEMBER_LIMIT) -> ElfInfo | None:
    """:func:`parse` of the regular file ``path`` (read in the ranges it needs)."""
    where = str(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as error:
        raise AirlockError(where, f"cannot open: {error.strerror}", "check the path") from None
    info = os.fstat(fd)  # before fdopen, which refuses a directory with its own error
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise AirlockError(where, "is not a regular file", "check the path")
    with os.fdopen(fd, "rb") as handle:
        if info.st_size > limit:
            raise AirlockError(where, f"is larger than {_size(limit)}, the limit for an "
                               "ELF file", FIX)
        try:
            return parse_stream(handle, info.st_size, where)
        except OSError as error:
            raise AirlockError(where, f"cannot read: {error.strerror}", "check the path") \
                from None


def parse_stream(handle: BinaryIO, size: int, where: str) -> ElfInfo | None:
    """:func:`parse` of a seekable file of ``size`` bytes, read only where needed."""
    try:
        return _parse(_Reader(handle, size))
    except Malformed as error:
        raise AirlockError(where, f"not a valid ELF file: {error}", FIX) from None


def _parse(reader: _Reader) -> ElfInfo | None:
    if reader.size < 16:
        return None
    ident = reader.read(0, 16, "the identification")
    if not is_elf(ident):
        return None
    bits = {1: 32, 2: 64}.get(ident[4])
    order = {1: "<", 2: ">"}.get(ident[5])
    if bits is None or order is None or ident[6] != 1:
        return None  # the loader would not take it for ELF either (data that starts alike)
    layout = _Layout(bits, order)
    header = layout.header.unpack(reader.read(16, layout.header.size, "the ELF header"))
    (_type, machine, _version, _start, phoff, shoff, _flags, _ehsize,
     phentsize, phnum, shentsize, shnum, _shstrndx) = header
    loads: list[tuple[int, int, int]] = []  # (vaddr, offset, filesz)
    dynamic: tuple[int, int] | None = None  # (offset, size)
    # The loader reads program headers only; the section headers are read
    # when the program headers do not tell (no PT_DYNAMIC, or PN_XNUM).
    sections: list[tuple] | None = None
    if phnum == PN_XNUM:
        sections = _sections(reader, layout, shoff, shentsize, shnum)
        phnum = sections[0][7] if sections else 0
    for index in range(phnum):
        entry = _entry(reader, layout.phdr, phoff, phentsize, index, "program header")
        if bits == 64:
            p_type, _, p_offset, p_vaddr, _, p_filesz, _, _ = entry
        else:
            p_type, p_offset, p_vaddr, _, p_filesz, _, _, _ = entry
        if p_type == PT_LOAD:
            loads.append((p_vaddr, p_offset, p_filesz))
        elif p_type == PT_DYNAMIC and dynamic is None:
            dynamic = (p_offset, p_filesz)
    strtab: tuple[int, int] | None = None  # (offset, size) from the section headers
    if dynamic is None:
        if sections is None:
            sections = _sections(reader, layout, shoff, shentsize, shnum)
        for index, section in enumerate(sections):
            if section[1] == SHT_DYNAMIC:
                dynamic = (section[4], section[5])
                link = section[6]
                if 0 < link < len(sections) and link != index:
                    strtab = (sections[link][4], sections[link][5])
                break
    if dynamic is None:  # static, an object file, a debug file: needs nothing
        return ElfInfo(bits, order == "<", machine, (), None)
    return _dynamic(reader, layout, machine, dynamic, loads, strtab)


def _sections(reader: _Reader, layout: _Layout, shoff: int, shentsize: int,
              shnum: int) -> list[tuple]:
    """The section headers (none when the file has no table, as the loader allows)."""
    if shoff == 0:
        return []
    first = _entry(reader, layout.shdr, shoff, shentsize, 0, "section header")
    count = shnum or first[5]  # more than 0xff00 sections: the count is in section 0
    if count * max(shentsize, 1) > reader.size:
        raise Malformed(f"{count} section headers do not fit in the file")
    return [first, *(_entry(reader, layout.shdr, shoff, shentsize, index, "section header")
                     for index in range(1, count))]


def _entry(reader: _Reader, shape: struct.Struct, table: int, entsize: int, index: int,
           what: str) -> tuple:
    if entsize < shape.size:
        raise Malformed(f"{what} entries of {entsize} bytes are too small")
    return shape.unpack(reader.read(table + index * entsize, shape.size, f"{what} {index}"))


def _dynamic(reader: _Reader, layout: _Layout, machine: int, dynamic: tuple[int, int],
             loads: list[tuple[int, int, int]], strtab: tuple[int, int] | None) -> ElfInfo:
    offset, size = dynamic
    table = reader.read(offset, size, "the dynamic section")
    needed: list[int] = []
    soname: int | None = None
    address: int | None = None
    strsz: int | None = None
    for tag, value in layout.dyn.iter_unpack(table[:len(table) - len(table) % layout.dyn.size]):
        if tag == DT_NULL:
            break
        if tag == DT_NEEDED:
            needed.append(value)
            if len(needed) > NEEDED_LIMIT:
                raise Malformed(f"more than {NEEDED_LIMIT} needed libraries")
        elif tag == DT_SONAME:
            soname = value
        elif tag == DT_STRTAB:
            address = value
        elif tag == DT_STRSZ:
            strsz = value
    little = layout.order == "<"
    if not needed and soname is None:
        return ElfInfo(layout.bits, little, machine, (), None)
    if address is not None and strsz is not None and loads:
        strtab = (_file_offset(address, loads), strsz)
    if strtab is None:
        raise Malformed("the dynamic section has names but no string table (DT_STRTAB, "
                        "DT_STRSZ)")
    # Names are read one by one, in file order (a string table of a large
    # C++ library holds tens of MiB of symbol names nobody needs here).
    names = {index: _name(reader, strtab, index) for index in sorted({*needed, soname} - {None})}
    return ElfInfo(layout.bits, little, machine, tuple(names[index] for index in needed),
                   None if soname is None else names[soname])


def _name(reader: _Reader, strtab: tuple[int, int], index: int) -> str:
    """The NUL-terminated name at ``index`` of the string table ``strtab`` (offset, size)."""
    offset, size = strtab
    if index >= size:
        raise Malformed(f"name {index} lies beyond the string table ({size} bytes)")
    chunk = reader.read(offset + index, min(NAME_LIMIT + 1, size - index), f"name {index}")
    text, nul, _ = chunk.partition(b"\0")
    if not nul or not _NAME.fullmatch(text):
        raise Malformed(f"name {index} is unterminated, empty or not printable ASCII")
    return text.decode("ascii")


def _file_offset(vaddr: int, loads: list[tuple[int, int, int]]) -> int:
    """The file offset of the address ``vaddr``, through the load segments."""
    for start, offset, filesz in loads:
        if start <= vaddr < start + filesz:
            return offset + vaddr - start
    raise Malformed(f"the string table address {vaddr:#x} is in no load segment")


# --- wheels ---------------------------------------------------------------


@dataclass(frozen=True)
class _Scan:
    """One wheel's ELF members: what each needs, and the names the wheel provides."""

    needs: dict[str, tuple[str, ...]]
    provides: frozenset[str]


def wheel_needs(wheel: Path, limit: int = MEMBER_LIMIT) -> dict[str, list[str]]:
    """{member: sorted sonames} of the wheel's ELF members that need a library it lacks.

    A needed name the wheel provides itself (the basename or DT_SONAME of
    one of its own ELF members, such as auditwheel's ``<pkg>.libs/``) is not
    listed; members that need nothing from outside are left out.
    """
    scan = _scan(Path(wheel), limit)
    return _outside(scan.needs, scan.provides)


def needs_of(wheels: Iterable[Path], limit: int = MEMBER_LIMIT,
             ) -> dict[str, dict[str, list[str]]]:
    """{wheel file name: wheel_needs} over a set of wheels installed together.

    A library carried by any wheel of the set (numpy.libs for scipy) counts
    as provided for all of them. Wheels that need nothing from outside are
    left out; a file name seen twice (the same wheel in two folders) is
    merged.
    """
    scans: dict[str, list[_Scan]] = {}
    for wheel in wheels:
        scans.setdefault(Path(wheel).name, []).append(_scan(Path(wheel), limit))
    provided = frozenset().union(*(s.provides for group in scans.values() for s in group))
    result: dict[str, dict[str, list[str]]] = {}
    for name in sorted(scans):
        merged: dict[str, tuple[str, ...]] = {}
        for scan in scans[name]:
            for member, needed in scan.needs.items():
                merged[member] = tuple(sorted({*merged.get(member, ()), *needed}))
        outside = _outside(merged, provided)
        if outside:
            result[name] = outside
    return result


def _outside(needs: dict[str, tuple[str, ...]], provided: frozenset[str],
             ) -> dict[str, list[str]]:
    result = {}
    for member in sorted(needs):
        missing = sorted({name for name in needs[member] if name not in provided})
        if missing:
            result[member] = missing
    return result


def _scan(wheel: Path, limit: int) -> _Scan:
    where = str(wheel)
    fix = "remove the file from the wheel cache and fetch or build it again"
    try:
        fd = os.open(wheel, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as error:
        raise AirlockError(where, f"cannot open: {error.strerror}", "check the path") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise AirlockError(where, "is not a regular file", "check the path")
    with os.fdopen(fd, "rb") as handle:
        try:
            with zipfile.ZipFile(handle) as archive:
                members = archive.infolist()
                if len(members) > MEMBERS_LIMIT:
                    raise AirlockError(where, f"has {len(members)} members, more than "
                                       f"{MEMBERS_LIMIT}", fix)
                found = {m.filename: _member(archive, m, where, limit) for m in members}
        except ZIP_ERRORS as error:
            raise AirlockError(where, f"not a readable wheel (zip): {error}", fix) from None
        except OSError as error:
            raise AirlockError(where, f"cannot read: {error.strerror or error}", fix) from None
    elves = {name: info for name, info in found.items() if info is not None}
    provides = {name.rsplit("/", 1)[-1] for name in elves}
    provides |= {info.soname for info in elves.values() if info.soname}
    return _Scan({name: info.needed for name, info in elves.items() if info.needed},
                 frozenset(provides))


def _member(archive: zipfile.ZipFile, member: zipfile.ZipInfo, wheel: str,
            limit: int) -> ElfInfo | None:
    """The ElfInfo of one member; None for a directory, a link or anything not ELF.

    A symbolic link (S_IFLNK in the zip's Unix mode) is never followed nor
    read: pip installs it as a file holding the target's name, no library.
    """
    kind = stat.S_IFMT(member.external_attr >> 16)  # 0: a zip made without file types
    if member.is_dir() or kind not in (0, stat.S_IFREG) or member.file_size < 16:
        return None
    where = f"{wheel}:{member.filename}"
    if member.file_size > limit:
        raise AirlockError(where, f"declares {member.file_size} bytes, more than the "
                           f"{_size(limit)} allowed for one member", FIX)
    try:
        with archive.open(member) as handle:
            # zipfile never yields more than the declared size; a member
            # whose data ends before it is "cut short" in the parse.
            if not is_elf(handle.read(4)):
                return None
            return parse_stream(handle, member.file_size, where)  # type: ignore[arg-type]
    except ZIP_ERRORS as error:
        raise AirlockError(where, f"cannot be read from the zip: {error}", FIX) from None
