"""Offline apt repositories from the real mirror, installed with no network.

nova's runtime packages for amd64: apt computes the closure inside the
release's base image (by digest) with the host network, the repository is
written, then images/python-base/airlock-apt-install installs it into the
same base image in a ``--network none`` container. An empty package list
(python-base) makes an empty repository that apt still reads.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import tempfile
import time
import unittest
from pathlib import Path

from airlock import cli
from airlock.data import packages
from airlock.data.layout import resolve_layout
from airlock.data.release import load_release
from airlock.ext import containers
from airlock.inputs import debs
from airlock.tests.functional import engine
from airlock.tests.functional.pipeline import airlock_here as airlock

APT_INSTALL = engine.REPO_ROOT / "images" / "python-base" / "airlock-apt-install"



def install_offline(base: str, repo: Path, names: list[str], log: Path) -> str:
    """Install ``names`` from ``repo`` with airlock-apt-install, no network; the log text."""
    query = " ".join(names) or "dpkg"
    script = ("set -eu; sh /usr/local/bin/airlock-apt-install /debs; "
              f"dpkg-query -W -f='${{Package}} ${{Status}}\\n' {query}")
    containers.run_logged(containers.RunSpec(
        image=base, command=("sh", "-c", script), platform="linux/amd64", network="none",
        log=log, mounts=(containers.Mount(repo, "/debs"),
                         containers.Mount(APT_INSTALL, "/usr/local/bin/airlock-apt-install"))))
    return log.read_text()


class NovaRepositoryTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls) -> None:
        engine.require_engine()
        spec, base = engine.base_image()
        cls.base = engine.by_digest(spec.ref, base.digest)
        cls.release = load_release(resolve_layout(str(engine.REPO_ROOT)), engine.RELEASE)
        cls.names = packages.resolve(cls.release, engine.REPO_ROOT / "images", "nova",
                                     "runtime")
        cls._tmp = tempfile.TemporaryDirectory(prefix="airlock-debs-")
        cls.tmp = Path(cls._tmp.name)
        cls.dest = cls.tmp / "debs"
        cls.args = ["debs", "--release", engine.RELEASE, "--service", "nova", "--platform",
                    "linux/amd64", "--dest", str(cls.dest), "--cache", str(cls.tmp / "cache"),
                    "--root", str(engine.REPO_ROOT)]
        start = time.monotonic()
        cls.first = airlock(*cls.args)  # the release's base image: a tag pinned by digest
        cls.cold_seconds = round(time.monotonic() - start, 1)
        cls.repo = cls.dest / "amd64"
        cls.mtimes = {p: p.stat().st_mtime_ns for p in cls.repo.iterdir()}
        start = time.monotonic()
        cls.second = airlock(*cls.args)
        cls.warm_seconds = round(time.monotonic() - start, 1)
        cls.manifest = json.loads((cls.repo / "manifest.json").read_text())
        size = sum(p.stat().st_size for p in cls.repo.glob("*.deb"))
        print(f"nova amd64: {len(cls.manifest['closure'])} .debs, {size // 2**20} MiB, cold "
              f"{cls.cold_seconds} s, unchanged {cls.warm_seconds} s")

    @classmethod
    def tearDownClass(cls) -> None:
        cls._tmp.cleanup()

    def test_packages_txt_lists_the_services_packages(self) -> None:
        self.assertIn("qemu-utils", self.names)
        self.assertEqual((self.repo / "packages.txt").read_text().split(), self.names)

    def test_packages_index_lists_every_deb(self) -> None:
        text = (self.repo / "Packages").read_text()
        listed = re.findall(r"^Filename: \./(\S+)$", text, re.MULTILINE)
        on_disk = sorted(p.name for p in self.repo.glob("*.deb"))
        self.assertTrue(on_disk)
        self.assertEqual(sorted(listed), on_disk)
        self.assertEqual(sorted(row["file"] for row in self.manifest["closure"]), on_disk)
        for name in on_disk:
            stanza = text.split(f"Filename: ./{name}\n", 1)[1].split("\n\n", 1)[0]
            sha = re.search(r"^SHA256: (\S+)", stanza, re.MULTILINE)[1]
            self.assertEqual(sha, self.manifest["files"][name]["sha256"], name)

    def test_the_base_image_is_recorded_by_digest_alone(self) -> None:
        # Not by reference: the registry the base was pushed to is no input.
        self.assertEqual(self.manifest["inputs"]["base_image"], self.base.rsplit("@", 1)[1])

    def test_installs_offline_into_the_base_image(self) -> None:
        log = install_offline(self.base, self.repo, self.names, self.tmp / "install.log")
        for name in self.names:
            self.assertRegex(log, rf"(?m)^{re.escape(name)} install ok installed$")

    def test_second_run_does_nothing(self) -> None:
        self.assertIn("unchanged", self.second)
        self.assertEqual({p: p.stat().st_mtime_ns for p in self.repo.iterdir()}, self.mtimes)
        self.assertLess(self.warm_seconds, 5)

    def test_an_empty_list_is_an_empty_repository_apt_reads(self) -> None:
        [result] = debs.prepare(self.release, engine.REPO_ROOT / "images", "python-base",
                                ["linux/amd64"], self.tmp / "empty", base_image=self.base,
                                cache=self.tmp / "cache")
        self.assertEqual(result.manifest["closure"], [])
        repo = self.tmp / "empty" / "amd64"
        self.assertEqual((repo / "packages.txt").read_text(), "")
        # apt itself reads the empty repository (airlock-apt-install skips an empty list).
        script = ("set -eu; echo 'deb [trusted=yes] file:/debs ./' > /tmp/l; "
                  "apt-get -o Dir::Etc::SourceList=/tmp/l -o Dir::Etc::SourceParts=/dev/null "
                  "-o APT::Sandbox::User=root update; sh /usr/local/bin/airlock-apt-install /debs; "
                  "echo done")
        log = self.tmp / "empty.log"
        containers.run_logged(containers.RunSpec(
            image=self.base, command=("sh", "-c", script), platform="linux/amd64",
            network="none", log=log,
            mounts=(containers.Mount(repo, "/debs"),
                    containers.Mount(APT_INSTALL, "/usr/local/bin/airlock-apt-install"))))
        self.assertIn("done", log.read_text().splitlines()[-1])

    def test_an_unknown_package_names_the_bindep_file(self) -> None:
        images = self.tmp / "images"
        (images / "nova").mkdir(parents=True, exist_ok=True)
        (images / "nova" / "bindep.txt").write_text("no-such-package-airlock [runtime]\n")
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main(["debs", "--release", engine.RELEASE, "--service", "nova",
                             "--platform", "linux/amd64", "--dest", str(self.tmp / "bad"),
                             "--cache", str(self.tmp / "cache"),
                             "--root", str(engine.REPO_ROOT), "--images-dir", str(images)])
        self.assertEqual(code, 1)
        self.assertIn("images/nova/bindep.txt: package 'no-such-package-airlock'",
                      err.getvalue())
        self.assertEqual(len(err.getvalue().strip().splitlines()), 1)


if __name__ == "__main__":
    unittest.main()
