"""``airlock zuul site``: site.yaml on a Zuul node from the one variable ``airlock_site``.

The real CLI, in-process, with the JSON on stdin as the airlock-site role
passes it; the files it writes are read back by the real site.yaml reader
(``airlock.site.config``), which is what ``build --site`` and ``publish
--site`` then read.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import unittest
from pathlib import Path

from airlock.errors import AirlockError
from airlock.site import access, config
from airlock.tests.unit.treefixture import run_cli
from airlock.zuul import site

STORES = {
    "pypi": {"upload": "https://nexus.site/repository/pypi-airlock/",
             "simple": "https://nexus.site/repository/pypi-airlock/simple"},
    "raw": {"url": "https://nexus.site/repository/raw-airlock/"},
    "registry": {"prefix": "nexus.site:8443/openstack"},
    "git": {"base": "https://gerrit.site", "push": "ssh://airlock@gerrit.site:29418"},
}
FIX = "set it in the site's base job or site variables (README, 'Zuul')"


def without(path: str) -> dict:
    """STORES with one store or key left out."""
    data = json.loads(json.dumps(STORES))
    store, _, key = path.partition(".")
    if key:
        del data[store][key]
    else:
        del data[store]
    return data


class ZuulSiteTest(unittest.TestCase):
    def setUp(self) -> None:
        self.dest = Path(tempfile.mkdtemp(prefix="airlock-zuul-site-"))
        self.addCleanup(shutil.rmtree, self.dest, True)

    def test_both_files_read_back_with_anonymous_reads_and_pushes_from_the_variable(self) -> None:
        code, out, err = run_cli(["zuul", "site", "--dest", str(self.dest)], json.dumps(STORES))
        self.assertEqual((code, err), (0, ""))
        self.assertIn("site.yaml (reads, anonymous)", out)
        read = config.load(self.dest / "site.yaml")
        self.assertEqual(read.registry.urls["prefix"], "nexus.site:8443/openstack")
        self.assertEqual(read.pypi.urls["simple"],
                         "https://nexus.site/repository/pypi-airlock/simple/")
        self.assertEqual(read.git.urls["push"], "ssh://airlock@gerrit.site:29418")
        for store in config.STORES:
            self.assertIsNone(read.stores[store].credentials(), store)
        push = config.load(self.dest / "site-push.yaml")
        self.assertEqual(push.registry.urls, read.registry.urls)
        # The credentials file beside it, which only a pushing playbook writes.
        cred = self.dest.resolve() / site.PUSH_CREDENTIALS
        self.assertEqual(push.registry.credentials_file, cred)
        with self.assertRaises(AirlockError) as caught:
            push.registry.credentials()
        self.assertIn(str(cred), str(caught.exception))
        cred.write_text("robot:s3cret\n")
        self.assertEqual(push.registry.credentials(), ("robot", "s3cret"))
        cred.unlink()
        # Neither file holds anything but URLs and the credentials file's name.
        for name in ("site.yaml", "site-push.yaml"):
            self.assertNotIn("s3cret", (self.dest / name).read_text())

    def test_the_anonymous_registry_gets_an_empty_auth_file(self) -> None:
        site.write(STORES, self.dest)
        read = config.load(self.dest / "site.yaml")
        with access.registry_auth(read):
            auth = json.loads(Path(os.environ["AIRLOCK_REGISTRY_AUTH_FILE"]).read_text())
        self.assertEqual(auth, {"auths": {}})

    def test_a_missing_store_or_key_is_one_line_naming_the_zuul_variable(self) -> None:
        cases = [
            ("{}", f"airlock_site: is not set; {FIX}"),
            ("null", f"airlock_site: is not set; {FIX}"),
            (json.dumps(without("registry")), f"airlock_site.registry: is not set; {FIX}"),
            (json.dumps(without("registry.prefix")),
             f"airlock_site.registry.prefix: is not set; {FIX}"),
            (json.dumps(without("git.push")), f"airlock_site.git.push: is not set; {FIX}"),
            (json.dumps({**STORES, "raw": {"url": "  "}}),
             f"airlock_site.raw.url: is not set; {FIX}"),
            (json.dumps({**STORES, "raw": {"url": 8081}}),
             f"airlock_site.raw.url: is int, not a string; {FIX}"),
            (json.dumps({**STORES, "raw": "http://x/"}),
             f"airlock_site.raw: is a string, not a mapping of url; {FIX}"),
            ('"nexus"', "airlock_site: is a string, not a mapping of the stores "
             f"(pypi, raw, registry, git); {FIX}"),
            ("{not json", None),
            # Nested past Python's recursion limit: was an internal error (exit 3).
            ("[" * 5000, "airlock_site: not JSON (nested too deeply); "
             "pass the variable as {{ airlock_site | to_json }}"),
        ]
        for text, line in cases:
            with self.subTest(text=text[:40]):
                code, out, err = run_cli(["zuul", "site", "--dest", str(self.dest)], text)
                self.assertEqual((code, out), (1, ""))
                self.assertEqual(len(err.splitlines()), 1, err)
                if line is not None:
                    self.assertEqual(err, line + "\n")
                self.assertEqual(list(self.dest.iterdir()), [])

    def test_a_credential_in_the_variable_is_refused_and_never_printed(self) -> None:
        cases = [
            {**STORES, "registry": {**STORES["registry"], "password": "s3cret"}},
            {**STORES, "registry": {**STORES["registry"], "credentials_file": "/s3cret"}},
            {**STORES, "pypi": {**STORES["pypi"],
                                "simple": "https://robot:s3cret@nexus.site/simple"}},
        ]
        for data in cases:
            with self.subTest(data=str(data)[-60:]):
                code, out, err = run_cli(["zuul", "site", "--dest", str(self.dest)],
                                         json.dumps(data))
                self.assertEqual(code, 1)
                self.assertNotIn("s3cret", out + err)
                self.assertRegex(err, r"credential")
                self.assertEqual(list(self.dest.iterdir()), [])

    def test_credentials_without_a_scheme_reach_no_file_and_no_line(self) -> None:
        # has_userinfo needs '://': these passed the variable's check, were
        # written into site.yaml, and only its reading back refused them.
        cases = [
            {**STORES, "registry": {"prefix": "robot:s3cret@nexus.site:8443/openstack"}},
            {**STORES, "raw": {"url": "https:/robot:s3cret@nexus.site/raw/"}},
            {**STORES, "git": {**STORES["git"], "push": "robot:s3cret@gerrit.site/x"}},
            # YAML's flow mapping {robot:s3cret@nexus} is a key, not a value.
            {**STORES, "registry": {"robot:s3cret@nexus.site:8443/openstack": None}},
            {"robot:s3cret@nexus.site": None, **STORES},
        ]
        for data in cases:
            with self.subTest(data=str(data)[-70:]):
                code, out, err = run_cli(["zuul", "site", "--dest", str(self.dest)],
                                         json.dumps(data))
                self.assertEqual((code, out), (1, ""))
                self.assertEqual(len(err.splitlines()), 1, err)
                self.assertTrue(err.startswith("airlock_site"), err)
                self.assertNotIn("s3cret", err)
                self.assertEqual(list(self.dest.iterdir()), [])

    def test_a_url_for_dest_is_refused_before_any_folder_is_made(self) -> None:
        # Path made the folders "https:/robot:s3cret@host/x" and wrote both files.
        cwd = os.getcwd()
        os.chdir(self.dest)
        self.addCleanup(os.chdir, cwd)
        code, out, err = run_cli(["zuul", "site", "--dest", "https://robot:s3cret@host/x"],
                                 json.dumps(STORES))
        self.assertEqual((code, out), (1, ""))
        self.assertEqual(err, "--dest: https://***@host/x is a URL, not a folder; "
                              "choose a local folder for --dest\n")
        self.assertEqual(list(self.dest.iterdir()), [])

    def test_a_url_the_site_reader_refuses_is_refused_before_any_job_work(self) -> None:
        data = {**STORES, "registry": {"prefix": "https://nexus.site/openstack"}}
        code, out, err = run_cli(["zuul", "site", "--dest", str(self.dest)], json.dumps(data))
        self.assertEqual(code, 1)
        self.assertIn("is not host[:port]/path", err)


if __name__ == "__main__":
    unittest.main()
