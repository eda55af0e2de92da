"""airlock-venv's slim step against a small real venv tree, with the real rules.

The script runs inside venv-builder; here the host's Python runs the same
file (loaded from images/venv-builder/) on a folder laid out like a venv,
with images/venv-builder/slim.toml, the rules every service image uses.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import shutil
import struct
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path
from types import ModuleType

from airlock.tests.unit.treefixture import REPO_ROOT

SCRIPT = REPO_ROOT / "images" / "venv-builder" / "airlock-venv"
RULES = REPO_ROOT / "images" / "venv-builder" / "slim.toml"


def airlock_venv() -> ModuleType:
    loader = importlib.machinery.SourceFileLoader("airlock_venv_under_test", str(SCRIPT))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


FILES = {
    # The service: a console script, a WSGI module, a plugin, a test package.
    "svc/__init__.py": "",
    "svc/cmd.py": "from . import common\n\ndef main():\n    import svc.lazy\n",
    "svc/common.py": "import json\nfrom svc.util import helper\n",
    "svc/util.py": "def helper():\n    pass\n",
    "svc/lazy.py": "from ..dep import core\n",
    "svc/wsgi.py": "import dep\n",
    "svc/plugin.py": "",
    "svc/unused.py": "import dep.never\n",
    "svc/tests/__init__.py": "",
    "svc/tests/test_cmd.py": "import svc.cmd\n",
    "svc/locale/de/LC_MESSAGES/svc.po": "msgid \"\"\n",
    "svc/locale/de/LC_MESSAGES/svc.mo": "binary",
    "svc/stubs.pyi": "def main() -> None: ...\n",
    "svc-1.0.dist-info/METADATA": "Name: svc\n",
    "svc-1.0.dist-info/entry_points.txt": ("[console_scripts]\nsvc-manage = svc.cmd:main\n\n"
                                           "[svc.drivers]\nsql = svc.plugin:Driver\n"),
    # A dependency: used, unused, C sources, a Windows launcher, its tests.
    "dep/__init__.py": "",
    "dep/core.py": "",
    "dep/never.py": "",
    "dep/_speed.c": "int x;\n",
    "dep/include/dep.h": "int x;\n",
    "dep/cli.exe": "MZ",
    "dep/test/test_core.py": "import dep.core\n",
    "hack.py": "",
    # netaddr's vendor registries go, their indexes (loaded on import) stay.
    "netaddr/__init__.py": "",
    "netaddr/eui/oui.txt": "00-00-00   (hex)\t\tXEROX\n",
    "netaddr/eui/iab.txt": "00-50-C2   (hex)\t\tT.L.S.\n",
    "netaddr/eui/oui.idx": "0,0,40\n",
    "hack.pth": "import os; __import__('hack').add_shim()\n",
    # Bytecode for python -O from a wheel, a test kit, a benchmark package.
    "dep/__pycache__/core.cpython-311.opt-1.pyc": "old",
    "sqlalchemy/testing/__init__.py": "import pytest\n",
    "jsonschema/benchmarks/__init__.py": "",
}


# A standard library: what the service imports (json, with a lazy import
# in a function), what only the interpreter's start loads (site, a codec
# looked up by name), what nothing loads (a test package), and folders
# that are no package (site-packages, lib-dynload).
STDLIB = {
    "json/__init__.py": "from .decoder import JSONDecoder\n",
    "json/decoder.py": "def scan():\n    import re\n",
    "re.py": "",
    "os.py": "",
    "site.py": "import os\n",
    "encodings/__init__.py": "import codecs\n",
    "encodings/utf_8.py": "",
    "codecs.py": "",
    "smtplib.py": "import email\n",
    "email/__init__.py": "",
    "test/__init__.py": "",
    "test/test_json.py": "import json\n",
    "lib-dynload/keep.py": "",
    "site-packages/other.py": "",
}


def make_stdlib(root: Path) -> Path:
    for rel, text in STDLIB.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def make_venv(root: Path) -> Path:
    site = root / "lib" / "python3.11" / "site-packages"
    for rel, text in FILES.items():
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        (site / rel).write_text(text)
    (root / "bin").mkdir()
    (root / "bin" / "activate.bat").write_text("@echo off\n")
    (root / "bin" / "activate").write_text("# sh\n")
    (root / "include" / "site").mkdir(parents=True)
    return site


class SlimTest(unittest.TestCase):

    def setUp(self) -> None:
        self.tmp = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.tmp)
        self.venv = self.tmp / "venv"
        self.site = make_venv(self.venv)
        self.av = airlock_venv()
        self.record = self.av.slim(self.venv, self.av.load_rules(RULES), ["svc.wsgi"])

    def pyc(self, rel: str) -> Path:
        return Path(importlib.util.cache_from_source(str(self.site / rel)))

    def test_drops_tests_sources_launchers_and_translation_sources(self) -> None:
        for rel in ("svc/tests", "dep/test", "dep/_speed.c", "dep/include/dep.h", "dep/cli.exe",
                    "svc/locale/de/LC_MESSAGES/svc.po", "svc/stubs.pyi"):
            self.assertFalse((self.site / rel).exists(), rel)
        self.assertFalse((self.venv / "bin" / "activate.bat").exists())
        self.assertFalse((self.venv / "include").exists())
        # What a process reads stays: the compiled catalogue, metadata, sh activation.
        self.assertFalse((self.site / "netaddr/eui/oui.txt").exists())
        self.assertFalse((self.site / "netaddr/eui/iab.txt").exists())
        self.assertEqual(self.record["rules"]["mac-vendor-registries"]["files"], 2)
        for rel in ("netaddr/eui/oui.idx", "svc/locale/de/LC_MESSAGES/svc.mo",
                    "svc-1.0.dist-info/entry_points.txt",
                    "dep/never.py", "svc/unused.py"):
            self.assertTrue((self.site / rel).exists(), rel)
        self.assertTrue((self.venv / "bin" / "activate").exists())

    def test_drops_optimized_bytecode_test_kits_and_benchmarks(self) -> None:
        for rel in ("dep/__pycache__/core.cpython-311.opt-1.pyc", "sqlalchemy/testing",
                    "jsonschema/benchmarks"):
            self.assertFalse((self.site / rel).exists(), rel)
        self.assertEqual(self.record["rules"]["optimized-bytecode"]["files"], 1)
        self.assertEqual(self.record["rules"]["test-kits-benchmarks-examples"]["paths"], [
            "lib/python3.11/site-packages/jsonschema/benchmarks",
            "lib/python3.11/site-packages/sqlalchemy/testing"])

    def test_bytecode_has_lines_but_no_column_positions(self) -> None:
        import marshal
        self.assertIs(self.record["bytecode"]["debug_ranges"], False)
        (self.site / "svc" / "util.py").write_text("def helper():\n    return 1 + x\n")
        self.av.compile_sources([self.site / "svc" / "util.py"],
                                self.av.py_compile.PycInvalidationMode.CHECKED_HASH,
                                debug_ranges=False)
        code = marshal.loads(self.pyc("svc/util.py").read_bytes()[16:])
        helper = next(c for c in code.co_consts if hasattr(c, "co_positions"))
        positions = [p for p in helper.co_positions() if p[0] is not None]
        self.assertTrue(positions)
        self.assertEqual({p[0] for p in positions} - {1}, {2})  # lines stay
        self.assertEqual({(p[2], p[3]) for p in positions}, {(None, None)})
        self.av.compile_sources([self.site / "svc" / "util.py"],
                                self.av.py_compile.PycInvalidationMode.CHECKED_HASH)
        code = marshal.loads(self.pyc("svc/util.py").read_bytes()[16:])
        helper = next(c for c in code.co_consts if hasattr(c, "co_positions"))
        self.assertNotEqual({(p[2], p[3]) for p in helper.co_positions()}, {(None, None)})

    def test_records_each_rule_with_its_paths_files_and_bytes(self) -> None:
        tests = self.record["rules"]["tests"]
        self.assertEqual(tests["paths"], ["lib/python3.11/site-packages/dep/test",
                                          "lib/python3.11/site-packages/svc/tests"])
        self.assertEqual((tests["files"], tests["bytes"]), (3, len("import svc.cmd\n")
                                                            + len("import dep.core\n")))
        self.assertEqual(self.record["rules"]["windows"]["paths"],
                         ["bin/activate.bat", "lib/python3.11/site-packages/dep/cli.exe"])
        self.assertEqual(self.record["rules"]["translation-sources"]["files"], 1)
        json.dumps(self.record)  # the record is written as JSON into the image

    def test_bytecode_only_for_what_entry_points_wsgi_and_pth_can_import(self) -> None:
        compiled = {"svc/__init__.py", "svc/cmd.py", "svc/common.py", "svc/util.py",
                    "svc/lazy.py", "svc/wsgi.py", "svc/plugin.py", "dep/__init__.py",
                    "dep/core.py", "hack.py"}
        for rel in compiled:
            self.assertTrue(self.pyc(rel).is_file(), rel)
        for rel in ("svc/unused.py", "dep/never.py", "netaddr/__init__.py"):
            self.assertFalse(self.pyc(rel).exists(), rel)
        self.assertEqual(self.record["bytecode"]["compiled"], len(compiled))
        self.assertEqual(self.record["bytecode"]["modules"], len(compiled) + 3)

    def test_bytecode_is_checked_hash_and_the_same_on_a_second_run(self) -> None:
        flags = struct.unpack("<I", self.pyc("svc/cmd.py").read_bytes()[4:8])[0]
        self.assertEqual(flags, 0b11)  # hash-based, source checked: no time stamp
        # Again at the same path (the image's paths are fixed; sources name theirs).
        first = {path: path.read_bytes() for path in sorted(self.venv.rglob("*.pyc"))}
        shutil.rmtree(self.venv)
        make_venv(self.venv)
        record = self.av.slim(self.venv, self.av.load_rules(RULES), ["svc.wsgi"])
        self.assertEqual(record, self.record)
        self.assertEqual({path: path.read_bytes() for path in sorted(self.venv.rglob("*.pyc"))},
                         first)

    def elf_with_debug(self, path: Path) -> Path:
        """A real ELF file of this host (its Python) given a debug section, at ``path``."""
        debug = self.tmp / "debug.bin"
        debug.write_bytes(b"airlock-debug" * 4096)
        path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["objcopy", "--add-section", f".debug_airlock={debug}",
                        sys.executable, str(path)], check=True)
        return path

    def test_debug_information_of_elf_modules_is_stripped_and_recorded(self) -> None:
        venv = self.tmp / "elf"
        site = make_venv(venv)
        module = self.elf_with_debug(site / "dep" / "_speedups.cpython-311-x86_64-linux-gnu.so")
        before = module.stat().st_size
        # Never rewritten: a module without debug sections, a library that
        # auditwheel vendored (<dist>.libs) and one whose run path names
        # $ORIGIN (both patched by patchelf: strip would make them
        # unloadable), and a file that is not ELF.
        plain = site / "dep" / "_plain.so"
        subprocess.run(["objcopy", "--strip-debug", sys.executable, str(plain)], check=True)
        vendored = self.elf_with_debug(site / "dep.libs" / "libdep-1a2b3c4d.so.1")
        patched = self.elf_with_debug(site / "dep" / "_patched.so")
        patched.write_bytes(patched.read_bytes() + b"$ORIGIN/../dep.libs\0")
        (site / "dep" / "notelf.so").write_text("not an ELF file\n")
        untouched = {path: path.read_bytes() for path in (plain, vendored, patched,
                                                          site / "dep" / "notelf.so")}
        record = self.av.slim(venv, self.av.load_rules(RULES), [])
        self.assertNotIn(b".debug_airlock", module.read_bytes())
        self.assertEqual(module.read_bytes()[:4], b"\x7fELF")
        self.assertFalse(self.av.has_debug_sections(module))
        self.assertLessEqual(module.stat().st_size, before - 13 * 4096)
        for path, data in untouched.items():
            self.assertEqual(path.read_bytes(), data, path.name)
        self.assertEqual(record["strip"]["files"], 1)
        self.assertEqual(record["strip"]["bytes_before"] - record["strip"]["bytes_after"],
                         before - module.stat().st_size)

    def test_debug_sections_are_read_from_the_section_headers(self) -> None:
        self.assertTrue(self.av.has_debug_sections(self.elf_with_debug(self.tmp / "a.so")))
        plain = self.tmp / "plain.so"
        subprocess.run(["objcopy", "--strip-debug", sys.executable, str(plain)], check=True)
        self.assertFalse(self.av.has_debug_sections(plain))
        short = self.tmp / "short.so"
        short.write_bytes(b"\x7fELF\x02\x01" + b"\0" * 10)
        self.assertFalse(self.av.has_debug_sections(short))

    def test_a_module_strip_cannot_read_stops_the_build_naming_it(self) -> None:
        venv = self.tmp / "bad"
        site = make_venv(venv)
        broken = self.elf_with_debug(site / "dep" / "_broken.so")
        data = bytearray(broken.read_bytes())
        struct.pack_into("<Q", data, 0x20, len(data) + 4096)  # program headers past the end
        broken.write_bytes(bytes(data))
        with self.assertRaises(SystemExit) as caught:
            self.av.slim(venv, self.av.load_rules(RULES), [])
        self.assertIn("strip failed", str(caught.exception))
        self.assertIn("lib/python3.11/site-packages/dep/_broken.so", str(caught.exception))

    def test_stdlib_bytecode_for_the_closure_and_the_start_under_its_own_tree(self) -> None:
        venv, stdlib, out = self.tmp / "v2", make_stdlib(self.tmp / "stdlib"), self.tmp / "out"
        make_venv(venv)
        record = self.av.slim(venv, self.av.load_rules(RULES), ["svc.wsgi"], stdlib, out)

        def pyc(rel: str) -> Path:
            cached = importlib.util.cache_from_source(str(stdlib / rel))
            return out / cached.lstrip("/")

        # svc.common imports json; json.decoder imports re inside a function;
        # site and every codec load before any entry point.
        imported = ("json/__init__.py", "json/decoder.py", "re.py", "site.py", "os.py",
                    "encodings/__init__.py", "encodings/utf_8.py", "codecs.py")
        for rel in imported:
            self.assertTrue(pyc(rel).is_file(), rel)
        for rel in ("smtplib.py", "email/__init__.py", "test/__init__.py", "test/test_json.py"):
            self.assertFalse(pyc(rel).exists(), rel)
        # Nothing is written beside the standard library's sources.
        self.assertEqual(list(stdlib.rglob("*.pyc")), [])
        self.assertEqual(sorted(p.name for p in out.rglob("*.pyc") if "lib-dynload" in str(p)
                                or "site-packages" in str(p)), [])
        stdlib_record = record["bytecode"]["stdlib"]
        self.assertEqual((stdlib_record["keep"], stdlib_record["compiled"]),
                         ("import-closure", len(imported)))
        self.assertEqual(stdlib_record["modules"], 12)  # not lib-dynload's, site-packages'
        flags = struct.unpack("<I", pyc("re.py").read_bytes()[4:8])[0]
        self.assertEqual(flags, 0b11)
        # The venv's own bytecode is what it was without the standard library.
        self.assertEqual(record["bytecode"]["compiled"], self.record["bytecode"]["compiled"])

    def test_the_modules_of_the_services_own_distributions_are_roots(self) -> None:
        venv = self.tmp / "own"
        site = make_venv(venv)
        (site / "svc-1.0.dist-info" / "RECORD").write_text(
            "../../../bin/svc-manage,sha256=x,10\nsvc/__init__.py,sha256=x,0\n"
            "svc/unused.py,sha256=x,1\nsvc/tests/test_cmd.py,sha256=x,1\n"
            "svc-1.0.dist-info/METADATA,sha256=x,1\n")
        roots = self.av.own_modules(site, [Path("/w/svc-1.0-py3-none-any.whl")])
        self.assertEqual(roots, ["svc", "svc.tests.test_cmd", "svc.unused"])
        self.av.slim(venv, self.av.load_rules(RULES), roots)
        # Loaded by name only (no import statement reaches it), yet compiled,
        # and so is what it imports; what nothing reaches still is not.
        for rel, compiled in (("svc/unused.py", True), ("dep/never.py", True),
                              ("netaddr/__init__.py", False)):
            self.assertEqual(Path(importlib.util.cache_from_source(
                str(site / rel))).is_file(), compiled, rel)

    def test_packages_loaded_by_name_are_compiled_whole(self) -> None:
        venv = self.tmp / "byname"
        site = make_venv(venv)
        (site / "dns" / "rdtypes").mkdir(parents=True)
        for rel in ("dns/__init__.py", "dns/rdtypes/__init__.py", "dns/rdtypes/mx.py"):
            (site / rel).write_text("")
        (site / "dnsother.py").write_text("")
        record = self.av.slim(venv, self.av.load_rules(RULES), [])
        self.assertIn("dns", self.av.load_rules(RULES)["bytecode"]["loaded_by_name"])
        for rel, compiled in (("dns/rdtypes/mx.py", True), ("dns/__init__.py", True),
                              ("dnsother.py", False)):
            self.assertEqual(Path(importlib.util.cache_from_source(
                str(site / rel))).is_file(), compiled, rel)
        self.assertGreater(record["bytecode"]["compiled"], 3)

    def test_a_bytecode_key_it_does_not_know_stops_the_build(self) -> None:
        rules = self.tmp / "slim.toml"
        for text in ('[bytecode]\nstdlib = "some"\n', '[bytecode]\nstd_lib = "all"\n',
                     '[bytecode]\nloaded_by_name = "dns"\n'):
            rules.write_text(text)
            with self.assertRaises(SystemExit) as caught:
                self.av.load_rules(rules)
            self.assertIn("[bytecode]", str(caught.exception))

    def test_a_rule_with_an_unknown_key_stops_the_build(self) -> None:
        rules = self.tmp / "slim.toml"
        rules.write_text('[[drop]]\nname = "tests"\ndir = ["*/tests"]\n')
        with self.assertRaises(SystemExit) as caught:
            self.av.load_rules(rules)
        self.assertIn("unknown keys ['dir']", str(caught.exception))


if __name__ == "__main__":
    unittest.main()
