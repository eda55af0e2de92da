"""The pure parts of bundle create, check and inspect: ids, merging, indexes, apt's words."""

from __future__ import annotations

import json
import os
import tempfile
import unittest
from pathlib import Path

from airlock.bundle import check, create, gather, inspect, layout, manifest, sums
from airlock.data import platforms
from airlock.errors import AirlockError

SHA_A, SHA_B = "a" * 64, "b" * 64


def _doc(**extra) -> dict:
    doc = {"schema": layout.SCHEMA, "id": "airlock-x", "version": "1", "requires": [],
           "releases": {"2025.2": {"components": {"keystone": {
               "sha": "8646e6745e8da32a8d273dd93792a67a43e3b5af", "ref": "28.1.0",
               "repo": "/srv/git/openstack/keystone",
               "bundle": layout.git_bundle("keystone", "8646e6745e8da32a8d273dd93792a67a43e3b5af"),
               "patches": [{"path": layout.patch("2025.2", "keystone", "0001-x.patch"),
                            "sha256": SHA_A}]}}}},
           "selection": {"releases": ["2025.2"], "services": ["keystone"],
                         "platforms": ["linux/amd64"]},
           "artifacts": [{"path": layout.wheel("pbr-6.1.1-py2.py3-none-any.whl"),
                          "sha256": SHA_A, "size": 2048, "kind": "wheel", "bundle": "airlock-x"},
                         {"path": "images/debian-0123456789abcdef.oci.tar", "sha256": SHA_B,
                          "size": 3 << 20, "kind": "image", "bundle": "airlock-old"}],
           "complete": True}
    doc.update(extra)
    return doc


class BundleIdTest(unittest.TestCase):
    def test_the_same_content_gives_the_same_id_and_any_change_another(self) -> None:
        sel = {"releases": ["2025.2"]}
        rows = [{"path": "a", "sha256": SHA_A, "bundle": ""},
                {"path": "b", "sha256": SHA_B, "bundle": "airlock-old"}]
        first = manifest.bundle_id(sel, rows)
        self.assertEqual(first, manifest.bundle_id(sel, list(reversed(rows))))
        self.assertRegex(first, r"^airlock-[0-9a-f]{20}$")
        for changed in ([{**rows[0], "sha256": SHA_B}, rows[1]],
                        [rows[0], {**rows[1], "bundle": ""}], rows[:1]):
            self.assertNotEqual(manifest.bundle_id(sel, changed), first)
        self.assertNotEqual(manifest.bundle_id({"releases": ["2026.1"]}, rows), first)

    def test_every_bundle_path_is_one_the_sums_accept(self) -> None:
        for path in (layout.lock("2025.2"), layout.git_bundle("keystone", "8" * 40),
                     layout.patch("2025.2", "keystone", "0001-a.patch"),
                     layout.wheel("x-1-py3-none-any.whl"), layout.airlock_wheel("a-1.whl"),
                     layout.requirements("2025.2", "nova", "requirements.in"),
                     layout.apt_repo("debian", "bookworm", "arm64") + "/cpp_4%3a12.2.0-3_arm64.deb",
                     layout.image("debian", "sha256:" + SHA_A)):
            with self.subTest(path=path):
                self.assertIsNone(sums.safe_path(path))


class ManifestLoadTest(unittest.TestCase):
    def test_a_manifest_of_the_wrong_shape_is_one_line_naming_the_key(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "manifest.json"
            for doc, where in ((_doc(schema=2), str(path)), (_doc(id=3), f"{path}:id"),
                               (_doc(artifacts=[{"path": "x"}]), f"{path}:artifacts[0]"),
                               (_doc(releases={"2025.2": []}), f"{path}:releases.2025.2")):
                path.write_text(json.dumps(doc))
                with self.subTest(where=where), self.assertRaises(AirlockError) as caught:
                    manifest.load(path)
                self.assertTrue(str(caught.exception).startswith(where),
                                str(caught.exception))
            path.write_text("{" * 100000)
            with self.assertRaises(AirlockError) as caught:
                manifest.load(path)
            self.assertIn("is not JSON", str(caught.exception))
            os.mkfifo(Path(tmp) / "fifo")
            with self.assertRaises(AirlockError):
                manifest.load(Path(tmp) / "fifo")


class InspectTest(unittest.TestCase):
    def test_names_the_component_its_patch_the_delta_and_the_counts(self) -> None:
        text = inspect.render(_doc(requires=["airlock-old"]))
        self.assertIn("keystone     28.1.0 at 8646e6745e8d, 1 patch(es): 0001-x.patch", text)
        self.assertIn("builds on airlock-old", text)
        self.assertIn("carries 1 of 2 artifacts", text)
        self.assertRegex(text, r"(?m)^python\s+1\s+2\.0 KiB\s+\(1, 2\.0 KiB\)$")
        self.assertRegex(text, r"(?m)^images\s+0\s+0 B\s+\(1, 3\.0 MiB\)$")
        self.assertIn("NO (bundle check", inspect.render(_doc(complete=False)))

    def test_summary_counts_what_the_bundle_carries_and_what_was_reused(self) -> None:
        text = inspect.summary(_doc(), {"python": 1}, 4.5)
        self.assertRegex(text, r"(?m)^python\s+1\s+2\.0 KiB\s+1$")
        self.assertIn("complete in 4.5 s", text)


class MergeTest(unittest.TestCase):
    def test_one_row_per_path_with_the_releases_and_platforms_of_each_input(self) -> None:
        arts = [gather.Artifact("python/wheels/x.whl", "wheel", "o", data=b"x",
                                releases={"2025.1"}, platforms={"linux/amd64"}),
                gather.Artifact("python/wheels/x.whl", "wheel", "o", data=b"x",
                                releases={"2025.2"}, platforms={"linux/arm64"})]
        table, notes = create._merge(arts, started=0)
        self.assertEqual(notes, [])
        self.assertEqual(table["python/wheels/x.whl"]["release"], {"2025.1", "2025.2"})
        self.assertEqual(table["python/wheels/x.whl"]["platform"], {"linux/amd64", "linux/arm64"})

    def test_a_wheel_built_twice_to_other_bytes_keeps_the_first_and_says_so(self) -> None:
        arts = [gather.Artifact("python/wheels/x.whl", "wheel", "o", data=b"one",
                                releases={"2025.1"}),
                gather.Artifact("python/wheels/x.whl", "wheel", "o", data=b"two",
                                releases={"2025.2"})]
        table, notes = create._merge(arts, started=0)
        self.assertEqual(table["python/wheels/x.whl"]["size"], 3)
        self.assertEqual(len(notes), 1)
        self.assertIn("releases 2025.2 built other bytes", notes[0])

    def test_two_different_sources_of_one_other_path_are_an_error(self) -> None:
        arts = [gather.Artifact("sources/locks/x.lock.yaml", "lock", "o", data=b"one"),
                gather.Artifact("sources/locks/x.lock.yaml", "lock", "o", data=b"two")]
        with self.assertRaises(AirlockError):
            create._merge(arts, started=0)


class OutFolderTest(unittest.TestCase):
    def test_only_a_new_or_empty_folder_or_a_bundle_is_written_into(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            create.check_out(root / "new")
            (root / "empty").mkdir()
            create.check_out(root / "empty")
            (root / "home").mkdir()
            (root / "home" / "thesis.tex").write_text("years of work")
            with self.assertRaises(AirlockError) as caught:
                create.check_out(root / "home")
            self.assertIn("neither empty nor an airlock bundle", str(caught.exception))
            (root / "old").mkdir()
            (root / "old" / layout.MANIFEST).write_text(json.dumps(_doc()))
            create.check_out(root / "old")
            (root / "partial").mkdir()
            (root / "partial" / layout.PARTIAL).write_text("")
            create.check_out(root / "partial")
            (root / "old" / "python").mkdir()
            os.symlink("/etc", root / "old" / "python" / "wheels")
            with self.assertRaises(AirlockError) as caught:
                create.check_out(root / "old")
            self.assertIn("is a symbolic link inside the bundle folder", str(caught.exception))
            os.unlink(root / "old" / "python" / "wheels")
            (root / "file").write_text("x")
            os.symlink(root / "old", root / "link")
            for bad in ("file", "link"):
                with self.subTest(bad=bad), self.assertRaises(AirlockError):
                    create.check_out(root / bad)


class AptIndexTest(unittest.TestCase):
    def test_stanzas_of_several_repositories_merge_by_file_name(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            one, two = Path(tmp) / "one", Path(tmp) / "two"
            one.write_text("Package: a\nVersion: 1\nArchitecture: amd64\nFilename: ./a_1_amd64.deb"
                           "\n\nPackage: b\nVersion: 2\nArchitecture: all\n"
                           "Filename: ./b_2_all.deb\n")
            two.write_text("Package: a\nVersion: 1\nArchitecture: amd64\n"
                           "Filename: ./a_1_amd64.deb\n")
            merged = {**gather.stanzas(one), **gather.stanzas(two)}
            text = gather.packages_index(merged).decode()
            self.assertEqual(text.count("Package: a\n"), 1)
            self.assertLess(text.index("a_1_amd64"), text.index("b_2_all"))
            out = Path(tmp) / "Packages"
            out.write_bytes(text.encode())
            self.assertEqual(check._index(out), {("a", "1", "amd64"): "a_1_amd64.deb",
                                                 ("b", "2", "all"): "b_2_all.deb"})


class AptWordsTest(unittest.TestCase):
    def test_the_missing_package_is_named_whatever_apt_said(self) -> None:
        for log, name in (
                ("E: Unable to locate package libfoo1\n", "libfoo1"),
                ("E: Package 'libbar' has no installation candidate\n", "libbar"),
                ("The following packages have unmet dependencies:\n libldap-2.5-0 : Depends: "
                 "libsasl2-2 (>= 2.1.28) but it is not installable\n", "libsasl2-2"),
                ("Inst libc6 (2.36 Debian:12 [amd64])\nAIRLOCK: simulation ok\n", None)):
            with self.subTest(name=name):
                self.assertEqual(check.missing_package(log), name)


    def test_only_apt_saying_ok_is_a_success_not_the_logged_command(self) -> None:
        command = "docker run ... sh -c " + repr(check.SIMULATE) + "\n"
        self.assertIn("AIRLOCK: simulation ok", command)
        self.assertFalse(check.simulation_ok(command + "sh: 1: apt-get: not found\n"))
        self.assertFalse(check.simulation_ok(
            command + "E: Unable to locate package libfoo1\n"))
        self.assertTrue(check.simulation_ok(
            command + "Inst libc6 (2.36 Debian:12 [amd64])\nAIRLOCK: simulation ok\n"))


class BuildPinsTest(unittest.TestCase):
    def test_per_platform_markers_are_evaluated(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "build-constraints.txt"
            path.write_text("# header\npbr==6.1.1\n"
                            "cffi==1.17.1 ; platform_machine == 'x86_64'\n"
                            "cffi==1.16.0 ; platform_machine == 'aarch64'\n")
            self.assertEqual(check._build_pins(path, platforms.get("linux/arm64")),
                             [("pbr", "6.1.1"), ("cffi", "1.16.0")])
            self.assertEqual(check._build_pins(path, platforms.get("linux/amd64")),
                             [("pbr", "6.1.1"), ("cffi", "1.17.1")])


class WheelPlatformsTest(unittest.TestCase):
    def test_a_wheel_names_its_machine_or_serves_every_platform(self) -> None:
        self.assertEqual(gather._wheel_platforms("uv-0.13.9-py3-none-manylinux_2_17_aarch64."
                                                 "manylinux2014_aarch64.whl"), {"linux/arm64"})
        self.assertEqual(gather._wheel_platforms("pbr-6.1.1-py2.py3-none-any.whl"), set())


if __name__ == "__main__":
    unittest.main()
