"""The local default base image: both platforms, python3 runs, skip-existing."""

from __future__ import annotations

import contextlib
import io
import unittest

from airlock import cli
from airlock.data import platforms
from airlock.ext import containers, registry
from airlock.inputs import baseimage
from airlock.tests.functional import engine


class BaseImageTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        engine.require_engine()
        cls.spec, cls.result = engine.base_image()
        cls.image = engine.by_digest(cls.spec.ref, cls.result.digest)

    def test_registry_holds_every_platform_of_the_release(self):
        self.assertEqual(registry.digest(self.spec.ref), self.result.digest)
        self.assertEqual(sorted(registry.platforms(self.spec.ref)),
                         sorted(self.spec.platforms))

    def test_python_runs_on_every_platform(self):
        for platform in self.spec.platforms:
            with self.subTest(platform=platform):
                out = containers.run(self.image, ["python3", "--version"], platform=platform)
                self.assertRegex(out.strip(), r"^Python 3\.11\.\d+$")
                arch = containers.run(self.image, ["dpkg", "--print-architecture"],
                                  platform=platform).strip()
                self.assertEqual(arch, platforms.get(platform).debian)

    def test_recorded_inputs_make_a_second_run_a_no_op(self):
        notes = registry.annotations(self.spec.ref)
        self.assertEqual(notes[baseimage.INPUT_DIGEST_KEY], self.result.input_digest)
        again = baseimage.create(self.spec, engine.REPO_ROOT / "images",
                                 engine.REPO_ROOT / "work")
        self.assertFalse(again.built)
        self.assertEqual(again.digest, self.result.digest)

    def test_cli_reports_the_present_image(self):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = cli.main(["base", "create", "--release", engine.RELEASE,
                             "--root", str(engine.REPO_ROOT)])
        self.assertEqual(code, 0)
        self.assertIn(f"{self.spec.ref}@{self.result.digest} present", out.getvalue())


if __name__ == "__main__":
    unittest.main()
