"""The per-platform assembly: buildx's index bytes, and hostile part archives refused.

``data/buildx-index-*.json`` are image indexes buildx 0.13.1 wrote (real
builds of a two-line Dockerfile, docker 26, the containerd store): ``both``
for ``--platform linux/amd64,linux/arm64``, ``rev`` for the reverse order
with index annotations holding ``&<>`` and a non-ASCII letter, ``amd`` and
``arm`` each one platform built as a part (``BuildSpec.index``). Their
manifests are the same bytes; the index written around the parts' must be
the whole build's, byte for byte.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import stat
import tarfile
import tempfile
import unittest
from pathlib import Path

from airlock.ext import buildx
from airlock.image import assemble
from airlock.tests.functional import tinyimage
from airlock.tests.unit.treefixture import run_cli

DATA = Path(__file__).parent / "data"


def _data(name: str) -> bytes:
    return (DATA / name).read_bytes()


class IndexBytesTest(unittest.TestCase):

    def test_the_parts_give_the_two_platform_index_byte_for_byte(self):
        whole = json.loads(_data("buildx-index-both.json"))
        self.assertEqual(len(whole["manifests"]), 2)
        amd = json.loads(_data("buildx-index-amd.json"))
        arm = json.loads(_data("buildx-index-arm.json"))
        made = assemble.index_bytes([amd["manifests"][0], arm["manifests"][0]],
                                    amd["annotations"])
        self.assertEqual(made, _data("buildx-index-both.json"))

    def test_order_escapes_and_utf8_as_go_writes_them(self):
        rev = json.loads(_data("buildx-index-rev.json"))
        amd = json.loads(_data("buildx-index-amd.json"))
        arm = json.loads(_data("buildx-index-arm.json"))
        self.assertEqual(rev["annotations"]["io.airlock.zuul.x"], "a&b<c>é")
        made = assemble.index_bytes([arm["manifests"][0], amd["manifests"][0]],
                                    rev["annotations"])
        self.assertEqual(made, _data("buildx-index-rev.json"))
        # Python's own json would differ: the test data is not trivially matched.
        self.assertNotEqual(json.dumps(rev, indent=2).encode(), made)

    def test_layout_index_json_is_go_marshal(self):
        raw = _data("buildx-layout-both.json")
        self.assertEqual(assemble.go_json(json.loads(raw), indent=False), raw)

    def test_a_field_go_would_not_write_is_refused(self):
        arm = json.loads(_data("buildx-index-arm.json"))
        entry = {**arm["manifests"][0], "extra": 1}
        with self.assertRaisesRegex(Exception, "unknown to an OCI index"):
            assemble.index_bytes([entry], {})


class PartCommandTest(unittest.TestCase):

    def test_a_part_is_a_one_platform_index_with_the_annotations_on_it(self):
        spec = buildx.BuildSpec(dockerfile=Path("/x/Dockerfile"), context=Path("/x"),
                                output=Path("/x/out.tar"), platforms=("linux/arm64",),
                                annotations={"io.airlock.input-digest": "sha256:1"}, index=True)
        argv, _ = buildx.build_command(spec)
        self.assertIn("BUILDKIT_MULTI_PLATFORM=1", argv)
        output = argv[argv.index("--output") + 1]
        self.assertIn("annotation-index.io.airlock.input-digest=sha256:1", output)
        self.assertNotIn("annotation-manifest", output)
        # Without it, one platform is a plain manifest carrying them (no part).
        argv, _ = buildx.build_command(dataclasses.replace(spec, index=False))
        self.assertNotIn("BUILDKIT_MULTI_PLATFORM=1", argv)
        self.assertIn("annotation-manifest.", argv[argv.index("--output") + 1])


def _part(path: Path, platform: str, seed: str = "same", notes: dict | None = None) -> str:
    """A one-platform index archive (tinyimage's bytes, not buildx's: enough to read)."""
    return tinyimage.make(path, [platform], seed,
                          index_annotations=notes or {"io.airlock.input-digest": "sha256:1"})


def _tar(path: Path, members: dict[str, bytes], links: dict[str, str] | None = None) -> None:
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)


class AssembleCliTest(unittest.TestCase):
    """``airlock index assemble``: each bad archive is one line, exit 1, nothing written."""

    def setUp(self):
        self.tmp = Path(tempfile.mkdtemp(prefix="airlock-assemble-"))
        self.addCleanup(lambda: __import__("shutil").rmtree(self.tmp, True))
        self.amd, self.arm = self.tmp / "amd.tar", self.tmp / "arm.tar"
        _part(self.amd, "linux/amd64")
        _part(self.arm, "linux/arm64")
        self.out = self.tmp / "out" / "whole.oci.tar"

    def run_assemble(self, *archives: Path, platforms: tuple[str, ...] = ()) -> tuple:
        argv = ["index", "assemble", "--out", str(self.out)]
        for archive in archives:
            argv += ["--archive", str(archive)]
        for platform in platforms:
            argv += ["--platform", platform]
        return run_cli(argv)

    def refused(self, expected: str, *archives: Path, platforms: tuple[str, ...] = ()) -> None:
        code, out, err = self.run_assemble(*archives, platforms=platforms)
        self.assertEqual(code, 1, err)
        self.assertEqual(len(err.splitlines()), 1, err)
        self.assertIn(expected, err)
        self.assertFalse(self.out.exists())
        self.assertEqual([p.name for p in self.out.parent.glob(".*")] if self.out.parent.exists()
                         else [], [])

    def test_two_parts_make_one_index_of_both_with_every_blob(self):
        code, out, err = self.run_assemble(self.amd, self.arm)
        self.assertEqual(code, 0, err)
        digest = buildx.archive_digest(self.out)
        self.assertIn(digest, out)
        index = buildx.archive_manifest(self.out)
        self.assertEqual([m["platform"]["architecture"] for m in index["manifests"]],
                         ["amd64", "arm64"])
        self.assertEqual(index["annotations"], {"io.airlock.input-digest": "sha256:1"})
        with tarfile.open(self.out) as tar:
            names = set(tar.getnames())
        for part in (self.amd, self.arm):
            with tarfile.open(part) as tar:
                own = json.load(tar.extractfile("index.json"))["manifests"][0]["digest"]
                blobs = {n for n in tar.getnames() if n.startswith("blobs/")}
            self.assertLessEqual(blobs - {"blobs/sha256/" + own.split(":")[1]}, names)
            self.assertNotIn("blobs/sha256/" + own.split(":")[1], names)
        # The order is the --platform order.
        code, out, err = self.run_assemble(self.amd, self.arm,
                                           platforms=("linux/arm64", "linux/amd64"))
        self.assertEqual(code, 0, err)
        self.assertEqual([m["platform"]["architecture"] for m in
                          buildx.archive_manifest(self.out)["manifests"]], ["arm64", "amd64"])

    def test_missing_duplicate_and_foreign_platforms(self):
        self.refused("no archive of linux/arm64", self.amd,
                     platforms=("linux/amd64", "linux/arm64"))
        self.refused(f"holds linux/amd64, as {self.amd} does", self.amd, self.amd, self.arm)
        self.refused("holds linux/arm64, not one of linux/amd64", self.amd, self.arm,
                     platforms=("linux/amd64",))

    def test_a_part_of_another_image_is_refused(self):
        other = self.tmp / "other.tar"
        _part(other, "linux/arm64", notes={"io.airlock.input-digest": "sha256:2"})
        self.refused("annotations differ from", self.amd, other)

    def test_links_devices_and_folders_are_refused(self):
        link = self.tmp / "link.tar"
        link.symlink_to(self.arm)
        self.refused("is a symbolic link", self.amd, link)
        self.refused("is a character device, not a regular file", self.amd, Path("/dev/null"))
        fifo = self.tmp / "fifo"
        os.mkfifo(fifo)
        self.refused("is a FIFO, not a regular file", self.amd, fifo)
        self.refused("is a directory, not a regular file", self.amd, self.tmp)
        self.refused("no such file", self.amd, self.tmp / "absent.tar")

    def test_an_archive_of_two_images_or_a_plain_manifest_is_no_part(self):
        both = self.tmp / "both.tar"
        tinyimage.make(both, ["linux/amd64", "linux/arm64"], "same")
        self.refused("the image index lists 2 images, not 1", self.amd, both)
        # The layout naming two images.
        with tarfile.open(both) as tar:
            members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
        layout = json.loads(members["index.json"])
        layout["manifests"] *= 2
        two = self.tmp / "two.tar"
        _tar(two, {**members, "index.json": json.dumps(layout).encode()})
        self.refused("index.json lists 2 images, not 1", self.amd, two)
        layout["manifests"] = [{**layout["manifests"][0], "mediaType": assemble.MANIFEST}]
        plain = self.tmp / "plain.tar"
        _tar(plain, {**members, "index.json": json.dumps(layout).encode()})
        self.refused("not an image index", self.amd, plain)

    def test_huge_index_json_link_member_and_damaged_blob(self):
        with tarfile.open(self.arm) as tar:
            members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
        huge = self.tmp / "huge.tar"
        _tar(huge, {**members, "index.json": b" " * (assemble.LAYOUT_INDEX_LIMIT + 1)})
        self.refused("more than the 65536 an image index may have", self.amd, huge)
        linked = self.tmp / "linked.tar"
        _tar(linked, members, links={"blobs/sha256/" + "0" * 64: "/etc/passwd"})
        self.refused("which is no part of an OCI layout", self.amd, linked)
        odd = self.tmp / "odd.tar"
        _tar(odd, {**members, "../escape": b"x"})
        self.refused("'../escape', which is no part of an OCI layout", self.amd, odd)
        # A layer whose bytes are not its digest: caught while it is copied.
        layer = max((n for n in members if n.startswith("blobs/")),
                    key=lambda n: len(members[n]) if b"schemaVersion" not in members[n] else 0)
        damaged = self.tmp / "damaged.tar"
        _tar(damaged, {**members, layer: members[layer][:-1] + b"\0"})
        self.refused("does not have its digest", self.amd, damaged)
        not_tar = self.tmp / "not.tar"
        not_tar.write_bytes(b"not a tar at all" * 100)
        self.refused("not an OCI archive", self.amd, not_tar)

    def test_a_manifest_naming_a_blob_the_archive_lacks_is_refused(self):
        # index.json and the image index are whole, but the manifest names a
        # layer (or config) that is not in the archive: the archive written
        # would be unpushable, so nothing is.
        with tarfile.open(self.arm) as tar:
            members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
        layout = json.loads(members["index.json"])
        index = json.loads(members["blobs/sha256/"
                                   + layout["manifests"][0]["digest"].split(":")[1]])
        manifest = json.loads(members["blobs/sha256/"
                                      + index["manifests"][0]["digest"].split(":")[1]])
        for what in (manifest["layers"][0], manifest["config"]):
            name = "blobs/sha256/" + what["digest"].split(":")[1]
            lacking = self.tmp / "lacking.tar"
            _tar(lacking, {k: v for k, v in members.items() if k != name})
            with self.subTest(missing=what["mediaType"]):
                self.refused(f"names {what['digest']}, which it does not hold", self.amd,
                             lacking)
        # A blob of another size than its descriptor says: refused before copying.
        name = "blobs/sha256/" + manifest["layers"][0]["digest"].split(":")[1]
        longer = self.tmp / "longer.tar"
        _tar(longer, {**members, name: members[name] + b"\0" * 4096})
        self.refused("is 4096 bytes more than", self.amd, longer)

    def _refused_out(self, out: Path, expected: str) -> None:
        argv = ["index", "assemble", "--out", str(out), "--archive", str(self.amd),
                "--archive", str(self.arm)]
        code, _, err = run_cli(argv)
        self.assertEqual(code, 1, err)
        self.assertEqual(len(err.splitlines()), 1, err)
        self.assertIn(expected, err)
        self.assertEqual([p.name for p in out.parent.glob(".*")] if out.parent.is_dir()
                         else [], [])

    def test_out_onto_a_fifo_a_folder_or_under_a_file_is_refused(self):
        # airlock runs as root: --out /dev/null once replaced the host's device
        # (a FIFO stands in for it here; the rename would replace either).
        fifo = self.tmp / "fifo"
        os.mkfifo(fifo)
        self._refused_out(fifo, "is a FIFO, not a regular file")
        self.assertTrue(stat.S_ISFIFO(os.lstat(fifo).st_mode))
        link = self.tmp / "to-fifo"
        link.symlink_to(fifo)
        self._refused_out(link, "is a symbolic link to a FIFO, not a regular file")
        self.assertTrue(link.is_symlink())
        folder = self.tmp / "folder"
        folder.mkdir()
        self._refused_out(folder, f"{folder}: is a directory")
        self.assertTrue(folder.is_dir())
        plain = self.tmp / "plain"
        plain.write_bytes(b"x")
        self._refused_out(plain / "whole.tar", f"{plain}: is not a folder")
        self.assertEqual(plain.read_bytes(), b"x")

    def test_out_onto_an_input_is_refused_and_a_link_is_replaced_not_followed(self):
        before = self.arm.read_bytes()
        self._refused_out(self.arm, f"{self.arm}: is also an --archive")
        self.assertEqual(self.arm.read_bytes(), before)
        target = self.tmp / "target"
        target.write_bytes(b"keep")
        link = self.tmp / "link"
        link.symlink_to(target)
        code, _, err = run_cli(["index", "assemble", "--out", str(link), "--archive",
                                str(self.amd), "--archive", str(self.arm)])
        self.assertEqual(code, 0, err)
        self.assertFalse(link.is_symlink())
        self.assertEqual(target.read_bytes(), b"keep")

    def test_a_url_given_for_a_path_is_refused_without_its_secret(self):
        # pathlib folds "https://" into "https:/", which the redaction did not
        # see; and an --out URL made the folders "https:/u:S3CRET@h" here.
        cwd = os.getcwd()
        os.chdir(self.tmp)
        self.addCleanup(os.chdir, cwd)
        for argv in (["--archive", str(self.amd), "--archive", "https://u:S3CRET@h/x.tar",
                      "--out", str(self.out)],
                     ["--archive", str(self.amd), "--archive", str(self.arm),
                      "--out", "https://u:S3CRET@h/x.tar"]):
            with self.subTest(argv=argv):
                code, out, err = run_cli(["index", "assemble", *argv])
                self.assertEqual(code, 1, err)
                self.assertIn("is a URL", err)
                self.assertNotIn("S3CRET", out + err)
                self.assertFalse(os.path.lexists(self.tmp / "https:"))

if __name__ == "__main__":
    unittest.main()
