"""packages: bindep profiles of the real images/*/bindep.txt, merged with a service's own.

Everything goes through the real bindep library. bindep compiles its
grammar for every file it parses (a fraction of a second each), so the
tests share parses: the real image files are resolved once per class.
"""

from __future__ import annotations

import tempfile
import time
import unittest
from pathlib import Path

import distro as host_distro
from bindep.depends import Depends

from airlock.data import packages, sdists
from airlock.data.layout import Layout, find_root
from airlock.data.release import Distro, Release
from airlock.errors import AirlockError

ROOT = find_root(Path(__file__).parent)
assert ROOT is not None
IMAGES = ROOT / "images"
SERVICES = ("keystone", "glance", "placement", "nova", "neutron", "cinder")
BOOKWORM = Distro("debian", "bookworm", "12")

# Shaped like the services' own files: untagged devstack entries, test/doc
# tags, distro-only entries, and the few that name our profiles.
UPSTREAM = """\
# cross-platform list for install and tests
build-essential [platform:dpkg test]
gettext [doc test]
graphviz [doc test]
postgresql
libffi-dev [platform:dpkg]
mariadb-server [platform:redhat platform:debian]
libmysqlclient-dev [platform:ubuntu]
lsscsi [runtime]
qemu-utils [platform:dpkg test runtime]
qemu-img [platform:rpm runtime]
haproxy [!platform:debian runtime]
python3-dev [platform:dpkg build]
"""


def make_release(distro: Distro = BOOKWORM, services: tuple[str, ...] = SERVICES) -> Release:
    """A Release as release.yaml would give it; only distro and services matter here."""
    return Release(name="2025.2", path=ROOT / "releases" / "2025.2", python="3.11",
                   distro=distro, base_image="unused", platforms=("linux/amd64",),
                   services=services)


class PlatformProfilesTest(unittest.TestCase):
    def test_debian_bookworm(self) -> None:
        self.assertEqual(packages.platform_profiles(BOOKWORM),
                         ["platform:base-py3", "platform:debian", "platform:debian-12",
                          "platform:debian-bookworm", "platform:dpkg"])

    def test_ubuntu_with_point_release(self) -> None:
        self.assertEqual(packages.platform_profiles(Distro("Ubuntu", "noble", "24.04")),
                         ["platform:base-py3", "platform:dpkg", "platform:ubuntu",
                          "platform:ubuntu-24", "platform:ubuntu-24.04",
                          "platform:ubuntu-noble"])

    def test_same_as_bindep_on_this_machine(self) -> None:
        """Computed from the release, yet equal to what bindep finds on a real host."""
        here = Distro(host_distro.id(), host_distro.codename(), host_distro.version())
        if here.name not in ("debian", "ubuntu"):
            self.skipTest(f"this machine runs {here.name}, not a Debian-family distro")
        self.assertEqual(packages.platform_profiles(here), Depends("").platform_profiles())

    def test_other_family_refused(self) -> None:
        with self.assertRaises(AirlockError) as caught:
            packages.platform_profiles(Distro("rocky", "", "9"), where="release.yaml:distro")
        self.assertIn("release.yaml:distro: distro 'rocky' is not of the Debian family",
                      str(caught.exception))


class RealImageFilesTest(unittest.TestCase):
    """The repository's own images/*/bindep.txt, for the release's bookworm target."""

    resolved: dict[tuple[str, str], list[str]] = {}

    @classmethod
    def setUpClass(cls) -> None:
        release = make_release()
        cls.resolved = {(image, profile): packages.resolve(release, IMAGES, image, profile)
                        for image in (*SERVICES, *packages.BASE_IMAGES)
                        for profile in packages.PROFILES}

    def test_services_need_nothing_to_build(self) -> None:
        """Every dependency comes as a wheel: the venv stage installs no package."""
        for service in SERVICES:
            self.assertEqual(self.resolved[service, "build"], [], service)

    def test_runtime_lists(self) -> None:
        runtime = {service: self.resolved[service, "runtime"] for service in SERVICES}
        self.assertEqual(runtime["keystone"], [])  # libldap follows from the wheel
        self.assertEqual(runtime["glance"], ["qemu-utils"])
        self.assertEqual(runtime["placement"], [])
        self.assertLessEqual({"qemu-utils", "genisoimage", "openssh-client", "sudo"},
                             set(runtime["nova"]))
        self.assertLessEqual({"iproute2", "iptables", "ipset", "haproxy", "keepalived",
                              "dnsmasq-base", "sudo"}, set(runtime["neutron"]))
        self.assertLessEqual({"qemu-utils", "lvm2", "open-iscsi", "sudo"},
                             set(runtime["cinder"]))
        self.assertEqual(runtime["nova"], sorted(runtime["nova"]))

    def test_no_build_tools_at_runtime(self) -> None:
        for image in (*SERVICES, *packages.BASE_IMAGES):
            for name in self.resolved[image, "runtime"]:
                self.assertFalse(name.endswith("-dev") or name in ("gcc", "build-essential"),
                                 f"{image} runtime has {name}")

    def test_venv_builder_compiles(self) -> None:
        """A compiler in venv-builder; one sdist's headers only in that sdist's build."""
        self.assertLessEqual({"gcc", "python3-dev", "libc6-dev"},
                             set(self.resolved["venv-builder", "build"]))
        self.assertFalse([n for n in self.resolved["venv-builder", "build"]
                          if n.endswith("-dev") and n not in ("python3-dev", "libc6-dev")])
        declared = sdists.load(IMAGES)
        self.assertEqual(declared.of("python_ldap"), ("libldap2-dev", "libsasl2-dev"))
        self.assertEqual(declared.of("scrypt"), ("libssl-dev",))
        self.assertEqual(declared.of("netifaces"), ())
        self.assertIsNone(declared.of("keystone"))
        self.assertEqual(self.resolved["python-base", "runtime"], [])

    def test_names_follow_the_distro_release(self) -> None:
        """An entry for one distro release is not taken on another."""
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "keystone").mkdir()
            (Path(tmp) / "keystone" / "bindep.txt").write_text(
                "libldap-2.5-0 [platform:debian-bookworm runtime]\n"
                "libldap2 [platform:debian-trixie platform:ubuntu-noble runtime]\n")
            trixie = make_release(Distro("debian", "trixie", "13"))
            self.assertEqual(packages.resolve(trixie, Path(tmp), "keystone", "runtime"),
                             ["libldap2"])
            bookworm = make_release(Distro("debian", "bookworm", "12"))
            self.assertEqual(packages.resolve(bookworm, Path(tmp), "keystone", "runtime"),
                             ["libldap-2.5-0"])


class UpstreamMergeTest(unittest.TestCase):
    """The service's own bindep.txt adds only entries that name our profile."""

    def setUp(self) -> None:
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        self.source = Path(tmp.name) / "nova"
        self.source.mkdir()
        (self.source / "bindep.txt").write_text(UPSTREAM)
        self.release = make_release()

    def resolve(self, profile: str, source: Path | None = None) -> list[str]:
        return packages.resolve(self.release, IMAGES, "nova", profile, source_dir=source)

    def test_runtime_takes_only_runtime_entries(self) -> None:
        ours = set(self.resolve("runtime"))
        merged = set(self.resolve("runtime", self.source))
        # lsscsi/qemu-utils are ours already; haproxy is not for debian;
        # qemu-img is rpm. Nothing untagged, test or doc gets in.
        self.assertEqual(merged, ours | {"lsscsi", "qemu-utils"})
        for name in ("build-essential", "gettext", "graphviz", "postgresql", "libffi-dev",
                     "mariadb-server", "haproxy", "qemu-img", "python3-dev"):
            self.assertNotIn(name, merged)

    def test_runtime_entry_of_upstream_is_added(self) -> None:
        (self.source / "bindep.txt").write_text(UPSTREAM + "xmlsec1 [platform:dpkg runtime]\n")
        self.assertIn("xmlsec1", self.resolve("runtime", self.source))

    def test_build_takes_only_build_entries(self) -> None:
        self.assertEqual(self.resolve("build", self.source), ["python3-dev"])

    def test_source_without_bindep_changes_nothing(self) -> None:
        (self.source / "bindep.txt").unlink()
        self.assertEqual(self.resolve("runtime", self.source), self.resolve("runtime"))

    def test_bad_upstream_line_names_file_and_line(self) -> None:
        (self.source / "bindep.txt").write_text("# comment\nlsscsi\nqemu-utils [runtime\n"
                                                "haproxy\n")
        with self.assertRaises(AirlockError) as caught:
            self.resolve("runtime", self.source)
        self.assertEqual(caught.exception.where, f"{self.source / 'bindep.txt'}:3")
        self.assertIn("not a bindep entry: 'qemu-utils [runtime'", str(caught.exception))
        self.assertNotIn("\n", str(caught.exception))

    def test_missing_source_dir(self) -> None:
        with self.assertRaises(AirlockError) as caught:
            self.resolve("runtime", self.source / "nope")
        self.assertIn("no such folder", str(caught.exception))


class ErrorsTest(unittest.TestCase):
    def setUp(self) -> None:
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        self.images = Path(tmp.name) / "images"
        (self.images / "keystone").mkdir(parents=True)
        self.release = make_release()

    def test_unknown_service(self) -> None:
        with self.assertRaises(AirlockError) as caught:
            packages.resolve(self.release, IMAGES, "swift", "runtime")
        self.assertEqual(str(caught.exception).split(";")[0],
                         "service swift: not an image of release 2025.2")
        self.assertIn("keystone", caught.exception.fix or "")

    def test_service_not_in_this_release(self) -> None:
        release = make_release(services=("keystone",))
        with self.assertRaises(AirlockError):
            packages.resolve(release, IMAGES, "nova", "runtime")

    def test_missing_bindep_file(self) -> None:
        with self.assertRaises(AirlockError) as caught:
            packages.resolve(self.release, self.images, "keystone", "runtime")
        self.assertEqual(caught.exception.where, str(self.images / "keystone" / "bindep.txt"))
        self.assertEqual(caught.exception.what, "missing")

    def test_unknown_profile(self) -> None:
        with self.assertRaises(AirlockError) as caught:
            packages.resolve(self.release, IMAGES, "keystone", "test")
        self.assertIn("use one of: build, runtime", str(caught.exception))

    def test_bad_line_in_our_file(self) -> None:
        (self.images / "keystone" / "bindep.txt").write_text(
            "# ours\n\nlibldap-2.5-0 [runtime]\n-oops [runtime]\n")
        with self.assertRaises(AirlockError) as caught:
            packages.resolve(self.release, self.images, "keystone", "runtime")
        self.assertEqual(caught.exception.where,
                         f"{self.images / 'keystone' / 'bindep.txt'}:4")


class LoadTest(unittest.TestCase):
    """One bindep file: parsed a line at a time, bounded, with the exact line of a mistake."""

    def setUp(self) -> None:
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        self.path = Path(tmp.name) / "bindep.txt"

    def error(self, text: str) -> str:
        self.path.write_text(text)
        with self.assertRaises(AirlockError) as caught:
            packages.load(self.path)
        return str(caught.exception)

    def test_same_rules_as_bindep_on_the_whole_text(self) -> None:
        self.path.write_text(UPSTREAM + "\n  # indented comment\nfoo [a (b c)] >=1.0 # trailing\n")
        for profiles in (["platform:dpkg", "runtime"], ["platform:rpm", "test"], []):
            with self.subTest(profiles):
                whole = Depends(self.path.read_text()).active_rules(profiles)
                self.assertEqual(packages._active(packages.load(self.path), profiles), whole)

    def test_unterminated_selector_is_its_own_line(self) -> None:
        self.assertEqual(self.error("ok\nfoo [test\n\nbar\n"),
                         f"{self.path}:2: not a bindep entry: 'foo [test'; {packages._SYNTAX}")

    def test_bad_first_character(self) -> None:
        self.assertEqual(self.error("ok\n[x]\n"),
                         f"{self.path}:2: not a bindep entry: '[x]'; {packages._SYNTAX}")

    def test_comments_and_blank_lines_cost_nothing(self) -> None:
        # bindep's parser took seconds for a few KiB of blank lines.
        self.path.write_text("\n" * 500_000 + "# x\n" * 100_000 + "foo [runtime]\n")
        started = time.monotonic()
        parsed = packages.load(self.path)
        self.assertEqual([rule[0] for rule in packages._active(parsed, ["runtime"])], ["foo"])
        self.assertLess(time.monotonic() - started, 5)

    def test_entries_are_bounded(self) -> None:
        line = "pkg [platform:dpkg runtime]\n"
        self.assertEqual(self.error(line * (packages.ENTRY_LIMIT // (len(line) - 1) + 1)),
                         f"{self.path}: its entries hold more than 16 KiB; a bindep file lists "
                         "a few dozen packages: keep only what the image needs")


class DefaultReleaseTest(unittest.TestCase):
    def setUp(self) -> None:
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        root = Path(tmp.name)
        self.layout = Layout(root / "releases", root / "patches", root / "images")
        for name in ("2024.1", "2026.1", "2025.2"):
            (self.layout.releases_dir / name).mkdir(parents=True)
            (self.layout.releases_dir / name / "release.yaml").write_text("name: x\n")
        (self.layout.releases_dir / "scratch").mkdir()  # no release.yaml: not a release

    def test_newest(self) -> None:
        self.assertEqual(packages.default_release_name(self.layout, env={}), "2026.1")

    def test_environment_wins(self) -> None:
        env = {"AIRLOCK_RELEASE": "2024.1"}
        self.assertEqual(packages.default_release_name(self.layout, env=env), "2024.1")

    def test_environment_names_unknown_release(self) -> None:
        with self.assertRaises(AirlockError) as caught:
            packages.default_release_name(self.layout, env={"AIRLOCK_RELEASE": "2023.1"})
        self.assertIn("$AIRLOCK_RELEASE: no release 2023.1", str(caught.exception))

    def test_no_release_at_all(self) -> None:
        empty = Layout(self.layout.releases_dir / "none", self.layout.patches_dir,
                       self.layout.images_dir)
        with self.assertRaises(AirlockError):
            packages.default_release_name(empty, env={})

    def test_repository_newest(self) -> None:
        layout = Layout(ROOT / "releases", ROOT / "patches", IMAGES)
        self.assertEqual(packages.default_release_name(layout, env={}), "2026.1")


if __name__ == "__main__":
    unittest.main()


class SdistDeclarationsTest(unittest.TestCase):
    """images/sdists.txt: one line per Python package, errors name the line."""

    def load(self, text: str) -> sdists.Declarations:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "sdists.txt"
            path.write_text(text)
            return sdists.load(Path(tmp))

    def refused(self, text: str) -> str:
        with self.assertRaises(AirlockError) as caught:
            self.load(text)
        return str(caught.exception)

    def test_lines_comments_and_empty_declarations(self) -> None:
        found = self.load("# header\nScrypt: libssl-dev  # OpenSSL\n\nyappi:\n")
        self.assertEqual(found.packages, {"scrypt": ("libssl-dev",), "yappi": ()})
        self.assertEqual(found.undeclared(["yappi", "Python.LDAP"]), ["python-ldap"])

    def test_bad_lines_name_the_line(self) -> None:
        self.assertIn("sdists.txt:2: not a declaration: 'scrypt libssl-dev'",
                      self.refused("yappi:\nscrypt libssl-dev\n"))
        self.assertIn("sdists.txt:1: 'libssl_dev' is not a Debian package name",
                      self.refused("scrypt: libssl_dev\n"))
        self.assertIn("sdists.txt:2: python-ldap is declared twice",
                      self.refused("python_ldap:\npython-ldap: libldap2-dev\n"))

    def test_missing_file(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            with self.assertRaises(AirlockError) as caught:
                sdists.load(Path(tmp))
        self.assertIn("sdists.txt: missing", str(caught.exception))
