"""refs: resolve source refs against real repositories, dump and load the lock."""

from __future__ import annotations

import contextlib
import io
import re
import tempfile
import unittest
from pathlib import Path

import yaml

from airlock.cli import main
from airlock.data import refs
from airlock.errors import AirlockError, ErrorList, ToolError
from airlock.tests.unit.gitrepo import GitRepo, make_release, write_data_tree

SHA = re.compile(r"[0-9a-f]{40}")


class ResolveTest(unittest.TestCase):
    """One shared upstream-like repository, read only.

    History of ``git/openstack/keystone`` (master)::

        c1 (annotated tag 1.0.0, tag "both")  c2 (lightweight 1.0.1, branch stable/x)
        c3 (branch "both")                    c4 (master)
    """

    @classmethod
    def setUpClass(cls) -> None:
        cls._tmp = tempfile.TemporaryDirectory(prefix="airlock-test-refs-")
        cls.root = Path(cls._tmp.name)
        cls.git_base = str(cls.root / "git")
        repo = cls.repo = GitRepo(cls.root / "git" / "openstack" / "keystone")
        cls.c1 = repo.commit({"a": "1\n"}, "one")
        cls.tag_object = repo.tag("1.0.0")
        repo.tag("both")
        cls.c2 = repo.commit({"a": "2\n"}, "two")
        repo.tag("1.0.1", annotated=False)
        repo.branch("stable/x")
        cls.c3 = repo.commit({"a": "3\n"}, "three")
        repo.branch("both")
        cls.c4 = repo.commit({"a": "4\n"}, "four")
        cls.source_refs = cls.root / "releases" / "2025.2" / "source-refs.yaml"

    @classmethod
    def tearDownClass(cls) -> None:
        cls._tmp.cleanup()

    def resolve(self, ref: str, repo: str | None = None, git_base: str | None = None) -> dict:
        release = make_release(self.root, {"keystone": (ref, repo)})
        lock = refs.resolve_release(release, git_base or self.git_base)
        self.assertEqual(lock["release"], "2025.2")
        return lock["components"]["keystone"]

    def error(self, ref: str, repo: str | None = None, git_base: str | None = None,
              ) -> AirlockError:
        with self.assertRaises(AirlockError) as caught:
            self.resolve(ref, repo, git_base)
        return caught.exception

    def test_annotated_tag_locks_the_commit_not_the_tag_object(self) -> None:
        entry = self.resolve("1.0.0")
        self.assertEqual(entry["sha"], self.c1)
        self.assertNotEqual(entry["sha"], self.tag_object)
        self.assertEqual(entry["ref"], "1.0.0")
        self.assertEqual(entry["repo"], f"{self.git_base}/openstack/keystone")
        self.assertRegex(entry["resolved-at"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")

    def test_lightweight_tag(self) -> None:
        self.assertEqual(self.resolve("1.0.1")["sha"], self.c2)

    def test_branches(self) -> None:
        self.assertEqual(self.resolve("stable/x")["sha"], self.c2)
        self.assertEqual(self.resolve("master")["sha"], self.c4)

    def test_full_sha_that_is_no_ref_tip(self) -> None:
        self.assertEqual(self.resolve(self.c3)["sha"], self.c3)
        self.assertEqual(self.resolve(self.c3.upper())["sha"], self.c3)

    def test_full_sha_missing_from_the_repository(self) -> None:
        repo = f"{self.git_base}/openstack/keystone"
        self.assertEqual(str(self.error("0" * 40)),
                         f"{self.source_refs}:keystone: commit {'0' * 40} not found in {repo}; "
                         "check the SHA, or update the mirror that serves this repository")

    def test_full_ref_names_choose_between_tag_and_branch(self) -> None:
        self.assertEqual(self.resolve("refs/tags/both")["sha"], self.c1)
        self.assertEqual(self.resolve("refs/heads/both")["sha"], self.c3)
        self.assertEqual(self.resolve("refs/tags/1.0.0")["sha"], self.c1)

    def test_short_name_that_is_branch_and_tag_is_ambiguous(self) -> None:
        repo = f"{self.git_base}/openstack/keystone"
        self.assertEqual(str(self.error("both")),
                         f'{self.source_refs}:keystone: ref "both" is both a branch and a tag '
                         f"in {repo}; write refs/tags/both or refs/heads/both")

    def test_unknown_ref(self) -> None:
        repo = f"{self.git_base}/openstack/keystone"
        self.assertEqual(str(self.error("9.9.9")),
                         f'{self.source_refs}:keystone: ref "9.9.9" not found in {repo}; '
                         "write an existing tag, branch or full SHA "
                         f"(git ls-remote {repo} lists them)")
        self.assertIn("write the full 40-character SHA", str(self.error(self.c1[:12])))
        self.assertIn('ref "refs/tags/nope" not found', str(self.error("refs/tags/nope")))

    def test_unreachable_repository_via_git_base(self) -> None:
        base = str(self.root / "no-such-mirror")
        error = self.error("1.0.0", git_base=base)
        self.assertIsInstance(error, ToolError)
        self.assertEqual(error.exit_code, 2)
        self.assertEqual(str(error),
                         f"{self.source_refs}:keystone: cannot read repository "
                         f"{base}/openstack/keystone: '{base}/openstack/keystone' does not "
                         "appear to be a git repository; check --git-base / AIRLOCK_GIT_BASE "
                         "(the repository is <git-base>/openstack/keystone) or give the entry "
                         "a repo:")

    def test_unreachable_repository_named_by_the_entry(self) -> None:
        error = self.error("1.0.0", repo=str(self.root / "elsewhere"))
        self.assertTrue(str(error).endswith("; check the entry's repo: in source-refs.yaml"),
                        str(error))

    def test_file_url_and_explicit_repo_win_over_git_base(self) -> None:
        entry = self.resolve("1.0.0", repo=self.repo.url, git_base=str(self.root / "unused"))
        self.assertEqual(entry, {**entry, "sha": self.c1, "repo": self.repo.url})
        self.assertTrue(entry["repo"].startswith("file://"))

    def test_no_git_base_and_no_repo(self) -> None:
        release = make_release(self.root, {"keystone": ("1.0.0", None)})
        with self.assertRaises(AirlockError) as caught:
            refs.resolve_release(release, None)
        self.assertIn("pass --git-base URL or set AIRLOCK_GIT_BASE", str(caught.exception))

    def test_only_selects_components_and_rejects_unknown_names(self) -> None:
        release = make_release(self.root, {"keystone": ("1.0.0", None),
                                           "nova": ("1.0.0", str(self.root / "missing"))})
        lock = refs.resolve_release(release, self.git_base, only=["keystone"])
        self.assertEqual(list(lock["components"]), ["keystone"])
        with self.assertRaises(AirlockError) as caught:
            refs.resolve_release(release, self.git_base, only=["glance"])
        self.assertEqual(str(caught.exception),
                         f"{self.source_refs.parent / 'source-refs.yaml'}: no component glance "
                         "(known: keystone, nova); add it to source-refs.yaml or name a known "
                         "component")

    def test_jobs_must_be_positive(self) -> None:
        release = make_release(self.root, {"keystone": ("1.0.0", None)})
        with self.assertRaises(AirlockError):
            refs.resolve_release(release, self.git_base, jobs=0)


class ParallelTest(unittest.TestCase):
    """Several repositories resolved by several workers, some failing."""

    def setUp(self) -> None:
        tmp = tempfile.TemporaryDirectory(prefix="airlock-test-refs-")
        self.addCleanup(tmp.cleanup)
        self.root = Path(tmp.name)
        self.shas = {}
        for name in ("oslo.config", "oslo.log", "oslo.db", "keystone"):
            repo = GitRepo(self.root / "git" / "openstack" / name)
            self.shas[name] = repo.commit({"setup.py": f"# {name}\n"}, name)
            repo.tag("1.0.0")

    def test_every_failure_is_reported_and_good_ones_do_not_hide_them(self) -> None:
        spec = {name: ("1.0.0", None) for name in self.shas}
        spec["nova"] = ("1.0.0", None)  # no repository
        spec["oslo.log"] = ("2.0.0", None)  # unknown tag
        release = make_release(self.root, spec)
        with self.assertRaises(ErrorList) as caught:
            refs.resolve_release(release, str(self.root / "git"), jobs=4)
        lines = str(caught.exception).splitlines()
        self.assertEqual(len(lines), 2)
        self.assertIn(':oslo.log: ref "2.0.0" not found', lines[0])
        self.assertIn(":nova: cannot read repository", lines[1])

    def test_all_good_gives_every_commit(self) -> None:
        release = make_release(self.root, {name: ("1.0.0", None) for name in self.shas})
        lock = refs.resolve_release(release, str(self.root / "git"), jobs=3)
        self.assertEqual({name: e["sha"] for name, e in lock["components"].items()}, self.shas)


class LockFileTest(unittest.TestCase):
    """dump_lock / load_lock."""

    LOCK = {"release": "2025.2", "components": {
        "nova": {"resolved-at": "2025-01-01T00:00:00Z", "repo": "/git/openstack/nova",
                 "ref": "32.2.1", "sha": "a" * 40},
        "keystone": {"sha": "1" * 40, "ref": "28.1.0", "repo": "file:///git/openstack/keystone",
                     "resolved-at": "2025-01-01T00:00:01Z"},
    }}

    def setUp(self) -> None:
        tmp = tempfile.TemporaryDirectory(prefix="airlock-test-lock-")
        self.addCleanup(tmp.cleanup)
        self.path = Path(tmp.name) / "refs.lock"

    def write(self, text: str) -> Path:
        self.path.write_text(text)
        return self.path

    def test_dump_is_deterministic_and_round_trips(self) -> None:
        text = refs.dump_lock(self.LOCK)
        self.assertTrue(text.startswith("# airlock refs lock: the commit each component of "
                                        "release 2025.2"))
        self.assertEqual(text, refs.dump_lock(yaml.safe_load(text)))
        body = [line for line in text.splitlines() if not line.startswith("#")]
        self.assertEqual(body[:3], ["release: '2025.2'", "components:", "  keystone:"])
        self.assertEqual([line.split(":")[0].strip() for line in body[3:7]],
                         ["sha", "ref", "repo", "resolved-at"])
        self.assertEqual(refs.load_lock(self.write(text)), self.LOCK)

    def test_a_credential_in_a_lock_is_not_carried_on(self) -> None:
        lock = {"release": "2025.2", "components": {"nova": {
            **self.LOCK["components"]["nova"],
            "repo": "https://bot:tok%40en@git.example/openstack/nova"}}}
        loaded = refs.load_lock(self.write(refs.dump_lock(lock)))
        self.assertEqual(loaded["components"]["nova"]["repo"],
                         "https://git.example/openstack/nova")
        self.assertNotIn("tok", refs.dump_lock(loaded))

    def test_a_hostile_repo_or_ref_in_a_lock_never_reaches_git(self) -> None:
        for field, value, expected in (
                ("repo", "--upload-pack=touch /tmp/x", "component nova: repo "
                 "--upload-pack=touch /tmp/x is not a URL or path git can use (starts with "
                 "'-', which git takes for an option)"),
                ("repo", "ext::sh -c touch% /tmp/x", "component nova: repo ext::sh -c touch% "
                 "/tmp/x is not a URL or path git can use (holds whitespace or a control "
                 "character)"),
                ("ref", "$(reboot)", "component nova: ref $(reboot) holds '$', which is shell "
                 "text")):
            with self.subTest(field=field, value=value):
                lock = {"release": "2025.2", "components": {"nova": {
                    **self.LOCK["components"]["nova"], field: value}}}
                with self.assertRaises(AirlockError) as caught:
                    refs.load_lock(self.write(refs.dump_lock(lock)))
                self.assertIn(expected, str(caught.exception))

    def test_missing_file(self) -> None:
        with self.assertRaises(AirlockError) as caught:
            refs.load_lock(self.path)
        self.assertEqual(str(caught.exception),
                         f"{self.path}: no such lock file; write it again with: "
                         "airlock refs resolve --release REL -o FILE")

    def test_bad_yaml(self) -> None:
        with self.assertRaises(AirlockError) as caught:
            refs.load_lock(self.write("release: [\n"))
        self.assertRegex(str(caught.exception), rf"^{re.escape(str(self.path))}:\d+: invalid YAML")

    def test_missing_fields(self) -> None:
        cases = {
            "components: {}\n": f"{self.path}:release: release: missing",
            "release: '2025.2'\ncomponents: []\n": f"{self.path}:2: components: not a dict",
            "release: '2025.2'\ncomponents:\n  nova: {sha: x}\n":
                f"{self.path}:3: component nova: missing or not a string: ref, repo, resolved-at",
            "release: '2025.2'\ncomponents:\n  nova: {sha: x, ref: r, repo: p, resolved-at: t}\n":
                f"{self.path}:3: component nova: sha is not a 40-character hex SHA",
            "- a list\n": f"{self.path}: not a refs lock",
        }
        for text, expected in cases.items():
            with self.subTest(text=text), self.assertRaises(AirlockError) as caught:
                refs.load_lock(self.write(text))
            self.assertTrue(str(caught.exception).startswith(expected), str(caught.exception))
            self.assertEqual(len(str(caught.exception).splitlines()), 1)


class CliTest(unittest.TestCase):
    """``airlock refs resolve`` on a data tree whose entries name temp repositories."""

    def setUp(self) -> None:
        tmp = tempfile.TemporaryDirectory(prefix="airlock-test-cli-")
        self.addCleanup(tmp.cleanup)
        self.root = Path(tmp.name)
        self.repo = GitRepo(self.root / "upstream" / "keystone")
        self.sha = self.repo.commit({"setup.py": "# keystone\n"}, "one")
        self.repo.tag("28.1.0")

    def run_cli(self, *args: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(args))
        return code, out.getvalue(), err.getvalue()

    def test_resolve_writes_the_lock(self) -> None:
        data = write_data_tree(self.root / "data",
                               f'keystone:\n  ref: "28.1.0"\n  repo: "{self.repo.url}"\n')
        lock_path = self.root / "refs.lock"
        code, _, err = self.run_cli("refs", "resolve", "--release", "2025.2",
                                    "--root", str(data), "-o", str(lock_path))
        self.assertEqual((code, err), (0, ""))
        lock = refs.load_lock(lock_path)
        self.assertEqual(lock["components"]["keystone"]["sha"], self.sha)
        self.assertEqual(lock["components"]["keystone"]["repo"], self.repo.url)

    def test_resolve_reports_an_unknown_ref_in_one_line(self) -> None:
        data = write_data_tree(self.root / "data",
                               f'keystone:\n  ref: "9.9.9"\n  repo: "{self.repo.url}"\n')
        code, out, err = self.run_cli("refs", "resolve", "--release", "2025.2",
                                      "--root", str(data))
        self.assertEqual((code, out), (1, ""))
        self.assertEqual(err.splitlines(), [
            f'{data}/releases/2025.2/source-refs.yaml:keystone: ref "9.9.9" not found in '
            f"{self.repo.url}; write an existing tag, branch or full SHA "
            f"(git ls-remote {self.repo.url} lists them)"])

    def test_resolve_uses_the_git_base_option(self) -> None:
        data = write_data_tree(self.root / "data", 'keystone: "28.1.0"\n')
        code, out, err = self.run_cli("refs", "resolve", "--release", "2025.2", "--root",
                                      str(data), "--git-base", (self.root / "upstream").as_uri())
        # upstream/ has no openstack/ level: git cannot read it, exit code 2
        self.assertEqual(code, 2, err)
        self.assertIn(f"cannot read repository {(self.root / 'upstream').as_uri()}/openstack/"
                      "keystone", err)
        (self.root / "mirror" / "openstack").mkdir(parents=True)
        (self.root / "upstream" / "keystone").rename(self.root / "mirror" / "openstack" /
                                                     "keystone")
        code, out, err = self.run_cli("refs", "resolve", "--release", "2025.2", "--root",
                                      str(data), "--git-base", (self.root / "mirror").as_uri())
        self.assertEqual((code, err), (0, ""))
        self.assertIn(self.sha, out)


if __name__ == "__main__":
    unittest.main()
