"""debs: apt's closure, the Packages index, the container's command line, skip-unchanged.

No engine, no mirror: the container run is checked as a command line, and
an empty package list (which runs nothing) makes a real, empty repository.
"""

from __future__ import annotations

import json
import tempfile
import unittest
from pathlib import Path

from airlock.data.release import load_release
from airlock.errors import AirlockError, ToolError
from airlock.ext import docker
from airlock.files import json_digest
from airlock.inputs import debs
from airlock.tests.unit.treefixture import make_tree

SIMULATION = """\
NOTE: This is only a simulation!
Reading package lists...
The following NEW packages will be installed:
  libaio1 qemu-utils sudo
Inst sudo (1.9.13p3-1+deb12u4 Debian:12.15/oldstable [amd64])
Inst libc6 [2.36-9+deb12u9] (2.36-9+deb12u10 Debian:12.15/oldstable, \
Debian-Security:12/oldstable-security [amd64])
Inst cpp (4:12.2.0-3 Debian:12.15/oldstable [amd64]) []
Inst tzdata (2025b-0+deb12u1 Debian:12.15/oldstable [all])
Conf sudo (1.9.13p3-1+deb12u4 Debian:12.15/oldstable [amd64])
"""

SUDO = """\
Package: sudo
Version: 1.9.13p3-1+deb12u4
Architecture: amd64
Depends: libc6 (>= 2.34)
Description: Provide limited super user privileges
 Sudo is a program designed to allow a sysadmin to give limited root
 .
 privileges to users.
"""
TZDATA = "Package: tzdata\nVersion: 2025b-0+deb12u1\nArchitecture: all\n" \
         "Description: time zone data\n"
BASE = "127.0.0.1:5000/airlock/debian@sha256:" + "a" * 64


class TestClosure(unittest.TestCase):

    def test_inst_lines_are_the_closure(self):
        self.assertEqual(debs.parse_simulation(SIMULATION), [
            debs.Deb("sudo", "1.9.13p3-1+deb12u4", "amd64"),
            debs.Deb("libc6", "2.36-9+deb12u10", "amd64"),
            debs.Deb("cpp", "4:12.2.0-3", "amd64"),
            debs.Deb("tzdata", "2025b-0+deb12u1", "all"),
        ])

    def test_file_names_as_apt_writes_them(self):
        self.assertEqual(debs.Deb("cpp", "4:12.2.0-3", "amd64").filename,
                         "cpp_4%3a12.2.0-3_amd64.deb")
        self.assertEqual(debs.Deb("tzdata", "2025b-0+deb12u1", "all").filename,
                         "tzdata_2025b-0+deb12u1_all.deb")

    def test_a_package_apt_cannot_find(self):
        self.assertEqual(debs.unknown_package("Reading package lists...\n"
                                              "E: Unable to locate package nosuch\n"), "nosuch")
        self.assertEqual(debs.unknown_package("E: Package 'python' has no installation "
                                              "candidate\n"), "python")
        self.assertIsNone(debs.unknown_package("E: Failed to fetch http://m/x 404\n"))

    def test_nothing_to_install_is_an_empty_closure(self):
        self.assertEqual(debs.parse_simulation("0 upgraded, 0 newly installed\n"), [])


class TestPackagesIndex(unittest.TestCase):

    def test_stanzas_sorted_with_the_fields_apt_needs(self):
        text = debs.packages_index([
            ("tzdata_2025b-0+deb12u1_all.deb", TZDATA, 10, "m" * 32, "s" * 64),
            ("sudo_1.9.13p3-1+deb12u4_amd64.deb", SUDO, 2000, "d" * 32, "e" * 64),
        ])
        stanzas = text.split("\n\n")
        self.assertEqual(len(stanzas), 2)
        self.assertTrue(stanzas[0].startswith("Package: sudo\n"))
        self.assertIn(" .\n privileges to users.\n", stanzas[0])
        self.assertTrue(stanzas[0].endswith(
            "Filename: ./sudo_1.9.13p3-1+deb12u4_amd64.deb\nSize: 2000\n"
            f"MD5sum: {'d' * 32}\nSHA256: {'e' * 64}"))
        self.assertTrue(stanzas[1].startswith("Package: tzdata\n"))
        self.assertTrue(text.endswith("\n"))

    def test_stale_index_fields_in_a_control_file_are_replaced(self):
        text = debs.packages_index([("x_1_all.deb", TZDATA + "Size: 99\nFilename: old\n", 5,
                                     "m" * 32, "s" * 64)])
        self.assertEqual(text.count("Size:"), 1)
        self.assertNotIn("Filename: old", text)

    def test_no_package_field_is_a_damaged_deb(self):
        with self.assertRaises(ToolError):
            debs.packages_index([("x.deb", "Version: 1\n", 1, "m", "s")])

    def test_no_packages_is_an_empty_index(self):
        self.assertEqual(debs.packages_index([]), "")


class TestRunSpec(unittest.TestCase):

    def test_apt_runs_in_the_base_image_of_the_platform_with_the_host_network(self):
        spec = debs.run_spec(BASE, "linux/arm64", "http://mirror.example/debian", "bookworm",
                             Path("/cache/debs"), Path("/tmp/out"))
        argv = docker.run_spec_command(spec)
        self.assertEqual(argv[:3], ["docker", "run", "--rm"])
        self.assertEqual(argv[argv.index("--network") + 1], "host")
        self.assertEqual(argv[argv.index("--platform") + 1], "linux/arm64")
        mounts = [argv[i + 1] for i, a in enumerate(argv) if a == "--mount"]
        self.assertEqual(mounts, [
            "type=bind,source=/cache/debs,target=/airlock/cache",
            "type=bind,source=/tmp/out,target=/airlock/out"])
        at = argv.index(BASE)
        self.assertEqual(argv[at + 1:at + 3], ["sh", "-c"])
        self.assertEqual(argv[at + 4:at + 8], ["airlock-debs", "http://mirror.example/debian",
                                              "bookworm", "main"])
        self.assertEqual(spec.log, Path("/tmp/out/apt.log"))

    def test_the_script_ignores_the_images_own_sources(self):
        self.assertIn("Dir::Etc::SourceParts=/dev/null", debs.SCRIPT)
        self.assertIn("Dir::Etc::SourceList=/tmp/airlock.list", debs.SCRIPT)
        self.assertIn("--no-install-recommends", debs.SCRIPT)

    def test_docker_run_spec_flags(self):
        spec = docker.RunSpec(image="img", command=("true",), log=Path("/l"),
                              platform="linux/amd64", user="1:2", env={"B": "2", "A": "1"},
                              mounts=(docker.Mount(Path("/src"), "/in"),))
        argv = docker.run_spec_command(spec)
        self.assertEqual(argv[argv.index("--network") + 1], "none")
        self.assertEqual(argv[argv.index("--user") + 1], "1:2")
        self.assertEqual(argv[argv.index("--mount") + 1],
                         "type=bind,source=/src,target=/in,readonly")
        # Values travel in the client's environment, never on the command line.
        self.assertEqual([argv[i + 1] for i, a in enumerate(argv) if a == "--env"], ["A", "B"])
        self.assertNotIn("A=1", " ".join(argv))
        self.assertEqual(argv[-2:], ["img", "true"])
        with self.assertRaises(AirlockError):
            docker.run_spec_command(docker.RunSpec(
                image="img", command=(), log=Path("/l"),
                mounts=(docker.Mount(Path("/a,b"), "/in"),)))

    def test_a_digest_reference_needs_no_registry(self):
        self.assertEqual(debs.pinned_base(BASE), BASE)


class TestRepository(unittest.TestCase):

    def setUp(self):
        tmp = tempfile.TemporaryDirectory(prefix="airlock-debs-test-")
        self.addCleanup(tmp.cleanup)
        self.tmp = Path(tmp.name)
        self.tree = make_tree(self.tmp / "data")
        self.tree.write("images/python-base/bindep.txt", "# nothing at run time\n")
        self.release = load_release(self.tree.layout, "2025.2")
        self.env = {"AIRLOCK_APT_MIRROR": "http://mirror.invalid/debian"}

    def prepare(self, service="python-base", **kwargs):
        return debs.prepare(self.release, self.tree.layout.images_dir, service,
                            ["linux/amd64", "linux/arm64"], self.tmp / "debs",
                            base_image=BASE, cache=self.tmp / "cache", env=self.env, **kwargs)

    def test_an_empty_list_is_an_empty_valid_repository_made_without_a_container(self):
        results = self.prepare()
        self.assertEqual([r.changed for r in results], [True, True])
        for arch in ("amd64", "arm64"):
            out = self.tmp / "debs" / arch
            self.assertEqual(sorted(p.name for p in out.iterdir()),
                             ["Packages", "manifest.json", "packages.txt"])
            self.assertEqual((out / "packages.txt").read_text(), "")
            self.assertEqual((out / "Packages").read_text(), "")
            manifest = json.loads((out / "manifest.json").read_text())
            self.assertEqual(manifest["inputs"]["base_image"], BASE.rsplit("@", 1)[1])
            self.assertEqual(manifest["inputs"]["mirror"], "http://mirror.invalid/debian")
            self.assertEqual(manifest["closure"], [])
            self.assertEqual(set(manifest["files"]), {"Packages", "packages.txt"})

    def test_nothing_changed_nothing_done_a_change_makes_it_again(self):
        self.prepare()
        manifest = (self.tmp / "debs" / "amd64" / "manifest.json").read_bytes()
        self.assertEqual([r.changed for r in self.prepare()], [False, False])
        self.assertEqual((self.tmp / "debs" / "amd64" / "manifest.json").read_bytes(), manifest)
        self.env["AIRLOCK_APT_MIRROR"] = "http://other.invalid/debian"
        self.assertEqual([r.changed for r in self.prepare()], [True, True])
        (self.tmp / "debs" / "arm64" / "packages.txt").write_text("sudo\n")
        self.assertEqual([r.changed for r in self.prepare()], [False, True])

    def test_the_inputs_name_packages_base_and_platform(self):
        one = debs.inputs(self.release, "nova", "runtime", "linux/amd64", ["sudo"], BASE, "m")
        self.assertNotEqual(json_digest(one), json_digest(
            debs.inputs(self.release, "nova", "runtime", "linux/amd64", ["sudo", "lsscsi"],
                        BASE, "m")))
        self.assertNotEqual(json_digest(one), json_digest(
            debs.inputs(self.release, "nova", "runtime", "linux/amd64", ["sudo"],
                        BASE.replace("a", "b"), "m")))
        self.assertEqual(json_digest(one), json_digest(dict(reversed(one.items()))))

    def test_a_folder_that_is_not_a_repository_is_never_replaced(self):
        out = self.tmp / "debs" / "amd64"
        out.mkdir(parents=True)
        (out / "notes.txt").write_text("mine")
        with self.assertRaises(AirlockError):
            self.prepare()
        self.assertEqual((out / "notes.txt").read_text(), "mine")

    def test_an_unknown_service_is_a_user_error(self):
        with self.assertRaises(AirlockError):
            self.prepare(service="horizon")


if __name__ == "__main__":
    unittest.main()
