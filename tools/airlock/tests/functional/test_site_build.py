"""A site builds keystone from its own stores: import a bundle, build --site, publish --site.

The stores are tools/site-up's stand-ins (pypiserver, nginx DAV, the
distribution registry with htpasswd, git daemon) on free ports of
127.0.0.1, with passwords; the bundle is keystone's for 2025.2, both
platforms, made by bundle create. The site build gets a work folder and a
cache of its own: every wheel, .deb, source and base image comes from the
stores. Then: a wheel or a .deb missing from the store is one line naming
it. (The sealed variant, in a network namespace with an engine of its
own, is the site issue's next proof.)
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import tempfile
import unittest
from collections.abc import Iterator
from pathlib import Path

from airlock.ext import containers, registry
from airlock.site import access, config
from airlock.tests.functional import pipeline
from airlock.tests.functional.engine import base_image, require_engine
from airlock.tests.functional.registries import free_port
from airlock.tests.functional.test_site_up import SITE_UP, STORES, clean_env
from airlock.tests.unit import bundlefixture

RELEASE = "2025.2"
PLATFORMS = ("linux/amd64", "linux/arm64")


class SiteBuildTest(unittest.TestCase):
    tmp: Path

    @classmethod
    def setUpClass(cls) -> None:
        require_engine()
        base_image()
        pipeline.WORK.mkdir(parents=True, exist_ok=True)
        cls.tmp = Path(tempfile.mkdtemp(prefix="site-build-", dir=pipeline.WORK))
        cls.tmp.chmod(0o755)  # nginx's workers (www-data) read DIR/raw below it
        for parent in cls.tmp.parents:
            if parent.stat().st_mode & 0o001 == 0:
                parent.chmod(parent.stat().st_mode | 0o001)
        cls.dir = cls.tmp / "site"
        ports = {}
        while len(set(ports.values())) < len(STORES):
            ports = {store: free_port() for store in STORES}
        cls.site_up("start", *[arg for store, port in ports.items()
                               for arg in (f"--{store}-port", str(port))])
        cls.site_yaml = cls.dir / "site.yaml"
        cls.site = config.load(cls.site_yaml)
        key = bundlefixture.make_key(cls.tmp, "factory")
        cls.signers = bundlefixture.allowed_signers(cls.tmp / "signers", {"factory": key})
        cls.bundle = cls.tmp / "bundle"
        pipeline.airlock("bundle", "create", "--release", RELEASE, "--service", "keystone",
                         "--out", str(cls.bundle), "--key", str(key), "--registry",
                         pipeline.fresh_prefix("site-bundle"), "--git-base",
                         pipeline.git_base("keystone"))
        cls.first = cls.import_bundle()
        cls.second = cls.import_bundle()
        cls.work = cls.tmp / "site-work"
        cls.built = cls.site_build(cls.work)
        pipeline.airlock("publish", "--release", RELEASE, "--site", str(cls.site_yaml),
                         "--work-dir", str(cls.work))
        cls.record = json.loads((cls.work / RELEASE / "build-record.json").read_text())

    @classmethod
    def tearDownClass(cls) -> None:
        cls.site_up("stop", check=False)
        shutil.rmtree(cls.tmp, ignore_errors=True)

    @classmethod
    def site_up(cls, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run([str(SITE_UP), *args, "--dir", str(cls.dir)], capture_output=True,
                              text=True, timeout=600, env=clean_env())
        if check and done.returncode != 0:
            raise AssertionError(f"site-up {args}: {done.stdout}{done.stderr}")
        return done

    @classmethod
    def import_bundle(cls) -> dict:
        said = pipeline.airlock("bundle", "import", str(cls.bundle), "--site",
                                str(cls.site_yaml), "--allowed-signers", str(cls.signers),
                                "--json")
        return json.loads(said.stdout)

    @classmethod
    def site_build(cls, work: Path, check: bool = True):
        """build --site of keystone, with a work folder (and so a cache) of its own."""
        return pipeline.airlock("build", "--release", RELEASE, "--service", "keystone",
                                "--site", str(cls.site_yaml), "--work-dir", str(work),
                                check=check)

    @contextlib.contextmanager
    def moved_aside(self, path: Path) -> Iterator[None]:
        """``path`` out of its store while the block runs, back afterwards."""
        aside = self.tmp / path.name
        shutil.move(path, aside)
        try:
            yield
        finally:
            shutil.move(aside, path)

    def test_a_second_import_uploads_nothing(self) -> None:
        first = {name: len(store["uploaded"]) for name, store in self.first["stores"].items()}
        self.assertTrue(all(first[name] for name in ("pypi", "raw", "registry", "git")), first)
        second = {name: len(store["uploaded"]) for name, store in
                  self.second["stores"].items()}
        self.assertEqual(second, dict.fromkeys(second, 0))

    def test_keystone_runs_from_the_site_registry_on_both_platforms_as_42424(self) -> None:
        row = next(r for r in self.record["images"] if r["image"] == "keystone")
        self.assertTrue(row["ref"].startswith(self.site.registry.urls["prefix"] + "/"))
        ref = f"{self.site.registry.urls['prefix']}/keystone:{RELEASE}"
        with access.registry_auth(self.site):
            self.assertEqual(sorted(registry.platforms(ref)), sorted(PLATFORMS))
            for platform in PLATFORMS:
                with self.subTest(platform=platform):
                    out = containers.run(ref, ["sh", "-c", "id -u; keystone-manage --version"],
                                         platform=platform)
                    self.assertEqual(out.split(), ["42424", "28.1.0"])
        # Everything came from the stores: the base image by the site's name.
        self.assertTrue(self.record["base_image"].startswith(
            self.site.registry.urls["prefix"] + "/"))

    def test_a_wheel_or_a_deb_missing_from_the_stores_is_named(self) -> None:
        # The one keystone's arm64 venv installs (airlock's own pool may hold another).
        doc = json.loads((self.bundle / "manifest.json").read_text())
        name = next(Path(a["path"]).name for a in doc["artifacts"] if a["kind"] == "wheel"
                    and a["platform"] == ["linux/arm64"] and "/cryptography-" in a["path"])
        with self.moved_aside(self.dir / "pypi" / name):
            said = self.site_build(self.tmp / "no-wheel", check=False)
        self.assertNotEqual(said.returncode, 0)
        self.assertRegex(said.stderr, r"cryptography==[\d.]+")
        self.assertIn("arm64", said.stderr.replace("aarch64", "arm64"))
        with self.moved_aside(next((self.dir / "raw").rglob("libldap-2.5-0_*_arm64.deb"))):
            said = self.site_build(self.tmp / "no-deb", check=False)
        self.assertNotEqual(said.returncode, 0)
        self.assertIn("libldap-2.5-0", said.stderr)
        for store in ("pypi", "raw", "registry"):
            password = self.site.stores[store].credentials()[1]
            self.assertNotIn(password, said.stdout + said.stderr)
