"""keystone 2025.2's real wheelhouse, for amd64 and arm64, from the package index.

The source comes the way an operator makes it (``airlock mirror create``,
``refs resolve``, ``sources prepare``); the index is $AIRLOCK_INDEX_URL or
pip's own configuration; the download cache is new, so the first run is a
cold one. The sdists with no wheel (testresources; yappi on arm64) are built
in the venv-builder image of the target platform, arm64 under QEMU.

The venv-builder is the one ``airlock build --bases-only`` makes (images/
python-base on the base image, then images/venv-builder on it with uv's
wheels and its bindep ``build`` packages: gcc, headers, yappi is C), built
once per test run and shared with the other classes (pipeline.bases).
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import tempfile
import time
import unittest
import zipfile
from pathlib import Path

from airlock.data import platforms
from airlock.data.layout import resolve_layout
from airlock.data.release import canonical_name, load_release
from airlock.ext import index, uv
from airlock.inputs import wheels, wheeltags
from airlock.tests.functional import engine, pipeline
from airlock.tests.functional.pipeline import airlock_here as airlock

ELF_MACHINE = {"amd64": 0x3E, "arm64": 0xB7}



def elf_machine(data: bytes) -> int:
    """e_machine of an ELF file (little-endian, both targets)."""
    assert data[:4] == b"\x7fELF", "not an ELF file"
    return struct.unpack_from("<H", data, 18)[0]


class KeystoneWheelhouseTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls) -> None:
        engine.require_engine()
        engine.base_image()
        cls._tmp = tempfile.TemporaryDirectory(prefix="airlock-wheels-")
        tmp = cls.tmp = Path(cls._tmp.name)
        root = str(engine.REPO_ROOT)
        git = tmp / "git"
        airlock("mirror", "create", "--release", engine.RELEASE, "--dest", str(git),
                "--component", "keystone", "--root", root)
        airlock("refs", "resolve", "--release", engine.RELEASE, "--git-base", str(git),
                "--component", "keystone", "-o", str(tmp / "lock"), "--root", root)
        cls.source = tmp / "keystone"
        airlock("sources", "prepare", "--release", engine.RELEASE, "--component", "keystone",
                "--lock", str(tmp / "lock"), "--dest", str(cls.source), "--root", root)
        start = time.monotonic()
        cls.builder = pipeline.bases(engine.RELEASE)["venv-builder"]["ref"]
        cls.setup_seconds = round(time.monotonic() - start, 1)

        cls.dest = tmp / "wheelhouse"
        cls.args = ["wheels", "--release", engine.RELEASE, "--service", "keystone",
                    "--source", str(cls.source), "--dest", str(cls.dest),
                    "--cache", str(tmp / "cold-cache"), "--venv-builder", cls.builder,
                    "--root", root]
        index_url = os.environ.get("AIRLOCK_INDEX_URL")
        if index_url:
            cls.args += ["--index-url", index_url]
        start = time.monotonic()
        cls.first_output = airlock(*cls.args)
        cls.cold_seconds = round(time.monotonic() - start, 1)
        cls.mtimes = {p: p.stat().st_mtime_ns for p in cls.dest.rglob("*")}
        start = time.monotonic()
        cls.second_output = airlock(*cls.args)
        cls.warm_seconds = round(time.monotonic() - start, 1)
        cls.manifest = json.loads((cls.dest / "manifest.json").read_text())
        print(f"venv-builder set-up {cls.setup_seconds} s; wheelhouse cold "
              f"{cls.cold_seconds} s, unchanged {cls.warm_seconds} s")
        print(cls.first_output)

    @classmethod
    def tearDownClass(cls) -> None:
        cls._tmp.cleanup()

    def test_every_pin_is_there_for_each_platform(self) -> None:
        for arch in ("amd64", "arm64"):
            with self.subTest(arch=arch):
                platform = self.manifest["platforms"][arch]
                self.assertGreater(len(platform["requirements"]), 80)
                for pin in [*platform["requirements"], *platform["build"],
                            *platform["tools"]]:
                    rel = platform["files"][pin]
                    self.assertTrue((self.dest / rel).is_file(), rel)
                    self.assertTrue(rel.startswith(("any/", f"{arch}/")), rel)
                    self.assertTrue(rel.endswith(".whl"), rel)

    def test_the_wheelhouse_alone_resolves_keystone_with_wheels_only(self) -> None:
        """What the offline build does: uv, wheels only, any/ + <arch>/, no index."""
        for tgt in (platforms.PLATFORMS["linux/amd64"], platforms.PLATFORMS["linux/arm64"]):
            with self.subTest(arch=tgt.arch):
                where = index.Locations(find_links=(str(self.dest / "any"),
                                                    str(self.dest / tgt.arch)), no_index=True)
                # The venv stage installs the requirements and install.txt
                # (service.yaml's keystone[ldap], setuptools).
                wanted = self.dest.parent / f"everything-{tgt.arch}.txt"
                wanted.write_text((self.source / "requirements.txt").read_text() + "\n"
                                  + (self.dest / "install.txt").read_text())
                pins = uv.resolve(wanted,
                                  [self.dest / "constraints.txt"], python_version="3.11",
                                  python_platform=tgt.python_platform, where=where,
                                  only_binary=True)
                self.assertEqual(sorted(f"{canonical_name(n)}=={v}" for n, v in pins),
                                 self.manifest["platforms"][tgt.arch]["requirements"])

    def test_sdists_were_built_for_their_platforms(self) -> None:
        built = {row["pin"]: row for row in self.manifest["built"]}
        # python-ldap: keystone's ldap extra (images/keystone/service.yaml)
        self.assertEqual(sorted(built), ["python-ldap==3.4.4", "testresources==2.0.2",
                                         "yappi==1.6.10"])
        testresources = built["testresources==2.0.2"]
        self.assertEqual(testresources["built_on"], "linux/amd64")  # the build platform
        self.assertEqual(testresources["serves"], ["amd64", "arm64"])  # pure: built once
        self.assertTrue(testresources["wheel"].startswith("any/"))
        yappi = built["yappi==1.6.10"]
        self.assertEqual((yappi["built_on"], yappi["serves"]), ("linux/arm64", ["arm64"]))
        self.assertTrue(yappi["wheel"].startswith("arm64/"))
        self.assertTrue(yappi["wheel"].endswith("linux_aarch64.whl"))
        self.assertEqual(self.manifest["builder"]["digest"], self.builder.rsplit("@", 1)[1])
        # amd64 has yappi's manylinux wheel from the index.
        amd64 = self.manifest["platforms"]["amd64"]["files"]["yappi==1.6.10"]
        self.assertIn("manylinux", amd64)

    def test_built_yappi_is_really_aarch64(self) -> None:
        rel = self.manifest["platforms"]["arm64"]["files"]["yappi==1.6.10"]
        with zipfile.ZipFile(self.dest / rel) as wheel:
            objects = [n for n in wheel.namelist() if n.endswith(".so")]
            self.assertTrue(objects)
            for name in objects:
                self.assertEqual(elf_machine(wheel.read(name)[:64]), ELF_MACHINE["arm64"], name)

    def test_pure_wheels_are_not_duplicated(self) -> None:
        pure = {p.name for p in (self.dest / "any").iterdir()}
        self.assertTrue(pure)
        self.assertTrue(all(wheeltags.is_pure(name) for name in pure))
        for arch in ("amd64", "arm64"):
            names = {p.name for p in (self.dest / arch).iterdir()}
            self.assertFalse(names & pure, arch)
            self.assertFalse([n for n in names if wheeltags.is_pure(n)], arch)
        self.assertEqual(len(self.manifest["files"]),
                         sum(1 for p in self.dest.glob("*/*.whl")))
        # A pure pin of both platforms points at the one file in any/.
        amd64 = self.manifest["platforms"]["amd64"]["files"]
        arm64 = self.manifest["platforms"]["arm64"]["files"]
        self.assertEqual(amd64["pbr==7.0.1"], arm64["pbr==7.0.1"])
        self.assertTrue(amd64["pbr==7.0.1"].startswith("any/"))

    def test_build_constraints_pin_the_build_requirements(self) -> None:
        lines = (self.dest / "build-constraints.txt").read_text().splitlines()
        self.assertIn("setuptools==80.9.0", lines)
        self.assertIn("wheel==0.45.1", lines)
        self.assertIn("pbr==7.0.1", lines)
        for pin in ("setuptools==80.9.0", "wheel==0.45.1", "pbr==7.0.1"):
            for arch in ("amd64", "arm64"):
                self.assertIn(pin, self.manifest["platforms"][arch]["files"])

    def test_second_run_does_nothing(self) -> None:
        self.assertIn("unchanged", self.second_output)
        self.assertNotIn("built", self.second_output)
        self.assertEqual({p: p.stat().st_mtime_ns for p in self.dest.rglob("*")}, self.mtimes)
        self.assertLess(self.warm_seconds, 10)

    def test_files_match_the_manifest(self) -> None:
        for rel, entry in self.manifest["files"].items():
            self.assertEqual(wheels.sha256_file(self.dest / rel), entry["sha256"], rel)

    def test_a_second_service_wheelhouse_downloads_nothing_again(self) -> None:
        """Same pins from the same cache: no file is fetched twice."""
        other = self.tmp / "again"
        shutil.rmtree(other, ignore_errors=True)
        release = load_release(resolve_layout(str(engine.REPO_ROOT)), engine.RELEASE)
        result = wheels.prepare(release, "keystone", ["linux/amd64", "linux/arm64"],
                                [self.source], other, cache=self.tmp / "cold-cache",
                                venv_builder=self.builder,
                                index_url=os.environ.get("AIRLOCK_INDEX_URL"))
        self.assertEqual(result.downloaded, 0)
        self.assertEqual((other / "manifest.json").read_bytes(),
                         (self.dest / "manifest.json").read_bytes())


if __name__ == "__main__":
    unittest.main()
