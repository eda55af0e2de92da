"""A site builds keystone from its own stores: import a bundle, build --site, publish --site.

The stores are tools/site-up's stand-ins (pypiserver, nginx DAV, the
distribution registry with htpasswd, git daemon) on free ports of
127.0.0.1, with passwords; the bundle is keystone's for 2025.2, both
platforms, made by bundle create. The site build gets a work folder and a
cache of its own: every wheel, .deb, source and base image comes from the
stores. Then: a wheel or a .deb missing from the store is one line naming
it.

The same bundle then crosses into a sealed site: a network namespace whose
only interface is ``lo``, holding the four stores (on the same ports) and a
Docker engine of its own (``tools/site-up start --netns NS --engine``).
Everything there runs through ``tools/site-up exec``, which covers the
host engine's socket, the machine's pip/uv configuration and wheel folders
and its apt sources: airlock is installed from the bundle's own wheels
into a fresh venv, verifies, imports, builds keystone for both platforms
and publishes. Its digests equal the connected side's (same bundle, same
store addresses), and the host engine records nothing meanwhile.
"""

from __future__ import annotations

import base64
import contextlib
import json
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import unittest
from collections.abc import Iterator
from pathlib import Path

from airlock.ext import containers, registry
from airlock.site import access, config
from airlock.tests.functional import pipeline
from airlock.tests.functional.engine import base_image, require_engine
from airlock.tests.functional.test_site_up import (
    SITE_UP,
    clean_env,
    free_ports,
    port_args,
    reachable_by_nginx,
)
from airlock.tests.unit import bundlefixture

RELEASE = "2025.2"
PLATFORMS = ("linux/amd64", "linux/arm64")


class SiteBuildTest(unittest.TestCase):
    tmp: Path

    @classmethod
    def setUpClass(cls) -> None:
        # unittest skips tearDownClass when setUpClass fails: stop what started.
        try:
            cls.set_up()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def set_up(cls) -> None:
        require_engine()
        base_image()
        pipeline.WORK.mkdir(parents=True, exist_ok=True)
        cls.tmp = Path(tempfile.mkdtemp(prefix="site-build-", dir=pipeline.WORK))
        reachable_by_nginx(cls.tmp)
        cls.dir = cls.tmp / "site"
        ports = free_ports()
        cls.site_up("start", *port_args(ports))
        cls.site_yaml = cls.dir / "site.yaml"
        cls.site = config.load(cls.site_yaml)
        key = bundlefixture.make_key(cls.tmp, "factory")
        cls.signers = bundlefixture.allowed_signers(cls.tmp / "signers", {"factory": key})
        cls.bundle = cls.tmp / "bundle"
        pipeline.airlock("bundle", "create", "--release", RELEASE, "--service", "keystone",
                         "--out", str(cls.bundle), "--key", str(key), "--registry",
                         pipeline.seeded_prefix("site-bundle", RELEASE), "--git-base",
                         pipeline.git_base("keystone"))
        cls.first = cls.import_bundle()
        cls.second = cls.import_bundle()
        cls.work = cls.tmp / "site-work"
        cls.built = cls.site_build(cls.work)
        pipeline.airlock("publish", "--release", RELEASE, "--site", str(cls.site_yaml),
                         "--work-dir", str(cls.work))
        cls.record = json.loads((cls.work / RELEASE / "build-record.json").read_text())
        cls.seal(ports)

    @classmethod
    def seal(cls, ports: dict[str, int]) -> None:
        """The sealed site: its stores and engine in a namespace, the whole site side run there."""
        cls.netns = f"airlock-sealed-{secrets.token_hex(4)}"
        subprocess.run(["ip", "netns", "add", cls.netns], check=True, timeout=30)
        subprocess.run(["ip", "-n", cls.netns, "link", "set", "lo", "up"], check=True,
                       timeout=30)
        cls.sealed_dir = cls.tmp / "sealed"
        cls.site_up("start", "--netns", cls.netns, "--engine", *port_args(ports),
                    site=cls.sealed_dir)
        cls.sealed_site = config.load(cls.sealed_dir / "site.yaml")
        cls.outputs: list[str] = []
        since = time.time()
        run = cls.tmp / "sealed-run"
        run.mkdir()
        venv = run / "venv"
        cls.sealed(sys._base_executable, "-m", "venv", str(venv))  # type: ignore[attr-defined]
        cls.sealed(str(venv / "bin" / "pip"), "install", "-q", "--no-index", "--find-links",
                   str(cls.bundle / "python" / "airlock"), "airlock")
        tool = str(venv / "bin" / "airlock")
        site_yaml = str(cls.sealed_dir / "site.yaml")
        cls.sealed(tool, "bundle", "verify", str(cls.bundle), "--allowed-signers",
                   str(cls.signers))
        cls.sealed(tool, "bundle", "import", str(cls.bundle), "--site", site_yaml,
                   "--allowed-signers", str(cls.signers))
        # airlock's own data (releases/, images/) from the site's git mirror,
        # at the commit the bundle names (a branch, or a snapshot ref).
        commit = json.loads((cls.bundle / "manifest.json").read_text())["airlock"]["commit"]
        root = run / "airlock"
        git_base = cls.sealed_site.git.urls["base"]
        cls.sealed("git", "clone", "-q", "--no-checkout", f"{git_base}/airlock", str(root))
        cls.sealed("git", "-C", str(root), "fetch", "-q", "origin",
                   "+refs/airlock/*:refs/airlock/*")
        cls.sealed("git", "-C", str(root), "checkout", "-q", "--detach", commit)
        cls.sealed_work = run / "work"
        cls.sealed(tool, "build", "--release", RELEASE, "--service", "keystone", "--site",
                   site_yaml, "--work-dir", str(cls.sealed_work), root=root)
        cls.sealed(tool, "publish", "--release", RELEASE, "--site", site_yaml, "--work-dir",
                   str(cls.sealed_work), root=root)
        cls.sealed_record = json.loads(
            (cls.sealed_work / RELEASE / "build-record.json").read_text())
        # The site's engine pulls from the site's registry with its credentials.
        user, password = cls.sealed_site.stores["registry"].credentials()
        host = cls.sealed_site.registry.urls["prefix"].split("/", 1)[0]
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        client = cls.sealed_dir / "engine" / "client"
        (client / "config.json").write_text(json.dumps({"auths": {host: {"auth": token}}}))
        cls.runs = {}
        ref = f"{cls.sealed_site.registry.urls['prefix']}/keystone:{RELEASE}"
        for platform in PLATFORMS:
            cls.runs[platform] = cls.sealed(
                "docker", "run", "--rm", "--network", "none", "--pull", "always",
                "--platform", platform, ref, "sh", "-c", "id -u; keystone-manage --version")
        (client / "config.json").unlink()
        cls.host_events = subprocess.run(
            ["docker", "events", "--since", f"{since:.3f}", "--until", f"{time.time():.3f}",
             "--format", "{{json .}}"], capture_output=True, text=True, timeout=120,
            check=True).stdout.splitlines()

    @classmethod
    def sealed(cls, *argv: str, root: Path | None = None) -> str:
        """ARGV run in the sealed site (tools/site-up exec); its stdout, checked."""
        env = [f"--env=AIRLOCK_ROOT={root}"] if root else []
        done = subprocess.run([str(SITE_UP), "exec", "--dir", str(cls.sealed_dir), *env,
                               "--", *argv], capture_output=True, text=True, timeout=1800,
                              env=clean_env(), cwd=cls.tmp)
        cls.outputs.append(done.stdout + done.stderr)
        if done.returncode != 0:
            raise AssertionError(f"in the sealed site, {' '.join(argv[:3])}: exit "
                                 f"{done.returncode}: {done.stdout[-2000:]}{done.stderr[-3000:]}")
        return done.stdout

    @classmethod
    def tearDownClass(cls) -> None:
        if getattr(cls, "netns", None):
            cls.site_up("stop", check=False, site=cls.sealed_dir)
            subprocess.run(["ip", "netns", "del", cls.netns], check=False, timeout=30)
        if getattr(cls, "dir", None):
            cls.site_up("stop", check=False)
        if getattr(cls, "tmp", None):
            shutil.rmtree(cls.tmp, ignore_errors=True)

    @classmethod
    def site_up(cls, *args: str, check: bool = True, site: Path | None = None
                ) -> subprocess.CompletedProcess:
        done = subprocess.run([str(SITE_UP), *args, "--dir", str(site or cls.dir)],
                              capture_output=True, text=True, timeout=600, env=clean_env())
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

    # --- the sealed site --------------------------------------------------

    def test_the_sealed_site_has_no_interface_but_lo_and_no_route(self) -> None:
        links = subprocess.run(["ip", "-n", self.netns, "-o", "link"], capture_output=True,
                               text=True, check=True, timeout=30).stdout.splitlines()
        self.assertEqual([line.split(":")[1].strip() for line in links], ["lo"])
        for family in ("-4", "-6"):
            routes = subprocess.run(["ip", "-n", self.netns, family, "route"],
                                    capture_output=True, text=True, check=True,
                                    timeout=30).stdout
            # IPv6 on lo keeps its own ::1 route; nothing leads anywhere else.
            self.assertEqual([r for r in routes.splitlines() if not r.startswith("::1 ")], [])
        # What is hidden there: the host engine and the machine's pip settings.
        said = subprocess.run([str(SITE_UP), "exec", "--dir", str(self.sealed_dir), "--",
                               "sh", "-c", "docker -H unix:///var/run/docker.sock info "
                               ">/dev/null 2>&1; echo $?; cat /etc/pip.conf; env"],
                              capture_output=True, text=True, timeout=120, env=clean_env())
        lines = said.stdout.splitlines()
        self.assertNotEqual(lines[0], "0", "the host engine answers in the sealed site")
        self.assertFalse([line for line in lines if line.startswith(("PIP_", "UV_"))], lines)
        self.assertNotIn("[global]", said.stdout)

    def test_the_sealed_site_builds_the_digests_of_the_connected_side(self) -> None:
        # Same bundle, same store addresses: the same images, to the digest.
        def digests(record: dict) -> dict[str, str]:
            return {row["image"]: row["digest"] for row in record["images"]}
        self.assertEqual(digests(self.sealed_record), digests(self.record))
        self.assertIn("keystone", digests(self.record))

    def test_the_sealed_site_runs_keystone_on_both_platforms_as_42424(self) -> None:
        for platform in PLATFORMS:
            with self.subTest(platform=platform):
                self.assertEqual(self.runs[platform].split(), ["42424", "28.1.0"])
        row = next(r for r in self.sealed_record["images"] if r["image"] == "keystone")
        self.assertTrue(row["ref"].startswith(
            self.sealed_site.registry.urls["prefix"] + "/"))

    def test_the_host_engine_did_nothing_for_the_sealed_site(self) -> None:
        self.assertEqual(self.host_events, [])

    def test_no_password_in_what_the_sealed_site_said_or_wrote(self) -> None:
        passwords = [self.sealed_site.stores[store].credentials()[1]
                     for store in ("pypi", "raw", "registry")]
        said = "\n".join(self.outputs)
        written = [path for path in self.sealed_work.rglob("*") if path.is_file()
                   and not path.is_symlink() and path.stat().st_size < 50 << 20]
        for password in passwords:
            self.assertNotIn(password, said)
            for path in written:
                self.assertNotIn(password.encode(), path.read_bytes(), str(path))
