"""A container airlock abandons (timeout, Ctrl-C, SIGTERM) is removed, not left running.

Killing the docker client does not stop its container, which would go on
writing into staging folders that airlock's cleanup removes. The real
engine runs a container that outlives its timeout.
"""

from __future__ import annotations

import subprocess
import unittest

from airlock.errors import ToolError
from airlock.ext import containers
from airlock.tests.functional import engine


def airlock_containers() -> list[str]:
    """Names of this process's containers that the engine still knows."""
    proc = subprocess.run(["docker", "ps", "--all", "--format", "{{.Names}}"],
                          capture_output=True, text=True, timeout=60, check=True)
    return [name for name in proc.stdout.split() if name.startswith("airlock-")]


class AbandonedContainerTest(unittest.TestCase):

    def setUp(self) -> None:
        engine.require_engine()
        spec, base = engine.base_image()
        self.image = engine.by_digest(spec.ref, base.digest)
        self.before = set(airlock_containers())

    def test_a_timed_out_container_is_removed(self) -> None:
        with self.assertRaises(ToolError) as caught:
            containers.run(self.image, ["sleep", "120"], timeout=5)
        self.assertIn("did not finish within 5 s", str(caught.exception))
        self.assertEqual(set(airlock_containers()) - self.before, set())


if __name__ == "__main__":
    unittest.main()
