"""Base image inputs, the mirror lookup and the mmdebstrap command (no engine)."""

from __future__ import annotations

import tempfile
import unittest
from pathlib import Path

from airlock.data import platforms
from airlock.errors import AirlockError
from airlock.files import json_digest
from airlock.inputs import aptmirror, baseimage

SOURCES = """\
Types: deb
# a comment
URIs: http://mirror.invalid/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.invalid/debian-security
Suites: bookworm-security
Components: main
"""


def spec(**changes) -> baseimage.BaseSpec:
    base = dict(ref="127.0.0.1:5000/airlock/debian:bookworm", codename="bookworm",
                platforms=("linux/amd64", "linux/arm64"), mirror="http://mirror.invalid/debian")
    base.update(changes)
    return baseimage.BaseSpec(**base)


class TestMirror(unittest.TestCase):

    def test_bookworm_entry_not_security(self):
        self.assertEqual(aptmirror.mirror_from_sources(SOURCES, "bookworm"),
                         "http://mirror.invalid/debian")
        self.assertEqual(aptmirror.mirror_from_sources(SOURCES, "bookworm-security"),
                         "http://mirror.invalid/debian-security")
        # A host of another release: its main mirror serves every suite.
        self.assertEqual(aptmirror.mirror_from_sources(SOURCES, "trixie"),
                         "http://mirror.invalid/debian")

    def test_one_line_sources_list(self):
        text = ("# deb http://old.invalid/debian bookworm main\n"
                "deb [arch=amd64 signed-by=/k.gpg] http://mirror.invalid/debian bookworm main\n"
                "deb http://mirror.invalid/debian-security bookworm-security main\n")
        self.assertEqual(aptmirror.mirror_from_sources(text, "bookworm"),
                         "http://mirror.invalid/debian")
        self.assertEqual(aptmirror.mirror_from_sources(text, "bookworm-security"),
                         "http://mirror.invalid/debian-security")

    def test_disabled_entries_are_ignored(self):
        text = SOURCES.replace("Types: deb\n# a comment", "Types: deb\nEnabled: no")
        self.assertIsNone(aptmirror.mirror_from_sources(text, "bookworm"))

    def test_variable_wins_and_absence_is_a_user_error(self):
        with tempfile.NamedTemporaryFile("w") as sources:
            sources.write(SOURCES)
            sources.flush()
            path = Path(sources.name)
            self.assertEqual(aptmirror.apt_mirror("bookworm", {}, (path,)),
                             "http://mirror.invalid/debian")
            self.assertEqual(aptmirror.apt_mirror(
                "bookworm", {aptmirror.MIRROR_ENV: "file:///srv/debian"}, (path,)),
                "file:///srv/debian")
            with self.assertRaises(AirlockError) as caught:
                aptmirror.apt_mirror("trixie", {}, (path.with_name("absent"),))
            self.assertIn(aptmirror.MIRROR_ENV, str(caught.exception))

    def test_release_epoch_from_a_file_mirror(self):
        with tempfile.TemporaryDirectory() as tmp:
            dists = Path(tmp) / "dists" / "bookworm"
            dists.mkdir(parents=True)
            (dists / "Release").write_text("Origin: Debian\nDate: Sat, 10 May 2025 09:36:12 UTC\n")
            self.assertEqual(aptmirror.release_epoch(f"file://{tmp}", "bookworm"), 1746869772)


class TestInputs(unittest.TestCase):

    def test_digest_ignores_order_and_follows_content(self):
        one = json_digest(baseimage.inputs(spec(), "FROM scratch\n"))
        same = json_digest(baseimage.inputs(
            spec(platforms=("linux/arm64", "linux/amd64"),
                 packages=tuple(reversed(baseimage.DEFAULT_PACKAGES))), "FROM scratch\n"))
        self.assertEqual(one, same)
        for other in (baseimage.inputs(spec(codename="trixie"), "FROM scratch\n"),
                      baseimage.inputs(spec(platforms=("linux/amd64",)), "FROM scratch\n"),
                      baseimage.inputs(spec(packages=("python3",)), "FROM scratch\n"),
                      baseimage.inputs(spec(mirror="http://other.invalid/d"), "FROM scratch\n"),
                      baseimage.inputs(spec(), "FROM scratch\nENV A=1\n")):
            self.assertNotEqual(json_digest(other), one)


class TestMmdebstrapCommand(unittest.TestCase):

    def test_command(self):
        argv = baseimage.mmdebstrap_command(spec(), "linux/arm64", Path("/w/rootfs-arm64.tar"))
        self.assertEqual(argv[0], "mmdebstrap")
        self.assertIn("--variant=minbase", argv)
        self.assertIn("--include=ca-certificates,python3,usr-is-merged", argv)
        self.assertIn("--architectures=arm64", argv)
        self.assertIn("--format=tar", argv)
        self.assertEqual(argv[-3:], ["bookworm", "/w/rootfs-arm64.tar",
                                     "http://mirror.invalid/debian"])

    def test_unknown_platform_is_a_user_error(self):
        with self.assertRaises(AirlockError):
            baseimage.mmdebstrap_command(spec(), "linux/riscv64", Path("/w/x.tar"))


if __name__ == "__main__":
    unittest.main()


class TestPrerequisites(unittest.TestCase):
    """base create names the missing package before a five-minute bootstrap."""

    def which(self, *present):
        return lambda name: f"/usr/bin/{name}" if name in present else None

    def test_missing_mmdebstrap_names_the_package(self):
        with self.assertRaises(baseimage.ToolError) as caught:
            baseimage.check_prerequisites(("linux/amd64",), which=self.which("arch-test"))
        self.assertIn("install the Debian package mmdebstrap", str(caught.exception))

    def test_foreign_platform_needs_arch_test(self):
        foreign = platforms.foreign(platforms.NAMES)[0].platform
        with self.assertRaises(baseimage.ToolError) as caught:
            baseimage.check_prerequisites((foreign,), which=self.which("mmdebstrap"))
        self.assertEqual(str(caught.exception).split(":")[0], "arch-test")
        self.assertIn("install the Debian package arch-test", str(caught.exception))
        # The native platform alone needs no arch-test.
        native = "linux/amd64" if foreign == "linux/arm64" else "linux/arm64"
        baseimage.check_prerequisites((native,), which=self.which("mmdebstrap"))

    def test_foreign_platform_that_cannot_run(self):
        foreign = platforms.foreign(platforms.NAMES)[0].platform
        with self.assertRaises(baseimage.ToolError) as caught:
            baseimage.check_prerequisites((foreign,), which=self.which("mmdebstrap", "arch-test"),
                                          runs=lambda arch: False)
        self.assertIn("qemu-user-static", str(caught.exception))
        baseimage.check_prerequisites((foreign,), which=self.which("mmdebstrap", "arch-test"),
                                      runs=lambda arch: True)


class TestProgramsComeFromBindep(unittest.TestCase):
    """Every program airlock runs is installed by bindep.txt (a fresh machine has it)."""

    def test_every_package_is_in_bindep(self):
        from airlock.ext import exec as ext_exec
        from airlock.tests.unit.treefixture import REPO_ROOT

        listed = set()
        for line in (REPO_ROOT / "bindep.txt").read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                listed.add(line.split()[0])
        for program, package in ext_exec.PACKAGES.items():
            self.assertIn(package, listed, f"{program} comes from {package}, not in bindep.txt")

    def test_a_missing_program_names_its_package(self):
        from airlock.ext import exec as ext_exec

        with self.assertRaises(baseimage.ToolError) as caught:
            ext_exec.run(["/nonexistent/bin/skopeo", "inspect"], where="skopeo inspect x",
                         timeout=5)
        self.assertEqual(str(caught.exception), "skopeo inspect x: skopeo is not installed; "
                         "install the Debian package skopeo (as root: tools/setup-host "
                         "build-host)")

    def test_a_timeout_is_one_line(self):
        from airlock.ext import exec as ext_exec

        with self.assertRaises(baseimage.ToolError) as caught:
            ext_exec.run(["sleep", "5"], where="sleep", timeout=0.2)
        self.assertIn("did not finish within 0.2 s", str(caught.exception))
