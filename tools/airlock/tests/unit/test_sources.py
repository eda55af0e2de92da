"""sources: export at the locked commit, patch, record; against real repositories."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import unittest
from pathlib import Path

from airlock.cli import main
from airlock.data import refs
from airlock.errors import AirlockError, ToolError
from airlock.inputs import sources
from airlock.tests.unit.gitrepo import EPOCH, GitRepo, make_release, numbered, write_data_tree

FOO = "keystone/common/foo.py"


class Upstream:
    """A keystone-like repository and patches made from its real commits.

    master: c1 (annotated tag 28.1.0) - c2 (lightweight tag old-eol) -
    c3 ("Sem-Ver: feature"). Patches, each one commit made on a side branch
    from c1: P1 changes line 5 of foo.py, P2 (on top of P1) changes it
    again and adds a file, CONFLICT changes line 5 from c1 differently,
    MISSING changes a file that c1 does not have. Hostile ones: LINK_OWN makes
    ``.airlock`` a link to the host folder ``host/``, LINK_RECORD makes
    ``.airlock/source.json`` a link to the host file ``host/passwd``. The
    repository ``evil`` has ``.airlock`` (a link to ``host/``) in its tree
    (tag 1.0.0) and links to host files in ``keystone/`` (tag 2.0.0).
    """

    def __init__(self, root: Path) -> None:
        self.host = root / "host"
        self.host.mkdir(mode=0o700)
        self.passwd = self.host / "passwd"
        self.passwd.write_text("root:x:0:0\n")
        os.utime(self.passwd, (1000000000, 1000000000))
        self.passwd.chmod(0o600)
        repo = self.repo = GitRepo(root / "git" / "openstack" / "keystone")
        run = repo.path / "bin" / "run"
        run.parent.mkdir(parents=True)
        run.write_text("#!/bin/sh\n")
        run.chmod(0o755)
        self.c1 = repo.commit({FOO: numbered(30), "setup.py": "# pbr\n"}, "base")
        repo.tag("28.1.0")
        repo.switch("work", create_at=self.c1)
        repo.commit({FOO: numbered(30, {5: "patched once"})}, "Patch once")
        self.p1 = repo.format_patch()
        repo.commit({FOO: numbered(30, {5: "patched twice"}), "keystone/new.py": "new\n"},
                    "Patch twice")
        self.p2 = repo.format_patch()
        repo.switch("other", create_at=self.c1)
        repo.commit({FOO: numbered(30, {5: "other change"})}, "Conflicting change")
        self.conflict = repo.format_patch()
        repo.commit({"extra.py": "1\n"}, "Add extra")
        repo.commit({"extra.py": "2\n"}, "Change extra")
        self.missing = repo.format_patch()
        repo.switch("links", create_at=self.c1)
        (repo.path / ".airlock").symlink_to(self.host)
        repo.commit({}, "Link .airlock out of the tree")
        self.link_own = repo.format_patch()
        repo.switch("links2", create_at=self.c1)
        (repo.path / ".airlock").mkdir()
        (repo.path / ".airlock" / "source.json").symlink_to(self.passwd)
        repo.commit({}, "Link the record out of the tree")
        self.link_record = repo.format_patch()
        repo.switch("master")
        self.c2 = repo.commit({"keystone/more.py": "more\n"}, "More")
        repo.tag("old-eol", annotated=False)
        self.c3 = repo.commit({"keystone/feature.py": "x\n"}, "Add a feature\n\nSem-Ver: feature")
        evil = self.evil = GitRepo(root / "git" / "openstack" / "evil")
        (evil.path / ".airlock").symlink_to(self.host)
        self.evil_own = evil.commit({"setup.py": "# pbr\n"}, "Own name taken")
        evil.tag("1.0.0")
        (evil.path / ".airlock").unlink()
        (evil.path / "keystone").mkdir()
        (evil.path / "keystone" / "passwd").symlink_to(self.passwd)
        (evil.path / "keystone" / "etc").symlink_to(self.host)
        self.evil_links = evil.commit({}, "Links to host files")
        evil.tag("2.0.0")


class PrepareTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls._tmp = tempfile.TemporaryDirectory(prefix="airlock-test-sources-")
        cls.up = Upstream(Path(cls._tmp.name))

    @classmethod
    def tearDownClass(cls) -> None:
        cls._tmp.cleanup()

    def setUp(self) -> None:
        tmp = tempfile.TemporaryDirectory(prefix="airlock-test-sources-")
        self.addCleanup(tmp.cleanup)
        self.root = Path(tmp.name)
        self.release = make_release(self.root, {"keystone": ("28.1.0", None)})
        self.patches = self.root / "patches"
        self.out = self.root / "out"
        self.dest = self.out / "keystone"

    def lock(self, sha: str, ref: str = "28.1.0", repo: str | None = None) -> dict:
        return {"release": "2025.2", "components": {"keystone": {
            "sha": sha, "ref": ref, "repo": repo or str(self.up.repo.path),
            "resolved-at": "2025-01-01T00:00:00Z"}}}

    def add_patch(self, name: str, text: str) -> Path:
        path = self.patches / "keystone" / "2025.2" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def prepare(self, sha: str | None = None, ref: str = "28.1.0", repo: str | None = None,
                ) -> dict:
        return sources.prepare(self.release, "keystone", self.lock(sha or self.up.c1, ref, repo),
                               self.patches, self.dest)

    def failure(self, **kwargs) -> AirlockError:
        with self.assertRaises(AirlockError) as caught:
            self.prepare(**kwargs)
        self.assertFalse(self.dest.exists(), "dest must stay absent after a failure")
        self.assertEqual(list(self.out.iterdir()) if self.out.exists() else [], [],
                         "staging left behind")
        return caught.exception

    def test_no_patches_exports_the_tagged_tree_and_records_it(self) -> None:
        record = self.prepare()
        self.assertEqual(record, {"component": "keystone", "release": "2025.2", "ref": "28.1.0",
                                  "sha": self.up.c1, "repo": str(self.up.repo.path),
                                  "version": "28.1.0", "patches": [],
                                  "committed-at": int(self.up.repo.git(
                                      "show", "-s", "--format=%ct", self.up.c1))})
        self.assertEqual(json.loads((self.dest / ".airlock" / "source.json").read_text()),
                         record)
        self.assertEqual((self.dest / FOO).read_text(), numbered(30))
        self.assertFalse((self.dest / ".git").exists())
        self.assertFalse((self.dest / "keystone" / "more.py").exists())
        self.assertEqual(os.listdir(self.out), ["keystone"])

    def test_tree_is_reproducible_commit_time_and_fixed_modes(self) -> None:
        self.prepare()
        commit_time = EPOCH + 60  # the first commit of the repository
        for path in [self.dest, *self.dest.rglob("*")]:
            self.assertEqual(path.lstat().st_mtime, commit_time, path)
        self.assertEqual((self.dest / "bin" / "run").stat().st_mode & 0o777, 0o755)
        self.assertEqual((self.dest / FOO).stat().st_mode & 0o777, 0o644)

    def test_patches_apply_in_lexical_order_and_are_recorded(self) -> None:
        second = self.add_patch("0002-patch-twice.patch", self.up.p2)
        first = self.add_patch("0001-patch-once.patch", self.up.p1)
        self.add_patch("README", "not a patch: ignored\n")
        record = self.prepare()
        self.assertEqual(record["patches"], [
            {"name": "0001-patch-once.patch",
             "sha256": hashlib.sha256(first.read_bytes()).hexdigest()},
            {"name": "0002-patch-twice.patch",
             "sha256": hashlib.sha256(second.read_bytes()).hexdigest()}])
        self.assertEqual((self.dest / FOO).read_text(), numbered(30, {5: "patched twice"}))
        self.assertEqual((self.dest / "keystone" / "new.py").read_text(), "new\n")

    def test_conflicting_patch_names_patch_hunk_and_file_and_leaves_nothing(self) -> None:
        self.add_patch("0001-patch-once.patch", self.up.p1)
        bad = self.add_patch("0002-conflict.patch", self.up.conflict)
        self.assertEqual(str(self.failure()),
                         f"{bad}: hunk @@ -2,7 +2,7 @@ does not apply to {FOO}; "
                         f"rebase the patch onto 28.1.0 ({self.up.c1[:12]})")

    def test_patch_of_a_missing_file(self) -> None:
        bad = self.add_patch("0001-missing.patch", self.up.missing)
        self.assertEqual(str(self.failure()),
                         f"{bad}: does not apply: extra.py: No such file or directory; "
                         f"rebase the patch onto 28.1.0 ({self.up.c1[:12]})")

    def test_malformed_patch(self) -> None:
        bad = self.add_patch("0001-garbage.patch", "this is not a patch\n")
        message = str(self.failure())
        self.assertTrue(message.startswith(f"{bad}: not a valid patch: No valid patches"),
                        message)
        self.assertTrue(message.endswith("; regenerate it with git format-patch"), message)

    def test_dest_that_is_not_empty_is_refused_and_untouched(self) -> None:
        self.dest.mkdir(parents=True)
        (self.dest / "keep").write_text("mine\n")
        with self.assertRaises(AirlockError) as caught:
            self.prepare()
        self.assertEqual(str(caught.exception),
                         f"{self.dest}: exists; remove it or choose another --dest")
        self.assertEqual(os.listdir(self.dest), ["keep"])
        self.assertEqual(os.listdir(self.out), ["keystone"])

    def test_empty_dest_folder_is_used(self) -> None:
        self.dest.mkdir(parents=True)
        self.assertEqual(self.prepare()["version"], "28.1.0")
        self.assertTrue((self.dest / FOO).is_file())

    def test_dest_inside_a_git_checkout_is_patched_as_a_plain_folder(self) -> None:
        outer = GitRepo(self.root / "checkout")
        outer.commit({"README": "outer\n"}, "outer")
        self.out = outer.path / "build"
        self.dest = self.out / "keystone"
        self.add_patch("0001-patch-once.patch", self.up.p1)
        self.prepare()
        self.assertEqual((self.dest / FOO).read_text(), numbered(30, {5: "patched once"}))

    def test_version_of_a_commit_after_a_tag_is_a_pbr_dev_version(self) -> None:
        # c2 also carries the non-version tag old-eol: skipped
        self.assertEqual(self.prepare(self.up.c2, ref="master")["version"], "28.1.1.dev1")

    def test_sem_ver_feature_bumps_the_minor_version(self) -> None:
        self.assertEqual(self.prepare(self.up.c3, ref=self.up.c3)["version"], "28.2.0.dev2")

    def test_branch_or_sha_exactly_at_a_tag_gets_the_tag(self) -> None:
        self.assertEqual(self.prepare(self.up.c1, ref="master")["version"], "28.1.0")

    def test_file_url(self) -> None:
        self.assertEqual(self.prepare(repo=self.up.repo.url)["sha"], self.up.c1)

    def test_stale_lock_commit_not_in_repository(self) -> None:
        message = str(self.failure(sha="f" * 40))
        self.assertEqual(message, f"component keystone: commit {'f' * 40} (28.1.0) not found "
                         f"in {self.up.repo.path}; the lock is stale or names the wrong "
                         "repository; resolve the refs again")

    def test_unreachable_repository(self) -> None:
        missing = str(self.root / "nowhere")
        error = self.failure(repo=missing)
        self.assertIsInstance(error, ToolError)
        self.assertTrue(str(error).startswith(
            f"component keystone: cannot read repository {missing}: '{missing}' does not "
            "appear to be a git repository; "), str(error))

    def host_untouched(self) -> None:
        """The host folder and file the hostile trees point at are as they were."""
        self.assertEqual(sorted(p.name for p in self.up.host.iterdir()), ["passwd"])
        self.assertEqual(self.up.host.stat().st_mode & 0o777, 0o700)
        st = self.up.passwd.stat()
        self.assertEqual((self.up.passwd.read_text(), st.st_mode & 0o777, st.st_mtime),
                         ("root:x:0:0\n", 0o600, 1000000000))

    def test_upstream_tree_with_airlock_is_refused_and_nothing_written_there(self) -> None:
        error = self.failure(sha=self.up.evil_own, ref="1.0.0", repo=str(self.up.evil.path))
        self.assertEqual(str(error), f"component keystone: the upstream tree at "
                         f"{self.up.evil_own} puts a symbolic link at .airlock, the name "
                         "airlock keeps for its own record; remove it upstream, or lock "
                         "another commit")
        self.host_untouched()

    def test_patch_that_links_airlock_out_of_the_tree_is_refused(self) -> None:
        bad = self.add_patch("0001-link.patch", self.up.link_own)
        self.assertEqual(str(self.failure()),
                         f"{bad}: the patch touches '.airlock': .airlock is the name airlock "
                         "keeps for its own record; drop that part of the patch")
        self.host_untouched()

    def test_patch_that_links_the_record_to_a_host_file_is_refused(self) -> None:
        self.add_patch("0001-patch-once.patch", self.up.p1)
        bad = self.add_patch("0002-link-record.patch", self.up.link_record)
        self.assertEqual(str(self.failure()),
                         f"{bad}: the patch touches '.airlock/source.json': .airlock is the "
                         "name airlock keeps for its own record; drop that part of the patch")
        self.host_untouched()

    def test_links_in_the_tree_are_kept_as_links_and_never_followed(self) -> None:
        record = self.prepare(sha=self.up.evil_links, ref="2.0.0", repo=str(self.up.evil.path))
        self.assertEqual(record["version"], "2.0.0")
        self.assertEqual(os.readlink(self.dest / "keystone" / "passwd"), str(self.up.passwd))
        self.assertEqual(os.readlink(self.dest / "keystone" / "etc"), str(self.up.host))
        commit_time = EPOCH + 2 * 60
        for link in ("passwd", "etc"):
            self.assertEqual((self.dest / "keystone" / link).lstat().st_mtime, commit_time)
        self.host_untouched()

    def test_a_tree_or_record_that_is_a_link_is_neither_current_nor_read(self) -> None:
        self.prepare()
        entry = self.lock(self.up.c1)["components"]["keystone"]
        self.assertTrue(sources.is_current(self.dest, entry, []))
        self.assertEqual(sources.read_record(self.dest)["sha"], self.up.c1)
        link = self.out / "link"
        link.symlink_to(self.dest)
        self.assertFalse(sources.is_current(link, entry, []))
        with self.assertRaises(AirlockError) as caught:
            sources.read_record(link)
        self.assertEqual(str(caught.exception), f"{link / '.airlock/source.json'}: missing or "
                         "unreadable; prepare the tree again with 'airlock sources prepare'")
        record = self.dest / ".airlock" / "source.json"
        elsewhere = self.root / "record.json"
        os.replace(record, elsewhere)
        record.symlink_to(elsewhere)
        self.assertFalse(sources.is_current(self.dest, entry, []))

    def test_lock_for_another_release_or_without_the_component(self) -> None:
        lock = self.lock(self.up.c1)
        with self.assertRaises(AirlockError) as caught:
            sources.prepare(self.release, "keystone", {**lock, "release": "2025.1"},
                            self.patches, self.dest)
        self.assertIn("is for release 2025.1, not 2025.2", str(caught.exception))
        with self.assertRaises(AirlockError) as caught:
            sources.prepare(self.release, "nova", lock, self.patches, self.dest)
        self.assertIn("has no component nova (it has: keystone)", str(caught.exception))
        self.assertFalse(self.out.exists())


class VersionRuleTest(unittest.TestCase):
    """The pbr version rule, as plain functions."""

    def test_dev_version(self) -> None:
        cases = [
            (("28.1.0", 3, ""), "28.1.1.dev3"),
            (("28.0.0.0rc1", 2, ""), "28.0.0.0rc2.dev2"),
            (("28.0.0.0rc1", 2, "x\nSem-Ver: feature\n"), "28.1.0.dev2"),
            (("28.1.0", 1, "Sem-Ver: bugfix, api-break"), "29.0.0.dev1"),
            (("28.1.0", 1, "sem-ver: deprecation"), "28.2.0.dev1"),
            (("2.0", 4, ""), "2.0.1.dev4"),
            ((None, 7, ""), "0.0.1.dev7"),
        ]
        for args, expected in cases:
            with self.subTest(args=args):
                self.assertEqual(sources.dev_version(*args), expected)

    def test_tag_version_prefers_the_locked_tag_then_the_highest(self) -> None:
        self.assertEqual(sources.tag_version("refs/tags/28.0.0.0rc3", ["28.0.0", "28.0.0.0rc3"]),
                         "28.0.0.0rc3")
        self.assertEqual(sources.tag_version("master", ["28.0.0.0rc3", "28.0.0", "eol"]),
                         "28.0.0")
        self.assertIsNone(sources.tag_version("2024.1-eol", ["2024.1-eol"]))

    def test_hunk_header_skips_hunk_bodies(self) -> None:
        patch = ("--- a/x.sql\n+++ b/x.sql\n@@ -1,2 +1,1 @@\n"
                 "--- a/y.py\n keep\n"
                 "@@ -10 +9 @@ tail\n-old\n+new\n"
                 "diff --git a/y.py b/y.py\n--- a/y.py\n+++ b/y.py\n@@ -10,3 +10,3 @@\n")
        self.assertEqual(sources.hunk_header(patch, "x.sql", 10), "@@ -10 +9 @@")
        self.assertEqual(sources.hunk_header(patch, "y.py", 10), "@@ -10,3 +10,3 @@")
        self.assertIsNone(sources.hunk_header(patch, "y.py", 1))


class CliTest(unittest.TestCase):
    """``airlock sources prepare`` with and without --lock."""

    @classmethod
    def setUpClass(cls) -> None:
        cls._tmp = tempfile.TemporaryDirectory(prefix="airlock-test-sources-cli-")
        cls.up = Upstream(Path(cls._tmp.name))

    @classmethod
    def tearDownClass(cls) -> None:
        cls._tmp.cleanup()

    def setUp(self) -> None:
        tmp = tempfile.TemporaryDirectory(prefix="airlock-test-sources-cli-")
        self.addCleanup(tmp.cleanup)
        self.root = Path(tmp.name)
        self.data = write_data_tree(self.root / "data", f'keystone:\n  ref: "28.1.0"\n'
                                    f'  repo: "{self.up.repo.url}"\n')
        patch = self.data / "patches" / "keystone" / "2025.2" / "0001-patch-once.patch"
        patch.parent.mkdir(parents=True)
        patch.write_text(self.up.p1)

    def run_cli(self, *args: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(args))
        return code, out.getvalue(), err.getvalue()

    def test_prepare_resolving_the_ref_now(self) -> None:
        dest = self.root / "src" / "keystone"
        code, out, err = self.run_cli("sources", "prepare", "--release", "2025.2", "--component",
                                      "keystone", "--dest", str(dest), "--root", str(self.data))
        self.assertEqual((code, err), (0, ""))
        self.assertEqual(out, f"keystone: {self.up.c1} exported to {dest} with 1 patch(es)\n")
        self.assertEqual((dest / FOO).read_text(), numbered(30, {5: "patched once"}))

    def test_prepare_from_a_lock_file_and_errors_in_one_line(self) -> None:
        lock = self.root / "refs.lock"
        code, _, err = self.run_cli("refs", "resolve", "--release", "2025.2", "--root",
                                    str(self.data), "-o", str(lock))
        self.assertEqual((code, err), (0, ""))
        dest = self.root / "src" / "keystone"
        args = ["sources", "prepare", "--release", "2025.2", "--component", "keystone",
                "--dest", str(dest), "--root", str(self.data), "--lock", str(lock)]
        code, _, err = self.run_cli(*args)
        self.assertEqual((code, err), (0, ""))
        record = json.loads((dest / ".airlock" / "source.json").read_text())
        self.assertEqual(record["sha"], refs.load_lock(lock)["components"]["keystone"]["sha"])
        code, out, err = self.run_cli(*args)
        self.assertEqual((code, out, err.splitlines()),
                         (1, "", [f"{dest}: exists; remove it or choose another --dest"]))


class TerminateTest(unittest.TestCase):
    """SIGTERM or SIGHUP in the middle of a long patch series leaves nothing behind.

    A real ``python -m airlock.cli sources prepare`` with 2000 patches (each
    adds a file): the signal is sent once the staging tree holds a few of
    them, so it lands mid-series whatever the machine's speed.
    """

    PATCHES = 2000

    def setUp(self) -> None:
        tmp = tempfile.TemporaryDirectory(prefix="airlock-test-sources-term-")
        self.addCleanup(tmp.cleanup)
        self.root = Path(tmp.name)
        repo = GitRepo(self.root / "upstream" / "keystone")
        repo.commit({"setup.py": "# pbr\n"}, "base")
        repo.tag("28.1.0")
        self.data = write_data_tree(self.root / "data", f'keystone:\n  ref: "28.1.0"\n'
                                    f'  repo: "{repo.url}"\n')
        folder = self.data / "patches" / "keystone" / "2025.2"
        folder.mkdir(parents=True)
        for n in range(self.PATCHES):
            (folder / f"{n:04d}-add.patch").write_text(
                f"diff --git a/extra/f{n:04d} b/extra/f{n:04d}\nnew file mode 100644\n"
                f"--- /dev/null\n+++ b/extra/f{n:04d}\n@@ -0,0 +1 @@\n+{n}\n")
        self.out = self.root / "out"
        self.out.mkdir()

    def interrupt(self, signum: int) -> tuple[int, str]:
        dest = self.out / "keystone"
        proc = subprocess.Popen(
            [sys.executable, "-m", "airlock.cli", "sources", "prepare", "--release", "2025.2",
             "--component", "keystone", "--dest", str(dest), "--root", str(self.data)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and proc.poll() is None:
                if len(list(self.out.glob(".keystone.airlock-*/tree/extra/*"))) >= 20:
                    break
                time.sleep(0.02)
            self.assertIsNone(proc.poll(), "the run ended before it could be interrupted")
            self.assertTrue(list(self.out.glob(".keystone.airlock-*")), "no staging folder")
            proc.send_signal(signum)
            _, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        return proc.returncode, err

    def test_sigterm_and_sighup_clean_up_the_staging_folder(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGHUP):
            with self.subTest(signal=signal.Signals(signum).name):
                code, err = self.interrupt(signum)
                self.assertEqual((code, err), (143, "airlock: terminated\n"))
                self.assertEqual(os.listdir(self.out), [], "staging or destination left")

    def test_sigint_cleans_up_too(self) -> None:
        code, err = self.interrupt(signal.SIGINT)
        self.assertEqual((code, err), (130, "airlock: interrupted\n"))
        self.assertEqual(os.listdir(self.out), [])


if __name__ == "__main__":
    unittest.main()
