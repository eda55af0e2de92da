"""bundle import's decisions: skip, upload or conflict; the git mirror's ref rules; the record.

The git tests use real repositories and real git bundles; the raw store
tests a real HTTP server (davserver) over a folder.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import shutil
import tempfile
import unittest
from pathlib import Path

from airlock.bundle import gather, layout
from airlock.errors import AirlockError, ToolError
from airlock.ext import git, pypi
from airlock.site import importer, stores
from airlock.site.config import Store
from airlock.tests.unit.davserver import DavServer
from airlock.tests.unit.gitrepo import GitRepo

SHA_A = "a" * 64
SHA_B = "b" * 64


class DecideTest(unittest.TestCase):
    def test_absent_is_uploaded_same_is_skipped_other_is_a_conflict(self) -> None:
        self.assertEqual(stores.decide(SHA_A, None), stores.UPLOAD)
        self.assertEqual(stores.decide(SHA_A, SHA_A.upper()), stores.SKIP)
        self.assertEqual(stores.decide(SHA_A, SHA_B), stores.CONFLICT)

    def test_a_file_listed_without_a_hash_is_never_taken_for_a_match(self) -> None:
        self.assertEqual(stores.decide(SHA_A, ""), stores.CONFLICT)

    def test_the_conflict_line_names_the_file_and_says_nothing_was_overwritten(self) -> None:
        line = str(stores.conflict("pypi", "six-1.16.0-py2.py3-none-any.whl", SHA_B))
        self.assertIn("six-1.16.0-py2.py3-none-any.whl", line)
        self.assertIn("not overwritten", line)
        self.assertNotIn("\n", line)


class PageHashesTest(unittest.TestCase):
    def test_html_fragments_give_the_sha256(self) -> None:
        body = (b'<html><body><a href="/packages/six-1.16.0-py2.py3-none-any.whl#sha256='
                + SHA_A.encode() + b'">six</a><a href="six-1.15.0.tar.gz">old</a></body></html>')
        self.assertEqual(pypi.page_hashes(body, "text/html"),
                         {"six-1.16.0-py2.py3-none-any.whl": SHA_A, "six-1.15.0.tar.gz": None})

    def test_json_hashes_give_the_sha256(self) -> None:
        body = json.dumps({"meta": {"api-version": "1.0"}, "name": "six", "files": [
            {"filename": "six-1.16.0-py2.py3-none-any.whl", "url": "x",
             "hashes": {"sha256": SHA_B}},
            {"filename": "six-1.15.0.tar.gz", "url": "y", "hashes": {}}]}).encode()
        self.assertEqual(pypi.page_hashes(body, "application/vnd.pypi.simple.v1+json"),
                         {"six-1.16.0-py2.py3-none-any.whl": SHA_B, "six-1.15.0.tar.gz": None})

    def test_a_page_that_is_not_an_index_page_is_one_error(self) -> None:
        with self.assertRaises(AirlockError):
            pypi.page_hashes(b"{}", "application/vnd.pypi.simple.v1+json")


class ImagesNamesTest(unittest.TestCase):
    def test_repository_and_immutable_tag(self) -> None:
        digest = "sha256:" + "0123456789ab" + "c" * 52
        self.assertEqual(stores.image_repo("127.0.0.1:5001/airlock",
                                           "images/debian-0123456789abcccc.oci.tar"),
                         "127.0.0.1:5001/airlock/debian")
        self.assertEqual(stores.image_tag("bookworm", digest), "bookworm")
        self.assertIsNone(stores.image_tag(None, digest))

    def test_import_tags_the_image_where_build_site_reads_it(self) -> None:
        ref = "site.invalid/library/debian:bookworm"
        digest = "sha256:" + "0123456789ab" + "c" * 52
        prefix = "127.0.0.1:5001/airlock"
        imported = (f"{stores.image_repo(prefix, layout.image('debian', digest))}:"
                    f"{stores.image_tag(gather.origin_tag(ref), digest)}")
        self.assertEqual(imported, f"{prefix}/{ref.rsplit('/', 1)[-1]}")  # access.base_image_ref

    def test_origin_tag_of_the_release_reference(self) -> None:
        self.assertEqual(gather.origin_tag("site.invalid/library/debian:bookworm"), "bookworm")
        self.assertEqual(gather.origin_tag("127.0.0.1:5000/debian:trixie-slim@sha256:"
                                           + "1" * 64), "trixie-slim")
        self.assertIsNone(gather.origin_tag("127.0.0.1:5000/debian@sha256:" + "1" * 64))


class ManifestPartsTest(unittest.TestCase):
    def manifest(self) -> dict:
        def art(path: str, kind: str, bundle: str = "full-1") -> dict:
            return {"path": path, "kind": kind, "sha256": SHA_A, "size": 1, "bundle": bundle}

        return {"id": "full-1", "version": "1", "requires": [], "artifacts": [
            art("debs/debian-bookworm/amd64/Packages", "apt-index"),
            art("debs/debian-bookworm/amd64/zlib1g_1.2_amd64.deb", "deb"),
            art("debs/debian-bookworm/amd64/libc6_2.36_amd64.deb", "deb"),
            art("python/wheels/six-1.16.0-py2.py3-none-any.whl", "wheel"),
            art("python/airlock/airlock-0.1.0-py3-none-any.whl", "airlock"),
            art("python/requirements/2025.2/keystone/install.txt", "requirements"),
            art("images/debian-0123456789abcdef.oci.tar", "image"),
            art("sources/git/keystone-0123456789ab.bundle", "git"),
            art("sources/git/nova-0123456789ab.bundle", "git", bundle="older-0"),
            art(layout.airlock_git_bundle("c" * 40), "git")],
            "airlock": {"version": "0.1.0", "commit": "c" * 40,
                        "bundle": layout.airlock_git_bundle("c" * 40), "uncommitted": True,
                        "heads": {f"refs/airlock/snapshots/{'c' * 40}": "c" * 40}},
            "releases": {"2025.2": {
                "base_image": {"ref": "site.invalid/library/debian", "tag": "bookworm",
                               "digest": "sha256:0123456789abcdef" + "0" * 48,
                               "path": "images/debian-0123456789abcdef.oci.tar"},
                "components": {
                    "keystone": {"repo": "https://opendev.org/openstack/keystone.git",
                                 "bundle": "sources/git/keystone-0123456789ab.bundle",
                                 "heads": {"refs/tags/28.0.0": "1" * 40,
                                           "refs/heads/stable/2025.2": "1" * 40}},
                    "nova": {"repo": "https://opendev.org/openstack/nova",
                             "bundle": "sources/git/nova-0123456789ab.bundle",
                             "heads": {"refs/tags/32.0.0": "2" * 40}}}}}}

    def test_apt_repository_index_comes_after_every_deb(self) -> None:
        repos = importer.apt_repos(self.manifest())
        self.assertEqual([a["path"].rsplit("/", 1)[1] for a in
                          repos["debs/debian-bookworm/amd64"]],
                         ["libc6_2.36_amd64.deb", "zlib1g_1.2_amd64.deb", "Packages"])

    def test_wheels_of_both_pools_and_nothing_else(self) -> None:
        self.assertEqual([a["path"] for a in importer.wheels(self.manifest())],
                         ["python/airlock/airlock-0.1.0-py3-none-any.whl",
                          "python/wheels/six-1.16.0-py2.py3-none-any.whl"])

    def test_only_what_arrives_in_this_bundle(self) -> None:
        bundles = importer.git_bundles(self.manifest())
        self.assertEqual([(b["repository"], b["branch"]) for b in bundles],
                         [("openstack/keystone", "stable/2025.2"), ("airlock", None)])
        self.assertEqual(bundles[1]["heads"], {f"refs/airlock/snapshots/{'c' * 40}": "c" * 40})
        # A delta on the same airlock commit does not carry it: nothing to push.
        delta = self.manifest()
        delta["artifacts"][-1]["bundle"] = "older-0"
        self.assertEqual([b["repository"] for b in importer.git_bundles(delta)],
                         ["openstack/keystone"])
        self.assertEqual(importer.images(self.manifest()),
                         [{"path": "images/debian-0123456789abcdef.oci.tar",
                           "digest": "sha256:0123456789abcdef" + "0" * 48, "tag": "bookworm"}])

    def test_record_says_what_went_where_and_holds_no_credential(self) -> None:
        reports = {name: importer.StoreReport() for name in importer.STORE_ORDER}
        reports["pypi"].where = {"index": "http://127.0.0.1:8080/simple/", "files": ["x.whl"]}
        record = importer.make_record({**self.manifest(), "requires": ["older-0"]}, SHA_B,
                                      reports, now=datetime.datetime(2026, 1, 2, 3, 4, 5))
        self.assertEqual((record["bundle"], record["version"], record["manifest_sha256"],
                          record["requires"], record["imported_at"]),
                         ("full-1", "1", SHA_B, ["older-0"], "2026-01-02T03:04:05Z"))
        self.assertEqual(record["stores"]["pypi"]["files"], ["x.whl"])
        self.assertEqual(sorted(record["stores"]), sorted(importer.STORE_ORDER))


class MergePackagesTest(unittest.TestCase):
    def test_a_delta_keeps_the_earlier_debs_advertised(self) -> None:
        old = b"Package: a\nFilename: ./a.deb\n\nPackage: b\nFilename: ./b.deb\n"
        new = b"Package: b\nFilename: ./b.deb\n\nPackage: c\nFilename: ./c.deb\n"
        merged = stores.merge_packages(old, new).decode()
        self.assertEqual([line for line in merged.splitlines() if line.startswith("Filename")],
                         ["Filename: ./a.deb", "Filename: ./b.deb", "Filename: ./c.deb"])
        self.assertEqual(stores.merge_packages(new, old), stores.merge_packages(old, new))


class RawStoreTest(unittest.TestCase):
    def setUp(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="airlock-raw-"))
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.server = DavServer(self.tmp / "root", {"importer": "s3cret:pw"})
        self.server.start()
        self.addCleanup(self.server.stop)

    def store(self, password: str) -> stores.RawStore:
        cred = self.tmp / "cred"
        cred.write_text(f"importer:{password}\n")
        return stores.RawStore(Store("raw", {"url": self.server.url("airlock/")},
                                     credentials_file=cred, where="site.yaml:3"))

    def test_absent_then_same_sha_then_other_size(self) -> None:
        raw = self.store("s3cret:pw")
        source = self.tmp / "a.deb"
        source.write_bytes(b"deb bytes")
        self.assertIsNone(raw.remote_sha256("debs/d/amd64/a.deb", 9))
        raw.put("debs/d/amd64/a.deb", source)
        self.assertEqual(raw.remote_sha256("debs/d/amd64/a.deb", 9),
                         hashlib.sha256(b"deb bytes").hexdigest())
        self.assertEqual(raw.remote_sha256("debs/d/amd64/a.deb", 10), "")
        self.assertEqual((self.tmp / "root/airlock/debs/d/amd64/a.deb").read_bytes(),
                         b"deb bytes")

    def test_wrong_password_is_one_line_without_it(self) -> None:
        raw = self.store("wrong-Pa55word")
        with self.assertRaises(ToolError) as caught:
            raw.get("airlock/imports/x.json")
        self.assertIn("credentials", str(caught.exception))
        self.assertNotIn("wrong-Pa55word", str(caught.exception))
        self.assertNotIn("\n", str(caught.exception))

    def test_delta_without_its_base_record_is_refused_naming_it(self) -> None:
        raw = self.store("s3cret:pw")
        raw.put(importer.record_path("base-1"), b"{}")
        importer.check_requires(raw, ["base-1"])
        with self.assertRaises(AirlockError) as caught:
            importer.check_requires(raw, ["base-1", "base-2", "base-3"])
        self.assertIn("base-2, base-3", str(caught.exception))
        self.assertNotIn("base-1,", str(caught.exception))


class PypiIndexTest(unittest.TestCase):
    """The index's answer about a wheel: a static PEP 503 index behind Basic auth."""

    def setUp(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="airlock-pypi-"))
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.server = DavServer(self.tmp / "root", {"importer": "pw-Secret"})
        self.server.start()
        self.addCleanup(self.server.stop)
        page = self.tmp / "root/simple/six"
        page.mkdir(parents=True)
        (self.tmp / "root/packages").mkdir()
        (self.tmp / "root/packages/six-1.16.0-py2.py3-none-any.whl").write_bytes(b"wheel")
        (page / "index.html").write_text(
            '<a href="../../packages/six-1.16.0-py2.py3-none-any.whl#md5=00">six</a>\n'
            f'<a href="../../packages/six-1.17.0-py2.py3-none-any.whl#sha256={SHA_A}">six</a>')

    def store(self, password: str) -> stores.PypiStore:
        cred = self.tmp / "cred"
        cred.write_text(f"importer:{password}\n")
        return stores.PypiStore(Store("pypi", {"upload": self.server.url(),
                                               "simple": self.server.url("simple/")},
                                      credentials_file=cred))

    def test_the_index_hash_else_the_file_read_else_absent(self) -> None:
        pypi_store = self.store("pw-Secret")
        self.assertEqual(pypi_store.remote_sha256("six-1.17.0-py2.py3-none-any.whl"), SHA_A)
        self.assertEqual(pypi_store.remote_sha256("six-1.16.0-py2.py3-none-any.whl"),
                         hashlib.sha256(b"wheel").hexdigest())
        self.assertIsNone(pypi_store.remote_sha256("six-1.15.0-py2.py3-none-any.whl"))
        self.assertIsNone(pypi_store.remote_sha256("other-1.0-py3-none-any.whl"))

    def test_a_refused_password_is_one_line_without_it(self) -> None:
        with self.assertRaises(ToolError) as caught:
            self.store("n0t-the-Pw").remote_sha256("six-1.17.0-py2.py3-none-any.whl")
        self.assertIn("401", str(caught.exception))
        self.assertNotIn("n0t-the-Pw", str(caught.exception))


class GitMirrorTest(unittest.TestCase):
    """Real repositories: the upstream, its git bundle, and the mirror's bare repository."""

    def setUp(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="airlock-gitmirror-"))
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.up = GitRepo(self.tmp / "keystone")
        self.c1 = self.up.commit({"a": "1"})
        self.up.git("tag", "-a", "-m", "28.0.0", "28.0.0")
        self.mirror = stores.GitStore(Store("git", {"base": "git://127.0.0.1:9418",
                                                    "push": str(self.tmp / "mirror")}))

    def bundle(self, name: str, refs: list[str]) -> tuple[Path, dict[str, str]]:
        out = self.tmp / f"{name}.bundle"
        git.bundle_create(self.up.path / ".git", out, refs)
        return out, git.bundle_heads(out)

    def mirror_refs(self) -> dict[str, str]:
        return git.remote_refs(str(self.tmp / "mirror/openstack/keystone"))

    def test_new_repository_gets_exactly_the_bundle_heads_and_a_rerun_changes_nothing(self):
        self.up.git("branch", "stable/2025.2")
        path, heads = self.bundle("one", ["refs/tags/28.0.0", "refs/heads/stable/2025.2"])
        plan = self.mirror.load(path, "openstack/keystone", heads, "stable/2025.2")
        self.assertEqual(set(plan.set), {"refs/tags/28.0.0", "refs/heads/stable/2025.2"})
        self.assertEqual(self.mirror_refs(), heads)
        again = self.mirror.load(path, "openstack/keystone", heads, "stable/2025.2")
        self.assertEqual((again.set, sorted(again.same)), ({}, sorted(heads)))

    def test_branch_moves_forward_others_untouched_tags_never_move(self) -> None:
        self.up.git("branch", "stable/2025.2")
        path, heads = self.bundle("one", ["refs/tags/28.0.0", "refs/heads/stable/2025.2"])
        self.mirror.load(path, "openstack/keystone", heads, "stable/2025.2")
        mirror_repo = self.tmp / "mirror/openstack/keystone"
        git.set_ref(mirror_repo, "refs/heads/local-only", self.c1)
        c2 = self.up.commit({"a": "2"})
        self.up.git("branch", "-f", "stable/2025.2", c2)
        self.up.git("tag", "28.0.1")
        path2, heads2 = self.bundle("two", ["refs/tags/28.0.1", "refs/heads/stable/2025.2"])
        plan = self.mirror.load(path2, "openstack/keystone", heads2, "stable/2025.2")
        self.assertEqual(plan.refused, [])
        refs = self.mirror_refs()
        self.assertEqual(refs["refs/heads/stable/2025.2"], c2)
        self.assertEqual(refs["refs/heads/local-only"], self.c1)
        self.assertEqual(refs["refs/tags/28.0.0"], heads["refs/tags/28.0.0"])
        # A rewritten tag and a branch moved back: refused, nothing pushed.
        self.up.git("tag", "-f", "28.0.1", self.c1)
        self.up.git("branch", "-f", "stable/2025.2", self.c1)
        path3, heads3 = self.bundle("three", ["refs/tags/28.0.1", "refs/heads/stable/2025.2"])
        plan = self.mirror.load(path3, "openstack/keystone", heads3, "stable/2025.2")
        self.assertEqual(len(plan.refused), 2, plan.refused)
        self.assertTrue(any("tags never move" in line for line in plan.refused))
        self.assertTrue(any("does not descend" in line for line in plan.refused))
        self.assertEqual(self.mirror_refs(), refs)

    def test_airlock_goes_to_its_own_repository_and_the_report_lists_it(self) -> None:
        """airlock's repository beside openstack/, read at ``<git base>/airlock``."""
        _bundle, info = gather.airlock_repository(self.up.path, self.tmp / "cache")
        folder = self.tmp / "bundle"
        (folder / "sources/git").mkdir(parents=True)
        shutil.copy(_bundle, folder / info["bundle"])
        doc = {"id": "b-1", "artifacts": [{"path": info["bundle"], "kind": "git",
                                           "bundle": "b-1"}],
               "releases": {}, "airlock": {"version": "0.1.0", **info}}
        report = importer.StoreReport()
        importer._git(folder, doc, self.mirror, report, lambda line: None)
        self.assertEqual(git.remote_refs(str(self.tmp / "mirror/airlock")), info["heads"])
        self.assertFalse((self.tmp / "mirror/openstack").exists())
        self.assertEqual(report.where["repositories"],
                         {"airlock": {"url": "git://127.0.0.1:9418/airlock",
                                      "refs": info["heads"]}})
        self.assertEqual(report.uploaded, [f"airlock {ref}" for ref in sorted(info["heads"])])
        # A clone of the mirror checks out that commit, with the data a build reads.
        clone = self.tmp / "clone"
        git.run(["clone", "--quiet", str(self.tmp / "mirror/airlock"), str(clone)])
        self.assertEqual(git.run(["-C", str(clone), "rev-parse", "HEAD"]).stdout.strip(),
                         info["commit"])
        self.assertEqual((clone / "a").read_text(), "1")
        again = importer.StoreReport()
        importer._git(folder, doc, self.mirror, again, lambda line: None)
        self.assertEqual((again.uploaded, len(again.skipped)), ([], len(info["heads"])))

    def test_a_repository_path_out_of_the_mirror_is_refused(self) -> None:
        for bad in ("../keystone", "openstack/..", "/etc/x", "openstack//x", ""):
            with self.subTest(bad=bad), self.assertRaises(AirlockError):
                self.mirror.target(bad)
        self.assertEqual(self.mirror.target("openstack/keystone"),
                         f"{self.tmp / 'mirror'}/openstack/keystone")

    def test_plan_refs_rules(self) -> None:
        current = {"refs/tags/t": "1" * 40, "refs/heads/b": "2" * 40, "refs/heads/x": "9" * 40}
        wanted = {"refs/tags/t": "1" * 40, "refs/heads/b": "3" * 40, "refs/tags/new": "4" * 40}
        plan = stores.plan_refs(current, wanted, lambda old, new: (old, new) == ("2" * 40,
                                                                                  "3" * 40))
        self.assertEqual(plan.set, {"refs/heads/b": "3" * 40, "refs/tags/new": "4" * 40})
        self.assertEqual((plan.same, plan.refused), (["refs/tags/t"], []))
        plan = stores.plan_refs(current, {"refs/tags/t": "5" * 40}, lambda o, n: True)
        self.assertEqual(len(plan.refused), 1)


class CommandTest(unittest.TestCase):
    """The verb: what it refuses before touching a store."""

    def setUp(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="airlock-importcli-"))
        self.addCleanup(shutil.rmtree, self.tmp, True)
        (self.tmp / "cred").write_text("u:p\n")
        self.site = self.tmp / "site.yaml"
        self.site.write_text(
            "pypi:\n  upload: http://127.0.0.1:9/\n  simple: http://127.0.0.1:9/simple/\n"
            "  credentials_file: cred\nraw:\n  url: http://127.0.0.1:9/raw/\n"
            "  credentials_file: cred\nregistry:\n  prefix: 127.0.0.1:9/airlock\n"
            "  credentials_file: cred\ngit:\n  base: git://127.0.0.1:9\n  push: git\n")

    def run_cli(self, *args: str) -> tuple[int, str]:
        import contextlib
        import io

        from airlock import cli

        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = cli.main(["bundle", "import", *args, "--site", str(self.site),
                             "--allowed-signers", str(self.tmp / "signers"),
                             "--work-dir", str(self.tmp / "work")])
        return code, err.getvalue()

    def test_a_tar_is_refused_with_how_to_extract_it(self) -> None:
        (self.tmp / "b.tar").write_bytes(b"")
        code, said = self.run_cli(str(self.tmp / "b.tar"))
        self.assertEqual(code, 1)
        self.assertIn("--extract", said)
        self.assertEqual(len(said.strip().splitlines()), 1)

    def test_an_unsigned_bundle_is_refused_before_any_store(self) -> None:
        from airlock.tests.unit import bundlefixture

        folder = bundlefixture.make_bundle(self.tmp / "bundle")
        code, said = self.run_cli(str(folder))
        self.assertEqual(code, 1)
        self.assertIn("unsigned", said)
        self.assertFalse((self.tmp / "git").exists())


if __name__ == "__main__":
    unittest.main()


class ReportTest(unittest.TestCase):
    """The report says per store what went there and how long the store took."""

    def test_table_and_json_carry_each_stores_seconds(self) -> None:
        reports = {name: importer.StoreReport() for name in importer.STORE_ORDER}
        reports["pypi"].uploaded = ["a.whl", "b.whl"]
        reports["pypi"].seconds = 12.345
        reports["git"].skipped = ["openstack/keystone refs/tags/28.1.0"]
        report = importer.Report("airlock-1", "v1", reports)
        lines = report.table().splitlines()
        self.assertEqual(lines[0].split(), ["store", "uploaded", "skipped", "failed", "seconds"])
        self.assertEqual(lines[1].split(), ["pypi", "2", "0", "0", "12.3"])
        self.assertEqual(lines[4].split(), ["git", "0", "1", "0", "0.0"])
        doc = report.as_json()
        self.assertEqual(doc["stores"]["pypi"]["seconds"], 12.35)
        self.assertTrue(doc["ok"])
