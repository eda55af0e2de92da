"""Owners of shared libraries asked of the release's base image, on both platforms.

The real engine runs :data:`sharedlibs.OWNERS_SCRIPT` in the base image
(linux/arm64 under QEMU); a second call is answered from the cache without
any container. On arm64 a real aarch64 library of the image is read by
:mod:`airlock.inputs.elf` too: the host has none of its own.
"""

from __future__ import annotations

import base64
import tempfile
import time
import unittest
from pathlib import Path
from unittest import mock

from airlock.data import platforms
from airlock.ext import containers
from airlock.inputs import elf, sharedlibs
from airlock.tests.functional import engine


class OwnersTest(unittest.TestCase):

    def setUp(self) -> None:
        engine.require_engine()
        spec, base = engine.base_image()
        self.image = engine.by_digest(spec.ref, base.digest)
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        self.cache = Path(tmp.name)

    def owners(self, platform: str) -> dict[str, str]:
        started = time.monotonic()
        found = sharedlibs.owners(self.image, platform, cache=self.cache)
        print(f"owners({platform}): {len(found)} names in {time.monotonic() - started:.1f} s")
        self.assertEqual(found["libc.so.6"], "libc6")
        self.assertEqual(found["libz.so.1"], "zlib1g")
        self.assertTrue(all(":" not in package for package in found.values()))
        # Asked again: the cache answers, no container runs.
        with mock.patch.object(containers, "run", side_effect=AssertionError("ran again")):
            self.assertEqual(sharedlibs.owners(self.image, platform, cache=self.cache), found)
        cached = list((self.cache / "sharedlibs").iterdir())
        self.assertIn(platforms.get(platform).arch, " ".join(p.name for p in cached))
        return found

    def test_amd64(self) -> None:
        found = self.owners("linux/amd64")
        self.assertEqual(found["ld-linux-x86-64.so.2"], "libc6")
        self.assertFalse(any("aarch64" in name for name in found))

    def test_arm64_and_a_real_aarch64_library(self) -> None:
        found = self.owners("linux/arm64")
        self.assertEqual(found["ld-linux-aarch64.so.1"], "libc6")
        self.assertFalse(any("x86-64" in name for name in found))
        encoded = containers.run(self.image, ["base64", "-w0", "/lib/aarch64-linux-gnu/libz.so.1"],
                                 platform="linux/arm64", entrypoint="", read_only=True)
        info = elf.parse(base64.b64decode(encoded), "libz.so.1 (arm64)")
        self.assertEqual((info.bits, info.little_endian, info.machine), (64, True, 183))
        self.assertEqual(found[info.soname], "zlib1g")
        self.assertIn("libc.so.6", info.needed)
        self.assertEqual({found[name] for name in info.needed}, {"libc6"})


if __name__ == "__main__":
    unittest.main()
