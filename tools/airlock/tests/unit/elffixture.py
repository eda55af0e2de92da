"""Minimal ELF shared objects built byte by byte, for every class and byte order.

The host has only x86_64 libraries and no cross toolchain; these bytes are
what a linker writes for the parts the dynamic loader (and
:mod:`airlock.inputs.elf`) reads: the ELF header, a PT_LOAD segment mapping
the whole file, a PT_DYNAMIC segment, the dynamic string table and,
optionally, section headers (.dynstr, .dynamic linked to it).
"""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path

BASE = 0x400000  # where the one load segment maps offset 0
EM = {"i386": 3, "ppc": 20, "s390x": 22, "x86_64": 62, "aarch64": 183}


def make_elf(needed: list[str], soname: str | None = None, *, bits: int = 64,
             little: bool = True, machine: int = 62, program_headers: bool = True,
             section_headers: bool = True) -> bytes:
    """An ELF shared object that needs ``needed`` and is called ``soname``."""
    o = "<" if little else ">"
    word = "Q" if bits == 64 else "I"
    ehsize = 64 if bits == 64 else 52
    phentsize = 56 if bits == 64 else 32
    shentsize = 64 if bits == 64 else 40
    dynsize = 16 if bits == 64 else 8
    phnum = 2 if program_headers else 0

    strtab = b"\0"
    index: dict[str, int] = {}
    for name in [*needed, *([soname] if soname else [])]:
        index[name] = len(strtab)
        strtab += name.encode() + b"\0"
    stroff = ehsize + phnum * phentsize
    dynoff = (stroff + len(strtab) + 7) & ~7
    entries = [(1, index[n]) for n in needed]
    if soname:
        entries.append((14, index[soname]))
    entries += [(5, BASE + stroff), (10, len(strtab)), (0, 0)]
    dyn_fmt = o + ("qQ" if bits == 64 else "iI")
    dynamic = b"".join(struct.pack(dyn_fmt, tag, value) for tag, value in entries)
    shoff = dynoff + len(dynamic)
    shnum = 3 if section_headers else 0
    size = shoff + shnum * shentsize

    def phdr(p_type: int, offset: int, length: int) -> bytes:
        if bits == 64:
            return struct.pack(o + "IIQQQQQQ", p_type, 6, offset, BASE + offset,
                               BASE + offset, length, length, 8)
        return struct.pack(o + "IIIIIIII", p_type, offset, BASE + offset, BASE + offset,
                           length, length, 6, 4)

    def shdr(sh_type: int, offset: int, length: int, link: int, entsize: int) -> bytes:
        return struct.pack(o + "II" + word * 4 + "II" + word * 2, 0, sh_type, 2 if sh_type else 0,
                           BASE + offset if sh_type else 0, offset, length, link, 0, 8,
                           entsize)

    header = b"\x7fELF" + bytes([1 if bits == 32 else 2, 1 if little else 2, 1]) + bytes(9)
    header += struct.pack(o + "HHI" + word * 3 + "IHHHHHH", 3, machine, 1, 0,
                          ehsize if program_headers else 0, shoff if section_headers else 0,
                          0, ehsize, phentsize, phnum, shentsize, shnum,
                          0)
    data = bytearray(size)
    data[:ehsize] = header
    if program_headers:
        data[ehsize:ehsize + phentsize] = phdr(1, 0, size)
        data[ehsize + phentsize:stroff] = phdr(2, dynoff, len(dynamic))
    data[stroff:stroff + len(strtab)] = strtab
    data[dynoff:dynoff + len(dynamic)] = dynamic
    if section_headers:
        sections = shdr(0, 0, 0, 0, 0) + shdr(3, stroff, len(strtab), 0, 0) \
            + shdr(6, dynoff, len(dynamic), 1, dynsize)
        data[shoff:] = sections
    return bytes(data)


def make_wheel(path: Path, members: dict[str, bytes | tuple[bytes, int]]) -> Path:
    """A zip at ``path``; a tuple value is (content, Unix mode for external_attr)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, value in members.items():
            content, mode = value if isinstance(value, tuple) else (value, 0o100644)
            info = zipfile.ZipInfo(name, (2020, 1, 1, 0, 0, 0))
            info.external_attr = mode << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, content)
    return path
