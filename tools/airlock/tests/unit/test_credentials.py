"""Credentialed URLs: used for the call, never printed, never recorded.

A real git server (``git http-backend``) and a real PEP 503 index, both on
127.0.0.1 behind Basic auth, serve a keystone repository and its sdist.
``airlock`` runs as a real process (``python -m airlock.cli``) with
``--git-base``/``$AIRLOCK_GIT_BASE``/``--index-url`` URLs that carry the
password; afterwards the password must appear in no output and no file
under the test's folder (locks, records, prepared trees, mirrors, pip's
and git's caches: HOME and XDG_CACHE_HOME point there too).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

from airlock.data import refs
from airlock.errors import ToolError
from airlock.inputs import sources
from airlock.tests.unit.gitrepo import GitRepo, make_release, numbered, write_data_tree
from airlock.tests.unit.servers import GitServer, PackageIndex
from airlock.tests.unit.test_index_credentials import command_lines_holding
from airlock.tests.unit.test_mirror import make_sdist

USER = "airlock-bot"


class CredentialedRunTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls) -> None:
        cls.secret = "s3cret-" + secrets.token_hex(8)
        cls.root = Path(tempfile.mkdtemp(prefix="airlock-test-credentials-"))
        repo = GitRepo(cls.root / "git" / "openstack" / "keystone")
        cls.sha = repo.commit({"keystone/foo.py": numbered(10), "setup.py": "# pbr\n"}, "base")
        repo.tag("28.1.0")
        repo.switch("work", create_at=cls.sha)
        repo.commit({"keystone/foo.py": numbered(10, {3: "patched"})}, "Patch")
        patch = repo.format_patch()
        repo.switch("master")
        cls.data = write_data_tree(cls.root / "data", 'keystone: "28.1.0"\n')
        (cls.data / "patches" / "keystone" / "2025.2").mkdir(parents=True)
        (cls.data / "patches" / "keystone" / "2025.2" / "0001-patch.patch").write_text(patch)
        (cls.root / "index").mkdir()
        make_sdist(cls.root / "index", "keystone", "28.1.0")
        cls.git = GitServer(cls.root / "git", {USER: cls.secret})
        cls.index = PackageIndex(cls.root / "index", {USER: cls.secret})
        cls.git.start()
        cls.index.start()
        cls.git_base = cls.git.url(USER, cls.secret).rstrip("/")
        cls.bare_base = cls.git.url().rstrip("/")

    @classmethod
    def tearDownClass(cls) -> None:
        cls.git.stop()
        cls.index.stop()
        shutil.rmtree(cls.root, ignore_errors=True)

    def setUp(self) -> None:
        self.work = Path(tempfile.mkdtemp(prefix="run-", dir=self.root))
        (self.work / "home").mkdir()
        self.outputs: list[str] = []

    def airlock(self, *args: str, **env: str) -> subprocess.CompletedProcess:
        """Run the CLI as a process, in the test's folder, with its own HOME and caches."""
        full = {k: v for k, v in os.environ.items() if not k.startswith(("AIRLOCK_", "PIP_"))}
        full.update({"HOME": str(self.work / "home"),
                     "XDG_CACHE_HOME": str(self.work / "xdg-cache"), "PIP_RETRIES": "0",
                     **env})
        proc = subprocess.run([sys.executable, "-m", "airlock.cli", *args, "--root",
                               str(self.data)], cwd=self.work, env=full, capture_output=True,
                              text=True, timeout=300)
        self.outputs += [proc.stdout, proc.stderr]
        return proc

    def assert_no_secret(self, *secrets_: str) -> None:
        """No output of the runs and no file under the test's folder holds the secrets."""
        for text in self.outputs:
            for secret in secrets_:
                self.assertNotIn(secret, text)
        leaked = []
        for path in self.root.rglob("*"):
            if path.is_symlink() or not path.is_file():
                continue
            data = path.read_bytes()
            leaked += [f"{path}: {s}" for s in secrets_ if s.encode() in data]
        self.assertEqual(leaked, [])

    def test_git_never_sees_the_password_on_its_command_line(self) -> None:
        # What ps shows every user of the host: the server looks at every
        # command line while git talks to it.
        leaks: list[str] = []
        handle = self.git.handle

        def watching(request) -> None:
            leaks.extend(command_lines_holding(self.secret))
            handle(request)

        self.git.handle = watching  # type: ignore[method-assign]
        try:
            proc = self.airlock("refs", "resolve", "--release", "2025.2",
                                "--git-base", self.git_base)
        finally:
            self.git.handle = handle  # type: ignore[method-assign]
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertGreater(self.git.served, 0)
        self.assertEqual([line for line in leaks if "airlock.cli" not in line], [])

    def test_resolve_prepare_and_mirror_use_the_password_and_record_none(self) -> None:
        served = self.git.served
        lock = self.work / "refs.lock"
        proc = self.airlock("refs", "resolve", "--release", "2025.2", "--git-base",
                            self.git_base, "-o", str(lock))
        self.assertEqual((proc.returncode, proc.stderr), (0, ""))
        entry = refs.load_lock(lock)["components"]["keystone"]
        self.assertEqual((entry["sha"], entry["repo"]),
                         (self.sha, f"{self.bare_base}/openstack/keystone"))
        self.assertIn(f"repo: {self.bare_base}/openstack/keystone\n", lock.read_text())

        # From the lock: the credential comes back from this run's --git-base.
        dest = self.work / "src" / "keystone"
        proc = self.airlock("sources", "prepare", "--release", "2025.2", "--component",
                            "keystone", "--dest", str(dest), "--lock", str(lock),
                            "--git-base", self.git_base)
        self.assertEqual((proc.returncode, proc.stderr), (0, ""))
        self.assertEqual(proc.stdout, f"keystone: {self.sha} exported to {dest} with "
                         "1 patch(es)\n")
        record = json.loads((dest / ".airlock" / "source.json").read_text())
        self.assertEqual(record["repo"], f"{self.bare_base}/openstack/keystone")
        self.assertIn("patched", (dest / "keystone" / "foo.py").read_text())

        # Resolved now, from $AIRLOCK_GIT_BASE.
        other = self.work / "src" / "again"
        proc = self.airlock("sources", "prepare", "--release", "2025.2", "--component",
                            "keystone", "--dest", str(other), AIRLOCK_GIT_BASE=self.git_base)
        self.assertEqual((proc.returncode, proc.stderr), (0, ""))
        self.assertEqual(json.loads((other / ".airlock" / "source.json").read_text())["repo"],
                         record["repo"])

        # The mirror from a password-protected index.
        served_index = self.index.served
        mirror = self.work / "mirror"
        proc = self.airlock("mirror", "create", "--release", "2025.2", "--dest", str(mirror),
                            "--index-url", self.index.url(USER, self.secret, "simple/"))
        self.assertEqual((proc.returncode, proc.stderr), (0, ""))
        self.assertTrue(proc.stdout.startswith(f"keystone: 28.1.0 -> {mirror}/openstack/"
                                               "keystone ("), proc.stdout)
        self.assertGreater(self.git.served, served)
        self.assertGreater(self.index.served, served_index)
        self.assert_no_secret(self.secret)

    def test_the_lock_carries_no_password_netrc_gives_it_back(self) -> None:
        lock = self.work / "refs.lock"
        self.assertEqual(self.airlock("refs", "resolve", "--release", "2025.2", "--git-base",
                                      self.git_base, "-o", str(lock)).returncode, 0)
        args = ("sources", "prepare", "--release", "2025.2", "--component", "keystone",
                "--lock", str(lock))
        proc = self.airlock(*args, "--dest", str(self.work / "a"))
        self.assertEqual(proc.returncode, 2, proc.stderr)
        self.assertEqual(len(proc.stderr.splitlines()), 1, proc.stderr)
        self.assertTrue(proc.stderr.startswith(
            f"component keystone: cannot read repository {self.bare_base}/openstack/keystone: "),
            proc.stderr)
        self.assertFalse(os.path.lexists(self.work / "a"))
        # git's own mechanism: ~/.netrc (curl reads it; git's config is shut out).
        home = Path(tempfile.mkdtemp(prefix="airlock-test-netrc-"))  # outside what is searched
        self.addCleanup(shutil.rmtree, home)
        netrc = home / ".netrc"
        netrc.write_text(f"machine 127.0.0.1 login {USER} password {self.secret}\n")
        netrc.chmod(0o600)
        proc = self.airlock(*args, "--dest", str(self.work / "b"), HOME=str(home))
        self.assertEqual((proc.returncode, proc.stderr), (0, ""))
        self.assert_no_secret(self.secret)

    def test_wrong_credentials_are_one_line_exit_2_and_no_password(self) -> None:
        wrong = "wrong-" + secrets.token_hex(8)
        bad_base = self.git.url(USER, wrong).rstrip("/")
        proc = self.airlock("refs", "resolve", "--release", "2025.2", "--git-base", bad_base)
        self.assertEqual((proc.returncode, proc.stdout), (2, ""))
        self.assertEqual(proc.stderr.splitlines(), [
            f"{self.data}/releases/2025.2/source-refs.yaml:keystone: cannot read repository "
            f"{self.bare_base}/openstack/keystone: authentication failed: the server refused "
            "the credentials given, or asked for some and none were given; check --git-base / "
            "AIRLOCK_GIT_BASE (the "
            "repository is <git-base>/openstack/keystone) or give the entry a repo:"])
        lock = self.work / "refs.lock"
        self.assertEqual(self.airlock("refs", "resolve", "--release", "2025.2", "--git-base",
                                      self.git_base, "-o", str(lock)).returncode, 0)
        proc = self.airlock("sources", "prepare", "--release", "2025.2", "--component",
                            "keystone", "--lock", str(lock), "--dest", str(self.work / "a"),
                            "--git-base", bad_base)
        self.assertEqual(proc.returncode, 2, proc.stderr)
        self.assertEqual(len(proc.stderr.splitlines()), 1, proc.stderr)
        self.assertIn("authentication failed", proc.stderr)
        proc = self.airlock("mirror", "create", "--release", "2025.2", "--dest",
                            str(self.work / "mirror"), "--index-url",
                            self.index.url(USER, wrong, "simple/"))
        self.assertNotEqual(proc.returncode, 0)
        self.assertEqual(len(proc.stderr.splitlines()), 1, proc.stderr)
        self.assertEqual(list((self.work / "mirror").glob("openstack/*/refs/tags/*")), [])
        self.assert_no_secret(self.secret, wrong)

    def test_a_repo_entry_with_a_password_is_used_in_the_run_and_recorded_bare(self) -> None:
        url = f"{self.git_base}/openstack/keystone"
        release = make_release(self.root / "lib", {"keystone": ("28.1.0", url)})
        lock = refs.resolve_release(release, None)
        self.assertEqual(lock["components"]["keystone"]["repo"],
                         f"{self.bare_base}/openstack/keystone")
        record = sources.prepare(release, "keystone", lock, self.root / "no-patches",
                                 self.work / "tree")
        self.assertEqual((record["sha"], record["repo"]),
                         (self.sha, f"{self.bare_base}/openstack/keystone"))
        # Another release without the entry's URL: the lock alone cannot fetch.
        bare = make_release(self.root / "lib", {"keystone": ("28.1.0", None)})
        with self.assertRaises(ToolError) as caught:
            sources.prepare(bare, "keystone", lock, self.root / "no-patches",
                            self.work / "other")
        self.assertNotIn(self.secret, str(caught.exception))
        self.assert_no_secret(self.secret)


if __name__ == "__main__":
    unittest.main()
