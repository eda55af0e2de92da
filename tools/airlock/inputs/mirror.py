"""``airlock mirror create``: a local stand-in for the site's git mirror.

A site resolves and exports components from its Gerrit mirror,
``<git-base>/openstack/<project>``. A machine without one (a laptop, CI, the
mirror factory before the first sync) gets an honest substitute from what a
package index already publishes: the released sdist of each component.

For each component whose ref is a released version, the sdist of
``<package>==<version>`` is downloaded (:mod:`airlock.ext.index`) and written
into the bare repository ``DEST/openstack/<project>`` (no ``.git`` suffix,
so ``--git-base DEST`` works for ``refs resolve`` and ``sources prepare``):

- one parentless commit holding the sdist's files exactly as released
  (PKG-INFO and the egg-info included; no .git, unlike a real checkout);
- the annotated tag ``<version>`` on it;
- the branch ``stable/<release>`` pointing at it (moved when the release's
  version changes: the stand-in has no history between versions).

Reproducible: author, committer and tagger are one fixed identity, and the
time of commit and tag is the newest file time inside the sdist, a fact of
the published file. Parentless commits keep SHAs independent of what ran
before, so two machines that mirror the same versions get the same SHAs, and
a lock written against one mirror holds on the other.

Idempotent: when the tag exists on the same tree nothing is written; a tag on
a different tree is refused (a release tag never moves). A ref that is a
branch or a SHA cannot be made from a released sdist and is refused.
"""

from __future__ import annotations

import hashlib
import os
import re
import tarfile
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath
from typing import Any

from packaging.version import InvalidVersion, Version

from airlock.data.release import ComponentRef, Release
from airlock.errors import AirlockError, ToolError
from airlock.ext import exec as ext_exec
from airlock.ext import git, index

IDENT = "airlock mirror <mirror@airlock.invalid>"
# Downloads in flight at once (pip processes): the machines have two cores.
DOWNLOADS = 3
# The time of a commit whose sdist has no file times (all zero): 2010-01-01.
FALLBACK_TIME = 1262304000

_SHA = re.compile(r"[0-9a-f]{40}")


def create(release: Release, dest: Path, index_url: str | None = None,
           components: list[str] | None = None) -> list[dict[str, Any]]:
    """Mirror the released versions of ``release``'s components into ``dest``.

    ``components`` names the ones to mirror (default: all of the release).
    Every ref is checked before anything is downloaded, so a bad entry
    costs no download. Returns one row per component:
    ``{component, version, repo, sha, action}``, ``sha`` being the commit the
    tag names and ``action`` one of created/updated/unchanged.
    """
    refs = select(release, components)
    for ref in refs:  # before any download: a download costs minutes
        check_target(repo_path(dest, ref))
    # A release tag never moves: a repository that already has the tag on
    # its stable branch needs no download (a re-run costs a rev-parse).
    done = {ref.name: row for ref in refs if (row := _already(dest, ref, release.name))}
    refs = [ref for ref in refs if ref.name not in done]
    rows = list(done.values())
    with tempfile.TemporaryDirectory(prefix="airlock-mirror-") as tmp, \
            ThreadPoolExecutor(max_workers=DOWNLOADS) as pool:
        # Each download waits on the network and on pip reading the sdist's
        # metadata in a fresh build environment: overlap a few. Imports stay
        # in order, one at a time, so rows and errors come in release order.
        futures = [pool.submit(index.download_sdist, ref.component.package, ref.ref,
                               Path(tmp) / ref.name, index_url) for ref in refs]
        try:
            for ref, future in zip(refs, futures, strict=True):
                sdist = ext_exec.result(future)
                rows.append(import_sdist(sdist, dest, ref, release.name))
                sdist.unlink()
        finally:
            for future in futures:
                future.cancel()
    return rows


def _already(dest: Path, ref: ComponentRef, release_name: str) -> dict[str, Any] | None:
    """The row of a component whose tag and stable branch are already in place."""
    repo = repo_path(dest, ref)
    if not (repo / "HEAD").is_file():
        return None
    tagged = git.rev_sha(repo, f"refs/tags/{ref.ref}^{{commit}}")
    if tagged is None or git.rev_sha(repo, f"refs/heads/stable/{release_name}") != tagged:
        return None
    return {"component": ref.name, "version": ref.ref, "repo": str(repo), "sha": tagged,
            "action": "unchanged"}


def check_target(repo: Path) -> None:
    """Refuse a repository path that holds something else than a bare git repository."""
    if (repo / "HEAD").is_file():
        return
    if os.path.lexists(repo) and (not repo.is_dir() or any(repo.iterdir())):
        raise AirlockError(str(repo), "exists and is not a bare git repository",
                           "choose another --dest, or remove it")


def repo_path(dest: Path, ref: ComponentRef) -> Path:
    """``dest/openstack/<project>``, refused when a link is on the way.

    airlock runs as root: a link there would have git write a repository
    wherever it points.
    """
    repo = dest / "openstack" / ref.component.project
    for path in (dest / "openstack", repo):
        if path.is_symlink():
            raise AirlockError(str(path), "is a symbolic link", "choose another --dest, "
                               "or put the folder itself there")
    return repo


def select(release: Release, names: list[str] | None) -> list[ComponentRef]:
    """The component refs to mirror, each checked to be a released version."""
    known = release.components
    if names:
        unknown = [name for name in names if name not in known]
        if unknown:
            raise AirlockError(f"--component {unknown[0]}",
                               f"not a component of release {release.name}",
                               f"use one of: {', '.join(known) or 'none'}")
        refs = [known[name] for name in dict.fromkeys(names)]
    else:
        refs = list(known.values())
    for ref in refs:
        if not is_release_version(ref.ref):
            raise AirlockError(f"{release.path / 'source-refs.yaml'}:{ref.name}",
                               f"ref {ref.ref!r} is not a released version",
                               "the local mirror can only make released versions from "
                               "their sdists; pin a version here, or use a real git mirror "
                               "(--git-base) for branches and SHAs")
    return refs


def is_release_version(ref: str) -> bool:
    """Whether ``ref`` names a release the index publishes: a canonical PEP 440 version.

    Canonical because the ref is also the tag name: ``v1.0`` would be tag
    ``v1.0`` of sdist ``1.0``. No local version (``+local``): an index does
    not publish those; no epoch (``1!2.0``): not a tag name. A 40-digit hex
    string is a SHA even when it happens to parse as a version.
    """
    if _SHA.fullmatch(ref):
        return False
    try:
        version = Version(ref)
    except InvalidVersion:
        return False
    return str(version) == ref and version.local is None and version.epoch == 0


def import_sdist(sdist: Path, dest: Path, ref: ComponentRef, release_name: str
                 ) -> dict[str, Any]:
    """Write the sdist as the tag ``ref.ref`` and branch ``stable/<release>`` of its repo."""
    repo = repo_path(dest, ref)
    version, branch = ref.ref, f"stable/{release_name}"
    files, when = read_sdist(sdist)
    digest = hashlib.sha256(sdist.read_bytes()).hexdigest()
    if not (repo / "HEAD").is_file():
        check_target(repo)
        git.init_bare(repo)
    message = (f"{ref.component.package} {version}\n\n"
               f"Written by `airlock mirror create` from the files of the released sdist\n"
               f"{sdist.name}\nsha256 {digest}\n")
    commit = git.write_snapshot(repo, files, message=message, ident=IDENT, when=when)
    tagged = git.rev_sha(repo, f"refs/tags/{version}^{{commit}}")
    action = "unchanged"
    if tagged is None:
        git.write_tag(repo, version, commit, message=f"{ref.component.package} {version}\n",
                      ident=IDENT, when=when)
        action = "created"
    elif tagged != commit:
        if git.rev_sha(repo, f"{tagged}^{{tree}}") != git.rev_sha(repo, f"{commit}^{{tree}}"):
            raise AirlockError(str(repo), f"tag {version} exists with other files than the "
                               f"released sdist {sdist.name}",
                               "a release tag never moves: remove the repository to "
                               "make it again")
        commit = tagged  # same files, written another way: keep what is there
    if git.set_branch(repo, branch, commit) != commit and action == "unchanged":
        action = "updated"
    git.set_default_branch(repo, branch)
    return {"component": ref.name, "version": version, "repo": str(repo), "sha": commit,
            "action": action}


def read_sdist(sdist: Path) -> tuple[list[git.SnapshotFile], int]:
    """The files of an sdist (its top folder stripped) and its newest file time.

    Keeps regular files (mode 755 when any executable bit is set, else 644,
    as git records them) and symlinks; folders are implied by paths. A
    member that would land outside the tree is refused.
    """
    try:
        archive = tarfile.open(sdist)
    except (tarfile.TarError, OSError) as error:
        raise ToolError(str(sdist), f"not a readable sdist tarball: {error}") from None
    files: dict[str, git.SnapshotFile] = {}
    newest = 0
    with archive:
        for member in archive:
            path = _tree_path(sdist, member.name)
            newest = max(newest, int(member.mtime))
            if path is None or member.isdir():
                continue
            if member.issym():
                files[path] = (path, "120000", member.linkname.encode())
            elif member.isfile() or member.islnk():
                data = archive.extractfile(member)
                assert data is not None
                mode = "100755" if member.mode & 0o111 else "100644"
                files[path] = (path, mode, data.read())
    if not files:
        raise ToolError(str(sdist), "the sdist holds no files")
    return sorted(files.values()), newest or FALLBACK_TIME


def _tree_path(sdist: Path, name: str) -> str | None:
    """A member's path below the sdist's top folder; None for the top folder itself."""
    parts = PurePosixPath(name).parts
    if not parts or name.startswith("/") or ".." in parts:
        raise ToolError(str(sdist), f"unsafe member {name!r} in the sdist")
    return "/".join(parts[1:]) or None
