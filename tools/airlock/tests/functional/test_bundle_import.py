"""``bundle import`` into real stand-ins of the site's stores: the "Import faults" proof.

The stores are real servers on free loopback ports, each with a password:
pypiserver (uploads, downloads and listing need it), a raw store (a small
PUT/GET server over a folder, :mod:`airlock.tests.unit.davserver`:
Debian's nginx is not installed on the test hosts), Debian's
docker-registry with htpasswd, and a folder of bare git repositories.
The bundle is small and real: wheels twine accepts, an apt repository
(Packages + .debs), a two-platform OCI archive, a git bundle of a real
repository, and the git bundle of airlock's own repository made from this
checkout by bundle create's own code, signed with a fresh key.

Proved: a second import uploads nothing; an import whose PyPI server is
killed midway completes on rerun; an artifact already in a store with
other bytes is refused, one line, nothing overwritten; wrong credentials
for each store are one line each, exit 2, the password in no output; a
delta whose base was not imported is refused naming it; a clone of the
site's ``<git base>/airlock`` checks out the bundle's airlock commit, data
(releases/, images/) included.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from airlock.bundle import gather, layout
from airlock.ext import git, registry
from airlock.site import access, config, importer
from airlock.tests.functional import tinyimage
from airlock.tests.functional.registries import PrivateRegistry, free_port
from airlock.tests.unit import bundlefixture
from airlock.tests.unit.gitrepo import GitRepo

PASSWORD = "Imp0rt-S3cret-pw"
USER = "importer"
REPO_ROOT = Path(__file__).resolve().parents[4]
PYPI_SERVER = Path(sys.executable).parent / "pypi-server"
# passlib (pypiserver's htpasswd reader) cannot load bcrypt >= 4.1, which the
# test venv holds for docker-registry's htpasswd: pypiserver runs with bcrypt
# hidden and reads an apr1 (MD5) htpasswd instead.
NO_BCRYPT = "import sys; sys.modules['bcrypt'] = None"


class _Release:
    """What access.base_image_ref reads of a release: its base image reference."""

    def base_image_ref(self, env: dict | None = None) -> str:
        return "site.invalid/library/debian:trixie"


def tiny_wheel(name: str, version: str, extra: str = "") -> tuple[str, bytes]:
    """A small wheel twine and pypiserver accept: METADATA, WHEEL, RECORD, one module."""
    dist = f"{name}-{version}.dist-info"
    members = {
        f"{name}.py": f"VERSION = {version!r}\n{extra}",
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
                            "Summary: airlock import test\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: airlock-test\nRoot-Is-Purelib: true\n"
                         "Tag: py3-none-any\n",
    }
    members[f"{dist}/RECORD"] = "".join(f"{path},,\n" for path in members) + f"{dist}/RECORD,,\n"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path, text in members.items():
            info = zipfile.ZipInfo(path, date_time=(2026, 1, 1, 0, 0, 0))
            archive.writestr(info, text)
    return f"{name}-{version}-py3-none-any.whl", buffer.getvalue()


def tiny_deb(folder: Path, name: str) -> tuple[str, bytes, str]:
    """A real .deb made by dpkg-deb, and its Packages stanza."""
    root = folder / f"{name}-pkg"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(
        f"Package: {name}\nVersion: 1.0\nArchitecture: all\nMaintainer: t <t@example.invalid>\n"
        "Description: airlock import test\n")
    (root / "usr/share" / name).mkdir(parents=True)
    (root / "usr/share" / name / "x").write_text(name)
    deb = folder / f"{name}_1.0_all.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(root),
                    str(deb)], check=True, capture_output=True, timeout=60,
                   env={**os.environ, "SOURCE_DATE_EPOCH": "0"})
    data = deb.read_bytes()
    stanza = (f"Package: {name}\nVersion: 1.0\nArchitecture: all\nFilename: ./{deb.name}\n"
              f"Size: {len(data)}\nSHA256: {hashlib.sha256(data).hexdigest()}\n")
    return deb.name, data, stanza


def make_bundle(tmp: Path, key: Path, bundle_id: str = "site-test-1",
                requires: tuple[str, ...] = ()) -> Path:
    """A small real bundle signed with ``key``: wheels, apt repo, OCI archive, git bundle."""
    work = tmp / f"parts-{bundle_id}"
    work.mkdir()
    content: dict[str, bytes] = {}
    kinds: dict[str, str] = {}
    for name, version, where in (("airlockimpa", "1.0", layout.wheel),
                                 ("airlockimpb", "2.0", layout.wheel),
                                 ("airlockimpc", "0.1", layout.airlock_wheel)):
        filename, data = tiny_wheel(name, version)
        content[where(filename)] = data
        kinds[where(filename)] = "airlock" if where is layout.airlock_wheel else "wheel"
    repo = layout.apt_repo("debian", "trixie", "amd64")
    packages = []
    for name in ("airlock-imp-one", "airlock-imp-two"):
        deb_name, data, stanza = tiny_deb(work, name)
        content[f"{repo}/{deb_name}"] = data
        kinds[f"{repo}/{deb_name}"] = "deb"
        packages.append(stanza)
    content[f"{repo}/Packages"] = "\n".join(packages).encode()
    kinds[f"{repo}/Packages"] = "apt-index"
    archive = work / "image.oci.tar"
    digest = tinyimage.make(archive, ["linux/amd64", "linux/arm64"], seed=bundle_id)
    image_path = layout.image("debian", digest)
    content[image_path] = archive.read_bytes()
    kinds[image_path] = "image"
    upstream = GitRepo(work / "keystone")
    sha = upstream.commit({"setup.py": "# keystone\n"})
    upstream.git("tag", "-a", "-m", "28.0.0", "28.0.0")
    upstream.git("branch", "stable/2025.2")
    git_out = work / "keystone.bundle"
    git.bundle_create(upstream.path / ".git", git_out,
                      ["refs/tags/28.0.0", "refs/heads/stable/2025.2"])
    bundle_path = layout.git_bundle("keystone", sha)
    content[bundle_path] = git_out.read_bytes()
    kinds[bundle_path] = "git"
    # airlock's own repository, as bundle create gathers it from this checkout
    # (one cache for every bundle of the test: made once).
    airlock_file, airlock_entry = gather.airlock_repository(REPO_ROOT, tmp / "cache")
    content[airlock_entry["bundle"]] = airlock_file.read_bytes()
    kinds[airlock_entry["bundle"]] = "git"
    elsewhere = {layout.wheel("old-1.0-py3-none-any.whl"): requires[0]} if requires else None
    manifest = bundlefixture.manifest_for(content, bundle_id=bundle_id, requires=requires,
                                          elsewhere=elsewhere)
    for artifact in manifest["artifacts"]:
        artifact["kind"] = kinds.get(artifact["path"], "wheel")
    manifest["releases"] = {"2025.2": {
        "base_image": {"ref": "site.invalid/library/debian", "tag": "trixie", "digest": digest,
                       "path": image_path},
        "components": {"keystone": {"sha": sha, "ref": "stable/2025.2",
                                    "repo": "https://opendev.org/openstack/keystone",
                                    "bundle": bundle_path, "heads": git.bundle_heads(git_out),
                                    "patches": []}},
        "apt": {"amd64": repo}}}
    manifest["airlock"] = {"version": "0.1.0", "python": "3.11", **airlock_entry}
    return bundlefixture.make_bundle(tmp / bundle_id, content, key, manifest=manifest)


def git_uploads(bundle: Path) -> int:
    """How many refs the first import of ``bundle`` sets: keystone's and airlock's."""
    doc = json.loads((bundle / "manifest.json").read_text())
    return (len(doc["releases"]["2025.2"]["components"]["keystone"]["heads"])
            + len(doc["airlock"]["heads"]))


def check_airlock_clone(test: unittest.TestCase, url: str, bundle: Path, dest: Path) -> None:
    """The site's way to airlock: a clone of ``<git base>/airlock`` at the bundle's commit.

    A commit on a branch is what a plain clone checks out; a snapshot of
    uncommitted changes is on no branch, so it is fetched by its ref.
    """
    entry = json.loads((bundle / "manifest.json").read_text())["airlock"]
    if any(ref.startswith("refs/heads/") for ref in entry["heads"]):
        git.run(["clone", "--quiet", url, str(dest)])
    else:
        git.run(["clone", "--quiet", "--no-checkout", url, str(dest)])
        git.run(["-C", str(dest), "fetch", "--quiet", "origin",
                 *(f"+{ref}:{ref}" for ref in entry["heads"])])
        git.run(["-C", str(dest), "checkout", "--quiet", "--detach", entry["commit"]])
    test.assertEqual(git.run(["-C", str(dest), "rev-parse", "HEAD"]).stdout.strip(),
                     entry["commit"])
    test.assertTrue((dest / "releases" / "2025.2" / "release.yaml").is_file())
    test.assertTrue((dest / "images" / "keystone").is_dir())


class Stores:
    """The four stand-ins, each with USER:PASSWORD, and a site.yaml naming them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.pypi_dir = root / "pypi-packages"
        self.pypi_dir.mkdir()
        self.pypi_port = free_port()
        hashed = subprocess.run(
            [sys.executable, "-c", f"{NO_BCRYPT}; from passlib.hash import apr_md5_crypt; "
             "print(apr_md5_crypt.hash(sys.stdin.read()))"],
            input=PASSWORD, capture_output=True, text=True, check=True, timeout=60).stdout
        (root / "pypi.htpasswd").write_text(f"{USER}:{hashed.strip()}\n")
        self.pypi: subprocess.Popen | None = None
        self.raw_dir = root / "raw"
        self.raw: subprocess.Popen | None = None
        self.registry = PrivateRegistry({USER: PASSWORD})
        self.git_dir = root / "git"

    def start_pypi(self) -> None:
        log = open(self.root / "pypi.log", "a")  # noqa: SIM115 - kept open while it runs
        self.pypi = subprocess.Popen(
            [sys.executable, "-c", f"{NO_BCRYPT}; sys.argv[0] = 'pypi-server'; "
             "from pypiserver.__main__ import main; sys.exit(main())",
             "run", "-i", "127.0.0.1", "-p", str(self.pypi_port),
             "-P", str(self.root / "pypi.htpasswd"), "-a", "update,download,list",
             "--hash-algo", "sha256", "--disable-fallback", str(self.pypi_dir)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        _wait_http(f"http://127.0.0.1:{self.pypi_port}/simple/", self.pypi)

    def stop_pypi(self) -> None:
        if self.pypi is not None and self.pypi.poll() is None:
            self.pypi.kill()
            self.pypi.wait(timeout=15)

    def start(self) -> None:
        self.start_pypi()
        self.raw = subprocess.Popen(
            [sys.executable, "-m", "airlock.tests.unit.davserver", str(self.raw_dir), "0",
             USER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.raw.stdin.write(PASSWORD + "\n")
        self.raw.stdin.flush()
        self.raw_port = int(self.raw.stdout.readline())
        self.registry.start()

    def stop(self) -> None:
        self.stop_pypi()
        if self.raw is not None:
            self.raw.kill()
            self.raw.wait(timeout=15)
        self.registry.close()

    def site_yaml(self, passwords: dict[str, str] | None = None) -> Path:
        """site.yaml with a credentials file per store (``passwords`` overrides)."""
        passwords = passwords or {}
        for store in ("pypi", "raw", "registry"):
            path = self.root / f"{store}.credentials"
            path.write_text(f"{USER}:{passwords.get(store, PASSWORD)}\n")
            path.chmod(0o600)
        path = self.root / "site.yaml"
        path.write_text(
            f"pypi:\n  upload: http://127.0.0.1:{self.pypi_port}/\n"
            f"  simple: http://127.0.0.1:{self.pypi_port}/simple/\n"
            "  credentials_file: pypi.credentials\n"
            f"raw:\n  url: http://127.0.0.1:{self.raw_port}/airlock/\n"
            "  credentials_file: raw.credentials\n"
            f"registry:\n  prefix: {self.registry.host}/airlock\n"
            "  credentials_file: registry.credentials\n"
            f"git:\n  base: git://127.0.0.1:9418\n  push: {self.git_dir}\n")
        return path


def _wait_http(url: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except urllib.error.HTTPError:
            return  # answering (401: asking for the password)
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer")


class BundleImportTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        # Nothing is skipped: tox.ini installs pypiserver, setup-host the rest.
        missing = [name for name, found in (
            ("pypiserver (tox.ini functional deps)", PYPI_SERVER.exists()),
            ("docker-registry", shutil.which("docker-registry")),
            ("skopeo", shutil.which("skopeo")), ("dpkg-deb", shutil.which("dpkg-deb")))
            if not found]
        if missing:
            raise AssertionError(f"missing: {', '.join(missing)}; run ./tools/run-tests")
        cls.tmp = Path(tempfile.mkdtemp(prefix="airlock-import-"))
        key = bundlefixture.make_key(cls.tmp)
        cls.signers = bundlefixture.allowed_signers(cls.tmp / "allowed_signers",
                                                    {"factory@site": key})
        cls.bundle = make_bundle(cls.tmp, key)
        cls.delta = make_bundle(cls.tmp, key, bundle_id="site-test-2",
                                requires=("site-test-never",))
        cls.next = make_bundle(cls.tmp, key, bundle_id="site-test-3",
                               requires=("site-test-1",))

    @classmethod
    def tearDownClass(cls) -> None:
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def setUp(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="airlock-stores-"))
        self.addCleanup(shutil.rmtree, self.root, True)
        self.stores = Stores(self.root)
        self.addCleanup(self.stores.stop)
        self.stores.start()
        self.site = self.stores.site_yaml()

    def airlock(self, *args: str, site: Path | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "airlock.cli", "bundle", "import", *args,
             "--site", str(site or self.site), "--allowed-signers", str(self.signers)],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
            env={**os.environ, "AIRLOCK_WORK_DIR": str(self.root / "work")})

    def test_import_loads_every_store_and_a_second_import_uploads_nothing(self) -> None:
        first = self.airlock(str(self.bundle), "--json")
        self.assertEqual(first.returncode, 0, first.stderr)
        doc = json.loads(first.stdout)
        self.assertEqual({name: len(s["uploaded"]) for name, s in doc["stores"].items()},
                         {"pypi": 3, "raw": 4, "registry": 1,
                          "git": git_uploads(self.bundle)})
        # What went where, as a build reads it.
        self.assertEqual(sorted(p.name for p in self.stores.pypi_dir.iterdir()),
                         ["airlockimpa-1.0-py3-none-any.whl", "airlockimpb-2.0-py3-none-any.whl",
                          "airlockimpc-0.1-py3-none-any.whl"])
        repo = self.stores.raw_dir / "airlock" / layout.apt_repo("debian", "trixie", "amd64")
        self.assertEqual((repo / "Packages").read_bytes(),
                         (self.bundle / layout.apt_repo("debian", "trixie", "amd64")
                          / "Packages").read_bytes())
        record = json.loads((self.stores.raw_dir / "airlock/airlock/imports/site-test-1.json")
                            .read_text())
        self.assertEqual(record["manifest_sha256"],
                         hashlib.sha256((self.bundle / "manifest.json").read_bytes()).hexdigest())
        self.assertTrue((self.root / "work/site/imports/site-test-1.json").is_file())
        manifest = json.loads((self.bundle / "manifest.json").read_text())
        base = manifest["releases"]["2025.2"]["base_image"]
        site = config.load(self.site)
        with access.registry_auth(site):  # where build --site reads it
            self.assertEqual(access.base_image_ref(site, _Release()), f"{self.stores.registry.host}"
                             "/airlock/debian:trixie")
            self.assertEqual(registry.digest(f"{self.stores.registry.host}/airlock/debian:trixie"),
                             base["digest"])
        heads = manifest["releases"]["2025.2"]["components"]["keystone"]["heads"]
        self.assertEqual(git.remote_refs(str(self.stores.git_dir / "openstack/keystone")),
                         heads)
        self.assertEqual(git.remote_refs(str(self.stores.git_dir / "airlock")),
                         manifest["airlock"]["heads"])
        self.assertEqual(record["stores"]["git"]["repositories"]["airlock"]["url"],
                         "git://127.0.0.1:9418/airlock")
        check_airlock_clone(self, str(self.stores.git_dir / "airlock"), self.bundle,
                            self.root / "airlock-clone")
        second = self.airlock(str(self.bundle), "--json")
        self.assertEqual(second.returncode, 0, second.stderr)
        again = json.loads(second.stdout)
        self.assertEqual({name: s["uploaded"] for name, s in again["stores"].items()},
                         {"pypi": [], "raw": [], "registry": [], "git": []})
        self.assertEqual(sum(len(s["skipped"]) for s in again["stores"].values()),
                         sum(len(s["uploaded"]) for s in doc["stores"].values()))

    def test_an_import_whose_pypi_server_dies_midway_completes_on_rerun(self) -> None:
        site = config.load(self.site)
        uploads = []

        def progress(line: str) -> None:
            if line.startswith("pypi: uploading"):
                uploads.append(line)
                if len(uploads) == 2:
                    self.stores.stop_pypi()

        report = importer.run(self.bundle, site, self.signers, progress=progress)
        self.assertEqual(len(report.stores["pypi"].uploaded), 1)
        self.assertEqual(len(report.stores["pypi"].failed), 1, report.failures)
        self.assertIsNone(report.record)
        self.stores.start_pypi()
        rerun = importer.run(self.bundle, site, self.signers)
        self.assertEqual(rerun.failures, [])
        self.assertEqual(len(rerun.stores["pypi"].uploaded), 2)
        self.assertEqual(len(rerun.stores["pypi"].skipped), 1)
        self.assertEqual(rerun.stores["raw"].uploaded, ["airlock/imports/site-test-1.json"])
        self.assertEqual(len(list(self.stores.pypi_dir.iterdir())), 3)

    def test_an_artifact_there_with_other_bytes_is_refused_and_kept(self) -> None:
        filename, other = tiny_wheel("airlockimpa", "1.0", extra="# other bytes\n")
        (self.stores.pypi_dir / filename).write_bytes(other)
        deb = next(p for p in (self.bundle / "debs/debian-trixie/amd64").iterdir()
                   if p.suffix == ".deb")
        placed = self.stores.raw_dir / "airlock" / deb.relative_to(self.bundle)
        placed.parent.mkdir(parents=True)
        placed.write_bytes(b"another deb")
        said = self.airlock(str(self.bundle))
        self.assertEqual(said.returncode, 2, said.stderr)
        lines = said.stderr.strip().splitlines()
        refused = [line for line in lines if "not overwritten" in line]
        self.assertEqual(len(refused), 2, lines)  # the wheel and the deb
        self.assertEqual(len([line for line in lines if "not written" in line]), 1, lines)
        self.assertTrue(any(filename in line for line in refused))
        self.assertTrue(any(deb.name in line for line in refused))
        self.assertEqual((self.stores.pypi_dir / filename).read_bytes(), other)
        self.assertEqual(placed.read_bytes(), b"another deb")
        self.assertFalse((self.stores.raw_dir / "airlock/debs/debian-trixie/amd64/Packages")
                         .exists())
        self.assertFalse((self.stores.raw_dir / "airlock/airlock/imports").exists())

    def test_wrong_credentials_are_one_line_per_store_and_never_shown(self) -> None:
        wrong = "Wr0ng-Pa55-" + "x" * 8
        site = self.stores.site_yaml({"pypi": wrong, "raw": wrong, "registry": wrong})
        said = self.airlock(str(self.bundle), "--json", site=site)
        self.assertEqual(said.returncode, 2, said.stderr)
        doc = json.loads(said.stdout)
        lines = said.stderr.strip().splitlines()
        for store in ("pypi", "raw", "registry"):
            failed = doc["stores"][store]["failed"]
            self.assertEqual(len(failed), 1, (store, failed))
            self.assertIn(failed[0], lines)
        self.assertEqual(doc["stores"]["git"]["failed"], [])
        logs = [*self.root.rglob("*.log"), self.stores.registry.root / "registry.log"]
        for text in (said.stdout, said.stderr, *(p.read_text(errors="replace") for p in logs)):
            self.assertNotIn(wrong, text)
            self.assertNotIn(PASSWORD, text)
        self.assertEqual(list(self.stores.pypi_dir.iterdir()), [])

    def test_a_delta_whose_base_was_not_imported_is_refused(self) -> None:
        said = self.airlock(str(self.delta))
        self.assertEqual(said.returncode, 1, said.stderr)
        lines = said.stderr.strip().splitlines()
        self.assertEqual(len([line for line in lines if "site-test-never" in line]), 1, lines)
        self.assertIn("import the bundles it requires first", said.stderr)
        self.assertEqual(list(self.stores.pypi_dir.iterdir()), [])

    def test_a_delta_is_imported_once_its_base_was(self) -> None:
        refused = self.airlock(str(self.next), "--json")
        self.assertEqual(refused.returncode, 1, refused.stderr)
        self.assertIn("site-test-1", refused.stderr)
        self.assertEqual(self.airlock(str(self.bundle)).returncode, 0)
        said = self.airlock(str(self.next), "--json")
        self.assertEqual(said.returncode, 0, said.stderr)
        doc = json.loads(said.stdout)
        # Its own base image is new; what the base bundle brought is not sent again.
        self.assertEqual(len(doc["stores"]["registry"]["uploaded"]), 1)
        self.assertIn("moved from", doc["stores"]["registry"]["uploaded"][0])
        site = config.load(self.site)
        old = json.loads((self.bundle / "manifest.json").read_text())
        new = json.loads((self.next / "manifest.json").read_text())
        repo = f"{self.stores.registry.host}/airlock/debian"
        with access.registry_auth(site):
            self.assertEqual(registry.digest(f"{repo}:trixie"),
                             new["releases"]["2025.2"]["base_image"]["digest"])
            old_digest = old["releases"]["2025.2"]["base_image"]["digest"]
            self.assertEqual(registry.digest(f"{repo}@{old_digest}"), old_digest)
        self.assertEqual(doc["stores"]["pypi"]["uploaded"], [])
        record = json.loads((self.stores.raw_dir / "airlock/airlock/imports/site-test-3.json")
                            .read_text())
        self.assertEqual(record["requires"], ["site-test-1"])

    def test_a_tar_is_refused_with_the_way_to_import_it(self) -> None:
        tar = self.root / "bundle.tar"
        tar.write_bytes(b"")
        said = self.airlock(str(tar))
        self.assertEqual(said.returncode, 1)
        self.assertIn("--extract", said.stderr)


SITE_UP = REPO_ROOT / "tools" / "site-up"


class SiteUpImportTest(unittest.TestCase):
    """The same bundle into tools/site-up's stand-ins: nginx DAV, pypiserver, git daemon."""

    @classmethod
    def site_up(cls, *args: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "TWINE_"))}
        done = subprocess.run([str(SITE_UP), *args, "--dir", str(cls.dir)], capture_output=True,
                              text=True, timeout=900, env={**env, "PIP_CONFIG_FILE": "/dev/null"})
        if done.returncode != 0:
            raise AssertionError(f"site-up {args[0]}: {done.stdout}{done.stderr}")

    @classmethod
    def setUpClass(cls) -> None:
        cls.tmp = Path(tempfile.mkdtemp(prefix="airlock-import-siteup-"))
        cls.tmp.chmod(0o755)  # nginx's workers (www-data) must reach DIR/raw
        cls.dir = cls.tmp / "site"
        key = bundlefixture.make_key(cls.tmp)
        cls.signers = bundlefixture.allowed_signers(cls.tmp / "allowed_signers",
                                                    {"factory@site": key})
        cls.bundle = make_bundle(cls.tmp, key)
        ports: dict[str, int] = {}
        while len(set(ports.values())) < 4:
            ports = {store: free_port() for store in ("pypi", "raw", "registry", "git")}
        cls.ports = ports
        try:
            cls.site_up("start", *[arg for store, port in ports.items()
                                   for arg in (f"--{store}-port", str(port))])
        except BaseException:
            subprocess.run([str(SITE_UP), "stop", "--dir", str(cls.dir)], timeout=120,
                           capture_output=True)
            shutil.rmtree(cls.tmp, ignore_errors=True)
            raise

    @classmethod
    def tearDownClass(cls) -> None:
        subprocess.run([str(SITE_UP), "stop", "--dir", str(cls.dir)], timeout=120,
                       capture_output=True)
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def airlock(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "airlock.cli", "bundle", "import", *args,
             "--site", str(self.dir / "site.yaml"), "--allowed-signers", str(self.signers)],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
            env={**os.environ, "AIRLOCK_WORK_DIR": str(self.tmp / "work")})

    def test_import_twice_then_git_daemon_and_anonymous_apt_read_it(self) -> None:
        first = self.airlock(str(self.bundle), "--json")
        self.assertEqual(first.returncode, 0, first.stderr)
        self.assertEqual({name: len(s["uploaded"])
                          for name, s in json.loads(first.stdout)["stores"].items()},
                         {"pypi": 3, "raw": 4, "registry": 1,
                          "git": git_uploads(self.bundle)})
        second = self.airlock(str(self.bundle), "--json")
        self.assertEqual(second.returncode, 0, second.stderr)
        self.assertEqual({name: s["uploaded"]
                          for name, s in json.loads(second.stdout)["stores"].items()},
                         {"pypi": [], "raw": [], "registry": [], "git": []})
        # What a build reads: the flat apt repository (GET is open), the git mirror.
        repo = layout.apt_repo("debian", "trixie", "amd64")
        with urllib.request.urlopen(f"http://127.0.0.1:{self.ports['raw']}/airlock/{repo}/"
                                    "Packages", timeout=30) as answer:
            self.assertEqual(answer.read(), (self.bundle / repo / "Packages").read_bytes())
        listed = git.remote_refs(f"git://127.0.0.1:{self.ports['git']}/openstack/keystone")
        manifest = json.loads((self.bundle / "manifest.json").read_text())
        self.assertEqual(listed,
                         manifest["releases"]["2025.2"]["components"]["keystone"]["heads"])
        # The site's airlock: `git clone <git base>/airlock`, through the git daemon.
        check_airlock_clone(self, f"git://127.0.0.1:{self.ports['git']}/airlock", self.bundle,
                            self.tmp / "airlock-clone")
        for password in ((self.dir / "credentials" / s).read_text().strip().split(":", 1)[1]
                         for s in ("pypi", "raw", "registry")):
            self.assertNotIn(password, first.stdout + first.stderr + second.stderr)


if __name__ == "__main__":
    unittest.main()
