"""airlock check: the script that runs in an image, and how its answer is read."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

from airlock.data.services import Service
from airlock.errors import ToolError
from airlock.image import check


class CheckScriptTest(unittest.TestCase):
    """The in-image script, run for real by this host's Python against a fake venv."""

    def run_script(self, spec: Service, distribution: str = "pip",
                   emulated: bool = False, start_scripts: bool = True) -> check.Outcome:
        with tempfile.TemporaryDirectory() as tmp:
            venv = Path(tmp)
            (venv / "bin").mkdir()
            (venv / "bin" / "good-wsgi").write_text(
                "# WSGI entry point x, written by airlock-venv\nfrom json import dumps\n")
            (venv / "bin" / "bad-wsgi").write_text(
                "# written by airlock-venv\nfrom no_such_module_here import app\n")
            (venv / "bin" / "other").write_bytes(b"\x7fELF\x00\xff")
            # Console scripts as uv writes them: one starts, one lacks a module
            # of an installed distribution (what slim could remove), one wants
            # a distribution never installed, one rejects --help and --version
            # yet imports (it runs its argument).
            # A script naming a submodule its package never imports
            # (charset_normalizer's "from charset_normalizer import cli").
            for name, body in (("sub-cli", "from email import mime\n"
                                           "import argparse\n"
                                           "argparse.ArgumentParser().parse_args()\n"),
                               ("good-cli", "import argparse\n"
                                            "argparse.ArgumentParser().parse_args()\n"),
                               ("broken-cli", "from pip.no_such_module_here import main\n"),
                               ("optional-cli", "from no_such_module_here import main\n"),
                               ("wrapper-cli", "from json import dumps\nimport sys\n"
                                               "sys.exit(2)\n")):
                script = venv / "bin" / name
                script.write_text(f"#!{sys.executable}\n{body}")
                script.chmod(0o755)
            argv = check.command(spec, distribution, emulated, start_scripts)
            want = json.loads(argv[-1])
            want["venv"] = str(venv)
            done = subprocess.run([sys.executable, "-c", argv[2], json.dumps(want)],
                                  capture_output=True, text=True, timeout=120,
                                  env={**os.environ, "PYTHONPATH": ""})
            return check.parse(done.stdout, "linux/amd64", "ref")

    def test_failures_are_named(self) -> None:
        outcome = self.run_script(Service("x", imports=("json", "no_such_mod"),
                                          commands=(("true",), ("false",))))
        self.assertFalse(outcome.ok)
        self.assertGreater(outcome.checked, 5)  # pip's console scripts, 2 wsgi, 2+2
        text = "\n".join(outcome.failures)
        self.assertIn("wsgi script bad-wsgi: ModuleNotFoundError", text)
        self.assertIn("import no_such_mod: ModuleNotFoundError", text)
        self.assertIn("command false: exit 1", text)
        self.assertIn("script broken-cli: ModuleNotFoundError", text)
        self.assertEqual(len(outcome.failures), 4, outcome.failures)
        self.assertEqual(outcome.scripts, ("broken-cli", "good-cli", "optional-cli",
                                           "sub-cli", "wrapper-cli"))
        self.assertEqual(outcome.unavailable, (
            "script optional-cli: needs no_such_module_here, which no installed "
            "distribution provides",))

    def test_scripts_imported_instead_of_started_judge_the_same(self) -> None:
        started = self.run_script(Service("x"))
        imported = self.run_script(Service("x"), start_scripts=False)
        self.assertEqual(imported.scripts, started.scripts)
        self.assertEqual(imported.unavailable, started.unavailable)
        self.assertEqual([f for f in imported.failures if f.startswith("script")],
                         [f for f in started.failures if f.startswith("script")])
        self.assertEqual(imported.checked, started.checked)

    def test_under_emulation_a_command_that_runs_is_reported_not_failed(self) -> None:
        outcome = self.run_script(Service("x", commands=(("false",), ("no-such-tool-here",))),
                                  emulated=True)
        self.assertEqual(outcome.emulated, ("command false: exit 1 ",))
        commands = [f for f in outcome.failures if f.startswith("command")]
        self.assertEqual(len(commands), 1, outcome.failures)
        self.assertIn("command no-such-tool-here: FileNotFoundError", commands[0])

    def test_all_good(self) -> None:
        outcome = self.run_script(Service("x", imports=("json",), commands=(("true",),)))
        self.assertEqual([f for f in outcome.failures
                          if "bad-wsgi" not in f and "broken-cli" not in f], [])

    def test_a_distribution_not_installed_is_a_failure(self) -> None:
        outcome = self.run_script(Service("x"), distribution="no-such-distribution-here")
        self.assertIn("distribution no-such-distribution-here: not installed in the venv",
                      outcome.failures)

    def test_modules_loaded_without_bytecode_are_reported_not_failed(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            mods = Path(tmp) / "mods"
            mods.mkdir()
            (mods / "airlock_compiled_here.py").write_text("VALUE = 1\n")
            (mods / "airlock_source_only_here.py").write_text("VALUE = 2\n")
            import py_compile
            py_compile.compile(str(mods / "airlock_compiled_here.py"), doraise=True)
            (Path(tmp) / "bin").mkdir()
            spec = Service("x", imports=("airlock_compiled_here", "airlock_source_only_here"))
            argv = check.command(spec, "pip", start_scripts=False)
            want = {**json.loads(argv[-1]), "venv": tmp}
            done = subprocess.run([sys.executable, "-c", argv[2], json.dumps(want)],
                                  capture_output=True, text=True, timeout=120,
                                  env={**os.environ, "PYTHONPATH": str(mods),
                                       "PYTHONDONTWRITEBYTECODE": "1"})
            outcome = check.parse(done.stdout, "linux/amd64", "ref")
        self.assertIn("airlock_source_only_here", outcome.uncompiled)
        self.assertNotIn("airlock_compiled_here", outcome.uncompiled)
        self.assertFalse([f for f in outcome.failures if "airlock_" in f], outcome.failures)

    def test_no_result_is_a_tool_error(self) -> None:
        with self.assertRaises(ToolError) as caught:
            check.parse("Traceback ...\n", "linux/arm64", "r@sha256:1")
        self.assertIn("checking r@sha256:1 on linux/arm64: the check printed no result",
                      str(caught.exception))
