"""The offline bundle of keystone for 2025.2, both platforms: created, checked, verified, enough.

Real parts throughout: the local source mirror, the package index, apt in
python-base, the registry, ssh-keygen, coreutils' sha256sum. One full
bundle of keystone 28.0.2 (an older patch release, in a copy of releases/)
and one of 28.1.0 (the release as committed), and a delta of the second on
the first. Then the proof that the bundle is enough: with the network off
(``docker run --network none``), keystone's venv is assembled for each
platform from the bundle's wheels and sources alone, and its OS packages
install from the bundle's apt repository alone.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import unittest
from collections.abc import Iterator
from pathlib import Path

from airlock.bundle import layout
from airlock.data.layout import resolve_layout
from airlock.data.release import load_release
from airlock.ext import containers
from airlock.inputs import debs
from airlock.site import config
from airlock.tests.functional import pipeline
from airlock.tests.functional.engine import REPO_ROOT, base_image, require_engine
from airlock.tests.functional.test_site_up import (
    SITE_UP,
    clean_env,
    free_ports,
    port_args,
    reachable_by_nginx,
)
from airlock.tests.unit import bundlefixture

RELEASE = "2025.2"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # apt's requests are no test output
        pass


@contextlib.contextmanager
def serve_folder(folder: Path) -> Iterator[str]:
    """``folder`` over HTTP on 127.0.0.1 while the block runs; its URL."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
OLDER = "28.0.2"  # the patch release before the one releases/2025.2 pins


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


class BundleTest(unittest.TestCase):
    tmp: Path
    full: Path
    old: Path
    delta: Path

    @classmethod
    def setUpClass(cls) -> None:
        require_engine()
        base_image()
        pipeline.WORK.mkdir(parents=True, exist_ok=True)
        cls.tmp = Path(tempfile.mkdtemp(prefix="bundle-", dir=pipeline.WORK))
        cls.prefix = pipeline.seeded_prefix("bundle", RELEASE)
        key = cls.key = bundlefixture.make_key(cls.tmp, "factory")
        cls.signers = bundlefixture.allowed_signers(cls.tmp / "allowed_signers",
                                                    {"factory@site": key})
        # A mirror of this class's own: keystone's branch moves between versions.
        git = cls.tmp / "git"
        older = cls.tmp / "releases"
        shutil.copytree(REPO_ROOT / "releases", older)
        refs = older / RELEASE / "source-refs.yaml"
        refs.write_text(refs.read_text().replace('keystone: "28.1.0"', f'keystone: "{OLDER}"'))
        common = ("--release", RELEASE, "--service", "keystone", "--registry", cls.prefix,
                  "--git-base", str(git), "--key", str(key))
        pipeline.airlock("mirror", "create", "--release", RELEASE, "--releases-dir",
                         str(older), "--dest", str(git), "--component", "keystone")
        cls.old = cls.tmp / "old"
        cls.created_old = pipeline.airlock(
            "bundle", "create", *common, "--releases-dir", str(older), "--out", str(cls.old),
            "--work-dir", str(cls.tmp / "work-old"), "--cache", str(pipeline.WORK / "cache"))
        pipeline.airlock("mirror", "create", "--release", RELEASE, "--dest", str(git),
                         "--component", "keystone")
        cls.link_history(git / "openstack" / "keystone", OLDER, "28.1.0")
        cls.full = cls.tmp / "full"
        cls.created = pipeline.airlock("bundle", "create", *common, "--out", str(cls.full),
                                       "--tar", "--max-part-size", "100MiB")
        # Again, as after an interrupt: everything is there, nothing is made.
        cls.resumed = pipeline.airlock("bundle", "create", *common, "--out", str(cls.full),
                                       "--tar", "--max-part-size", "100MiB")
        cls.delta = cls.tmp / "delta"
        cls.created_delta = pipeline.airlock("bundle", "create", *common, "--out",
                                             str(cls.delta), "--since", str(cls.old))
        cls.manifest = json.loads((cls.full / layout.MANIFEST).read_text())

    @staticmethod
    def link_history(repo: Path, older: str, newer: str) -> None:
        """Make ``newer`` a child of ``older`` on stable/<release>, as upstream has it.

        mirror create writes each release as a parentless commit (its SHA
        then depends on the files alone); a site's mirror only ever moves a
        branch forward, so the delta's commit must descend from the full
        bundle's, as upstream's 28.1.0 descends from 28.0.2.
        """
        def git(*args: str, **kw) -> str:
            return subprocess.run(["git", "--git-dir", str(repo), *args], check=True,
                                  capture_output=True, text=True, timeout=60,
                                  **kw).stdout.strip()
        ident = {"GIT_AUTHOR_NAME": "airlock test", "GIT_AUTHOR_EMAIL": "test@airlock.invalid",
                 "GIT_COMMITTER_NAME": "airlock test",
                 "GIT_COMMITTER_EMAIL": "test@airlock.invalid",
                 "GIT_AUTHOR_DATE": "1780000000 +0000", "GIT_COMMITTER_DATE": "1780000000 +0000"}
        env = {**os.environ, **ident}
        child = git("commit-tree", f"{newer}^{{tree}}", "-p", f"{older}^{{commit}}", "-m",
                    f"keystone {newer}", env=env)
        git("tag", "-f", "-a", newer, "-m", f"keystone {newer}", child, env=env)
        git("update-ref", f"refs/heads/stable/{RELEASE}", child)

    @classmethod
    def tearDownClass(cls) -> None:
        shutil.rmtree(cls.tmp, ignore_errors=True)

    # --- create, check, verify ------------------------------------------------

    def test_create_ends_with_a_summary_per_kind_and_a_complete_bundle(self) -> None:
        out = self.created.stdout
        for group in layout.GROUP_ORDER:
            self.assertRegex(out, rf"(?m)^{group}\s+[1-9]\d*\s")
        self.assertIn(f"bundle {self.manifest['id']}", out)
        self.assertTrue(self.manifest["complete"])
        self.assertEqual(self.manifest["selection"]["platforms"], ["linux/amd64", "linux/arm64"])
        entry = self.manifest["releases"][RELEASE]
        self.assertEqual(entry["components"]["keystone"]["ref"], "28.1.0")
        kinds = {a["kind"] for a in self.manifest["artifacts"]}
        self.assertEqual(kinds, {"git", "patch", "lock", "wheel", "airlock", "requirements",
                                 "deb", "apt-index", "image"})
        for art in self.manifest["artifacts"]:
            self.assertNotIn("@", art["origin"].split("://", 1)[-1].split("/", 1)[0])

    def test_a_second_create_reuses_every_artifact_and_makes_the_same_bundle(self) -> None:
        for group in layout.GROUP_ORDER:
            match = re.search(rf"(?m)^{group}\s+(\d+)\s+\S+ \S+\s+(\d+)$",
                              self.resumed.stdout)
            self.assertIsNotNone(match, self.resumed.stdout)
            self.assertEqual(match[1], match[2], f"{group}: {self.resumed.stdout}")
        self.assertIn(f"bundle {self.manifest['id']} ", self.resumed.stdout)

    def test_sha256sum_accepts_the_sums_and_verify_accepts_folder_and_tar(self) -> None:
        subprocess.run(["sha256sum", "--quiet", "-c", layout.SUMS], cwd=self.full, check=True)
        said = pipeline.airlock("bundle", "verify", str(self.full), "--allowed-signers",
                                str(self.signers))
        self.assertIn(f"bundle {self.manifest['id']}", said.stdout)
        self.assertIn("factory@site", said.stdout)
        parts = sorted(self.full.parent.glob("full.tar.*"))
        self.assertGreater(len(parts), 1)  # 100 MiB parts of a bundle over 300 MiB
        self.assertTrue(all(p.stat().st_size <= 100 * 2**20 for p in parts))
        dest = self.tmp / "extracted"
        pipeline.airlock("bundle", "verify", str(parts[0]), "--allowed-signers",
                         str(self.signers), "--extract", str(dest))
        pipeline.airlock("bundle", "verify", str(dest), "--allowed-signers", str(self.signers))
        self.assertEqual(sorted(p.relative_to(dest) for p in dest.rglob("*")),
                         sorted(p.relative_to(self.full) for p in self.full.rglob("*")))

    def test_check_passes_then_names_a_wheel_and_a_deb_that_went_missing(self) -> None:
        pipeline.airlock("bundle", "check", str(self.full))
        broken = self.tmp / "broken"
        shutil.copytree(self.full, broken, copy_function=os.link)
        doc = json.loads((broken / layout.MANIFEST).read_text())
        arm_only = next(a for a in doc["artifacts"] if a["kind"] == "wheel"
                        and a["platform"] == ["linux/arm64"] and "cryptography" in a["path"])
        deb = next(a for a in doc["artifacts"] if a["kind"] == "deb"
                   and "/arm64/libldap-2.5-0_" in a["path"])
        # As if create had missed them: not in the folder, not in the manifest.
        doc["artifacts"] = [a for a in doc["artifacts"] if a not in (arm_only, deb)]
        (broken / layout.MANIFEST).unlink()
        (broken / layout.MANIFEST).write_text(json.dumps(doc))
        for art in (arm_only, deb):
            (broken / art["path"]).unlink()
        said = pipeline.airlock("bundle", "check", str(broken), check=False)
        self.assertEqual(said.returncode, 1, said.stderr)
        lines = said.stderr.splitlines()
        self.assertTrue(any("release 2025.2, keystone, linux/arm64" in line
                            and "cryptography==" in line for line in lines), said.stderr)
        self.assertFalse(any("linux/amd64" in line and "cryptography" in line
                             for line in lines), said.stderr)
        self.assertTrue(any("linux/arm64" in line and "libldap-2.5-0" in line
                            for line in lines), said.stderr)

    def test_inspect_names_the_component_its_patch_and_the_kinds(self) -> None:
        said = pipeline.airlock("bundle", "inspect", str(self.full)).stdout
        self.assertIn(self.manifest["id"], said)
        self.assertRegex(said, r"keystone\s+28\.1\.0 at [0-9a-f]{12}, 1 patch")
        parts = sorted(self.full.parent.glob("full.tar.*"))
        self.assertEqual(pipeline.airlock("bundle", "inspect", str(parts[0])).stdout, said)

    # --- delta ----------------------------------------------------------------

    def test_delta_carries_only_what_changed(self) -> None:
        doc = json.loads((self.delta / layout.MANIFEST).read_text())
        old = json.loads((self.old / layout.MANIFEST).read_text())
        self.assertEqual(doc["requires"], [old["id"]])
        carried = [a for a in doc["artifacts"] if a["bundle"] == doc["id"]]
        old_sums = {a["sha256"] for a in old["artifacts"]}
        self.assertTrue(carried)
        self.assertTrue(all(a["sha256"] not in old_sums for a in carried))
        self.assertIn("sources/git/keystone-", " ".join(a["path"] for a in carried))
        self.assertEqual({a["path"] for a in doc["artifacts"]},
                         {a["path"] for a in self.manifest["artifacts"]})
        on_disk = {str(p.relative_to(self.delta)) for p in self.delta.rglob("*") if p.is_file()}
        self.assertEqual(on_disk, {a["path"] for a in carried} |
                         {layout.MANIFEST, layout.SUMS, layout.SIGNATURE})
        said = pipeline.airlock("bundle", "verify", str(self.delta), "--allowed-signers",
                                str(self.signers)).stdout
        self.assertIn(old["id"], said)
        pipeline.airlock("bundle", "check", str(self.delta), "--with", str(self.old))
        print(f"\nbundle sizes: full {_size(self.full) / 2**20:.1f} MiB, delta "
              f"{_size(self.delta) / 2**20:.1f} MiB ({len(carried)} of "
              f"{len(doc['artifacts'])} artifacts)")

    def test_delta_imported_on_top_of_the_full_one_builds_the_next_patch_release(self) -> None:
        # A site that holds the 28.0.2 bundle takes the delta to 28.1.0 and
        # builds keystone 28.1.0 from its stores alone.
        site = self.tmp / "site-delta"
        site.mkdir()
        reachable_by_nginx(site)
        ports = free_ports()

        def site_up(*args: str) -> None:
            subprocess.run([str(SITE_UP), *args, "--dir", str(site)], check=True,
                           capture_output=True, timeout=600, env=clean_env())
        site_up("start", *port_args(ports))
        self.addCleanup(site_up, "stop")
        site_yaml = str(site / "site.yaml")
        old_id = json.loads((self.old / layout.MANIFEST).read_text())["id"]

        def load(bundle: Path, check: bool = True) -> subprocess.CompletedProcess:
            return pipeline.airlock("bundle", "import", str(bundle), "--site", site_yaml,
                                    "--allowed-signers", str(self.signers), check=check)
        refused = load(self.delta, check=False)
        self.assertEqual(refused.returncode, 1, refused.stderr)
        self.assertIn(f"a delta on top of {old_id}, which was not imported", refused.stderr)
        load(self.old)
        load(self.delta)
        work = self.tmp / "site-delta-work"
        pipeline.airlock("build", "--release", RELEASE, "--service", "keystone", "--platform",
                         "linux/amd64", "--site", site_yaml, "--work-dir", str(work))
        pipeline.airlock("publish", "--release", RELEASE, "--site", site_yaml, "--work-dir",
                         str(work))
        ref = f"127.0.0.1:{ports['registry']}/airlock/keystone:{RELEASE}"
        # docker pulls with the site registry's credentials, in a config of its own.
        user, password = config.load(site / "site.yaml").stores["registry"].credentials()
        client = self.tmp / "site-delta-client"
        client.mkdir()
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        (client / "config.json").write_text(json.dumps(
            {"auths": {f"127.0.0.1:{ports['registry']}": {"auth": token}}}))
        ran = subprocess.run(["docker", "--config", str(client), "run", "--rm", "--network",
                              "none", "--platform", "linux/amd64", ref,
                              "keystone-manage", "--version"], capture_output=True, text=True,
                             timeout=300)
        self.assertEqual((ran.returncode, ran.stdout.strip()), (0, "28.1.0"), ran.stderr)

    # --- the bundle is enough -------------------------------------------------

    def test_offline_keystone_venv_and_apt_install_from_the_bundle_alone(self) -> None:
        entry = self.manifest["releases"][RELEASE]
        site = self.tmp / "site"
        # The git mirror, as the site would have it: the bundle's git bundle.
        repo = site / "git" / "openstack" / "keystone"
        subprocess.run(["git", "init", "-q", "--bare", str(repo)], check=True)
        subprocess.run(["git", "--git-dir", str(repo), "fetch", "-q",
                        str(self.full / entry["components"]["keystone"]["bundle"]),
                        "+refs/*:refs/*"], check=True)
        src = site / "src"
        src.mkdir(parents=True)
        pipeline.airlock("sources", "prepare", "--release", RELEASE, "--component", "keystone",
                         "--dest", str(src / "00-keystone"), "--git-base", str(site / "git"),
                         "--patches-dir", str(self.full / layout.PATCHES))
        cons = self.full / "python" / "requirements" / RELEASE / "keystone"
        for arch in ("amd64", "arm64"):
            with self.subTest(arch=arch):
                work = Path(tempfile.mkdtemp(dir=site))
                shutil.copytree(src, work / "src")
                out = containers.run(
                    entry["venv_builder"], ["sh", "-c", (
                        f"airlock-venv install --arch {arch} --wheelhouse /bundle/wheels "
                        f"--venv /tmp/venv --sources-dir /src >/dev/null && "
                        "ls /tmp/venv/bin | grep -c keystone-manage && "
                        "grep -l '^Name: keystone$' /tmp/venv/lib/python3*/site-packages/"
                        "keystone-*.dist-info/METADATA | wc -l")],
                    network="none", mounts=(
                        containers.Mount(self.full / "python" / "wheels", "/bundle/wheels"),
                        containers.Mount(cons, "/constraints"),
                        containers.Mount(work / "src", "/src", read_only=False)),
                    timeout=900)
                self.assertEqual(out.split(), ["1", "1"])
        # And airlock itself installs from the bundle, offline.
        said = containers.run(entry["venv_builder"], ["sh", "-c", (
            "uv venv -q /tmp/a && uv pip install -q --python /tmp/a/bin/python --no-index "
            "--find-links /bundle/airlock airlock && /tmp/a/bin/airlock bundle --help")],
            network="none", mounts=(containers.Mount(self.full / "python" / "airlock",
                                                     "/bundle/airlock"),), timeout=600)
        self.assertIn("verify", said)
        for platform in ("linux/amd64", "linux/arm64"):
            arch = platform.split("/")[1]
            with self.subTest(platform=platform):
                repo_dir = Path(tempfile.mkdtemp(dir=site))
                for deb in (self.full / entry["apt"][arch]).iterdir():
                    os.link(deb, repo_dir / deb.name)
                wanted = entry["packages"]["keystone"][arch]
                self.assertIn("libldap-2.5-0", wanted)
                # As a site plans it: apt in the bundle's base image, against
                # python-base's dpkg database, the bundle's repository (served
                # as the site's raw store serves it) its only source.
                base = f"{entry['base_image']['ref']}@{entry['base_image']['digest']}"
                with serve_folder(repo_dir) as url:
                    debs.prepare(load_release(resolve_layout(str(REPO_ROOT)), RELEASE),
                                 REPO_ROOT / "images", "keystone", [platform], site / "plan",
                                 base_image=entry["python_base"], apt_image=base,
                                 names=wanted, cache=site / "cache", flat={arch: url})
                plan = site / "plan" / arch
                self.assertIn("configure libldap-2.5-0",
                              (plan / "order.txt").read_text().splitlines())
                out = containers.run(
                    entry["python_base"], ["sh", "-c", "airlock-apt-install /debs >/dev/null "
                                           "&& dpkg-query -W -f '${Status}' libldap-2.5-0"],
                    platform=platform, network="none", user="0",
                    mounts=(containers.Mount(plan, "/debs"),), timeout=900)
                self.assertEqual(out.strip(), "install ok installed")
