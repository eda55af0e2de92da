"""Every release airlock lists builds: the wheelhouse where 2024.1 once broke, on each.

The oldest release's keystone is built for both platforms, published and
checked (`airlock check`: console scripts, WSGI modules, service.yaml's
imports such as ``ldap`` from keystone's ldap extra, on amd64 and on arm64
under QEMU). Every other release's keystone wheelhouse (but 2025.2's, which
the rest of the suite builds for both platforms) is made for linux/amd64
with the same venv-builder: sdist-only pins (scrypt on 2024.1,
python-ldap on all) are built with the OS packages sdists.txt declares,
and the libraries their wheels link against are resolved to packages.
What arm64 adds (the same sdists built under QEMU) is proven on the
oldest release and on 2025.2; per release it would only cost the suite
about a minute of emulation.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import unittest
from pathlib import Path

from airlock.data.layout import Layout
from airlock.data.release import release_names
from airlock.tests.functional import pipeline
from airlock.tests.functional.engine import REPO_ROOT, base_image, require_engine

RELEASES = release_names(Layout(REPO_ROOT / "releases", REPO_ROOT / "patches",
                                REPO_ROOT / "images"))
OLDEST = RELEASES[0]
SUITE_RELEASE = "2025.2"
BOTH = {"amd64", "arm64"}


class EveryReleaseTest(unittest.TestCase):
    record: dict
    git: str

    @classmethod
    def setUpClass(cls) -> None:
        require_engine()
        base_image()
        for release in RELEASES:
            cls.git = pipeline.git_base("keystone", release=release)
        cls.record = pipeline.build(OLDEST, pipeline.seeded_prefix("oldest", OLDEST),
                                    "--service", "keystone", "--git-base", cls.git)
        pipeline.airlock("publish", "--release", OLDEST)
        cls.builder = pipeline.image(cls.record, "venv-builder")["ref"]

    def test_oldest_release_keystone_passes_its_checks_on_both_platforms(self) -> None:
        doc = json.loads(pipeline.airlock("check", "--release", OLDEST, "--json").stdout)
        self.assertEqual(doc["failed"], 0, doc)
        self.assertEqual(sorted((r["image"], r["platform"], r["status"]) for r in doc["images"]),
                         [("keystone", "linux/amd64", "ok"), ("keystone", "linux/arm64", "ok")])
        for row in doc["images"]:
            # keystone-manage and keystone-status, its two WSGI scripts, and
            # the four imports of images/keystone/service.yaml
            self.assertGreaterEqual(row["checked"], 8, row)

    def test_oldest_release_gets_the_libraries_its_built_wheels_need(self) -> None:
        work = pipeline.WORK / OLDEST
        manifest = json.loads((work / "wheels" / "keystone" / "manifest.json").read_text())
        built = {b["pin"].split("==")[0] for b in manifest["built"]}
        self.assertLessEqual({"scrypt", "python-ldap"}, built)
        for arch in BOTH:
            with self.subTest(arch=arch):
                libraries = manifest["platforms"][arch]["libraries"]
                self.assertEqual(libraries["libldap-2.5.so.0"]["package"], "libldap-2.5-0")
                wanted = (work / "debs" / "keystone" / arch / "packages.txt").read_text()
                self.assertIn("libldap-2.5-0\n", wanted)
                self.assertNotIn("libc6\n", wanted)  # python-base has it

    def test_an_undeclared_header_is_named_with_the_line_to_fix(self) -> None:
        """scrypt declared with no package: the build names openssl/aes.h and sdists.txt."""
        tmp = Path(tempfile.mkdtemp(prefix="undeclared-", dir=pipeline.WORK))
        self.addCleanup(shutil.rmtree, tmp, True)
        images = tmp / "images"
        shutil.copytree(REPO_ROOT / "images", images, symlinks=True)
        text = (images / "sdists.txt").read_text()
        (images / "sdists.txt").write_text(text.replace("scrypt: libssl-dev", "scrypt:"))
        pipeline.airlock("sources", "prepare", "--release", OLDEST, "--component", "keystone",
                         "--dest", str(tmp / "keystone"), "--git-base", self.git)
        proc = pipeline.airlock("wheels", "--release", OLDEST, "--service", "keystone",
                                "--platform", "linux/amd64", "--images-dir", str(images),
                                "--source", str(tmp / "keystone"), "--dest",
                                str(tmp / "wheels"), "--venv-builder", self.builder,
                                check=False)
        self.assertEqual(proc.returncode, 2, proc.stderr)
        lines = [line for line in proc.stderr.splitlines() if "missed" in line]
        self.assertEqual(len(lines), 1, proc.stderr)
        self.assertEqual(proc.stderr.strip().splitlines()[-1], lines[0])  # the last word
        self.assertIn(f"release {OLDEST}: scrypt==0.8.20 for linux/amd64: its sdist build "
                      "missed openssl/aes.h; add the Debian package that provides it to the "
                      f"line 'scrypt: ' of {images / 'sdists.txt'}", lines[0])
        self.assertFalse((tmp / "wheels").exists())

    def test_every_release_has_a_keystone_wheelhouse(self) -> None:
        # The oldest is built above; 2025.2's wheelhouse is the one every
        # other class builds keystone from (test_keystone_build). Both
        # for both platforms; the others for linux/amd64 (module docstring).
        for release in [r for r in RELEASES[1:] if r != SUITE_RELEASE]:
            with self.subTest(release=release):
                tmp = Path(tempfile.mkdtemp(prefix=f"every-{release}-", dir=pipeline.WORK))
                self.addCleanup(shutil.rmtree, tmp, True)
                pipeline.airlock("sources", "prepare", "--release", release, "--component",
                                 "keystone", "--dest", str(tmp / "keystone"), "--git-base",
                                 self.git)
                dest = tmp / "wheels"
                pipeline.airlock("wheels", "--release", release, "--service", "keystone",
                                 "--platform", "linux/amd64", "--source", str(tmp / "keystone"),
                                 "--dest", str(dest), "--venv-builder", self.builder)
                manifest = json.loads((dest / "manifest.json").read_text())
                self.assertEqual(set(manifest["platforms"]), {"amd64"})
                for arch in manifest["platforms"]:
                    entry = manifest["platforms"][arch]
                    self.assertTrue(any(r.startswith("python-ldap==")
                                        for r in entry["requirements"]), arch)
                    self.assertIn("libldap-2.5.so.0", entry["libraries"], arch)
