"""mirror and index: real sdists, real pip, real bare git repositories; no network.

The sdists are built here, byte for byte reproducibly, and served to the
real ``pip download`` from a local folder (``index_url`` as a path means
``--no-index --find-links``). Their build backend lives in the sdist and
needs nothing installed, so pip can read their metadata offline.
"""

from __future__ import annotations

import gzip
import io
import os
import socket
import tarfile
import tempfile
import unittest
from pathlib import Path
from unittest import mock

from airlock.data.release import Component, ComponentRef, Distro, Release
from airlock.errors import AirlockError, ToolError
from airlock.ext import git, index
from airlock.inputs import mirror

# 2025-06-01T00:00:00Z: the newest file time of the test sdists.
MTIME = 1748736000

BACKEND = '''\
"""A build backend that only reports metadata: enough for pip download."""
import os


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    with open("PKG-INFO") as f:
        meta = dict(line.split(": ", 1) for line in f.read().splitlines() if ": " in line)
    name = "%s-%s.dist-info" % (meta["Name"].replace("-", "_"), meta["Version"])
    os.makedirs(os.path.join(metadata_directory, name))
    with open(os.path.join(metadata_directory, name, "METADATA"), "w") as f:
        f.write("Metadata-Version: 2.1\\nName: %s\\nVersion: %s\\n"
                % (meta["Name"], meta["Version"]))
    return name
'''

PYPROJECT = """\
[build-system]
requires = []
build-backend = "backend"
backend-path = ["."]
"""


def make_sdist(folder: Path, name: str, version: str, extra: dict[str, bytes] | None = None,
               *, gzipped: bool = True) -> Path:
    """Write ``<name>-<version>.tar.gz`` like a real sdist (or a plain ``.tar``).

    The tar bytes depend only on the arguments; gzip's may vary with the
    zlib of the machine, so a test that pins a SHA uses a plain tar.
    """
    top = f"{name}-{version}"
    files: dict[str, tuple[bytes, int]] = {
        "PKG-INFO": (f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
                     0o644),
        "pyproject.toml": (PYPROJECT.encode(), 0o644),
        "backend.py": (BACKEND.encode(), 0o644),
        f"{name}/__init__.py": (f"VERSION = {version!r}\n".encode(), 0o664),
        "tools/run.sh": (b"#!/bin/sh\necho run\n", 0o775),
    }
    for path, data in (extra or {}).items():
        files[path] = (data, 0o644)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(_member(top, tarfile.DIRTYPE, 0o755, MTIME - 60))
        for path, (data, mode) in sorted(files.items()):
            tar.addfile(_member(f"{top}/{path}", tarfile.REGTYPE, mode, MTIME - 120,
                                size=len(data)), io.BytesIO(data))
        link = _member(f"{top}/README", tarfile.SYMTYPE, 0o777, MTIME)
        link.linkname = "PKG-INFO"
        tar.addfile(link)
    if not gzipped:
        target = folder / f"{top}.tar"
        target.write_bytes(raw.getvalue())
        return target
    target = folder / f"{top}.tar.gz"
    with open(target, "wb") as out, gzip.GzipFile(fileobj=out, mode="wb", mtime=0,
                                                  filename="") as gz:
        gz.write(raw.getvalue())
    return target


def _member(name: str, kind: bytes, mode: int, mtime: int, size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime, info.size = kind, mode, mtime, size
    return info


def make_release(refs: dict[str, str], name: str = "2025.2") -> Release:
    """A Release whose components are the test packages, with these refs."""
    components = {c: ComponentRef(Component(c, c, c, "service"), ref) for c, ref in refs.items()}
    return Release(name=name, path=Path("releases") / name, python="3.11",
                   distro=Distro("debian", "bookworm", "12"), base_image="unused",
                   platforms=("linux/amd64",), services=tuple(refs), components=components)


def refs_of(repo: Path) -> dict[str, str]:
    """Every ref of ``repo`` as ls-remote shows it, HEAD included."""
    return git.ls_remote(str(repo), [])


def show(repo: Path, *args: str) -> str:
    return git.run(["--git-dir", str(repo), *args]).stdout


class MirrorCreateTest(unittest.TestCase):
    """One ``create`` through real pip, inspected from every side."""

    @classmethod
    def setUpClass(cls) -> None:
        cls._tmp = tempfile.TemporaryDirectory()
        root = Path(cls._tmp.name)
        cls.index = root / "index"
        cls.index.mkdir()
        cls.sdist = make_sdist(cls.index, "demo", "1.0.0")
        make_sdist(cls.index, "demo", "1.1.0")
        make_sdist(cls.index, "other", "2.0.0")
        cls.dest = root / "mirror"
        cls.release = make_release({"demo": "1.0.0", "other": "2.0.0"})
        cls.rows = mirror.create(cls.release, cls.dest, index_url=str(cls.index))
        cls.repo = cls.dest / "openstack" / "demo"

    @classmethod
    def tearDownClass(cls) -> None:
        cls._tmp.cleanup()

    def scratch(self) -> Path:
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        return Path(tmp.name)

    def test_rows(self) -> None:
        self.assertEqual([(r["component"], r["version"], r["repo"], r["action"])
                          for r in self.rows],
                         [("demo", "1.0.0", str(self.repo), "created"),
                          ("other", "2.0.0", str(self.dest / "openstack" / "other"), "created")])

    def test_refs_resolve_like_a_git_server(self) -> None:
        refs = refs_of(self.repo)
        sha = self.rows[0]["sha"]
        self.assertEqual(refs["refs/tags/1.0.0^{}"], sha)
        self.assertNotEqual(refs["refs/tags/1.0.0"], sha)  # annotated: a tag object
        self.assertEqual(refs["refs/heads/stable/2025.2"], sha)
        self.assertEqual(refs["HEAD"], sha)
        self.assertEqual(show(self.repo, "cat-file", "-t", "refs/tags/1.0.0").strip(), "tag")
        self.assertFalse([name for name in refs if name.startswith("refs/airlock/")])

    def test_tree_is_the_sdist(self) -> None:
        listing = show(self.repo, "ls-tree", "-r", "--format=%(objectmode) %(path)", "1.0.0")
        self.assertEqual(listing.splitlines(), [
            "100644 PKG-INFO", "120000 README", "100644 backend.py",
            "100644 demo/__init__.py", "100644 pyproject.toml", "100755 tools/run.sh"])
        self.assertEqual(show(self.repo, "cat-file", "blob", "1.0.0:README"), "PKG-INFO")
        self.assertEqual(show(self.repo, "cat-file", "blob", "1.0.0:demo/__init__.py"),
                         "VERSION = '1.0.0'\n")

    def test_identity_and_time_are_fixed(self) -> None:
        fmt = "%an <%ae>|%at|%cn <%ce>|%ct|%s"
        self.assertEqual(show(self.repo, "log", "-1", f"--format={fmt}", "1.0.0").strip(),
                         f"{mirror.IDENT}|{MTIME}|{mirror.IDENT}|{MTIME}|demo 1.0.0")
        tag = show(self.repo, "cat-file", "tag", "1.0.0")
        self.assertIn(f"tagger {mirror.IDENT} {MTIME} +0000", tag)
        body = show(self.repo, "log", "-1", "--format=%b", "1.0.0")
        self.assertIn("demo-1.0.0.tar.gz\nsha256 ", body)

    def test_same_sdist_same_sha_anywhere(self) -> None:
        """Another machine (another folder, another day) gets the same commit."""
        ref = self.release.components["demo"]
        row = mirror.import_sdist(self.sdist, self.scratch(), ref, "2025.2")
        self.assertEqual(row["sha"], self.rows[0]["sha"])

    def test_pinned_sha(self) -> None:
        """A change of this SHA changes the SHAs of every existing mirror: on purpose only."""
        folder = self.scratch()
        sdist = make_sdist(folder, "demo", "1.0.0", gzipped=False)
        row = mirror.import_sdist(sdist, folder / "mirror", self.release.components["demo"],
                                  "2025.2")
        self.assertEqual(row["sha"], "133835fc3b907a6cce760a43e81266c296c4d584")

    def test_rerun_changes_nothing(self) -> None:
        before = refs_of(self.repo)
        packs = sorted((self.repo / "objects").rglob("*"))
        rows = mirror.create(self.release, self.dest, index_url=str(self.index),
                             components=["demo"])
        self.assertEqual([(r["sha"], r["action"]) for r in rows],
                         [(self.rows[0]["sha"], "unchanged")])
        self.assertEqual(refs_of(self.repo), before)
        self.assertEqual(sorted((self.repo / "objects").rglob("*")), packs)


class MirrorUpdateTest(unittest.TestCase):
    """Extending a repository: new versions, other releases, conflicts (no pip)."""

    def setUp(self) -> None:
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        self.root = Path(tmp.name)
        self.dest = self.root / "mirror"
        self.repo = self.dest / "openstack" / "demo"
        self.first = mirror.import_sdist(make_sdist(self.root, "demo", "1.0.0"), self.dest,
                                         self.ref("1.0.0"), "2025.2")

    def ref(self, version: str) -> ComponentRef:
        return make_release({"demo": version}).components["demo"]

    def test_new_version_moves_the_branch(self) -> None:
        row = mirror.import_sdist(make_sdist(self.root, "demo", "1.1.0"), self.dest,
                                  self.ref("1.1.0"), "2025.2")
        refs = refs_of(self.repo)
        self.assertEqual(row["action"], "created")
        self.assertEqual(refs["refs/heads/stable/2025.2"], row["sha"])
        self.assertEqual(refs["refs/tags/1.0.0^{}"], self.first["sha"])
        self.assertEqual(refs["refs/tags/1.1.0^{}"], row["sha"])
        # Parentless: the SHA of 1.1.0 does not depend on 1.0.0 having been mirrored.
        self.assertEqual(show(self.repo, "rev-list", "--count", row["sha"]).strip(), "1")

    def test_another_release_adds_its_branch(self) -> None:
        sdist = self.root / "demo-1.0.0.tar.gz"
        row = mirror.import_sdist(sdist, self.dest, self.ref("1.0.0"), "2026.1")
        refs = refs_of(self.repo)
        self.assertEqual((row["sha"], row["action"]), (self.first["sha"], "updated"))
        self.assertEqual(refs["refs/heads/stable/2026.1"], self.first["sha"])
        self.assertEqual(refs["refs/heads/stable/2025.2"], self.first["sha"])

    def test_tag_on_other_files_is_refused(self) -> None:
        other = self.root / "changed"
        other.mkdir()
        sdist = make_sdist(other, "demo", "1.0.0", {"EXTRA": b"not in the release\n"})
        with self.assertRaises(AirlockError) as caught:
            mirror.import_sdist(sdist, self.dest, self.ref("1.0.0"), "2025.2")
        self.assertIn("tag 1.0.0 exists with other files", str(caught.exception))
        self.assertEqual(refs_of(self.repo)["refs/tags/1.0.0^{}"], self.first["sha"])

    def test_foreign_folder_is_left_alone(self) -> None:
        taken = self.dest / "openstack" / "other"
        taken.mkdir(parents=True)
        (taken / "notes.txt").write_text("mine\n")
        ref = make_release({"other": "1.0.0"}).components["other"]
        with self.assertRaises(AirlockError) as caught:
            mirror.import_sdist(self.root / "demo-1.0.0.tar.gz", self.dest, ref, "2025.2")
        self.assertIn("exists and is not a bare git repository", str(caught.exception))
        self.assertEqual(sorted(p.name for p in taken.iterdir()), ["notes.txt"])

    def test_a_link_on_the_way_to_a_repository_is_refused_not_followed(self) -> None:
        elsewhere = self.root / "elsewhere"
        elsewhere.mkdir()
        ref = make_release({"other": "1.0.0"}).components["other"]
        (self.dest / "openstack" / "other").symlink_to(elsewhere)
        with self.assertRaises(AirlockError) as caught:
            mirror.import_sdist(self.root / "demo-1.0.0.tar.gz", self.dest, ref, "2025.2")
        self.assertEqual(str(caught.exception), f"{self.dest / 'openstack' / 'other'}: is a "
                         "symbolic link; choose another --dest, or put the folder itself there")
        self.assertEqual(list(elsewhere.iterdir()), [])
        moved = self.root / "moved"
        (self.dest / "openstack").rename(moved)
        (self.dest / "openstack").symlink_to(moved)
        with self.assertRaises(AirlockError):
            mirror.import_sdist(self.root / "demo-1.0.0.tar.gz", self.dest, self.ref("1.0.0"),
                                "2025.2")

    def test_unsafe_member_is_refused(self) -> None:
        sdist = make_sdist(self.root, "evil", "1.0.0", {"../../escape": b"x"})
        with self.assertRaises(ToolError) as caught:
            mirror.read_sdist(sdist)
        self.assertIn("unsafe member", str(caught.exception))

    def test_not_a_tarball(self) -> None:
        bad = self.root / "bad-1.0.0.tar.gz"
        bad.write_bytes(b"not a tar")
        with self.assertRaises(ToolError):
            mirror.read_sdist(bad)


class RefCheckTest(unittest.TestCase):
    """Refs are checked before anything is downloaded: these never run pip."""

    def test_branch_refused(self) -> None:
        release = make_release({"demo": "1.0.0", "nova": "stable/2025.2"})
        with self.assertRaises(AirlockError) as caught:
            mirror.create(release, Path("/nonexistent"), index_url="/nonexistent")
        message = str(caught.exception)
        self.assertTrue(message.startswith("releases/2025.2/source-refs.yaml:nova: "
                                           "ref 'stable/2025.2' is not a released version"))
        self.assertIn("only make released versions", message)

    def test_unknown_component(self) -> None:
        release = make_release({"demo": "1.0.0"})
        with self.assertRaises(AirlockError) as caught:
            mirror.create(release, Path("/nonexistent"), components=["demo", "swift"])
        self.assertIn("--component swift: not a component of release 2025.2",
                      str(caught.exception))

    def test_versions(self) -> None:
        for ref in ("28.1.0", "29.0.0.0rc1", "2024.1", "1.0.0.post1"):
            self.assertTrue(mirror.is_release_version(ref), ref)
        for ref in ("stable/2025.2", "master", "v1.0", "2024.1-eol", "deadbeef",
                    "1234567890123456789012345678901234567890", "1.0+local.1", "1!2.0"):
            self.assertFalse(mirror.is_release_version(ref), ref)


class IndexTest(unittest.TestCase):
    def setUp(self) -> None:
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        self.root = Path(tmp.name)
        self.index = self.root / "index"
        self.index.mkdir()
        make_sdist(self.index, "demo", "1.0.0")

    def test_missing_version_names_what_exists(self) -> None:
        with self.assertRaises(AirlockError) as caught:
            index.download_sdist("demo", "9.9.9", self.root / "out", str(self.index))
        error = caught.exception
        self.assertNotIsInstance(error, ToolError)
        self.assertEqual(error.where, "demo==9.9.9")
        self.assertIn("no such version", error.what)
        self.assertIn("1.0.0", error.what)

    def test_local_index_must_exist(self) -> None:
        with self.assertRaises(AirlockError) as caught:
            index.download_sdist("demo", "1.0.0", self.root / "out", str(self.root / "nope"))
        self.assertIn("no such folder", str(caught.exception))

    def test_unreachable_index(self) -> None:
        with socket.socket() as probe:  # a loopback port nobody listens on
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        saved = os.environ.get("PIP_RETRIES")
        os.environ["PIP_RETRIES"] = "1"  # honoured: how to connect, not where from
        try:
            with self.assertRaises(ToolError) as caught:
                index.download_sdist("demo", "1.0.0", self.root / "out",
                                     f"http://127.0.0.1:{port}/simple")
        finally:
            if saved is None:
                del os.environ["PIP_RETRIES"]
            else:
                os.environ["PIP_RETRIES"] = saved
        self.assertIn("cannot reach the package index", str(caught.exception))
        self.assertIn("Connection refused", str(caught.exception))

    def test_sealed_from_the_machine_configuration(self) -> None:
        with mock.patch.dict(os.environ, {"PIP_INDEX_URL": "https://machine/simple",
                                          "PIP_EXTRA_INDEX_URL": "https://extra/simple"}):
            env = index.pip_env("https://index.invalid/simple")
        self.assertEqual(env["PIP_CONFIG_FILE"], os.devnull)
        self.assertEqual(env["PIP_INDEX_URL"], "https://index.invalid/simple")
        for name in ("PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_CONSTRAINT"):
            self.assertNotIn(name, env)
        self.assertNotIn("PIP_INDEX_URL", index.pip_env(str(self.index)))
        self.assertEqual(index.pip_env(None), dict(os.environ))


if __name__ == "__main__":
    unittest.main()
