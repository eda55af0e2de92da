"""A whole run with credentials everywhere leaves none of them in any output or record.

The issue's proof for secrets: keystone is built and published with every
credential a site hands airlock, each one real:

- ``$AIRLOCK_GIT_BASE`` with ``user:password@``, served by git's own smart
  HTTP server behind Basic auth (the source mirror);
- ``--index-url`` with ``user:password@``, a PEP 503 index behind Basic auth
  holding the files the suite's own keystone wheelhouse came from;
- ``$AIRLOCK_REGISTRY_AUTH_FILE`` for a registry behind htpasswd, where the
  images are built against (python-base, venv-builder) and published.

Then every line the run printed, every file under its work folder (lock,
sources, wheelhouse and apt manifests, build logs, OCI archives, the
build record), every cache file it wrote and every file the registry
stored is searched for each password: none may be found. One platform
keeps it affordable; nothing else is left out.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import unittest
import unittest.mock
from pathlib import Path

from airlock.ext import registry
from airlock.tests.functional import pipeline
from airlock.tests.functional.engine import REPO_ROOT, base_image, require_engine
from airlock.tests.functional.registries import PrivateRegistry
from airlock.tests.unit.servers import GitServer, PackageIndex

RELEASE = "2025.2"
PLATFORM = "linux/amd64"
USER = "site-bot"


class CredentialedRunTest(unittest.TestCase):
    outputs: list[str]

    @classmethod
    def setUpClass(cls) -> None:
        require_engine()
        base_image()
        cls.started = time.time()
        cls.secret = "src-" + secrets.token_hex(10)  # git mirror and index
        cls.registry_secret = "reg-" + secrets.token_hex(10)
        cls.tmp = Path(tempfile.mkdtemp(prefix="airlock-secrets-run-"))
        git = Path(pipeline.git_base("keystone"))
        # The suite's own wheelhouse of keystone fills the shared download
        # cache; the password-protected index serves those files.
        pipeline.build(RELEASE, pipeline.seeded_prefix("secrets-warm", RELEASE, (PLATFORM,)),
                       "--service", "keystone", "--platform", PLATFORM, "--git-base", str(git))
        cls.index_files = cls.tmp / "index"
        cls.index_files.mkdir()
        for path in (pipeline.WORK / "cache" / "pypi" / "files").iterdir():
            if path.is_file() and not path.name.startswith("."):
                os.link(path, cls.index_files / path.name)
        cls.git = GitServer(git, {USER: cls.secret})
        cls.index = PackageIndex(cls.index_files, {USER: cls.secret})
        cls.registry = PrivateRegistry({USER: cls.registry_secret})
        cls.git.start()
        cls.index.start()
        cls.registry.start()
        cls.auth = cls.registry.auth_file(USER, cls.registry_secret, cls.tmp / "auth.json")
        cls.work = cls.tmp / "work"
        cls.prefix = f"{cls.registry.host}/site"
        cls.env = {**{k: v for k, v in os.environ.items() if not k.startswith("AIRLOCK_")},
                   "AIRLOCK_GIT_BASE": cls.git.url(USER, cls.secret).rstrip("/"),
                   "AIRLOCK_REGISTRY_AUTH_FILE": str(cls.auth),
                   "AIRLOCK_CACHE_DIR": str(pipeline.WORK / "cache"),
                   "AIRLOCK_WORK_DIR": str(cls.work)}
        cls.outputs = []
        index_url = cls.index.url(USER, cls.secret, "simple/")
        cls.build = cls.airlock("build", "--release", RELEASE, "--service", "keystone",
                                "--platform", PLATFORM, "--registry", cls.prefix,
                                "--index-url", index_url, "--json")
        cls.publish = cls.airlock("publish", "--release", RELEASE, "--json")
        cls.lock = cls.tmp / "refs.lock"
        cls.resolve = cls.airlock("refs", "resolve", "--release", RELEASE,
                                  "--component", "keystone", "-o", str(cls.lock))

    @classmethod
    def airlock(cls, *args: str) -> subprocess.CompletedProcess:
        proc = subprocess.run([sys.executable, "-m", "airlock.cli", *args], cwd=REPO_ROOT,
                              env=cls.env, capture_output=True, text=True, timeout=3600)
        cls.outputs += [proc.stdout, proc.stderr]
        return proc

    @classmethod
    def tearDownClass(cls) -> None:
        for server in ("git", "index"):
            if hasattr(cls, server):
                getattr(cls, server).stop()
        if hasattr(cls, "registry"):
            cls.registry.close()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_the_run_used_every_credential(self) -> None:
        for proc in (self.build, self.publish, self.resolve):
            self.assertEqual(proc.returncode, 0, proc.stderr[-2000:])
        built = json.loads(self.build.stdout)
        self.assertEqual({row["name"] for row in built["images"]},
                         {"python-base", "venv-builder", "keystone"})
        self.assertGreater(self.git.served, 0)
        self.assertGreater(self.index.served, 0)
        published = json.loads(self.publish.stdout)
        keystone = next(row for row in published["images"] if row["name"] == "keystone")
        with unittest.mock.patch.dict(os.environ, {registry.AUTH_FILE_ENV: str(self.auth)}):
            served = registry.digest(f"{self.prefix}/keystone:{RELEASE}")
        self.assertEqual(served, keystone["digest"])

    def test_no_password_in_any_output_or_file(self) -> None:
        leaks = []
        for text in self.outputs:
            leaks += [f"output: ...{text[max(0, text.find(s) - 60):text.find(s)]}"
                      for s in (self.secret, self.registry_secret) if s in text]
        places = [self.work, self.lock, self.registry.root / "data"]
        cache = pipeline.WORK / "cache"
        for place in places:
            for path in ([place] if place.is_file() else place.rglob("*")):
                leaks += self.leaked(path)
        for path in cache.rglob("*"):  # what this run wrote into the shared cache
            if path.is_file() and not path.is_symlink() and path.stat().st_mtime >= self.started:
                leaks += self.leaked(path)
        self.assertEqual(leaks, [])

    def leaked(self, path: Path) -> list[str]:
        if path.is_symlink() or not path.is_file():
            return []
        data = path.read_bytes()
        return [f"{path}: {s[:4]}..." for s in (self.secret, self.registry_secret)
                if s.encode() in data]


if __name__ == "__main__":
    unittest.main()
