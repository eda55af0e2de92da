"""debs: apt's closure, the Packages index, the container's command line, skip-unchanged.

No engine, no mirror: the container run is checked as a command line, and
an empty package list (which runs nothing) makes a real, empty repository.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import stat
import subprocess
import tempfile
import threading
import time
import unittest
from pathlib import Path

from airlock.data.release import load_release
from airlock.errors import AirlockError, ToolError
from airlock.ext import containers
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

    def test_the_plan_in_order_as_dpkg_steps(self):
        text = ("Inst libgmp10 (2:6.2.1 Debian:12 [amd64])\n"
                "Conf libgmp10 (2:6.2.1 Debian:12 [amd64])\n"
                "Remv oldlib [1.0]\n"
                "Inst libnettle8:amd64 (3.8.1-2 Debian:12 [amd64])\n"
                "Inst libhogweed6 (3.8.1-2 Debian:12 [amd64])\n"
                "Conf libnettle8:amd64 (3.8.1-2 Debian:12 [amd64])\n"
                "Conf libhogweed6 (3.8.1-2 Debian:12 [amd64])\n"
                "Conf ../../x (1 Debian:12 [amd64])\n")
        steps = debs.parse_order(text)
        self.assertEqual(steps, [
            ("unpack", "libgmp10_2%3a6.2.1_amd64.deb"), ("configure", "libgmp10"),
            ("remove", "oldlib"),
            ("unpack", "libnettle8_3.8.1-2_amd64.deb"), ("unpack", "libhogweed6_3.8.1-2_amd64.deb"),
            ("configure", "libnettle8"), ("configure", "libhogweed6")])
        self.assertEqual(debs.order_text(steps).splitlines()[:3], [
            "unpack libgmp10_2%3a6.2.1_amd64.deb", "configure libgmp10", "remove oldlib"])

    def test_names_that_would_leave_the_cache_folder_are_no_packages(self):
        text = ("Inst ../../etc/shadow (1.0 Debian:12 [amd64])\n"
                "Inst sudo (1.0/../../x Debian:12 [amd64])\n"
                "Inst sudo (1.0 Debian:12 [../amd64])\n"
                "Inst libc6:amd64 (2.36-9 Debian:12 [amd64])\n")
        self.assertEqual(debs.parse_simulation(text), [debs.Deb("libc6", "2.36-9", "amd64")])


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
                             Path("/cache/debs"), Path("/tmp/x/out"), Path("/tmp/x/apt.log"))
        argv = containers.run_spec_command(spec)
        self.assertEqual(argv[:3], ["docker", "run", "--rm"])
        self.assertEqual(argv[argv.index("--network") + 1], "host")
        self.assertEqual(argv[argv.index("--platform") + 1], "linux/arm64")
        mounts = [argv[i + 1] for i, a in enumerate(argv) if a == "--mount"]
        self.assertEqual(mounts, [
            "type=bind,source=/cache/debs,target=/airlock/cache",
            "type=bind,source=/tmp/x/out,target=/airlock/out"])
        at = argv.index(BASE)
        self.assertEqual(argv[at + 1:], ["sh", "-c", debs.SCRIPT, "airlock-debs", "/airlock",
                                         "bookworm", "main", f"{os.getuid()}:{os.getgid()}"])
        # The mirror travels in the environment; the log lies outside both mounts.
        self.assertEqual(spec.env, {"AIRLOCK_MIRROR": "http://mirror.example/debian"})
        self.assertEqual(spec.log, Path("/tmp/x/apt.log"))

    def test_credentials_reach_apt_as_auth_conf_never_the_command_line(self):
        mirror = "https://bot%40site:s3cr%2Ft@apt.site.example:8443/debian/"
        spec = debs.run_spec(BASE, "linux/amd64", mirror, "bookworm", Path("/c"), Path("/o"),
                             Path("/l"))
        self.assertEqual(spec.env, {
            "AIRLOCK_MIRROR": "https://apt.site.example:8443/debian/",
            "AIRLOCK_APT_AUTH": "machine https://apt.site.example:8443/debian login bot@site "
                                "password s3cr/t"})
        self.assertNotIn("s3cr", " ".join(containers.run_spec_command(spec)))

    def test_docker_run_spec_flags(self):
        spec = containers.RunSpec(image="img", command=("true",), log=Path("/l"),
                              platform="linux/amd64", user="1:2", env={"B": "2", "A": "1"},
                              mounts=(containers.Mount(Path("/src"), "/in"),))
        argv = containers.run_spec_command(spec)
        self.assertEqual(argv[argv.index("--network") + 1], "none")
        self.assertEqual(argv[argv.index("--user") + 1], "1:2")
        self.assertEqual(argv[argv.index("--mount") + 1],
                         "type=bind,source=/src,target=/in,readonly")
        # Values travel in the client's environment, never on the command line.
        self.assertEqual([argv[i + 1] for i, a in enumerate(argv) if a == "--env"], ["A", "B"])
        self.assertNotIn("A=1", " ".join(argv))
        self.assertEqual(argv[-2:], ["img", "true"])
        with self.assertRaises(AirlockError):
            containers.run_spec_command(containers.RunSpec(
                image="img", command=(), log=Path("/l"),
                mounts=(containers.Mount(Path("/a,b"), "/in"),)))

    def test_a_digest_reference_needs_no_registry(self):
        self.assertEqual(debs.pinned_base(BASE), BASE)


# Stand-ins for apt-get and dpkg-deb, for running SCRIPT on the host: the
# real programs need the base image (the engine), where the functional test
# tests/functional/test_debs.py runs the script for real. Each call of
# apt-get is logged with its arguments and a copy of the sources list and
# auth.conf it was given (the script removes them when it ends).
FAKE_APT = r"""#!/bin/sh
n=$(ls "$FAKE_LOG" | grep -c '^call-' || true)
printf '%s\n' "$@" > "$FAKE_LOG/call-$n"
archives=
for arg in "$@"; do
    case "$arg" in
        Dir::Etc::SourceList=*) cp "${arg#*=}" "$FAKE_LOG/sources-$n" ;;
        Dir::Etc::netrc=*) cp -p "${arg#*=}" "$FAKE_LOG/auth-$n" ;;
        Dir::Cache::Archives=*) archives=${arg#*=} ;;
    esac
done
case " $* " in
    *" -s install "*) echo "Inst sudo (1.9 Debian:12 [amd64])" ;;
    *" -d install "*) echo deb > "${archives}sudo_1.9_amd64.deb" ;;
esac
"""
FAKE_DPKG_DEB = """#!/bin/sh
echo "Package: ${2%%_*}"
"""


class TestScript(unittest.TestCase):
    """SCRIPT itself, run by sh on the host with apt-get and dpkg-deb stand-ins."""

    def setUp(self):
        self.tmp = Path(tempfile.mkdtemp(prefix="airlock-debs-script-"))
        self.addCleanup(shutil.rmtree, self.tmp)
        self.top, self.log, self.bin = self.tmp / "top", self.tmp / "log", self.tmp / "bin"
        for folder in (self.top / "cache", self.top / "out", self.log, self.bin):
            folder.mkdir(parents=True)
        for name, text in (("apt-get", FAKE_APT), ("dpkg-deb", FAKE_DPKG_DEB)):
            (self.bin / name).write_text(text)
            (self.bin / name).chmod(0o755)
        (self.top / "out" / "request.txt").write_text("sudo\n")
        self.host = self.tmp / "host-file"
        self.host.write_text("host\n")

    def run_script(self, mirror: str) -> list[list[str]]:
        spec = debs.run_spec(BASE, "linux/amd64", mirror, "bookworm", self.top / "cache",
                             self.top / "out", self.tmp / "apt.log")
        subprocess.run(["sh", "-c", debs.SCRIPT, "airlock-debs", str(self.top), "bookworm",
                        "main", f"{os.getuid()}:{os.getgid()}"], check=True, timeout=60,
                       env={"PATH": f"{self.bin}:/usr/bin:/bin", "FAKE_LOG": str(self.log),
                            **spec.env})
        calls = sorted(self.log.glob("call-*"))
        return [p.read_text().splitlines() for p in calls]

    def test_apt_reads_the_mirror_only_and_installs_no_recommends(self):
        calls = self.run_script("http://mirror.example/debian")
        self.assertEqual([c[-1] if "update" in c else c[c.index("install") - 1]
                          for c in calls], ["update", "-s", "-d"])
        for number, call in enumerate(calls):
            self.assertIn("Dir::Etc::SourceParts=/dev/null", call)
            self.assertIn(f"Dir::Cache::Archives={self.top}/cache/", call)
            self.assertEqual((self.log / f"sources-{number}").read_text(),
                             "deb http://mirror.example/debian bookworm main\n")
            self.assertFalse((self.log / f"auth-{number}").exists())
            if "install" in call:
                self.assertEqual(call[call.index("install"):], ["install",
                                 "--no-install-recommends", "sudo"])
        self.assertEqual((self.top / "out" / "simulate.txt").read_text(),
                         "Inst sudo (1.9 Debian:12 [amd64])\n")
        self.assertEqual((self.top / "cache" / "sudo_1.9_amd64.deb.control").read_text(),
                         "Package: sudo\n")
        self.assertEqual(sorted(p.name for p in (self.top / "cache").iterdir()),
                         ["sudo_1.9_amd64.deb", "sudo_1.9_amd64.deb.control"])

    def test_apt_plans_against_the_status_the_host_gave_else_its_own(self):
        for call in self.run_script("http://mirror.example/debian"):
            self.assertFalse([a for a in call if a.startswith("Dir::State::status")])
        for old in self.log.iterdir():
            old.unlink()
        (self.top / "out" / "status").write_text("Package: dpkg\nStatus: install ok "
                                                 "installed\n")
        for call in self.run_script("http://mirror.example/debian"):
            self.assertIn(f"Dir::State::status={self.top}/out/status", call)

    def test_credentials_go_to_an_auth_conf_of_mode_600_only(self):
        calls = self.run_script("https://bot:s3cret@apt.example/debian")
        for number, call in enumerate(calls):
            self.assertNotIn("s3cret", " ".join(call))
            self.assertEqual((self.log / f"sources-{number}").read_text(),
                             "deb https://apt.example/debian bookworm main\n")
            auth = self.log / f"auth-{number}"
            self.assertEqual(auth.read_text(),
                             "machine https://apt.example/debian login bot password s3cret\n")
            self.assertEqual(stat.S_IMODE(auth.stat().st_mode), 0o600)

    def test_links_in_the_cache_are_neither_read_nor_written_through(self):
        cache = self.top / "cache"
        (cache / "evil_1_amd64.deb").symlink_to(self.host)
        (cache / "sudo_1.9_amd64.deb.control").symlink_to(self.host)
        self.run_script("http://mirror.example/debian")
        self.assertFalse(os.path.lexists(cache / "evil_1_amd64.deb.control"))
        control = cache / "sudo_1.9_amd64.deb.control"
        self.assertFalse(control.is_symlink())
        self.assertEqual(control.read_text(), "Package: sudo\n")
        self.assertEqual(self.host.read_text(), "host\n")


class TestCacheFiles(unittest.TestCase):
    """The host reads and links only regular files from the cache a root container filled."""

    def setUp(self):
        self.tmp = Path(tempfile.mkdtemp(prefix="airlock-debs-cache-"))
        self.addCleanup(shutil.rmtree, self.tmp)
        self.cache = self.tmp / "cache"
        self.cache.mkdir()
        self.host = self.tmp / "shadow"
        self.host.write_text("root:secret\n")
        self.deb = debs.Deb("sudo", "1.9", "amd64")
        (self.cache / self.deb.filename).write_bytes(b"a .deb")
        (self.cache / f"{self.deb.filename}.control").write_text(SUDO)
        self.out = self.tmp / "repo" / "amd64"

    def assemble(self):
        plan = debs.Plan([self.deb], [("unpack", self.deb.filename), ("configure", "sudo")])
        return debs._assemble(self.out, {"x": 1}, "sha256:" + "0" * 64, ["sudo"], plan,
                              self.cache)

    def test_regular_files_make_the_repository(self):
        manifest = self.assemble()
        self.assertEqual(manifest["files"][self.deb.filename]["size"], 6)
        self.assertEqual((self.out / "order.txt").read_text(),
                         f"unpack {self.deb.filename}\nconfigure sudo\n")
        packages = (self.out / "Packages").read_text()
        self.assertIn(f"Filename: ./{self.deb.filename}\nSize: 6\n", packages)
        self.assertEqual((self.out / self.deb.filename).stat().st_ino,
                         (self.cache / self.deb.filename).stat().st_ino)

    def test_a_deb_or_control_that_is_a_link_is_refused_and_nothing_is_made(self):
        for name in (self.deb.filename, f"{self.deb.filename}.control"):
            with self.subTest(name=name):
                saved = (self.cache / name).read_bytes()
                (self.cache / name).unlink()
                (self.cache / name).symlink_to(self.host)
                with self.assertRaises(AirlockError) as caught:
                    self.assemble()
                self.assertIn(f"{self.cache / name}: is a symbolic link, not a regular file",
                              str(caught.exception))
                self.assertFalse(self.out.parent.exists() and any(self.out.parent.iterdir()))
                (self.cache / name).unlink()
                (self.cache / name).write_bytes(saved)
        self.assertEqual(self.host.read_text(), "root:secret\n")


class TestCacheLock(unittest.TestCase):
    """Two runs on one host take turns at a .deb cache: apt never fills it twice at once."""

    def test_a_second_run_waits_for_the_cache_then_runs(self):
        tmp = Path(tempfile.mkdtemp(prefix="airlock-debs-lock-"))
        self.addCleanup(shutil.rmtree, tmp)
        tree = make_tree(tmp / "data")
        tree.write("images/nova/bindep.txt", "sudo\n")
        release = load_release(tree.layout, "2025.2")
        # A base image nobody serves: the container run fails at once, for real.
        unreachable = "127.0.0.1:1/none@sha256:" + "0" * 64
        folder = tmp / "cache" / "debs" / "debian-bookworm" / "amd64"
        outcome: dict = {}

        def second_run():
            try:
                debs.prepare(release, tree.layout.images_dir, "nova", ["linux/amd64"],
                             tmp / "debs", base_image=unreachable, cache=tmp / "cache",
                             env={"AIRLOCK_APT_MIRROR": "http://mirror.invalid/debian"})
            except AirlockError as error:
                outcome["error"] = error
            outcome["ended"] = time.monotonic()

        with debs.cache_locked(folder):
            runner = threading.Thread(target=second_run)
            runner.start()
            runner.join(2)
            self.assertTrue(runner.is_alive(), "the second run did not wait for the cache")
            released = time.monotonic()
        runner.join(120)
        self.assertGreaterEqual(outcome["ended"], released)
        self.assertIsInstance(outcome["error"], ToolError)
        self.assertFalse((tmp / "debs" / "amd64").exists())


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
                             ["Packages", "manifest.json", "order.txt", "packages.txt"])
            self.assertEqual((out / "packages.txt").read_text(), "")
            self.assertEqual((out / "Packages").read_text(), "")
            manifest = json.loads((out / "manifest.json").read_text())
            self.assertEqual(manifest["inputs"]["base_image"], BASE.rsplit("@", 1)[1])
            self.assertEqual(manifest["inputs"]["mirror"], "http://mirror.invalid/debian")
            self.assertEqual(manifest["closure"], [])
            self.assertEqual(set(manifest["files"]), {"Packages", "order.txt", "packages.txt"})

    def test_a_new_mirror_password_is_no_new_input_and_none_is_recorded(self):
        self.env["AIRLOCK_APT_MIRROR"] = "http://bot:first-token@mirror.invalid/debian"
        self.assertEqual([r.changed for r in self.prepare()], [True, True])
        manifest = (self.tmp / "debs" / "amd64" / "manifest.json").read_text()
        self.assertIn('"mirror": "http://mirror.invalid/debian"', manifest)
        self.env["AIRLOCK_APT_MIRROR"] = "http://bot:second-token@mirror.invalid/debian"
        self.assertEqual([r.changed for r in self.prepare()], [False, False])
        self.env["AIRLOCK_APT_MIRROR"] = "http://mirror.invalid/debian"
        self.assertEqual([r.changed for r in self.prepare()], [False, False])
        found = [p for p in self.tmp.rglob("*") if p.is_file() and b"token" in p.read_bytes()]
        self.assertEqual(found, [])

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

    def test_two_releases_on_one_distro_make_the_same_repository(self):
        """The release's name is no input: venv-builder's repository is shared."""
        other = dataclasses.replace(self.release, name="2024.1")
        self.assertEqual(
            debs.inputs(self.release, "venv-builder", "build", "linux/amd64", ["gcc"], BASE, "m"),
            debs.inputs(other, "venv-builder", "build", "linux/amd64", ["gcc"], BASE, "m"))
        suite = dataclasses.replace(self.release, distro=dataclasses.replace(
            self.release.distro, codename="trixie"))
        self.assertNotEqual(
            debs.inputs(self.release, "venv-builder", "build", "linux/amd64", ["gcc"], BASE, "m"),
            debs.inputs(suite, "venv-builder", "build", "linux/amd64", ["gcc"], BASE, "m"))

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
