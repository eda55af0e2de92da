"""What a wheel's compiled modules need from the image, read from real and hostile ELF files.

Real files first: the host's own libraries and the interpreter's
extension modules (checked against what ``readelf`` says, when binutils is
there), and a real manylinux wheel from a local folder (auditwheel's
bundled ``.libs`` are not reported, libc is). The other classes and byte
orders (aarch64, 32-bit, big-endian) are built byte by byte
(:mod:`elffixture`): the host has no such libraries and no cross
toolchain. Hostile files (cut short, offsets past the end, huge counts,
random damage) and hostile zips (not a zip, a huge declared member, data
shorter than declared, a symbolic link member, a FIFO) must each end in
None or one AirlockError, never another exception.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import random
import re
import shutil
import stat
import struct
import subprocess
import tempfile
import tracemalloc
import unittest
import zipfile
from pathlib import Path

from airlock.errors import AirlockError
from airlock.inputs import elf
from airlock.tests.unit.elffixture import EM, make_elf, make_wheel

MULTIARCH = "/usr/lib/x86_64-linux-gnu"
# Local folders that may hold real manylinux wheels (no network in unit tests).
WHEEL_DIRS = ["/opt/wheels", "/opt/pypi/files", "/opt/pypi-more/files",
              os.path.expanduser("~/.cache/pip/wheels")]
# Wheels that bundle libraries with auditwheel, best first.
BUNDLING = ["psycopg2_binary-*manylinux*x86_64.whl", "numpy-*manylinux*x86_64.whl",
            "pillow-*manylinux*x86_64.whl"]


def readelf(path: str) -> tuple[tuple[str, ...], str | None] | None:
    """(needed, soname) as binutils' readelf reads them; None without readelf."""
    if not shutil.which("readelf"):
        return None
    out = subprocess.run(["readelf", "-dW", path], capture_output=True, text=True,
                         timeout=60).stdout
    needed = tuple(re.findall(r"\(NEEDED\)\s+Shared library: \[(.*)\]", out))
    soname = re.findall(r"\(SONAME\)\s+Library soname: \[(.*)\]", out)
    return needed, (soname[0] if soname else None)


def local_wheel() -> Path | None:
    for pattern in BUNDLING:
        for folder in WHEEL_DIRS:
            found = sorted(glob.glob(f"{folder}/**/{pattern}", recursive=True))
            if found:
                return Path(found[-1])
    return None


class HostLibraryTest(unittest.TestCase):
    """The host's own ELF files, as the dynamic loader reads them."""

    def test_ssl_module_needs_libssl_and_libcrypto(self) -> None:
        spec = importlib.util.find_spec("_ssl")
        if spec is None or not spec.origin or not spec.origin.endswith(".so"):
            self.skipTest("this Python has _ssl built in, not as an extension module")
        info = elf.read_elf(Path(spec.origin))
        self.assertIsNotNone(info)
        self.assertIn("libssl.so.3", info.needed)
        self.assertIn("libcrypto.so.3", info.needed)
        self.assertIsNone(info.soname)
        self.assertEqual((info.bits, info.little_endian, info.machine), (64, True, 62))

    def test_libldap_names_itself_and_its_needs(self) -> None:
        paths = sorted(glob.glob(f"{MULTIARCH}/libldap*.so.*"))
        if not paths:
            self.skipTest(f"no libldap in {MULTIARCH}")
        info = elf.read_elf(Path(paths[0]))
        self.assertRegex(info.soname, r"^libldap(-[0-9.]+)?\.so\.\d+$")
        self.assertTrue(any(name.startswith("liblber") for name in info.needed))
        self.assertIn("libc.so.6", info.needed)

    def test_host_files_agree_with_readelf(self) -> None:
        paths = sorted(glob.glob(f"{MULTIARCH}/lib*.so*"))[:200] + ["/bin/ls"]
        if readelf(paths[-1]) is None:
            self.skipTest("binutils' readelf is not installed")
        checked = 0
        for path in paths:
            if not os.path.isfile(path):
                continue
            info = elf.read_elf(Path(path))
            mine = (info.needed, info.soname) if info else ((), None)
            self.assertEqual(mine, readelf(path), path)
            checked += 1
        self.assertGreater(checked, 10)

    def test_not_elf_is_none(self) -> None:
        self.assertIsNone(elf.parse(b"#!/bin/sh\necho hello\n"))
        self.assertIsNone(elf.parse(b""))
        self.assertIsNone(elf.read_elf(Path("/etc/hostname" if os.path.exists(
            "/etc/hostname") else __file__)))

    def test_a_fifo_or_folder_is_refused_without_blocking(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            fifo = Path(tmp, "lib.so")
            os.mkfifo(fifo)
            for path in (fifo, Path(tmp)):
                with self.assertRaisesRegex(AirlockError, "is not a regular file"):
                    elf.read_elf(path)


class ClassesAndByteOrdersTest(unittest.TestCase):
    """aarch64, 32-bit and big-endian files, as their linkers lay them out."""

    CASES = [(64, True, "aarch64"), (64, True, "x86_64"), (32, True, "i386"),
             (32, False, "ppc"), (64, False, "s390x")]

    def test_every_class_and_order_through_program_headers(self) -> None:
        for bits, little, machine in self.CASES:
            data = make_elf(["libc.so.6", "libz.so.1"], "libfoo.so.1", bits=bits,
                            little=little, machine=EM[machine], section_headers=False)
            self.assertEqual(elf.parse(data), elf.ElfInfo(
                bits, little, EM[machine], ("libc.so.6", "libz.so.1"), "libfoo.so.1"),
                machine)

    def test_section_headers_when_there_are_no_program_headers(self) -> None:
        for bits, little, machine in self.CASES:
            data = make_elf(["libm.so.6"], None, bits=bits, little=little,
                            machine=EM[machine], program_headers=False)
            info = elf.parse(data)
            self.assertEqual((info.needed, info.soname), (("libm.so.6",), None), machine)

    def test_no_dynamic_section_needs_nothing(self) -> None:
        data = make_elf([], None, program_headers=False, section_headers=False)
        self.assertEqual(elf.parse(data).needed, ())


def _patch(data: bytes, offset: int, fmt: str, value: int) -> bytes:
    out = bytearray(data)
    struct.pack_into(fmt, out, offset, value)
    return bytes(out)


class HostileElfTest(unittest.TestCase):
    """Damaged files: None or one AirlockError, never a traceback or a huge read."""

    good = make_elf(["libc.so.6", "libssl.so.3"], "libx.so.1")

    def assertRefused(self, data: bytes, pattern: str) -> None:
        with self.assertRaisesRegex(AirlockError, pattern) as caught:
            elf.parse(data, "x.so")
        self.assertTrue(str(caught.exception).startswith("x.so: not a valid ELF file: "))
        self.assertNotIn("\n", str(caught.exception))

    def test_every_truncation(self) -> None:
        for length in range(len(self.good)):
            try:
                info = elf.parse(self.good[:length], "x.so")
            except AirlockError as error:
                self.assertIn("not a valid ELF file", str(error))
                continue
            # Cut in the section headers: the loader never reads them.
            self.assertTrue(info is None or info.needed == ("libc.so.6", "libssl.so.3"),
                            length)

    def test_a_real_library_cut_short(self) -> None:
        path = Path(MULTIARCH, "libz.so.1")
        if not path.exists():
            self.skipTest(f"no {path}")
        data = path.read_bytes()
        self.assertRefused(data[:30], "the ELF header .* lies beyond the end")
        self.assertRefused(data[:4096], "beyond the end of the file")

    def test_offsets_beyond_the_file(self) -> None:
        self.assertRefused(_patch(self.good, 32, "<Q", 1 << 62),  # e_phoff
                           "program header 0 .* lies beyond the end of the file")
        dynamic_phdr = 64 + 56
        self.assertRefused(_patch(self.good, dynamic_phdr + 8, "<Q", 10**12),  # p_offset
                           "the dynamic section .* lies beyond the end")
        self.assertRefused(_patch(self.good, dynamic_phdr + 32, "<Q", 1 << 40),  # p_filesz
                           "the dynamic section .* lies beyond the end")

    def test_huge_counts_are_refused_before_any_allocation(self) -> None:
        no_phdrs = make_elf(["libc.so.6"], program_headers=False)
        shoff = struct.unpack_from("<Q", no_phdrs, 40)[0]
        # e_shnum 0: the count is section 0's sh_size, here 2**60.
        huge = _patch(_patch(no_phdrs, 60, "<H", 0), shoff + 32, "<Q", 1 << 60)
        self.assertRefused(huge, "section headers do not fit in the file")
        self.assertRefused(_patch(self.good, 54, "<H", 8), "entries of 8 bytes are too small")

    def test_names_outside_the_string_table(self) -> None:
        dynoff = struct.unpack_from("<Q", self.good, 64 + 56 + 8)[0]
        self.assertRefused(_patch(self.good, dynoff + 8, "<Q", 1 << 33),  # DT_NEEDED value
                           "name 8589934592 lies beyond the string table")
        # DT_STRTAB pointing into no load segment.
        self.assertRefused(_patch(self.good, dynoff + 3 * 16 + 8, "<Q", 0x10),
                           "address 0x10 is in no load segment")

    def test_unprintable_names_are_refused(self) -> None:
        evil = self.good.replace(b"libssl.so.3\0", b"lib\nssl.so\0\0")
        self.assertRefused(evil, "not printable ASCII")

    def test_too_many_needed_entries(self) -> None:
        many = make_elf([f"lib{i}.so" for i in range(elf.NEEDED_LIMIT + 1)])
        self.assertRefused(many, f"more than {elf.NEEDED_LIMIT} needed libraries")

    def test_unknown_class_order_or_version_is_not_elf(self) -> None:
        for at in (4, 5, 6):
            self.assertIsNone(elf.parse(self.good[:at] + b"\x07" + self.good[at + 1:]))

    def test_random_damage(self) -> None:
        rng = random.Random(7)
        for _ in range(3000):
            data = bytearray(self.good)
            for _ in range(rng.randint(1, 6)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            try:
                info = elf.parse(bytes(data), "x.so")
            except AirlockError as error:
                self.assertNotIn("\n", str(error))
                continue
            self.assertTrue(info is None or isinstance(info, elf.ElfInfo))


class WheelTest(unittest.TestCase):

    def setUp(self) -> None:
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        self.tmp = Path(tmp.name)

    def test_a_real_manylinux_wheel(self) -> None:
        wheel = local_wheel()
        if wheel is None:
            self.skipTest(f"no manylinux wheel that bundles libraries ({BUNDLING[0]}...) "
                          f"in {', '.join(WHEEL_DIRS)}")
        needs = elf.wheel_needs(wheel)
        with zipfile.ZipFile(wheel) as archive:
            bundled = {Path(name).name for name in archive.namelist()
                       if re.search(r"\.libs/[^/]+\.so[.0-9]*$", name)}
            all_needed = set()
            for name in archive.namelist():
                if re.search(r"\.so(\.[0-9]+)*$", name):
                    all_needed |= set(elf.parse(archive.read(name)).needed)
        self.assertTrue(bundled & all_needed, f"{wheel.name} bundles nothing it uses")
        reported = {name for names in needs.values() for name in names}
        self.assertEqual(reported & bundled, set())
        self.assertIn("libc.so.6", reported)
        self.assertTrue(any(member.endswith(".so") and ".libs/" not in member
                            for member in needs), needs)
        for names in needs.values():
            self.assertEqual(names, sorted(set(names)))

    def test_bundled_libraries_are_provided_by_name_and_by_soname(self) -> None:
        wheel = make_wheel(self.tmp / "pkg-1.0-cp311-cp311-linux_x86_64.whl", {
            "pkg/_ext.cpython-311-aarch64-linux-gnu.so": make_elf(
                ["libfoo-12ab34cd.so.1", "libbar.so.2", "libc.so.6"], machine=183),
            "pkg.libs/libfoo-12ab34cd.so.1": make_elf(["libz.so.1"], "libfoo.so.1"),
            "pkg.libs/anything.so": make_elf(["libc.so.6"], "libbar.so.2"),
            "pkg/__init__.py": b"",
            "pkg/data/empty.so": b"",
            "pkg-1.0.data/scripts/tool": make_elf(["libssl.so.3"]),
            "pkg/notes.txt": b"\x7fELF but not really",
        })
        self.assertEqual(elf.wheel_needs(wheel), {
            "pkg-1.0.data/scripts/tool": ["libssl.so.3"],
            "pkg.libs/anything.so": ["libc.so.6"],
            "pkg.libs/libfoo-12ab34cd.so.1": ["libz.so.1"],
            "pkg/_ext.cpython-311-aarch64-linux-gnu.so": ["libc.so.6"],
        })

    def test_a_wheelhouse_provides_across_wheels(self) -> None:
        numpy = make_wheel(self.tmp / "numpy-2.0-cp311-cp311-linux_x86_64.whl", {
            "numpy.libs/libopenblas-ab12.so": make_elf(["libc.so.6"], "libopenblas-ab12.so"),
            "numpy/core/_multiarray.so": make_elf(["libopenblas-ab12.so"]),
        })
        scipy = make_wheel(self.tmp / "scipy-1.0-cp311-cp311-linux_x86_64.whl", {
            "scipy/linalg/_fblas.so": make_elf(["libopenblas-ab12.so", "libgfortran.so.5"]),
        })
        pure = make_wheel(self.tmp / "six-1.0-py3-none-any.whl", {"six.py": b""})
        copy = self.tmp / "again"
        copy.mkdir()
        shutil.copy(scipy, copy / scipy.name)
        self.assertEqual(elf.needs_of([numpy, scipy, pure, copy / scipy.name]), {
            "numpy-2.0-cp311-cp311-linux_x86_64.whl": {
                "numpy.libs/libopenblas-ab12.so": ["libc.so.6"]},
            "scipy-1.0-cp311-cp311-linux_x86_64.whl": {
                "scipy/linalg/_fblas.so": ["libgfortran.so.5"]},
        })
        self.assertEqual(elf.wheel_needs(scipy), {
            "scipy/linalg/_fblas.so": ["libgfortran.so.5", "libopenblas-ab12.so"]})


class HostileWheelTest(unittest.TestCase):

    def setUp(self) -> None:
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        self.tmp = Path(tmp.name)
        self.wheel = self.tmp / "pkg-1.0-py3-none-any.whl"

    def test_not_a_zip(self) -> None:
        self.wheel.write_bytes(make_elf(["libc.so.6"]))
        with self.assertRaisesRegex(AirlockError, r"^\S+pkg-1.0-py3-none-any.whl: not a "
                                    "readable wheel \\(zip\\): File is not a zip file; "
                                    "remove the file"):
            elf.wheel_needs(self.wheel)

    def test_a_fifo_is_not_opened_for_reading(self) -> None:
        os.mkfifo(self.wheel)
        with self.assertRaisesRegex(AirlockError, "is not a regular file"):
            elf.wheel_needs(self.wheel)

    def test_a_symbolic_link_member_is_neither_read_nor_a_provider(self) -> None:
        make_wheel(self.wheel, {
            "pkg/_ext.so": make_elf(["libfoo.so.1"]),
            # A link whose "target" is ELF bytes: never parsed, provides nothing.
            "pkg.libs/libfoo.so.1": (make_elf(["libevil.so"], "libfoo.so.1"),
                                     stat.S_IFLNK | 0o777),
        })
        self.assertEqual(elf.wheel_needs(self.wheel), {"pkg/_ext.so": ["libfoo.so.1"]})

    def test_a_zero_length_member(self) -> None:
        make_wheel(self.wheel, {"pkg/_ext.so": b"", "pkg/other.so.1": b"\x7fELF"})
        self.assertEqual(elf.wheel_needs(self.wheel), {})

    def test_a_member_over_the_limit(self) -> None:
        make_wheel(self.wheel, {"pkg/_big.so": make_elf(["libc.so.6"]) + bytes(5000)})
        with self.assertRaisesRegex(AirlockError, r"pkg-1.0-py3-none-any.whl:pkg/_big.so: "
                                    r"declares \d+ bytes, more than the 4096 bytes allowed"):
            elf.wheel_needs(self.wheel, limit=4096)

    def test_a_huge_declared_size_is_refused_unread(self) -> None:
        make_wheel(self.wheel, {"pkg/_ext.so": make_elf(["libc.so.6"])})
        data = bytearray(self.wheel.read_bytes())
        central = data.index(b"PK\x01\x02")
        struct.pack_into("<I", data, central + 24, 0xFFFFFFF0)  # uncompressed size
        self.wheel.write_bytes(bytes(data))
        with self.assertRaisesRegex(AirlockError, r":pkg/_ext.so: declares 4294967280 bytes"):
            elf.wheel_needs(self.wheel)

    def test_data_shorter_than_declared(self) -> None:
        make_wheel(self.wheel, {"pkg/_ext.so": make_elf(["libc.so.6"])[:100]})
        data = bytearray(self.wheel.read_bytes())
        central = data.index(b"PK\x01\x02")
        struct.pack_into("<I", data, central + 24, 1 << 20)
        self.wheel.write_bytes(bytes(data))
        with self.assertRaisesRegex(AirlockError, r"pkg-1.0-py3-none-any.whl:pkg/_ext.so: "):
            elf.wheel_needs(self.wheel)

    def test_a_damaged_member(self) -> None:
        make_wheel(self.wheel, {"pkg/_ext.so": make_elf(["libc.so.6"])[:80]})
        with self.assertRaisesRegex(AirlockError, r":pkg/_ext.so: not a valid ELF file: "
                                    "program header 0 .* lies beyond the end"):
            elf.wheel_needs(self.wheel)

    def test_a_zip_bomb_member_costs_only_what_is_read(self) -> None:
        # 64 MiB of zeros behind an ELF header: deflated to 64 KiB, parsed
        # without inflating more than the parse reads (a few blocks).
        head = make_elf([], None, section_headers=False)
        with zipfile.ZipFile(self.wheel, "w", zipfile.ZIP_DEFLATED) as archive:
            with archive.open("pkg/_bomb.so", "w") as member:
                member.write(head)
                for _ in range(64):
                    member.write(bytes(1 << 20))
        self.assertLess(self.wheel.stat().st_size, 1 << 20)
        tracemalloc.start()
        try:
            self.assertEqual(elf.wheel_needs(self.wheel), {})
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        self.assertLess(peak, 4 << 20)
        with self.assertRaisesRegex(AirlockError, r"declares 671\d+ bytes, more than the "
                                    "32 MiB allowed for one member"):
            elf.wheel_needs(self.wheel, limit=32 << 20)

if __name__ == "__main__":
    unittest.main()
