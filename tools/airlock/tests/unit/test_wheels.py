"""wheels, uv and index (pins for a platform): the pure parts, and a whole wheelhouse offline.

The offline wheelhouse runs the real uv and pip against a local folder of
tiny, valid wheels (``--no-index --find-links``): no network, no engine.
It pins down the layout (pure wheels once in any/, the others per
platform), the manifest's determinism and the "nothing changed, nothing
done" rule.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
import tempfile
import time
import unittest
import zipfile
from pathlib import Path
from unittest import mock

from packaging.tags import Tag

from airlock.data import constraints, platforms
from airlock.data.release import load_release
from airlock.errors import AirlockError, ToolError
from airlock.ext import index, uv
from airlock.inputs import pysource, wheelcache, wheels, wheeltags
from airlock.tests.unit import elffixture
from airlock.tests.unit.servers import PackageIndex
from airlock.tests.unit.treefixture import make_tree


def make_wheel(folder: Path, name: str, version: str, tag: str = "py3-none-any",
               requires: tuple[str, ...] = ()) -> Path:
    """A minimal valid wheel: enough metadata for uv to resolve and pip to fetch it."""
    dist = f"{name.replace('-', '_')}-{version}"
    path = folder / f"{dist}-{tag}.whl"
    meta = (f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
            + "".join(f"Requires-Dist: {r}\n" for r in requires))
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{dist}.dist-info/METADATA", meta)
        archive.writestr(f"{dist}.dist-info/WHEEL", "Wheel-Version: 1.0\nGenerator: test\n"
                         f"Root-Is-Purelib: true\nTag: {tag}\n")
        archive.writestr(f"{dist}.dist-info/RECORD", "")
    return path


# An in-tree build backend that needs nothing: pip reads an sdist's metadata
# through it offline (a real backend would have to be installed first).
BACKEND = """\
import os

def get_requires_for_build_wheel(config_settings=None):
    return []

def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    name = os.path.join(metadata_directory, "{dist}.dist-info")
    os.makedirs(name)
    with open(os.path.join(name, "METADATA"), "w") as out:
        out.write("Metadata-Version: 2.1\\nName: {name}\\nVersion: {version}\\n")
    return "{dist}.dist-info"
"""
IN_TREE = ('[build-system]\nrequires = []\nbuild-backend = "backend"\n'
           'backend-path = ["."]\n')


def make_sdist(folder: Path, name: str, version: str, pyproject: str | None) -> Path:
    path = folder / f"{name}-{version}.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        files = {"PKG-INFO": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"}
        if pyproject is not None:
            files["pyproject.toml"] = pyproject
        if pyproject == IN_TREE:
            files["backend.py"] = BACKEND.format(name=name, version=version,
                                                 dist=f"{name}-{version}")
        for rel, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{name}-{version}/{rel}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def make_source(root: Path, component: str, release: str, requirements: str,
                pyproject: str | None = None) -> Path:
    """A tree shaped like `airlock sources prepare` output."""
    tree = root / component
    (tree / ".airlock").mkdir(parents=True)
    (tree / ".airlock" / "source.json").write_text(json.dumps(
        {"component": component, "release": release, "version": "1.0"}))
    (tree / "requirements.txt").write_text(requirements)
    if pyproject is not None:
        (tree / "pyproject.toml").write_text(pyproject)
    return tree


AMD64, ARM64 = platforms.PLATFORMS["linux/amd64"], platforms.PLATFORMS["linux/arm64"]


class TestTags(unittest.TestCase):

    def test_pip_platforms_x86_64_newest_first_with_legacy_aliases(self):
        names = wheeltags.pip_platforms("x86_64")
        self.assertEqual(names[0], "manylinux_2_28_x86_64")
        self.assertEqual(names[-1], "linux_x86_64")
        for alias in ("manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64",
                      "manylinux_2_24_x86_64", "manylinux_2_5_x86_64"):
            self.assertIn(alias, names)
        self.assertLess(names.index("manylinux_2_17_x86_64"),
                        names.index("manylinux2014_x86_64"))
        self.assertNotIn("manylinux_2_29_x86_64", names)

    def test_pip_platforms_aarch64_start_at_2_17(self):
        names = wheeltags.pip_platforms("aarch64")
        self.assertEqual(names[0], "manylinux_2_28_aarch64")
        self.assertIn("manylinux2014_aarch64", names)
        self.assertNotIn("manylinux_2_12_aarch64", names)
        self.assertNotIn("manylinux2010_aarch64", names)
        self.assertEqual(names[-1], "linux_aarch64")

    def test_supported_tags_are_the_targets(self):
        tags = wheeltags.supported_tags("3.11", "aarch64")
        self.assertIn(Tag("cp311", "cp311", "manylinux_2_17_aarch64"), tags)
        self.assertIn(Tag("cp39", "abi3", "manylinux_2_28_aarch64"), tags)
        self.assertIn(Tag("py3", "none", "any"), tags)
        self.assertNotIn(Tag("cp311", "cp311", "manylinux_2_17_x86_64"), tags)
        self.assertNotIn(Tag("cp312", "cp312", "manylinux_2_17_aarch64"), tags)
        self.assertLess(tags.index(Tag("cp311", "cp311", "manylinux_2_28_aarch64")),
                        tags.index(Tag("py3", "none", "any")))

    def test_python_platform_is_what_airlock_venv_installs_with(self):
        self.assertEqual(AMD64.python_platform, "x86_64-manylinux_2_28")
        self.assertEqual(ARM64.python_platform, "aarch64-manylinux_2_28")

    def test_unknown_platform_is_a_user_error(self):
        with self.assertRaises(AirlockError) as caught:
            platforms.get("linux/s390x")
        self.assertIn("linux/amd64", str(caught.exception))


class TestChoose(unittest.TestCase):

    FILES = [
        "yappi-1.6.10.tar.gz",
        "yappi-1.6.10-cp311-cp311-manylinux_2_5_x86_64.manylinux1_x86_64.whl",
        "yappi-1.6.9-cp311-cp311-manylinux_2_17_aarch64.whl",
        "PyYAML-6.0.2-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        "PyYAML-6.0.2-cp311-cp311-manylinux_2_17_aarch64.manylinux2014_aarch64.whl",
        "pyyaml-6.0.2.tar.gz",
        "cryptography-43.0.3-cp39-abi3-manylinux_2_17_x86_64.whl",
        "cryptography-43.0.3-cp39-abi3-manylinux_2_28_x86_64.whl",
        "pbr-7.0.1-py2.py3-none-any.whl",
        "pbr-7.0.1.tar.gz",
    ]

    def choose(self, name, version, machine):
        supported = wheeltags.supported_tags("3.11", machine)
        return wheeltags.choose(self.FILES, name, version, supported)

    def test_a_wheel_for_the_platform_beats_the_sdist(self):
        self.assertEqual(self.choose("yappi", "1.6.10", "x86_64"),
                         "yappi-1.6.10-cp311-cp311-manylinux_2_5_x86_64.manylinux1_x86_64.whl")
        self.assertEqual(self.choose("pbr", "7.0.1", "aarch64"), "pbr-7.0.1-py2.py3-none-any.whl")

    def test_the_sdist_when_no_wheel_fits_and_other_versions_do_not_count(self):
        self.assertEqual(self.choose("yappi", "1.6.10", "aarch64"), "yappi-1.6.10.tar.gz")

    def test_names_compare_canonically(self):
        self.assertEqual(self.choose("pyyaml", "6.0.2", "aarch64"),
                         "PyYAML-6.0.2-cp311-cp311-manylinux_2_17_aarch64"
                         ".manylinux2014_aarch64.whl")

    def test_the_best_tag_wins(self):
        self.assertEqual(self.choose("cryptography", "43.0.3", "x86_64"),
                         "cryptography-43.0.3-cp39-abi3-manylinux_2_28_x86_64.whl")

    def test_nothing_for_an_absent_pin(self):
        self.assertIsNone(self.choose("cryptography", "43.0.3", "aarch64"))
        self.assertIsNone(self.choose("nosuch", "1.0", "x86_64"))


class TestPlace(unittest.TestCase):

    def test_pure_wheels_go_to_any(self):
        self.assertEqual(wheeltags.place("pbr-7.0.1-py2.py3-none-any.whl", "arm64"),
                         "any/pbr-7.0.1-py2.py3-none-any.whl")

    def test_platform_wheels_go_to_their_arch(self):
        self.assertEqual(wheeltags.place("cryptography-43.0.3-cp39-abi3-manylinux_2_28_x86_64.whl",
                                      "amd64"),
                         "amd64/cryptography-43.0.3-cp39-abi3-manylinux_2_28_x86_64.whl")
        # uv's wheel is py3-none but carries a binary: not pure.
        self.assertFalse(wheeltags.is_pure("uv-0.13.9-py3-none-manylinux_2_28_aarch64.whl"))
        self.assertFalse(wheeltags.is_pure("yappi-1.6.10.tar.gz"))


class TestRequirements(unittest.TestCase):

    def setUp(self):
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        self.tmp = Path(tmp.name)

    def test_comments_and_blank_lines_are_dropped(self):
        path = self.tmp / "requirements.txt"
        path.write_text("# comment\n\npbr!=2.1.0,>=2.0.0 # Apache-2.0\n"
                        "pywin32;sys_platform=='win32'  # win only\nWebOb>=1.7.1\n")
        self.assertEqual(pysource.read_requirements(path),
                         ["pbr!=2.1.0,>=2.0.0", "pywin32;sys_platform=='win32'",
                          "WebOb>=1.7.1"])

    def test_options_are_refused_with_the_line(self):
        path = self.tmp / "requirements.txt"
        path.write_text("pbr\n-r other.txt\n")
        with self.assertRaises(AirlockError) as caught:
            pysource.read_requirements(path)
        self.assertIn("requirements.txt:2", str(caught.exception))

    def test_a_bad_line_is_refused(self):
        path = self.tmp / "requirements.txt"
        path.write_text("pbr >>= 2\n")
        with self.assertRaises(AirlockError):
            pysource.read_requirements(path)

    def test_a_file_that_links_out_of_the_tree_is_never_read(self):
        release = load_release(make_tree(self.tmp / "data").layout, "2025.2")
        host = self.tmp / "host"
        host.write_text("root:secret-hash:0:0\n")
        tree = make_source(self.tmp / "src", "keystone", "2025.2", "pbr\n")
        inside = tree / "requirements" / "main.txt"
        inside.parent.mkdir()
        inside.write_text("pbr\nfoo\n")
        (tree / "requirements.txt").unlink()
        (tree / "requirements.txt").symlink_to("requirements/main.txt")
        self.assertEqual(pysource.read_source(release, tree).requirements, ("pbr", "foo"))
        for name in ("requirements.txt", "pyproject.toml"):
            (tree / name).unlink(missing_ok=True)
            (tree / name).symlink_to(host)
            with self.subTest(name=name), self.assertRaises(AirlockError) as caught:
                pysource.read_source(release, tree)
            self.assertEqual(str(caught.exception), f"{tree / name}: leads outside {tree} (a "
                             "symbolic link?); replace the link by the file itself")
            (tree / name).unlink()
        record = tree / ".airlock" / "source.json"
        record.rename(self.tmp / "record.json")
        record.symlink_to(self.tmp / "record.json")
        with self.assertRaises(AirlockError) as caught:
            pysource.read_source(release, tree)
        self.assertIn("not a prepared source tree", str(caught.exception))

    def test_packages_built_from_source_are_not_resolved(self):
        a = pysource.Source(Path("a"), "keystone", "keystone", ("oslo.messaging>=14", "pbr>=2"),
                          ())
        b = pysource.Source(Path("b"), "oslo.messaging", "oslo-messaging", ("pbr>=2", "amqp"), ())
        self.assertEqual(pysource.requirements_in([a, b], {"keystone", "oslo-messaging"}),
                         "pbr>=2\namqp\n")

    def test_pyproject_build_requires_of_tree_and_sdist(self):
        text = '[build-system]\nrequires = ["pbr>=6.1.1", "setuptools"]\n'
        (self.tmp / "pyproject.toml").write_text(text)
        self.assertEqual(pysource.pyproject_requires(self.tmp / "pyproject.toml"),
                         ["pbr>=6.1.1", "setuptools"])
        sdist = make_sdist(self.tmp, "yappi", "1.6.10",
                           '[build-system]\nrequires = ["setuptools>=44"]\n')
        self.assertEqual(pysource.sdist_requires(sdist), ["setuptools>=44"])
        legacy = make_sdist(self.tmp, "testresources", "2.0.2", None)
        self.assertEqual(pysource.sdist_requires(legacy), [])


class TestBuildConstraints(unittest.TestCase):

    def test_same_pins_everywhere_are_plain_lines(self):
        text = wheels.render_build_constraints(
            {"amd64": [("setuptools", "80.9.0"), ("pbr", "7.0.1")],
             "arm64": [("pbr", "7.0.1"), ("setuptools", "80.9.0")]},
            {"amd64": "x86_64", "arm64": "aarch64"})
        self.assertEqual(text.splitlines()[1:], ["pbr==7.0.1", "setuptools==80.9.0"])

    def test_pins_that_differ_get_a_marker_each(self):
        text = wheels.render_build_constraints(
            {"amd64": [("cython", "3.1.0")], "arm64": [("cython", "3.0.0")]},
            {"amd64": "x86_64", "arm64": "aarch64"})
        self.assertEqual(text.splitlines()[1:], [
            "cython==3.1.0 ; platform_machine == 'x86_64'",
            "cython==3.0.0 ; platform_machine == 'aarch64'"])

    def test_build_base_takes_the_constraints_pins_first(self):
        merged = constraints.Merged([
            constraints.Constraint("pbr", "7.0.1"),
            constraints.Constraint("setuptools", "79.0.0", "python_version>='3.10'"),
            constraints.Constraint("setuptools", "44.0.0", "python_version=='2.7'")],
            release="x", component=None)
        self.assertEqual(wheels.build_pins(merged, "3.11"),
                         {"setuptools": "79.0.0", "wheel": "0.45.1", "pbr": "7.0.1"})
        self.assertEqual(wheels.uv_pin(merged, "3.11"), uv.UV_VERSION)
        merged.append(constraints.Constraint("uv", "0.14.0"))
        self.assertEqual(wheels.uv_pin(merged, "3.11"), "0.14.0")


class TestUvAndPipCommands(unittest.TestCase):

    def test_compile_command(self):
        where = index.Locations(index_url="https://idx.example/simple",
                                extra_index_urls=("file:///x",), find_links=("/w",))
        cmd = uv.compile_command(Path("r.in"), [Path("c.txt"), Path("b.txt")],
                                 python_version="3.11", python_platform="aarch64-manylinux_2_28",
                                 where=where, cache_dir=Path("/c"), only_binary=True)
        self.assertEqual(cmd[:3], ["uv", "pip", "compile"])
        self.assertIn("--no-config", cmd)
        self.assertEqual(cmd[cmd.index("--python-platform") + 1], "aarch64-manylinux_2_28")
        # Index URLs may hold credentials: environment, not command line.
        self.assertNotIn("--index-url", cmd)
        self.assertNotIn("https://idx.example/simple", cmd)
        self.assertEqual(uv.index_env(where), {"UV_DEFAULT_INDEX": "https://idx.example/simple",
                                               "UV_INDEX": "file:///x"})
        self.assertEqual(cmd[cmd.index("--find-links") + 1], "/w")
        self.assertEqual(cmd[cmd.index("--index-strategy") + 1], "unsafe-best-match")
        self.assertEqual(cmd[cmd.index("--only-binary") + 1], ":all:")
        self.assertEqual([cmd[i + 1] for i, a in enumerate(cmd) if a == "--constraint"],
                         ["c.txt", "b.txt"])
        self.assertEqual(cmd[-1], "r.in")

    def test_no_index_has_no_index_url(self):
        where = index.Locations(index_url="https://idx/simple", find_links=("/w",),
                                no_index=True)
        self.assertIn("--no-index", uv.index_args(where))
        self.assertEqual(uv.index_env(where), {})

    def test_a_find_links_url_with_credentials_moves_to_the_environment(self):
        where = index.Locations(find_links=("/w", "https://u:tok@links.example/"))
        self.assertNotIn("--find-links", uv.index_args(where))
        self.assertEqual(uv.index_env(where),
                         {"UV_FIND_LINKS": "/w,https://u:tok@links.example/"})

    def test_uv_env_drops_package_choices_and_trusts_pips_cert(self):
        env = uv.env({"UV_INDEX_URL": "x", "UV_CONSTRAINT": "c", "PIP_CERT": "/ca.pem",
                      "HOME": "/root"})
        self.assertNotIn("UV_INDEX_URL", env)
        self.assertNotIn("UV_CONSTRAINT", env)
        self.assertEqual(env["SSL_CERT_FILE"], "/ca.pem")
        self.assertEqual(env["HOME"], "/root")

    def test_parse_pins(self):
        self.assertEqual(uv.parse_pins("alembic==1.16.4\n\nPyYAML==6.0.2\n"),
                         [("alembic", "1.16.4"), ("PyYAML", "6.0.2")])
        with self.assertRaises(ToolError):
            uv.parse_pins("-e file:///src\n")

    def test_unsatisfiable_is_a_user_error_other_failures_are_tools(self):
        error = uv.compile_error("error: No solution found when resolving dependencies\n"
                                 "  cause: Because nosuch was not found and you require "
                                 "nosuch>=1, we can conclude ...", "requirements of x",
                                 "x86_64-manylinux_2_28")
        self.assertNotIsInstance(error, ToolError)
        self.assertIn("Because nosuch was not found", str(error))
        self.assertIsInstance(uv.compile_error("error: Request failed after 3 retries",
                                               "r", "p"), ToolError)

    def test_an_sdist_whose_metadata_needs_a_host_package_is_named(self):
        # uv 0.13's own words when libvirt-python's setup.py finds no libvirt.pc
        stderr = (
            "Error: Failed to build `libvirt-python==11.6.0`\n"
            "  cause: The build backend returned an error\n"
            "  cause: Call to `setuptools.build_meta.get_requires_for_build_wheel` failed "
            "(exit status: 1)\n\n         [stderr]\n"
            "         Package libvirt was not found in the pkg-config search path.\n"
            "         Traceback (most recent call last):\n"
            '           File "<string>", line 54, in get_pkgconfig_data\n'
            "         subprocess.CalledProcessError: Command '['pkg-config', '--libs-only-L', "
            "'libvirt']' returned non-zero exit status 1.\n\n"
            "hint: Build failures usually indicate a problem with the package or the build "
            "environment\n")
        error = uv.compile_error(stderr, "requirements of nova", "aarch64-manylinux_2_28")
        self.assertIsInstance(error, ToolError)
        self.assertIn("requirements of nova (aarch64-manylinux_2_28): reading the metadata of "
                      "libvirt-python==11.6.0 on this host failed: subprocess.CalledProcessError"
                      ": Command '['pkg-config', '--libs-only-L', 'libvirt']'", str(error))
        self.assertIn("add it to bindep.txt (profile build-host)", str(error))

    def test_pip_config_locations(self):
        text = ("global.extra-index-url='file:///opt/a file:///opt/b'\n"
                "global.find-links='/opt/wheels'\n"
                "global.index-url='https://one/simple'\n"
                "download.index-url='https://two/simple'\n"
                ":env:.find-links='/env/wheels'\n"
                "global.constraint='/etc/c.txt'\n")
        where = index.parse_pip_config(text)
        self.assertEqual(where, index.Locations(index_url="https://two/simple",
                                                extra_index_urls=("file:///opt/a",
                                                                  "file:///opt/b"),
                                                find_links=("/env/wheels",)))
        self.assertEqual(index.parse_pip_config(""), index.Locations())
        self.assertTrue(index.parse_pip_config(":env:.no-index='true'\n").no_index)

    def test_given_index_shuts_out_pips_configuration(self):
        self.assertEqual(index.locations("https://idx/simple"),
                         index.Locations(index_url="https://idx/simple"))
        with tempfile.TemporaryDirectory() as folder:
            where = index.locations(folder)
            self.assertTrue(where.no_index)
            self.assertEqual(where.find_links, (str(Path(folder).resolve()),))

    def test_platform_download_command(self):
        cmd = index.platform_download_command(Path("pins.txt"), Path("/cache"),
                                              python_version="3.11",
                                              platforms=["manylinux_2_28_aarch64",
                                                         "linux_aarch64"],
                                              index_url="https://idx/simple")
        self.assertIn("--no-deps", cmd)
        self.assertEqual(cmd[cmd.index("--abi") + 1], "cp311")
        self.assertEqual(cmd[cmd.index("--implementation") + 1], "cp")
        self.assertEqual([cmd[i + 1] for i, a in enumerate(cmd) if a == "--platform"],
                         ["manylinux_2_28_aarch64", "linux_aarch64"])
        self.assertNotIn("--index-url", cmd)
        self.assertNotIn("https://idx/simple", cmd)
        self.assertEqual(index.pip_env("https://idx/simple")["PIP_INDEX_URL"],
                         "https://idx/simple")
        self.assertEqual(cmd[-2:], ["--requirement", "pins.txt"])

    def test_build_command_in_the_venv_builder(self):
        self.assertEqual(wheelcache.build_command("yappi-1.6.10.tar.gz"), (
            "airlock-venv", "wheel", "--out", "/airlock/out", "--wheelhouse", "/airlock/wheels",
            "--build-constraints", "/airlock/build-constraints.txt",
            "/airlock/sdist/yappi-1.6.10.tar.gz"))


class TestSdistBuildStage(unittest.TestCase):
    """What a root container left in out/ is taken only when it is a regular file."""

    def setUp(self):
        self.tmp = Path(tempfile.mkdtemp(prefix="airlock-wheels-stage-"))
        self.addCleanup(shutil.rmtree, self.tmp)
        self.out = self.tmp / "io" / "out"
        self.out.mkdir(parents=True)
        self.host = self.tmp / "host"
        self.host.mkdir()
        (self.host / "shadow.whl").write_text("root:secret\n")
        self.log = self.tmp / "build.log"

    def taken(self) -> Path:
        return wheelcache.built_wheel(self.out, "building x-1.0.tar.gz for linux/amd64",
                                      self.log)

    def refused(self) -> str:
        with self.assertRaises(ToolError) as caught:
            self.taken()
        self.assertEqual((self.host / "shadow.whl").read_text(), "root:secret\n")
        return str(caught.exception)

    def test_the_one_regular_wheel_is_taken(self):
        (self.out / "x-1.0-py3-none-any.whl").write_bytes(b"zip")
        (self.out / ".gitignore").write_text("*\n")
        self.assertEqual(self.taken(), self.out / "x-1.0-py3-none-any.whl")

    def test_a_wheel_that_is_a_link_is_refused(self):
        (self.out / "x-1.0-py3-none-any.whl").symlink_to(self.host / "shadow.whl")
        self.assertEqual(self.refused(), "building x-1.0.tar.gz for linux/amd64: the build "
                         "left x-1.0-py3-none-any.whl, which is not a regular file (a "
                         f"symbolic link?); log: {self.log}")

    def test_out_replaced_by_a_link_to_a_host_folder_is_refused(self):
        self.out.rmdir()
        self.out.symlink_to(self.host)
        self.assertIn("the build removed or replaced its out/ folder", self.refused())

    def test_two_wheels_or_none(self):
        self.assertIn("expected one wheel, got none", self.refused())
        (self.out / "a-1-py3-none-any.whl").write_bytes(b"")
        (self.out / "b-1-py3-none-any.whl").write_bytes(b"")
        self.assertIn("expected one wheel, got ['a-1-py3-none-any.whl', "
                      "'b-1-py3-none-any.whl']", self.refused())

    def test_a_link_at_the_cache_lock_is_not_followed(self):
        cache = wheelcache.Cache(self.tmp / "cache")
        cache.root.mkdir()
        (cache.root / ".lock").symlink_to(self.host / "shadow.whl")
        with self.assertRaises(OSError), cache.locked():
            pass
        self.assertEqual((self.host / "shadow.whl").read_text(), "root:secret\n")

    def test_a_failed_build_leaves_its_log_and_no_staging_folder(self):
        cache = wheelcache.Cache(self.tmp / "cache")
        sdist = make_sdist(self.tmp, "x", "1.0", IN_TREE)
        # A builder image nobody serves: the container run fails, for real.
        builder = "127.0.0.1:1/none@sha256:" + "0" * 64
        with self.assertRaises(ToolError) as caught:
            wheelcache.build_sdist(cache, sdist, [], "", builder, "sha256:" + "0" * 64, AMD64)
        left = list((self.tmp / "cache" / "built").iterdir())
        self.assertEqual(len(left), 1, left)
        self.assertTrue(left[0].name.endswith(".log") and left[0].is_file(), left)
        self.assertIn(str(left[0]), str(caught.exception))


class OfflineWheelhouse(unittest.TestCase):
    """A whole wheelhouse from a local folder index: real uv, real pip, no network."""

    def setUp(self):
        tmp = tempfile.TemporaryDirectory(prefix="airlock-wheels-test-")
        self.addCleanup(tmp.cleanup)
        self.tmp = Path(tmp.name)
        self.tree = make_tree(self.tmp / "data")
        self.tree.append("releases/2025.2/upper-constraints.txt",
                         "pbr===7.0.1\nfoo===1.0\nbar===2.0\n")
        self.release = load_release(self.tree.layout, "2025.2")
        self.index = self.tmp / "index"
        self.index.mkdir()
        for name, version in (("pbr", "7.0.1"), ("setuptools", "80.9.0"),
                              ("wheel", "0.45.1"), ("foo", "1.0"), ("foo", "0.9")):
            make_wheel(self.index, name, version)
        make_wheel(self.index, "bar", "2.0", "cp311-cp311-manylinux_2_17_x86_64")
        make_wheel(self.index, "bar", "2.0", "cp311-cp311-manylinux_2_17_aarch64")
        for tag in ("py3-none-manylinux_2_17_x86_64", "py3-none-manylinux_2_28_aarch64"):
            make_wheel(self.index, "uv", uv.UV_VERSION, tag)
        self.sources = self.tmp / "src"
        self.keystone = make_source(self.sources, "keystone", "2025.2",
                                    "pbr>=2.0 # Apache-2.0\nfoo\nbar>=1\n",
                                    '[build-system]\nrequires = ["pbr>=6.1.1"]\n')
        self.cache = self.tmp / "cache"
        self.tree.write("images/sdists.txt", "# what each sdist needs\nbar:\n")
        self.images = self.tree.layout.images_dir

    def prepare(self, dest: Path, **kwargs):
        return wheels.prepare(self.release, "keystone", ["linux/amd64", "linux/arm64"],
                              [self.keystone], dest, index_url=str(self.index),
                              cache=self.cache, images_dir=self.images,
                              **kwargs)

    def test_layout_shares_pure_wheels_and_splits_the_others(self):
        dest = self.tmp / "wheelhouse"
        result = self.prepare(dest)
        self.assertTrue(result.changed)
        self.assertEqual(sorted(p.name for p in (dest / "any").iterdir()), [
            "foo-1.0-py3-none-any.whl", "pbr-7.0.1-py3-none-any.whl",
            "setuptools-80.9.0-py3-none-any.whl", "wheel-0.45.1-py3-none-any.whl"])
        self.assertEqual(sorted(p.name for p in (dest / "amd64").iterdir()), [
            "bar-2.0-cp311-cp311-manylinux_2_17_x86_64.whl",
            f"uv-{uv.UV_VERSION}-py3-none-manylinux_2_17_x86_64.whl"])
        self.assertEqual(sorted(p.name for p in (dest / "arm64").iterdir()), [
            "bar-2.0-cp311-cp311-manylinux_2_17_aarch64.whl",
            f"uv-{uv.UV_VERSION}-py3-none-manylinux_2_28_aarch64.whl"])
        manifest = json.loads((dest / "manifest.json").read_text())
        self.assertEqual(manifest["platforms"]["arm64"]["requirements"],
                         ["bar==2.0", "foo==1.0", "pbr==7.0.1", "setuptools==80.9.0"])
        self.assertEqual(manifest["platforms"]["amd64"]["build"],
                         ["pbr==7.0.1", "setuptools==80.9.0", "wheel==0.45.1"])
        self.assertEqual(manifest["platforms"]["arm64"]["files"]["foo==1.0"],
                         "any/foo-1.0-py3-none-any.whl")
        self.assertEqual(manifest["built"], [])
        self.assertEqual(set(manifest["files"]), {
            f"{sub}/{p.name}" for sub in ("any", "amd64", "arm64")
            for p in (dest / sub).iterdir()})
        entry = manifest["files"]["any/foo-1.0-py3-none-any.whl"]
        self.assertEqual(entry["sha256"], wheels.sha256_file(dest / "any" /
                                                             "foo-1.0-py3-none-any.whl"))
        self.assertEqual((dest / "build-constraints.txt").read_text().splitlines()[1:],
                         ["pbr==7.0.1", "setuptools==80.9.0", "wheel==0.45.1"])
        self.assertEqual((dest / "constraints.txt").read_text(),
                         constraints.render(constraints.merged(self.release, "keystone")))
        # Hard links into the cache: the bytes are stored once.
        self.assertGreater(os.stat(dest / "any" / "foo-1.0-py3-none-any.whl").st_nlink, 1)

    def test_nothing_changed_nothing_done_and_the_manifest_is_deterministic(self):
        first, second = self.tmp / "one", self.tmp / "two"
        self.assertGreater(self.prepare(first).downloaded, 0)
        # Another wheelhouse of the same pins: every file from the cache.
        other = self.prepare(second)
        self.assertTrue(other.changed)
        self.assertEqual(other.downloaded, 0)
        self.assertEqual((first / "manifest.json").read_bytes(),
                         (second / "manifest.json").read_bytes())
        # Unchanged: not even the index is read (it is gone).
        self.index.rename(self.tmp / "index-gone")
        again = self.prepare(first)
        self.assertFalse(again.changed)
        self.assertEqual(again.manifest, json.loads((first / "manifest.json").read_text()))

    def test_a_changed_input_or_a_damaged_file_makes_it_again(self):
        dest = self.tmp / "wheelhouse"
        self.prepare(dest)
        (dest / "any" / "foo-1.0-py3-none-any.whl").unlink()
        (dest / "any" / "foo-1.0-py3-none-any.whl").write_bytes(b"tampered")
        self.assertTrue(self.prepare(dest).changed)
        (dest / "amd64" / "stray-1.0-py3-none-any.whl").write_bytes(b"")
        self.assertTrue(self.prepare(dest).changed)
        self.assertFalse((dest / "amd64" / "stray-1.0-py3-none-any.whl").exists())
        (self.keystone / "requirements.txt").write_text("foo\n")
        result = self.prepare(dest)
        self.assertTrue(result.changed)
        self.assertNotIn("bar==2.0", result.manifest["platforms"]["amd64"]["requirements"])

    def test_one_platform_only(self):
        dest = self.tmp / "wheelhouse"
        wheels.prepare(self.release, "keystone", ["linux/arm64"], [self.keystone], dest,
                       index_url=str(self.index), cache=self.cache, images_dir=self.images)
        self.assertEqual(sorted(p.name for p in dest.iterdir() if p.is_dir()), ["any", "arm64"])

    def test_a_pin_with_only_an_sdist_needs_the_venv_builder(self):
        (self.index / "bar-2.0-cp311-cp311-manylinux_2_17_aarch64.whl").unlink()
        make_sdist(self.index, "bar", "2.0", IN_TREE)
        with self.assertRaises(AirlockError) as caught:
            self.prepare(self.tmp / "wheelhouse")
        self.assertIn("--venv-builder", str(caught.exception))
        self.assertIn("bar==2.0 (arm64)", str(caught.exception))
        self.assertFalse((self.tmp / "wheelhouse").exists())

    def test_an_sdist_only_pin_must_be_declared_before_anything_is_built(self):
        (self.index / "bar-2.0-cp311-cp311-manylinux_2_17_aarch64.whl").unlink()
        make_sdist(self.index, "bar", "2.0", IN_TREE)
        self.tree.write("images/sdists.txt", "baz: libfoo-dev\n")
        with self.assertRaises(AirlockError) as caught:
            self.prepare(self.tmp / "wheelhouse", venv_builder="127.0.0.1:1/none:tag")
        message = str(caught.exception)
        self.assertIn("release 2025.2: bar==2.0 (arm64) come only as sdists", message)
        self.assertIn("add 'bar: <Debian packages>' to ", message)
        self.assertIn("images/sdists.txt", message)
        self.assertFalse((self.tmp / "wheelhouse").exists())

    def test_service_yaml_installs_extras_and_named_packages_pinned_only(self):
        (self.keystone / "setup.cfg").write_text("[metadata]\nname = keystone\n\n[extras]\n"
                                                 "ldap =\n  foo>=0.5 # MIT\n")
        self.tree.write("images/keystone/service.yaml", "python:\n  - keystone[ldap]\n"
                        "  - bar\n")
        dest = self.tmp / "wheelhouse"
        self.prepare(dest)
        self.assertEqual((dest / "install.txt").read_text(),
                         "foo>=0.5\nbar\nsetuptools==80.9.0\n")
        self.tree.write("images/keystone/service.yaml", "python:\n  - keystone[ldap]\n"
                        "  - baz\n")
        with self.assertRaises(AirlockError) as caught:
            self.prepare(dest)
        self.assertIn("images/keystone/service.yaml: baz is not pinned for release 2025.2",
                      str(caught.exception))
        self.tree.write("images/keystone/service.yaml", "python:\n  - keystone[saml]\n")
        with self.assertRaises(AirlockError) as caught:
            self.prepare(dest)
        self.assertIn("keystone declares no extra 'saml' (it has: ldap)", str(caught.exception))

    def test_a_pin_missing_from_the_index_is_a_user_error(self):
        self.tree.replace("releases/2025.2/upper-constraints.txt", "foo===1.0", "foo===3.0")
        self.release = load_release(self.tree.layout, "2025.2")
        with self.assertRaises(AirlockError) as caught:
            self.prepare(self.tmp / "wheelhouse")
        self.assertNotIsInstance(caught.exception, ToolError)
        self.assertIn("requirements of keystone", str(caught.exception))

    def test_the_service_tree_and_needed_libraries_must_be_given(self):
        nova = make_source(self.sources, "nova", "2025.2", "foo\n")
        with self.assertRaises(AirlockError) as caught:
            wheels.prepare(self.release, "keystone", ["linux/amd64"], [nova],
                           self.tmp / "w", index_url=str(self.index), cache=self.cache,
                           images_dir=self.images)
        self.assertIn("no prepared tree of keystone", str(caught.exception))
        (self.keystone / "requirements.txt").write_text("foo\noslo.messaging>=14\n")
        with self.assertRaises(AirlockError) as caught:
            self.prepare(self.tmp / "w")
        self.assertIn("oslo-messaging", str(caught.exception))
        library = make_source(self.sources, "oslo.messaging", "2025.2", "bar\n")
        result = wheels.prepare(self.release, "keystone", ["linux/amd64"],
                                [self.keystone, library], self.tmp / "w",
                                index_url=str(self.index), cache=self.cache, images_dir=self.images)
        self.assertEqual(result.manifest["platforms"]["amd64"]["requirements"],
                         ["bar==2.0", "foo==1.0", "setuptools==80.9.0"])

    def test_a_source_of_another_release_is_refused(self):
        other = make_source(self.tmp / "old", "keystone", "2025.1", "foo\n")
        with self.assertRaises(AirlockError) as caught:
            wheels.prepare(self.release, "keystone", ["linux/amd64"], [other],
                           self.tmp / "w", index_url=str(self.index), cache=self.cache,
                           images_dir=self.images)
        self.assertIn("2025.1", str(caught.exception))

    def test_a_folder_that_is_not_a_wheelhouse_is_never_replaced(self):
        dest = self.tmp / "precious"
        dest.mkdir()
        (dest / "notes.txt").write_text("mine")
        with self.assertRaises(AirlockError):
            self.prepare(dest)
        self.assertEqual((dest / "notes.txt").read_text(), "mine")

    def test_an_index_password_is_used_never_recorded_and_no_input(self):
        dest = self.tmp / "wheelhouse"
        with PackageIndex(self.index, {"bot": "first-token"}) as server:
            result = wheels.prepare(self.release, "keystone", ["linux/amd64"], [self.keystone],
                                    dest, index_url=server.url("bot", "first-token", "simple/"),
                                    cache=self.cache, images_dir=self.images)
            self.assertTrue(result.changed)
            self.assertGreater(server.served, 0)
            self.assertEqual(result.manifest["inputs"]["index"], server.url(path="simple/"))
            manifest = (dest / "manifest.json").read_bytes()
            # A new token: the same inputs, nothing to do; forced, the same choices.
            server.users = {"bot": "second-token"}
            second = server.url("bot", "second-token", "simple/")
            again = wheels.prepare(self.release, "keystone", ["linux/amd64"], [self.keystone],
                                   dest, index_url=second, cache=self.cache, images_dir=self.images)
            self.assertFalse(again.changed)
            forced = wheels.prepare(self.release, "keystone", ["linux/amd64"],
                                    [self.keystone], dest, index_url=second, cache=self.cache,
                                    images_dir=self.images, force=True)
            self.assertEqual(forced.downloaded, 0)
            self.assertEqual((dest / "manifest.json").read_bytes(), manifest)
        leaked = [str(p) for p in self.tmp.rglob("*") if p.is_file() and not p.is_symlink()
                  and b"-token" in p.read_bytes()]
        self.assertEqual(leaked, [])

    def test_tool_wheels_flat_folder_of_uv(self):
        dest = wheels.tool_wheels(self.release, ["linux/amd64", "linux/arm64"],
                                  self.tmp / "tools", index_url=str(self.index),
                                  cache=self.cache)
        self.assertEqual(sorted(p.name for p in dest.iterdir()), [
            "manifest.json", f"uv-{uv.UV_VERSION}-py3-none-manylinux_2_17_x86_64.whl",
            f"uv-{uv.UV_VERSION}-py3-none-manylinux_2_28_aarch64.whl"])
        before = (dest / "manifest.json").stat().st_mtime_ns
        wheels.tool_wheels(self.release, ["linux/amd64", "linux/arm64"], dest,
                           index_url=str(self.index), cache=self.cache)
        self.assertEqual((dest / "manifest.json").stat().st_mtime_ns, before)


if __name__ == "__main__":
    unittest.main()


class MissingFromLogTest(unittest.TestCase):
    """A failed sdist build's log names what the build lacked, in the compiler's words."""

    def test_header_library_and_pkg_config(self) -> None:
        self.assertEqual(wheelcache.missing_from_log(
            "src/scrypt.c:7:10: fatal error: openssl/aes.h: No such file or directory\n"),
            "openssl/aes.h")
        self.assertEqual(wheelcache.missing_from_log(
            "/usr/bin/ld: cannot find -lldap_r: No such file or directory\n"),
            "libldap_r (-lldap_r)")
        self.assertEqual(wheelcache.missing_from_log(
            "Package libvirt was not found in the pkg-config search path.\n"),
            "pkg-config module libvirt")
        self.assertEqual(wheelcache.missing_from_log("sh: 1: pkg-config: not found\n"),
                         "pkg-config")
        self.assertIsNone(wheelcache.missing_from_log("error: invalid syntax\n"))

    def test_build_command_as_root_installs_first(self) -> None:
        argv = wheelcache.build_command("scrypt-0.8.20.tar.gz", "1000:1000")
        self.assertEqual(argv[:2], ("sh", "-c"))
        self.assertIn('airlock-apt-install "$AIRLOCK_DEBS"', argv[2])
        self.assertIn("chown -R", argv[2])
        self.assertEqual(argv[4], "1000:1000")
        self.assertEqual(argv[5:], wheelcache.build_command("scrypt-0.8.20.tar.gz"))


class HostileSdistBuildTest(unittest.TestCase):
    """What an sdist build (a root container, an untrusted sdist) may leave behind."""

    def test_a_huge_log_line_is_scanned_in_linear_time(self) -> None:
        # One 4 MiB line of "Package a required by " took minutes (a quadratic ".*").
        text = "Package a required by " * 190_000 + "\nPackage libfoo required by x not found\n"
        started = time.monotonic()
        self.assertEqual(wheelcache.missing_from_log(text), "pkg-config module libfoo")
        self.assertLess(time.monotonic() - started, 10)

    def test_what_is_missing_carries_no_terminal_escape(self) -> None:
        self.assertIsNone(wheelcache.missing_from_log(
            "fatal error: \x1b]0;owned\x07: No such file or directory\n"))

    def test_a_link_at_owners_txt_is_not_followed(self) -> None:
        # A fake of the container (none may run here): it does what a hostile
        # build running as root could, a wheel and owners.txt -> a host file.
        tmp = Path(tempfile.mkdtemp(prefix="airlock-wheels-owners-"))
        self.addCleanup(shutil.rmtree, tmp)
        (tmp / "shadow").write_text("root:secret\n")
        debs = tmp / "debs"
        debs.mkdir()
        sdist = make_sdist(tmp, "x", "1.0", IN_TREE)

        def container(spec):
            out = next(m.source for m in spec.mounts if m.target == "/airlock") / "out"
            (out / "x-1.0-py3-none-any.whl").write_bytes(b"zip")
            (out / wheelcache.OWNERS).symlink_to(tmp / "shadow")
            spec.log.write_text("built\n")

        cache = wheelcache.Cache(tmp / "cache")
        with mock.patch.object(wheelcache.containers, "run_logged", container), \
                self.assertRaises(AirlockError) as caught:
            wheelcache.build_sdist(cache, sdist, [], "", "127.0.0.1:1/b@sha256:" + "0" * 64,
                                   "sha256:" + "0" * 64, AMD64, debs=debs, debs_key="k")
        self.assertIn("owners.txt: leads outside", str(caught.exception))
        for path in (tmp / "cache").rglob("*"):
            if path.is_file() and not path.is_symlink():
                self.assertNotIn(b"root:secret", path.read_bytes(), path)


class WheelLibrariesTest(unittest.TestCase):
    """What the wheels link against, resolved to packages, or one line naming module and library.

    The owners of an image's libraries are asked of a container; here they
    are given (``sharedlibs.owners`` replaced, so no engine is needed): the
    ELF files and the resolution are real.
    """

    def setUp(self):
        tmp = tempfile.TemporaryDirectory(prefix="airlock-wheel-libs-")
        self.addCleanup(tmp.cleanup)
        self.tmp = Path(tmp.name)
        self.wheel = elffixture.make_wheel(
            self.tmp / "ldapish-1.0-cp311-cp311-linux_x86_64.whl",
            {"_ldapish.cpython-311-x86_64-linux-gnu.so":
             elffixture.make_elf(["libldap-2.5.so.0", "libc.so.6"])})
        self.layout = {f"amd64/{self.wheel.name}": {"source": self.wheel,
                                                    "pins": {"amd64": "ldapish==1.0"}}}

    def libraries(self, owners: dict[str, str]) -> dict:
        with mock.patch.object(wheels.sharedlibs, "owners", return_value=owners):
            return wheels._libraries(self.layout, [AMD64], [], "r@sha256:" + "0" * 64,
                                     self.tmp)

    def test_every_library_gets_its_package(self):
        found = self.libraries({"libldap-2.5.so.0": "libldap-2.5-0", "libc.so.6": "libc6"})
        self.assertEqual(found["amd64"]["libldap-2.5.so.0"],
                         {"package": "libldap-2.5-0", "wheels": [self.wheel.name]})
        self.assertEqual(wheels.runtime_packages({"platforms": {"amd64": {
            "libraries": found["amd64"]}}}), {"amd64": ["libc6", "libldap-2.5-0"]})

    def test_a_library_no_package_provides_names_the_module(self):
        with self.assertRaises(AirlockError) as caught:
            self.libraries({"libc.so.6": "libc6"})
        self.assertIn(f"{self.wheel.name}: _ldapish.cpython-311-x86_64-linux-gnu.so: needs "
                      "libldap-2.5.so.0 on linux/amd64", str(caught.exception))
