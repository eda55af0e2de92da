"""bundle import and inspect, given a signed bundle whose airlock/heads entries are hostile.

A signature says who made a bundle, not that it is well made. Real parts:
a real git repository and its git bundle (:func:`gather.airlock_repository`),
a real ed25519 signature, the real CLI, the git mirror a local folder.
Every row: exit 1, one line, and the mirror never created (nothing pushed).
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import shutil
import tempfile
import unittest
from pathlib import Path

from airlock import cli
from airlock.bundle import gather, sums
from airlock.tests.unit import bundlefixture
from airlock.tests.unit.gitrepo import GitRepo


class HostileAirlockEntryTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.tmp = Path(tempfile.mkdtemp(prefix="airlock-import-hostile-"))
        up = GitRepo(cls.tmp / "airlock")
        cls.commit = up.commit({"a": "1"})
        bundle, cls.info = gather.airlock_repository(up.path, cls.tmp / "cache")
        cls.git_bundle = bundle.read_bytes()
        cls.key = bundlefixture.make_key(cls.tmp)
        bundlefixture.allowed_signers(cls.tmp / "signers", {"factory": cls.key})
        (cls.tmp / "cred").write_text("u:p\n")
        cls.site = cls.tmp / "site.yaml"
        cls.site.write_text(
            "pypi:\n  upload: http://127.0.0.1:9/\n  simple: http://127.0.0.1:9/simple/\n"
            "  credentials_file: cred\nraw:\n  url: http://127.0.0.1:9/raw/\n"
            "  credentials_file: cred\nregistry:\n  prefix: 127.0.0.1:9/airlock\n"
            "  credentials_file: cred\ngit:\n  base: git://127.0.0.1:9\n  push: mirror\n")

    @classmethod
    def tearDownClass(cls) -> None:
        shutil.rmtree(cls.tmp, True)

    def bundle(self, name: str, **airlock: object) -> Path:
        files = {self.info["bundle"]: self.git_bundle}
        manifest = bundlefixture.manifest_for(files)
        manifest["releases"] = {}
        entry = copy.deepcopy({"version": "0.1.0", **self.info})
        entry.update(airlock)
        manifest["airlock"] = entry
        return bundlefixture.make_bundle(self.tmp / name, files, self.key, manifest=manifest)

    def run_cli(self, *argv: str) -> tuple[int, str]:
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = cli.main(list(argv))
        return code, err.getvalue()

    def refused(self, folder: Path, said_part: str) -> None:
        code, said = self.run_cli("bundle", "import", str(folder), "--site", str(self.site),
                                  "--allowed-signers", str(self.tmp / "signers"),
                                  "--work-dir", str(self.tmp / "work"))
        self.assertEqual(code, 1, said)
        # Progress ("<folder>: verifying") aside, one line.
        lines = [line for line in said.splitlines() if not line.endswith(": verifying")]
        self.assertEqual(len(lines), 1, said)
        self.assertIn(said_part, said)
        self.assertFalse((self.tmp / "mirror").exists(), "something was pushed")
        code, said = self.run_cli("bundle", "inspect", str(folder))
        self.assertEqual(code, 1, said)
        self.assertEqual(len(said.strip().splitlines()), 1, said)

    def test_refs_outside_branches_tags_and_airlock_are_refused(self) -> None:
        for n, ref in enumerate(("refs/meta/config", "refs/remotes/origin/x", "HEAD",
                                 "refs/heads/../x", "refs/heads/a:refs/heads/b",
                                 "refs/heads/x.lock", "refs/tags/")):
            with self.subTest(ref=ref):
                self.refused(self.bundle(f"ref{n}", heads={ref: self.commit}), "airlock.heads")

    def test_a_sha_that_is_not_40_hex_is_refused(self) -> None:
        for n, sha in enumerate((f"+{self.commit}", "HEAD", self.commit[:12],
                                 self.commit.upper())):
            with self.subTest(sha=sha):
                self.refused(self.bundle(f"sha{n}", heads={"refs/heads/main": sha}),
                             "not an object sha")

    def test_commit_and_bundle_path(self) -> None:
        self.refused(self.bundle("commit", commit="abc"), "airlock.commit")
        for n, path in enumerate(("../x.bundle", "/etc/x.bundle", "sources/../../x")):
            with self.subTest(path=path):
                self.refused(self.bundle(f"path{n}", bundle=path), "airlock.bundle")

    def test_a_git_bundle_that_does_not_read_leaves_no_repository(self) -> None:
        files = {self.info["bundle"]: b"not a git bundle\n"}
        manifest = bundlefixture.manifest_for(files)
        manifest["releases"] = {}
        manifest["airlock"] = {"version": "0.1.0", **self.info}
        folder = bundlefixture.make_bundle(self.tmp / "garbage", files, self.key,
                                           manifest=manifest)
        code, said = self.run_cli("bundle", "import", str(folder), "--site", str(self.site),
                                  "--allowed-signers", str(self.tmp / "signers"),
                                  "--work-dir", str(self.tmp / "work"))
        self.assertNotEqual(code, 0)
        self.assertIn("cannot read the git bundle", said)
        self.assertFalse((self.tmp / "mirror").exists(), "an empty repository was left")

    def test_a_components_heads_are_held_to_the_same_rules(self) -> None:
        folder = self.bundle("component")
        manifest = json.loads((folder / sums.MANIFEST).read_text())
        manifest["releases"] = {"2025.2": {"components": {"keystone": {
            "ref": "28.0.0", "sha": self.commit, "bundle": self.info["bundle"],
            "heads": {"refs/meta/config": self.commit}}}}}
        (folder / sums.MANIFEST).write_text(json.dumps(manifest))
        bundlefixture.write_sums(folder, self.key)
        self.refused(folder, "components.keystone.heads")


if __name__ == "__main__":
    unittest.main()
