"""Owners of shared libraries from real ``dpkg-query -S`` output, and a wheelhouse resolved.

The host is Debian: its own dpkg database answers :data:`OWNERS_SCRIPT`
here exactly as an image's does in a container (the functional test
asks images). Lines this host lacks (another architecture's folder, a
diverted file with two owners) are added to the real output.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import unittest
from pathlib import Path

from airlock.errors import AirlockError, ToolError
from airlock.inputs import elf, sharedlibs
from airlock.tests.unit.elffixture import make_elf, make_wheel
from airlock.tests.unit.test_elf import local_wheel

TRIPLET = "x86_64-linux-gnu"


def host_output() -> str:
    if not shutil.which("dpkg-query"):
        raise unittest.SkipTest("the host has no dpkg-query (not Debian)")
    proc = subprocess.run(["sh", "-c", sharedlibs.OWNERS_SCRIPT], capture_output=True,
                          text=True, timeout=120, check=True)
    return proc.stdout


class ParseOwnersTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls) -> None:
        cls.text = host_output()
        cls.owners = sharedlibs.parse_owners(cls.text, TRIPLET)

    def test_the_hosts_libraries(self) -> None:
        self.assertEqual(self.owners["libc.so.6"], "libc6")
        self.assertEqual(self.owners["libz.so.1"], "zlib1g")
        self.assertEqual(self.owners["libpthread.so.0"], "libc6")
        # Found in /usr/lib/<triplet> only on this usr-merged host: the
        # dynamic loader's own name is a library like the others.
        self.assertEqual(self.owners["ld-linux-x86-64.so.2"], "libc6")
        self.assertRegex(self.owners["libssl.so.3"], r"^libssl3(t64)?$")

    def test_only_names_in_library_folders_without_architecture(self) -> None:
        self.assertTrue(all(":" not in package for package in self.owners.values()))
        folders = {f"/lib/{TRIPLET}", f"/usr/lib/{TRIPLET}", "/lib", "/usr/lib"}
        shipped = {path.rsplit("/", 1)[1] for line in self.text.splitlines()
                   for path in [line.split(": ", 1)[-1]] if path.rsplit("/", 1)[0] in folders}
        self.assertEqual(set(self.owners) - shipped, set())
        module = "python3-x: /usr/lib/python3/dist-packages/_x.cpython-311-x86_64-linux-gnu.so"
        owners = sharedlibs.parse_owners(f"{self.text}\n{module}\n", TRIPLET)
        self.assertFalse(any(name.startswith("_x.cpython") for name in owners))
        # ld.so.conf.d matches the pattern but is no library.
        self.assertFalse("ld.so.conf.d" in self.owners)

    def test_another_architectures_folder_does_not_count(self) -> None:
        extra = ("zlib1g:i386: /usr/lib/i386-linux-gnu/libz.so.1\n"
                 "libonly32:i386: /usr/lib/i386-linux-gnu/libonly32.so.4\n")
        self.assertNotIn("libonly32.so.4", sharedlibs.parse_owners(self.text + extra, TRIPLET))
        self.assertEqual(sharedlibs.parse_owners(self.text + extra, TRIPLET)["libz.so.1"],
                         "zlib1g")
        self.assertEqual(sharedlibs.parse_owners(self.text + extra)["libonly32.so.4"],
                         "libonly32")

    def test_the_loaders_folder_order_and_diversions_decide(self) -> None:
        text = ("diversion by libnew from: /usr/lib/x86_64-linux-gnu/libdup.so.1\n"
                "diversion by libnew to: /usr/lib/x86_64-linux-gnu/libdup.so.1.distrib\n"
                "libold:amd64, libnew:amd64: /usr/lib/x86_64-linux-gnu/libdup.so.1\n"
                "local diversion from: /usr/lib/libx.so.1\n"
                "local diversion to: /usr/lib/libx.so.1.orig\n"
                "pkg-usr: /usr/lib/libboth.so.2\n"
                "pkg-multiarch:amd64: /lib/x86_64-linux-gnu/libboth.so.2\n"
                "pkg-a, pkg-b: /usr/lib/libshared.so.3\n"
                "pkg-dev:amd64: /usr/lib/x86_64-linux-gnu/libdup.so\n"
                "pkg-doc: /usr/share/doc/libdup.so.1/copyright\n"
                "\n")
        self.assertEqual(sharedlibs.parse_owners(text, TRIPLET), {
            "libboth.so.2": "pkg-multiarch", "libdup.so": "pkg-dev", "libdup.so.1": "libnew",
            "libshared.so.3": "pkg-a"})

    def test_unknown_output_is_one_line_naming_the_line(self) -> None:
        for bad in ("dpkg-query: no path found matching pattern *.so*",
                    "Libc6: /lib/libc.so.6", "libc6 /lib/libc.so.6", "libc6:\x1b[31m: /x"):
            with self.subTest(bad=bad), self.assertRaises(ToolError) as caught:
                sharedlibs.parse_owners(f"zlib1g: /lib/libz.so.1\n{bad}\n", where="img")
            message = str(caught.exception)
            self.assertTrue(message.startswith("img: line 2: unexpected output "), message)
            self.assertNotIn("\x1b", message)
            self.assertNotIn("\n", message)


class ResolveTest(unittest.TestCase):

    def test_a_wheelhouse_against_the_hosts_packages(self) -> None:
        owners = sharedlibs.parse_owners(host_output(), TRIPLET)
        with tempfile.TemporaryDirectory() as tmp:
            built = make_wheel(Path(tmp, "ldapish-1.0-cp311-cp311-linux_x86_64.whl"), {
                "_ldap.so": make_elf(["libldap-2.5.so.0", "libc.so.6", "libnotthere.so.9"]),
            })
            wheels = [built] + ([local_wheel()] if local_wheel() else [])
            needed = elf.needs_of(wheels)
        packages, unresolved = sharedlibs.resolve(needed, owners)
        self.assertEqual(unresolved, [
            ("ldapish-1.0-cp311-cp311-linux_x86_64.whl", "_ldap.so", "libnotthere.so.9")])
        self.assertEqual(packages["libc.so.6"], "libc6")
        if "libldap-2.5.so.0" in owners:
            self.assertEqual(packages["libldap-2.5.so.0"], "libldap-2.5-0")
        every = {name for members in needed.values() for names in members.values()
                 for name in names}
        self.assertEqual(set(packages) | {"libnotthere.so.9"}, every)

    def test_nothing_needed(self) -> None:
        self.assertEqual(sharedlibs.resolve({}, {"libc.so.6": "libc6"}), ({}, []))


class OwnersInputTest(unittest.TestCase):
    """Bad arguments are refused before the engine or a registry is reached."""

    def test_bad_platform_and_references(self) -> None:
        digest = "sha256:" + "0" * 64
        for image, platform, pattern in (
                (f"127.0.0.1:5000/a@{digest}", "linux/s390x", "not a platform"),
                (f"debian@{digest}", "linux/amd64", "does not start with a registry host"),
                ("127.0.0.1:5000/a@sha256:12", "linux/amd64", "has a malformed digest")):
            with self.subTest(image=image), self.assertRaisesRegex(AirlockError, pattern):
                sharedlibs.owners(image, platform, cache=Path("/nonexistent"))


if __name__ == "__main__":
    unittest.main()
