"""site.yaml: the four stores, their locations, and credentials that never sit in the YAML."""

from __future__ import annotations

import os
import tempfile
import unittest
from pathlib import Path
from unittest import mock

from airlock.errors import AirlockError
from airlock.site import config

GOOD = """\
pypi:
  upload: http://127.0.0.1:8080
  simple: http://127.0.0.1:8080/simple
  credentials_file: credentials/pypi
raw:
  url: http://127.0.0.1:8081/airlock
  credentials_env: AIRLOCK_SITE_RAW
registry:
  prefix: 127.0.0.1:5001/airlock/
  credentials_file: /etc/airlock/registry
git:
  base: git://127.0.0.1:9418
  push: git
"""


class SiteConfigTest(unittest.TestCase):
    def setUp(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="airlock-site-"))
        self.addCleanup(lambda: __import__("shutil").rmtree(self.tmp, True))

    def write(self, text: str) -> Path:
        path = self.tmp / "site.yaml"
        path.write_text(text)
        return path

    def test_a_good_site_yaml_gives_every_store_with_its_locations(self) -> None:
        site = config.load(self.write(GOOD))
        self.assertEqual(site.pypi.urls, {"upload": "http://127.0.0.1:8080/",
                                          "simple": "http://127.0.0.1:8080/simple/"})
        self.assertEqual(site.raw.urls["url"], "http://127.0.0.1:8081/airlock/")
        self.assertEqual(site.registry.urls["prefix"], "127.0.0.1:5001/airlock")
        self.assertEqual(site.git.urls, {"base": "git://127.0.0.1:9418",
                                         "push": str(self.tmp / "git")})
        self.assertEqual(site.pypi.credentials_file, self.tmp / "credentials" / "pypi")
        self.assertIsNone(site.git.credentials())

    def test_credentials_come_from_the_file_or_the_variable_named(self) -> None:
        site = config.load(self.write(GOOD))
        (self.tmp / "credentials").mkdir()
        (self.tmp / "credentials" / "pypi").write_text("airlock:s3cret\n")
        self.assertEqual(site.pypi.credentials(), ("airlock", "s3cret"))
        with mock.patch.dict(os.environ, {"AIRLOCK_SITE_RAW": "up:loader:colon"}):
            self.assertEqual(site.raw.credentials(), ("up", "loader:colon"))
        with mock.patch.dict(os.environ, {}, clear=True):
            with self.assertRaises(AirlockError) as caught:
                site.raw.credentials()
        self.assertIn("$AIRLOCK_SITE_RAW is not set", str(caught.exception))
        (self.tmp / "credentials" / "pypi").write_text("no-colon-s3cret\n")
        with self.assertRaises(AirlockError) as caught:
            site.pypi.credentials()
        self.assertNotIn("s3cret", str(caught.exception))

    def test_every_mistake_is_one_line_naming_the_store_and_no_secret(self) -> None:
        cases = [
            ("pypi: {}\n", "missing or not a string"),
            (GOOD.replace("http://127.0.0.1:8080/simple", "http://u:s3cret@127.0.0.1/simple"),
             "holds credentials"),
            (GOOD.replace("  credentials_file: credentials/pypi", "  password: s3cret"),
             "a secret does not belong here"),
            (GOOD.replace("git:\n", "gerrit: {}\ngit:\n"), "unknown store 'gerrit'"),
            (GOOD.replace("prefix: 127.0.0.1:5001/airlock/", "prefix: https://nexus/x"),
             "is not host[:port]/path"),
            (GOOD.replace("url: http://127.0.0.1:8081/airlock", "url: ftp://h/x"),
             "is not a http/https URL"),
            (GOOD.replace("  credentials_env: AIRLOCK_SITE_RAW\n", ""),
             "raw: no credentials_file or credentials_env"),
            (GOOD.replace("AIRLOCK_SITE_RAW", "'$(rm -rf /)'"), "not a variable name"),
            ("- a list\n", "is not a mapping of the four stores"),
        ]
        for text, expected in cases:
            with self.subTest(expected=expected):
                with self.assertRaises(AirlockError) as caught:
                    config.load(self.write(text))
                line = str(caught.exception)
                self.assertIn(expected, line)
                self.assertNotIn("s3cret", line)
                self.assertEqual(len(line.splitlines()), 1)


class AnonymousStoreTest(unittest.TestCase):
    """site.yaml's ``anonymous: true``: said explicitly, never mixed with credentials."""

    def setUp(self) -> None:
        self.dest = Path(tempfile.mkdtemp(prefix="airlock-site-"))
        self.addCleanup(lambda: __import__('shutil').rmtree(self.dest, True))

    def load(self, registry: str) -> config.Site:
        text = (f"pypi: {{upload: http://h/, simple: http://h/simple, anonymous: true}}\n"
                f"raw: {{url: http://h/raw, anonymous: true}}\n"
                f"registry: {{prefix: h:5000/x, {registry}}}\n"
                f"git: {{base: git://h, push: /srv/git}}\n")
        (self.dest / "site.yaml").write_text(text)
        return config.load(self.dest / "site.yaml")

    def test_anonymous_or_credentials_but_not_both_and_not_neither(self) -> None:
        self.assertIsNone(self.load("anonymous: true").registry.credentials())
        for registry, expected in (
                ("anonymous: true, credentials_env: X", "anonymous and credentials_file"),
                ("anonymous: 'yes'", "registry.anonymous: not true or false"),
                ("anonymous: false", "registry: no credentials_file or credentials_env")):
            with self.subTest(registry=registry):
                with self.assertRaises(AirlockError) as caught:
                    self.load(registry)
                self.assertIn(expected, str(caught.exception))


if __name__ == "__main__":
    unittest.main()


class SiteSettingsTest(unittest.TestCase):
    """What build --site takes from site.yaml: every input from the site's stores."""

    def test_every_input_is_a_store_of_the_site_with_its_credentials(self) -> None:
        from airlock.data.layout import resolve_layout
        from airlock.data.release import load_release
        from airlock.site import access

        tmp = Path(tempfile.mkdtemp(prefix="airlock-site-"))
        self.addCleanup(lambda: __import__("shutil").rmtree(tmp, True))
        (tmp / "site.yaml").write_text(GOOD)
        (tmp / "credentials").mkdir()
        (tmp / "credentials" / "pypi").write_text("airlock:p@ss/word\n")
        site = config.load(tmp / "site.yaml")
        release = load_release(resolve_layout(), "2025.2")
        with mock.patch.dict(os.environ, {"AIRLOCK_SITE_RAW": "raw:r4w"}):
            given = access.settings(site, release, env={})
        self.assertEqual(given.git_base, "git://127.0.0.1:9418")
        self.assertEqual(given.index_url, "http://airlock:p%40ss%2Fword@127.0.0.1:8080/simple/")
        self.assertEqual(given.apt_repos["arm64"],
                         "http://raw:r4w@127.0.0.1:8081/airlock/debs/debian-bookworm/arm64/")
        self.assertEqual(given.registry, "127.0.0.1:5001/airlock")
        self.assertEqual(given.base_image, "127.0.0.1:5001/airlock/debian:bookworm")

    def test_the_registry_auth_file_lives_for_the_run_only(self) -> None:
        from airlock.ext import registryauth
        from airlock.site import access

        tmp = Path(tempfile.mkdtemp(prefix="airlock-site-"))
        self.addCleanup(lambda: __import__("shutil").rmtree(tmp, True))
        (tmp / "site.yaml").write_text(GOOD.replace("/etc/airlock/registry", "reg"))
        (tmp / "reg").write_text("pusher:s3cret\n")
        site = config.load(tmp / "site.yaml")
        with mock.patch.dict(os.environ, {}, clear=False):
            os.environ.pop(registryauth.AUTH_FILE_ENV, None)
            with access.registry_auth(site):
                path = Path(os.environ[registryauth.AUTH_FILE_ENV])
                self.assertEqual(path.stat().st_mode & 0o777, 0o600)
                self.assertEqual(registryauth.credentials("127.0.0.1:5001", "airlock/x"),
                                 ("pusher", "s3cret"))
            self.assertNotIn(registryauth.AUTH_FILE_ENV, os.environ)
            self.assertFalse(path.exists())
