"""Real git repositories for tests, built in a temporary directory.

The refs and sources code is about what git really does (peeled tags,
fetch by SHA, describe, apply), so the tests run it against real
repositories rather than mocks. Commits get a fixed identity and clock so
that runs are repeatable and commit times can be asserted.
"""

from __future__ import annotations

import itertools
from pathlib import Path

from airlock.data.release import SERVICES, Component, ComponentRef, Distro, Release
from airlock.ext import git

# 2025-01-01T00:00:00Z; every commit of a repository is one minute later.
EPOCH = 1735689600


class GitRepo:
    """A non-bare repository at ``path`` with helpers to grow its history."""

    def __init__(self, path: Path, branch: str = "master") -> None:
        path.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._clock = itertools.count(1)
        self._time = EPOCH
        self.git("init", "--quiet", f"--initial-branch={branch}")

    @property
    def url(self) -> str:
        """The repository as a file:// URL."""
        return self.path.resolve().as_uri()

    def git(self, *args: str) -> str:
        """Run git in the repository with a fixed identity and clock."""
        date = f"@{self._time} +0000"
        env = {"GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "test@example.invalid",
               "GIT_COMMITTER_NAME": "Test", "GIT_COMMITTER_EMAIL": "test@example.invalid",
               "GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date}
        return git.run(list(args), cwd=self.path, env=env, where=f"test repo {self.path}").stdout

    def commit(self, files: dict[str, str | None], message: str = "change") -> str:
        """Write ``files`` (None deletes one), commit them all, return the new SHA."""
        for name, content in files.items():
            target = self.path / name
            if content is None:
                target.unlink()
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
        self._time = EPOCH + 60 * next(self._clock)
        self.git("add", "--all")
        self.git("commit", "--quiet", "--allow-empty", "-m", message)
        return self.sha()

    def sha(self, rev: str = "HEAD") -> str:
        """The full SHA of ``rev`` (peeled to its commit)."""
        return self.git("rev-parse", f"{rev}^{{commit}}").strip()

    def tag(self, name: str, rev: str = "HEAD", annotated: bool = True) -> str:
        """Tag ``rev``; return the SHA the tag ref holds (the tag object if annotated)."""
        if annotated:
            self.git("tag", "--annotate", "-m", f"tag {name}", name, rev)
        else:
            self.git("tag", name, rev)
        return self.git("rev-parse", f"refs/tags/{name}").strip()

    def branch(self, name: str, rev: str = "HEAD") -> None:
        """Create (or move) branch ``name`` to ``rev`` without switching to it."""
        self.git("branch", "--force", name, rev)

    def switch(self, name: str, create_at: str | None = None) -> None:
        """Check out branch ``name`` (created at ``create_at`` when given)."""
        if create_at:
            self.git("switch", "--quiet", "--create", name, create_at)
        else:
            self.git("switch", "--quiet", name)

    def format_patch(self, rev: str = "HEAD") -> str:
        """The commit ``rev`` as a mail-formatted patch (what patches/ holds)."""
        return self.git("format-patch", "-1", "--stdout", rev)


def numbered(count: int, changed: dict[int, str] | None = None) -> str:
    """A file of ``count`` lines "line N", with some lines replaced: predictable hunks."""
    changed = changed or {}
    return "".join(f"{changed.get(n, f'line {n}')}\n" for n in range(1, count + 1))


def make_release(path: Path, refs: dict[str, tuple[str, str | None]],
                 name: str = "2025.2") -> Release:
    """A Release whose components are ``refs``: name -> (ref, repo or None).

    Built directly (not loaded from YAML) so that refs and sources tests do
    not depend on the loader; a name that is not a service is a library.
    """
    components = {}
    for component, (ref, repo) in refs.items():
        kind = SERVICES.get(component) or Component(component, component, component, "library")
        components[component] = ComponentRef(kind, ref, repo)
    return Release(name=name, path=path / "releases" / name, python="3.11",
                   distro=Distro("debian", "bookworm", "12"), base_image="base:latest",
                   platforms=("linux/amd64",), services=("keystone",), components=components)


RELEASE_YAML = """\
name: "{name}"
codename: flamingo
python: "3.11"
distro:
  name: debian
  codename: bookworm
  version: "12"
base_image: "${{AIRLOCK_BASE_IMAGE:-127.0.0.1:5000/airlock/debian:bookworm}}"
platforms:
  - linux/amd64
services:
  - keystone
"""


def write_data_tree(root: Path, source_refs: str, name: str = "2025.2") -> Path:
    """A minimal airlock data tree (releases/, images/, patches/) for CLI tests."""
    release = root / "releases" / name
    release.mkdir(parents=True)
    (release / "release.yaml").write_text(RELEASE_YAML.format(name=name))
    (release / "source-refs.yaml").write_text(source_refs)
    (release / "upper-constraints.txt").write_text("oslo.config===9.6.0\n")
    (release / "constraint-overrides.txt").write_text("# none\n")
    (root / "images" / "keystone").mkdir(parents=True)
    (root / "images" / "keystone" / "bindep.txt").write_text("libffi-dev [build]\n")
    (root / "patches").mkdir()
    return root
