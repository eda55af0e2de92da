"""A minimal valid airlock data tree in a temp dir, for tests to break one thing at a time.

Two releases (so "known: ..." lists and cross-release patch checks have
something to show), two services with image folders, one library component
(oslo.messaging, in 2025.2 only) and one patch. Every test gets a fresh
tree; nothing is shared between tests.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import sys
import tempfile
import unittest
from pathlib import Path
from unittest import mock

from airlock.data.layout import Layout

# The repository checkout: tools/airlock/tests/unit/ -> four levels up.
REPO_ROOT = Path(__file__).resolve().parents[4]


def real_layout() -> Layout:
    """The checkout's own releases/, patches/ and images/."""
    return Layout(REPO_ROOT / "releases", REPO_ROOT / "patches", REPO_ROOT / "images")


def run_cli(argv: list[str], stdin: str | None = None) -> tuple[int, str, str]:
    """``airlock ARGV`` in this process: (exit code, stdout, stderr); STDIN if given."""
    from airlock import cli

    out, err = io.StringIO(), io.StringIO()
    with contextlib.ExitStack() as stack:
        stack.enter_context(contextlib.redirect_stdout(out))
        stack.enter_context(contextlib.redirect_stderr(err))
        if stdin is not None:
            stack.enter_context(mock.patch.object(sys, "stdin", io.StringIO(stdin)))
        code = cli.main(argv)
    return code, out.getvalue(), err.getvalue()

RELEASE_YAML = """\
# OpenStack {name} ({codename}) as the tests build it.
name: "{name}"
codename: {codename}
python: "3.11"
distro:
  name: debian
  codename: bookworm
  version: "12"
base_image: "${{AIRLOCK_BASE_IMAGE:-127.0.0.1:5000/airlock/debian:bookworm}}"
platforms:
  - linux/amd64
  - linux/arm64
services:
  - keystone
  - nova
"""

SOURCE_REFS = {
    "2025.1": """\
keystone: "27.1.0"
nova: "31.3.1"
""",
    "2025.2": """\
keystone: "28.1.0"
nova: "32.2.1"
oslo.messaging:
  ref: "17.1.0"
""",
}

UPPER_CONSTRAINTS = """\
# upstream pins (a small, real-looking excerpt)
oslo.messaging===17.1.0
oslo.log===7.2.1
PasteDeploy===3.1.0
alabaster===0.7.16;python_version=='3.9'
alabaster===1.0.0;python_version>='3.10'
keystonemiddleware===10.12.1
"""

OVERRIDES = """\
# Site changes to upper-constraints.txt, applied in order.
"""

CODENAMES = {"2025.1": "epoxy", "2025.2": "flamingo"}
SERVICES = ("keystone", "nova")
BASE_IMAGES = ("python-base", "venv-builder")  # every service image is built on them
PATCH = "patches/nova/2025.2/0001-fix-something.patch"
# A patch git can read (validate checks that much; whether it applies is
# known only against the exported tree).
PATCH_TEXT = """\
diff --git a/nova/x.py b/nova/x.py
--- a/nova/x.py
+++ b/nova/x.py
@@ -1 +1 @@
-a = 1
+a = 2
"""


class Tree:
    """The data tree under ``root``: paths are given relative to it."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def layout(self) -> Layout:
        return Layout(self.root / "releases", self.root / "patches", self.root / "images")

    def path(self, rel: str) -> Path:
        return self.root / rel

    def write(self, rel: str, text: str) -> Path:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def read(self, rel: str) -> str:
        return (self.root / rel).read_text()

    def append(self, rel: str, text: str) -> None:
        self.write(rel, self.read(rel) + text)

    def replace(self, rel: str, old: str, new: str) -> None:
        text = self.read(rel)
        if old not in text:
            raise AssertionError(f"{rel} has no {old!r}: the fixture changed")
        self.write(rel, text.replace(old, new, 1))

    def remove(self, rel: str) -> None:
        path = self.root / rel
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()


def make_tree(root: Path) -> Tree:
    """Write the minimal valid tree into ``root`` (an empty folder) and return it."""
    tree = Tree(root)
    for name, codename in CODENAMES.items():
        base = f"releases/{name}"
        tree.write(f"{base}/release.yaml", RELEASE_YAML.format(name=name, codename=codename))
        tree.write(f"{base}/source-refs.yaml", SOURCE_REFS[name])
        tree.write(f"{base}/upper-constraints.txt", UPPER_CONSTRAINTS)
        tree.write(f"{base}/constraint-overrides.txt", OVERRIDES)
    tree.write("releases/README.md", "# Release data\n")
    for image in (*SERVICES, *BASE_IMAGES):
        tree.write(f"images/{image}/bindep.txt", "libffi-dev [build]\n")
        tree.write(f"images/{image}/Dockerfile", "FROM scratch\n")
    tree.write(PATCH, PATCH_TEXT)
    return tree


class TreeTestCase(unittest.TestCase):
    """A TestCase with ``self.tree``: a fresh valid tree in its own temp dir."""

    def setUp(self) -> None:
        super().setUp()
        self.tree = self.new_tree()

    def new_tree(self) -> Tree:
        """Replace ``self.tree`` with a fresh valid tree (for table rows) and return it."""
        tmp = tempfile.TemporaryDirectory(prefix="airlock-test-")
        self.addCleanup(tmp.cleanup)
        self.tree = make_tree(Path(tmp.name))
        return self.tree
