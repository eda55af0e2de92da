"""The bundle verbs as a hostile user drives them: one line and exit 1, never a traceback.

Each row runs the real CLI (``airlock.cli.main``) in-process on a bundle
folder made by :mod:`bundlefixture` whose manifest.json (or tree) was
damaged in one way, and checks the exit code and the one line on stderr.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import re
import shutil
import tempfile
import unittest
from pathlib import Path

from airlock import cli, files
from airlock.bundle import create, layout, tarstream
from airlock.errors import AirlockError
from airlock.ext import sshkeygen
from airlock.tests.unit import bundlefixture as bf


def run(*argv: str) -> tuple[int, str, str]:
    """``airlock ARGV`` in-process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(list(argv))
    return code, out.getvalue(), err.getvalue()


def release_entry() -> dict:
    """A manifest's releases entry with the fields inspect and check read."""
    return {"platforms": ["linux/amd64"], "python_version": "3.12",
            "base_image": {"ref": "127.0.0.1:5000/airlock/debian", "digest": "sha256:" + "a" * 64},
            "components": {"keystone": {
                "sha": "b" * 40, "ref": "28.1.0", "bundle": "sources/keystone.bundle",
                "patches": [{"path": "sources/patches/keystone/0001.patch", "sha256": "c" * 64}]}},
            "python": {"keystone": {"requirements": {
                name: f"python/requirements/2025.2/keystone/{name}"
                for name in ("requirements.in", "constraints.txt", "build-constraints.txt")}}},
            "apt": {"amd64": "debs/debian-trixie-amd64"},
            "packages": {"keystone": {"amd64": ["libldap-2.5-0"]}}}


def good_manifest() -> dict:
    doc = bf.manifest_for(bf.default_files())
    doc.update({"releases": {"2025.2": release_entry()}, "complete": True, "notes": [],
                "selection": {"releases": ["2025.2"], "services": ["keystone"],
                              "platforms": ["linux/amd64"]},
                "airlock": {"version": "0.1.0"}})
    return doc


def _set(path: str, value):
    """An edit setting the dotted ``path`` (list indexes as numbers) to ``value``."""
    def edit(doc: dict) -> None:
        *parents, last = path.split("/")
        node = doc
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    return edit


R = "releases/2025.2"
K = f"{R}/components/keystone"
# (name, edit of a good manifest, the start of the line on stderr after "M:")
ROWS = [
    ("release entry a list", _set(R, []), "releases.2025.2: missing or not a mapping"),
    ("release entry a string", _set(R, "x"), "releases.2025.2: missing or not a mapping"),
    ("component an int", _set(K, 5), "releases.2025.2.components.keystone: missing or not"),
    ("component sha an int", _set(f"{K}/sha", 5), "releases.2025.2.components.keystone.sha:"),
    ("patch a string", _set(f"{K}/patches/0", "x"), "releases.2025.2.components.keystone."
     "patches[0]: missing or not a mapping"),
    ("base image a string", _set(f"{R}/base_image", "x"), "releases.2025.2.base_image:"),
    ("python a list", _set(f"{R}/python", []), "releases.2025.2.python: missing or not"),
    ("requirements absolute", _set(f"{R}/python/keystone/requirements/requirements.in",
                                   "/etc/passwd"), "releases.2025.2.python.keystone."
     "requirements.requirements.in: '/etc/passwd' is an absolute path"),
    ("packages a string", _set(f"{R}/packages/keystone", "x"),
     "releases.2025.2.packages.keystone: missing or not a mapping"),
    ("size a string", _set("artifacts/0/size", "abc"), "artifacts[0].size: missing or not a "
     "whole number"),
    ("size negative", _set("artifacts/0/size", -5), "artifacts[0].size: is negative"),
    ("size a list", _set("artifacts/0/size", [1]), "artifacts[0].size: missing or not"),
    ("kind an int", _set("artifacts/0/kind", 5), "artifacts[0].kind: missing or not a string"),
    ("path with ..", _set("artifacts/0/path", "../../etc/passwd"), "artifacts[0].path: "
     "'../../etc/passwd' has a '..' component"),
    ("path absolute", _set("artifacts/0/path", "/etc/passwd"), "artifacts[0].path: "
     "'/etc/passwd' is an absolute path"),
    ("selection a string", _set("selection", "x"), "selection: missing or not a mapping"),
    ("selection releases ints", _set("selection/releases", [1, 2]),
     "selection.releases[0]: missing or not a string"),
    ("airlock a string", _set("airlock", "x"), "airlock: missing or not a mapping"),
    ("notes an int", _set("notes", 5), "notes: missing or not a list"),
    ("requires ints", _set("requires", [1]), "requires[0]: missing or not a string"),
    ("id with a terminal escape", _set("id", "airlock-\x1b[31mred\nforged line"),
     "id: holds a control character"),
    ("release name with a newline", _set("releases", {"a\nforged": {}}),
     "releases.a\\nforged: is not a printable name"),
]
# (name, manifest.json text, the start of the line after "M:" or "M: ")
RAW = [
    ("deep arrays", "[" * 100000 + "]" * 100000, " is not JSON (nested too deeply)"),
    ("deep objects", '{"a":' * 50000 + "1" + "}" * 50000, " is not JSON (nested too deeply)"),
    ("an integer of 5000 digits", '{"schema": 1' + "0" * 5000 + "}", " is not JSON (Exceeds"),
    ("NaN for a size", None, " is not JSON (NaN is no JSON number)"),
]


class InspectHostileManifest(unittest.TestCase):
    """``bundle inspect DIR`` (and ``bundle check DIR``) on a damaged manifest.json."""

    def setUp(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="airlock-bh-"))
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def bundle(self, text: str) -> Path:
        folder = self.tmp / "b"
        bf.make_bundle(folder)
        (folder / "manifest.json").write_text(text)
        return folder

    def expect(self, folder: Path, line: str) -> None:
        for verb in ("inspect", "check"):
            with self.subTest(verb=verb):
                code, out, err = run("bundle", verb, str(folder))
                where = f"{folder}/manifest.json:"
                self.assertEqual(code, 1, err)
                self.assertTrue(err.startswith(where + line), err)
                self.assertEqual(err.count("\n"), 1, err)
                self.assertNotIn("\x1b", err + out)
                self.assertEqual(out, "")

    def test_the_good_manifest_is_inspected(self) -> None:
        folder = self.bundle(json.dumps(good_manifest()))
        code, out, err = run("bundle", "inspect", str(folder))
        self.assertEqual((code, err), (0, ""))
        self.assertIn("keystone     28.1.0 at bbbbbbbbbbbb, 1 patch(es): 0001.patch", out)

    def test_debian_file_names_with_an_epoch_and_a_tilde_are_bundle_paths(self) -> None:
        doc = good_manifest()
        doc["artifacts"][0]["path"] = "debs/debian-trixie-amd64/cpp_4%3a12.2.0~rc1-3_amd64.deb"
        code, out, err = run("bundle", "inspect", str(self.bundle(json.dumps(doc))))
        self.assertEqual((code, err), (0, ""))

    def test_each_wrong_type_is_one_line_naming_the_key(self) -> None:
        for name, edit, line in ROWS:
            with self.subTest(name):
                doc = copy.deepcopy(good_manifest())
                edit(doc)
                self.expect(self.bundle(json.dumps(doc)), line)

    def test_json_python_cannot_hold_is_one_line(self) -> None:
        for name, text, line in RAW:
            with self.subTest(name):
                if text is None:
                    text = re.sub(r'"size": [0-9]+', '"size": NaN', json.dumps(good_manifest()),
                                  count=1)
                    self.assertIn("NaN", text)
                self.expect(self.bundle(text), line)


if __name__ == "__main__":
    unittest.main()


class InspectTar(unittest.TestCase):
    """``bundle inspect FILE.tar``: the manifest from the tar's head, or one line."""

    def setUp(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="airlock-bh-"))
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def tar(self, manifest_text: str | None = None, parts: int | None = None) -> Path:
        folder = bf.make_bundle(self.tmp / "b", manifest=good_manifest())
        if manifest_text is not None:
            (folder / "manifest.json").write_text(manifest_text)
            bf.write_sums(folder, None)
        tarstream.write(folder, self.tmp / "b.tar", parts)
        return self.tmp / "b.tar"

    def test_a_tar_and_its_parts_are_inspected(self) -> None:
        for parts in (None, 4096):
            with self.subTest(parts=parts):
                shutil.rmtree(self.tmp)
                self.tmp.mkdir()
                tar = self.tar(parts=parts)
                code, out, err = run("bundle", "inspect", str(tar))
                self.assertEqual((code, err), (0, ""))
                self.assertIn("bundle   airlock-test-1  version 2025.2-1", out)

    def test_a_damaged_manifest_in_a_tar_is_one_line(self) -> None:
        tar = self.tar("[" * 100000 + "]" * 100000)
        code, out, err = run("bundle", "inspect", str(tar))
        self.assertEqual(code, 1)
        self.assertEqual(err, f"{tar}: manifest.json: is not JSON (nested too deeply); "
                         "the bundle was changed or damaged in transit; get it again\n")

    def test_what_is_no_bundle_tar_is_one_line(self) -> None:
        noise = self.tmp / "noise.bin"
        noise.write_bytes(bytes(range(256)) * 400)
        empty = self.tmp / "empty.tar"
        empty.write_bytes(b"")
        zeros = self.tmp / "zeros.tar"
        zeros.write_bytes(bytes(10240))
        for target, line in ((noise, f"{noise}: not a tar, or damaged at byte 0"),
                             (empty, f"{empty}: truncated before its manifest"),
                             (zeros, f"{zeros}: holds no manifest.json among its first"),
                             (Path("/dev/zero"), "/dev/zero: is not a regular file"),
                             (self.tmp / "none", f"{self.tmp}/none: no such file")):
            with self.subTest(str(target)):
                code, out, err = run("bundle", "inspect", str(target))
                self.assertEqual((code, out), (1, ""), err)
                self.assertTrue(err.startswith(line), err)
                self.assertEqual(err.count("\n"), 1, err)


class LinksOutOfTheBundle(unittest.TestCase):
    """inspect and check never read through a link out of a bundle folder they were given."""

    def setUp(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="airlock-bh-"))
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.folder = bf.make_bundle(self.tmp / "b", manifest=good_manifest())
        self.outside = self.tmp / "outside"
        self.outside.mkdir()

    def test_a_manifest_that_links_out_is_refused(self) -> None:
        manifest = self.folder / "manifest.json"
        manifest.rename(self.outside / "manifest.json")
        manifest.symlink_to(self.outside / "manifest.json")
        for verb in ("inspect", "check"):
            with self.subTest(verb):
                code, out, err = run("bundle", verb, str(self.folder))
                self.assertEqual((code, out), (1, ""))
                self.assertEqual(err, f"{manifest}: leads outside {self.folder} (a symbolic "
                                 "link?); replace the link by the file itself\n")

    def test_check_refuses_an_artifact_or_folder_that_links_out(self) -> None:
        wheel = self.folder / bf.WHEEL
        for name, link, target in (
                ("a file", wheel, self.outside / wheel.name),
                ("a folder", wheel.parent, self.outside / "wheels")):
            with self.subTest(name):
                link.rename(target)
                link.symlink_to(target)
                try:
                    code, out, err = run("bundle", "check", str(self.folder))
                finally:
                    link.unlink()
                    target.rename(link)
                self.assertEqual(code, 1)
                self.assertTrue(err.startswith(f"{self.folder}/python/wheels"), err)
                self.assertIn(": is (or lies under) a symbolic link; a bundle holds regular "
                              "files only; remove the link, or get the bundle again\n", err)
                self.assertEqual(err.count("\n"), 1, err)


class SizeLimits(unittest.TestCase):
    def test_a_limit_below_a_mebibyte_is_said_in_kibibytes(self) -> None:
        tmp = Path(tempfile.mkdtemp(prefix="airlock-bh-"))
        self.addCleanup(shutil.rmtree, tmp, True)
        big = tmp / "sig"
        big.write_bytes(b"x" * 70000)
        with self.assertRaises(AirlockError) as caught:
            files.read_bytes(big, limit=64 * 1024)
        self.assertEqual(caught.exception.what, "is larger than 64 KiB, the limit for this file")


class CreateChecksFirst(unittest.TestCase):
    """What bundle create refuses before it gathers anything."""

    def setUp(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="airlock-bh-"))
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def test_a_folder_with_someone_elses_manifest_json_is_no_bundle(self) -> None:
        out = self.tmp / "project"
        (out / "python").mkdir(parents=True)
        (out / "python" / "notes.txt").write_text("mine\n")
        (out / "manifest.json").write_text('{"name": "a web extension"}\n')
        with self.assertRaises(AirlockError) as caught:
            create.check_out(out)
        self.assertEqual(str(caught.exception), f"{out}: is neither empty nor an airlock bundle "
                         "(its manifest.json: is not an airlock bundle manifest of schema 1); "
                         "choose a new or empty folder for --out")

    def test_an_airlock_bundle_or_an_interrupted_one_is_updated(self) -> None:
        done = bf.make_bundle(self.tmp / "done", manifest=good_manifest())
        partial = self.tmp / "partial"
        partial.mkdir()
        (partial / layout.PARTIAL).write_text("filling\n")
        (partial / "manifest.json").write_text("cut sho")
        for out in (done, partial, self.tmp / "new"):
            create.check_out(out)  # no error

    def test_a_key_that_cannot_sign_fails_at_once(self) -> None:
        locked = bf.make_key(self.tmp, "locked", passphrase="secret passphrase")
        open_key = bf.make_key(self.tmp, "open")
        open_key.chmod(0o644)
        for key, line in ((locked, f"{locked}: is protected by a passphrase"),
                          (open_key, f"{open_key}: is readable by others, so ssh-keygen "
                           f"ignores it; chmod 600 {open_key}")):
            with self.subTest(key.name), self.assertRaises(AirlockError) as caught:
                sshkeygen.check_key(key)
            self.assertTrue(str(caught.exception).startswith(line), caught.exception)
        open_key.chmod(0o600)
        sshkeygen.check_key(open_key)  # signs: no error

    def test_an_earlier_bundle_holding_a_link_is_not_written_through(self) -> None:
        done = bf.make_bundle(self.tmp / "done", manifest=good_manifest())
        elsewhere = self.tmp / "elsewhere"
        (done / "python" / "wheels").rename(elsewhere)
        (done / "python" / "wheels").symlink_to(elsewhere)
        with self.assertRaises(AirlockError) as caught:
            create.check_out(done)
        self.assertEqual(str(caught.exception), f"{done}/python/wheels: is a symbolic link "
                         "inside the bundle folder; remove it (a bundle holds regular files and "
                         "folders only)")


class CheckNamedByItsManifest(unittest.TestCase):
    def test_a_bundle_named_by_its_manifest_json_is_checked_in_its_folder(self) -> None:
        tmp = Path(tempfile.mkdtemp(prefix="airlock-bh-"))
        self.addCleanup(shutil.rmtree, tmp, True)
        doc = good_manifest()
        doc["releases"] = {}  # presence of every artifact only: no uv, no engine
        folder = bf.make_bundle(tmp / "b", manifest=doc)
        code, out, err = run("bundle", "check", str(folder / "manifest.json"))
        self.assertEqual((code, err), (0, ""), err)
        self.assertIn("complete: every release, service and platform", out)


class CreateTarTargetFirst(unittest.TestCase):
    def test_a_folder_where_a_part_of_the_tar_goes_is_found_before_any_work(self) -> None:
        # An earlier tar of OUT is create's own, replaced; a folder is not.
        tmp = Path(tempfile.mkdtemp(prefix="airlock-bh-"))
        self.addCleanup(shutil.rmtree, tmp, True)
        (tmp / "out.tar.001").mkdir()
        (tmp / "git").mkdir()
        code, out, err = run("bundle", "create", "--release", "2025.2", "--out",
                             str(tmp / "out"), "--tar", "--work-dir", str(tmp / "work"),
                             "--registry", "127.0.0.1:1", "--git-base", str(tmp / "git"))
        self.assertEqual((code, out), (1, ""))
        self.assertEqual(err, f"{tmp}/out.tar.001: already exists; remove it (and its other "
                         "parts) or choose another file\n")
        self.assertEqual(sorted(p.name for p in tmp.iterdir()), ["git", "out.tar.001"])
