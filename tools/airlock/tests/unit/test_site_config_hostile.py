"""site.yaml written badly with a secret in it: one line, and the secret never in it.

Real files in a temporary folder; :func:`airlock.site.config.load` and
:meth:`Store.credentials` as every site verb calls them.
"""

from __future__ import annotations

import shutil
import tempfile
import unittest
from pathlib import Path

from airlock.errors import AirlockError
from airlock.site import config

SECRET = "hostile-s3cret-9c1e"
STORES = {
    "pypi": "  upload: http://127.0.0.1:9/\n  simple: http://127.0.0.1:9/simple/\n"
            "  credentials_file: cred\n",
    "raw": "  url: http://127.0.0.1:9/raw/\n  credentials_file: cred\n",
    "registry": "  prefix: 127.0.0.1:9/airlock\n  credentials_file: cred\n",
    "git": "  base: git://127.0.0.1:9\n  push: git\n",
}


class SecretsInSiteYamlTest(unittest.TestCase):
    def setUp(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="airlock-siteyaml-"))
        self.addCleanup(shutil.rmtree, self.tmp, True)
        (self.tmp / "cred").write_text("airlock:p\n")

    def load(self, **stores: str) -> config.Site:
        text = "".join(f"{name}:\n{body}" for name, body in {**STORES, **stores}.items())
        (self.tmp / "site.yaml").write_text(text)
        return config.load(self.tmp / "site.yaml")

    def refused(self, what: str, **stores: str) -> None:
        with self.assertRaises(AirlockError) as caught:
            self.load(**stores)
        said = str(caught.exception)
        self.assertNotIn(SECRET, said)
        self.assertEqual(len(said.splitlines()), 1)
        self.assertIn(what, said)

    def test_userinfo_without_a_scheme_is_refused_unprinted(self) -> None:
        # Printed, pushed to and recorded as the prefix before.
        self.refused("registry.prefix: holds credentials", registry=(
            f"  prefix: airlock:{SECRET}@127.0.0.1:9/airlock\n  credentials_file: cred\n"))
        self.refused("pypi.upload: holds credentials", pypi=(
            f"  upload: airlock:{SECRET}@h/x\n  simple: http://h/\n  credentials_file: cred\n"))
        self.refused("git.push: holds credentials", git=(
            f"  base: git://h\n  push: airlock:{SECRET}@h:x\n"))
        # A local folder with "@" below its first part is a folder.
        site = self.load(git="  base: git://h\n  push: /srv/mirror@1/git\n")
        self.assertEqual(site.git.urls["push"], "/srv/mirror@1/git")

    def test_a_key_that_is_the_secret_is_not_printed(self) -> None:
        self.refused("pypi: unknown key;", pypi=(
            "  upload: http://h/\n  simple: http://h/\n  credentials_file: cred\n"
            f"  'airlock:{SECRET}': 1\n"))
        # A plain key is still named.
        self.refused("(password)", pypi=(
            "  upload: http://h/\n  simple: http://h/\n  credentials_file: cred\n"
            f"  password: {SECRET}\n"))

    def test_a_user_password_written_as_the_credentials_file(self) -> None:
        self.refused("looks like user:password", pypi=(
            f"  upload: http://h/\n  simple: http://h/\n  credentials_file: 'airlock:{SECRET}'\n"))
        # A path with ':' that exists is a path.
        (self.tmp / "a:b").write_text("airlock:p\n")
        site = self.load(pypi="  upload: http://h/\n  simple: http://h/\n"
                              "  credentials_file: 'a:b'\n")
        self.assertEqual(site.pypi.credentials(), ("airlock", "p"))

    def test_a_crlf_credentials_file_gives_the_password_without_cr(self) -> None:
        (self.tmp / "cred").write_bytes(f"airlock:{SECRET}\r\n".encode())
        self.assertEqual(self.load().pypi.credentials(), ("airlock", SECRET))
        (self.tmp / "cred").write_bytes(f"airlock:{SECRET}\rx\n".encode())
        with self.assertRaises(AirlockError) as caught:
            self.load().pypi.credentials()
        self.assertNotIn(SECRET, str(caught.exception))


class GerritPushUrlTest(unittest.TestCase):
    """README's own site.yaml: an ssh login name is no secret; a password still is."""

    def setUp(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="airlock-siteyaml-"))
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def load_git(self, body: str) -> config.Site:
        text = "".join(f"{name}:\n{b}" for name, b in {**STORES, "git": body}.items())
        (self.tmp / "site.yaml").write_text(text)
        return config.load(self.tmp / "site.yaml")

    def test_ssh_login_names_load(self) -> None:
        for push in ("ssh://airlock@gerrit.site:29418", "git@gerrit.site:openstack"):
            with self.subTest(push=push):
                site = self.load_git(f"  base: https://gerrit.site\n  push: {push}\n")
                self.assertEqual(site.git.urls["push"], push)

    def test_a_password_or_a_token_is_still_refused(self) -> None:
        for push in (f"ssh://airlock:{SECRET}@gerrit.site:29418",
                     f"https://{SECRET}@gerrit.site", f"airlock:{SECRET}@gerrit.site:x"):
            with self.subTest(push=push), self.assertRaises(AirlockError) as caught:
                self.load_git(f"  base: https://gerrit.site\n  push: {push}\n")
            self.assertIn("holds credentials", str(caught.exception))
            self.assertNotIn(SECRET, str(caught.exception))


if __name__ == "__main__":
    unittest.main()
