"""Export a component's tree at its locked commit and apply the site's patches.

The result is a plain directory (no .git) that a build copies into an
image, plus ``.airlock/source.json`` inside it: what was exported (component,
release, ref, commit, repository), the version pbr must be told, and the
patches applied, with their SHA-256, so that an image can be traced back to
its exact inputs.

The destination appears whole or not at all: everything happens in a
staging directory next to it, renamed into place at the end, so that no
failure (a patch that does not apply, a repository that cannot be read, an
interrupt, SIGTERM) leaves a half-patched tree behind for a later step to
build.

airlock runs as root and the tree is written by others (upstream, the
site's patches): nothing airlock does in it follows a symbolic link out of
it. ``.airlock`` is airlock's own name: a tree or a patch that puts
anything there is refused, and the record is created fresh, never written
through a link. The lock and the record hold the repository without
credentials (:mod:`airlock.urls`); a credential comes back at fetch time
only from a URL given in this run (``--git-base``, a ``repo:`` entry) or
from git's own mechanisms (``~/.netrc``).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import stat
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from packaging.version import InvalidVersion, Version

from airlock.data import patches
from airlock.data.release import Release
from airlock.errors import AirlockError, ToolError
from airlock.ext import git
from airlock.files import PATCH_LIMIT, create_new, read_bytes, read_json, remove_tree
from airlock.urls import strip_userinfo, with_credentials

OWN = ".airlock"  # the folder of airlock's record: no tree or patch may touch it
RECORD = Path(OWN) / "source.json"


def prepare(release: Release, component: str, lock: dict[str, Any], patches_dir: Path,
            dest: Path, *, git_base: str | None = None) -> dict[str, Any]:
    """Export ``component`` at its locked SHA into ``dest``, patched; return the record.

    Patches are ``patches_dir/<component>/<release>/*.patch``, applied in
    lexical order of their names. ``dest`` must not exist or be an empty
    folder. ``git_base`` is the one this run was given: the credentials of
    a locked repository under it come from it (see :func:`given_urls`).
    """
    entry = locked_entry(release, component, lock)
    check_dest(dest)
    series = patches.series(patches_dir, component, release.name)
    given = given_urls(release, git_base)
    staging = _staging(dest)
    try:
        tree = staging / "tree"
        tree.mkdir()
        record = _build(tree, staging / "git", release.name, component, entry, series, given)
        try:
            os.replace(tree, dest)
        except OSError as error:
            raise AirlockError(str(dest), f"cannot move the prepared tree into place: "
                               f"{error.strerror}", "remove it or choose another --dest") from None
    finally:
        remove_tree(staging)
    return record


def given_urls(release: Release, git_base: str | None) -> list[str]:
    """The URLs this run was given, whose credentials a locked repository may use.

    The git base (``--git-base``, ``$AIRLOCK_GIT_BASE``) and every ``repo:``
    of the release: a lock never holds a credential, so one is only ever
    taken from what the user handed this run.
    """
    return [url for url in (git_base, *(ref.repo for ref in release.components.values()))
            if url]


def _staging(dest: Path) -> Path:
    """A fresh directory next to ``dest``: same filesystem, so the final rename is atomic.

    Absolute: git runs in the tree it exports into (``cwd``), where a
    relative ``--git-dir`` (from a relative ``--dest``) would name nothing.
    """
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        return Path(os.path.abspath(tempfile.mkdtemp(prefix=f".{dest.name}.airlock-",
                                                     dir=dest.parent)))
    except OSError as error:
        if error.errno in (errno.EEXIST, errno.ENOTDIR):  # a file on the way
            blocker = next((p for p in (dest.parent, *dest.parent.parents)
                            if os.path.lexists(p) and not p.is_dir()), dest.parent)
            raise AirlockError(str(blocker), "is not a folder", "choose another --dest") from None
        raise AirlockError(str(dest.parent), f"cannot create a folder here: {error.strerror}",
                           "choose another --dest or fix the permissions") from None


def locked_entry(release: Release, component: str, lock: dict[str, Any]) -> dict[str, str]:
    """The lock entry of ``component``, refusing a lock made for another release."""
    if lock.get("release") != release.name:
        raise AirlockError("refs lock", f"is for release {lock.get('release')}, "
                           f"not {release.name}",
                           f"use the lock of {release.name}, or write one with: "
                           f"airlock refs resolve --release {release.name} -o FILE")
    components = lock.get("components") or {}
    if component not in components:
        known = ", ".join(sorted(components)) or "none"
        raise AirlockError("refs lock", f"has no component {component} (it has: {known})",
                           f"add {component} to releases/{release.name}/source-refs.yaml "
                           "and resolve the refs again")
    return components[component]


def check_dest(dest: Path) -> None:
    """Refuse a destination that holds anything: never mix two exports."""
    if dest.is_symlink() or (dest.exists() and (not dest.is_dir() or any(dest.iterdir()))):
        raise AirlockError(str(dest), "exists", "remove it or choose another --dest")


def read_record(tree: Path) -> dict[str, Any]:
    """The record :func:`prepare` left in ``tree`` (commit, version, patches, time).

    A tree without a readable record was not prepared by airlock: say so
    rather than build from it.
    """
    record = own_record(tree)
    if record is None:
        raise AirlockError(str(tree / RECORD), "missing or unreadable",
                           "prepare the tree again with 'airlock sources prepare'")
    return record


def own_record(tree: Path) -> dict[str, Any] | None:
    """The record in ``tree``, read only when neither the tree nor its record is a link; None else.

    A symbolic link at the tree, at ``.airlock`` or at the record would make
    a build take a folder (or a record) from anywhere on the host.
    """
    for path in (tree, tree / OWN, tree / RECORD):
        try:
            if stat.S_ISLNK(os.lstat(path).st_mode):
                return None
        except OSError:
            return None
    return read_json(tree / RECORD)


def is_current(tree: Path, entry: dict[str, str], series: list[Path]) -> bool:
    """Whether a prepared ``tree`` is what :func:`prepare` would make now.

    True when its record names the locked SHA and exactly this patch series
    (names and sha256s, in order): then a build can reuse it as it is.
    """
    record = own_record(tree) or {}
    wanted = [{"name": p.name, "sha256": hashlib.sha256(_patch_bytes(p)).hexdigest()}
              for p in series]
    return record.get("sha") == entry.get("sha") and record.get("patches") == wanted


def _patch_bytes(patch: Path) -> bytes:
    """A patch's bytes: a regular file of bounded size, or one line naming it."""
    return read_bytes(patch, limit=PATCH_LIMIT, fix="replace it by a patch file")


def _build(tree: Path, git_dir: Path, release: str, component: str, entry: dict[str, str],
           series: list[Path], given: Iterable[str] = ()) -> dict[str, Any]:
    """Fill ``tree``: export, version, patches, record, reproducible metadata."""
    sha = entry["sha"]
    shown = strip_userinfo(entry["repo"])  # what messages and the record name
    repo = with_credentials(shown, given)  # what git is given
    git.init_bare(git_dir)
    with _reading(component, shown):
        version = tag_version(entry["ref"], _tags_at(repo, sha))
        # A tag gives the version outright: one commit, no history. Otherwise
        # describe needs the history and the tags.
        history = version is None
        if not git.fetch_commit(git_dir, repo, sha, depth=None if history else 1, tags=history):
            raise AirlockError(f"component {component}", f"commit {sha} ({entry['ref']}) "
                               f"not found in {shown}",
                               "the lock is stale or names the wrong repository; "
                               "resolve the refs again")
    git.export_tree(git_dir, sha, tree)
    check_own_name(tree, f"component {component}", f"the upstream tree at {sha}",
                   "remove it upstream, or lock another commit")
    if version is None:
        version = describe_version(git_dir, sha)
    applied = []
    for patch in series:
        applied.append(_apply(tree, patch, entry))
        check_own_name(tree, display_path(patch), "the patch", "drop that part of the patch")
    # The commit time is the build's SOURCE_DATE_EPOCH: it comes from the
    # inputs, so every rebuild of this tree stamps the same times.
    epoch = git.commit_time(git_dir, sha)
    record = {"component": component, "release": release, "ref": entry["ref"], "sha": sha,
              "repo": shown, "version": version, "committed-at": epoch, "patches": applied}
    # Fresh folder, new file, no link followed: checked empty just above,
    # and an error rather than a write anywhere else if that changed.
    os.mkdir(tree / OWN, 0o755)
    create_new(tree / RECORD, json.dumps(record, indent=2) + "\n")
    normalise(tree, epoch)
    return record


def check_own_name(tree: Path, where: str, who: str, fix: str) -> None:
    """Refuse a tree in which ``who`` put anything at ``.airlock``.

    ``lstat``: a symbolic link there (to a folder of the host, or a record
    that is a link to a host file) is found, never followed.
    """
    try:
        found = os.lstat(tree / OWN)
    except FileNotFoundError:
        return
    kind = "a symbolic link" if stat.S_ISLNK(found.st_mode) else (
        "a folder" if stat.S_ISDIR(found.st_mode) else "a file")
    raise AirlockError(where, f"{who} puts {kind} at {OWN}, the name airlock keeps for its "
                       "own record", fix)


@contextlib.contextmanager
def _reading(component: str, repo: str) -> Iterator[None]:
    """Turn git's failure to read ``repo`` into one line naming the component."""
    try:
        yield
    except ToolError as error:
        raise ToolError(f"component {component}", f"cannot read repository {repo}: "
                        f"{error.what}",
                        "check the lock's repo: (or resolve the refs again with the right "
                        "--git-base)") from None


def _tags_at(repo: str, sha: str) -> list[str]:
    """Names of the tags of ``repo`` whose commit is ``sha``."""
    refs = git.peeled(git.ls_remote(repo, [], tags=True))
    return [name.removeprefix("refs/tags/") for name, commit in refs.items()
            if commit == sha and name.startswith("refs/tags/")]


def is_version(tag: str) -> bool:
    """Whether pbr can take ``tag`` as a release version (not e.g. ``2024.1-eol``)."""
    try:
        version = Version(tag)
    except InvalidVersion:
        return False
    return not (version.epoch or version.local or version.post is not None
                or version.dev is not None)


def tag_version(ref: str, tags_here: list[str]) -> str | None:
    """The version of a tagged commit: the locked tag, else the highest version tag on it.

    None when no version tag points at the commit (then see
    :func:`describe_version`).
    """
    name = ref.removeprefix("refs/tags/")
    if name in tags_here and is_version(name):
        return name
    versions = [tag for tag in tags_here if is_version(tag)]
    return max(versions, key=Version) if versions else None


def describe_version(git_dir: Path, sha: str) -> str:
    """The version of an untagged commit, from the nearest version tag below it.

    Non-version tags (``*-eol``) are skipped. Without any version tag the
    base is 0 and the distance is every commit, as pbr does.
    """
    skip = [tag for tag in git.tag_names(git_dir) if not is_version(tag)]
    found = git.describe(git_dir, sha, exclude=skip)
    if found is None:
        return dev_version(None, git.count_commits(git_dir, sha), git.log_messages(git_dir, sha))
    tag, distance = found
    if distance == 0:
        return tag
    return dev_version(tag, distance, git.log_messages(git_dir, f"refs/tags/{tag}..{sha}"))


def dev_version(tag: str | None, distance: int, messages: str) -> str:
    """The PEP 440 version pbr would compute for a commit ``distance`` after ``tag``.

    The exported tree has no .git, so pbr cannot look; PBR_VERSION must
    carry what pbr would have said, or the package would not install (or
    would sort wrongly against the released version). pbr's rule:

    - the next version after ``tag``: patch + 1 (``28.1.0`` -> ``28.1.1``),
      or, after a pre-release, the next pre-release (``28.0.0.0rc1`` ->
      ``28.0.0.0rc2``);
    - ``Sem-Ver: feature`` or ``deprecation`` in a commit message since the
      tag bumps the minor version instead, ``Sem-Ver: api-break`` the major;
    - then ``.dev<distance>``: ``28.1.1.dev3`` sorts after 28.1.0 and
      before 28.1.1.

    ``distance`` is git describe's count of commits since the tag. pbr
    counts rows of ``git log`` instead; the two agree on linear history and
    may differ after merges, which changes the dev number only.
    """
    base = Version(tag) if tag else Version("0")
    major, minor, patch = (*base.release, 0, 0, 0)[:3]
    pre = base.pre
    if pre:
        pre = (pre[0], pre[1] + 1)
    else:
        patch += 1
    bump = semver_bump(messages)
    if bump in ("minor", "major"):
        minor, patch, pre = minor + 1, 0, None
    if bump == "major":
        major, minor = major + 1, 0
    pre_text = f".0{pre[0]}{pre[1]}" if pre else ""
    return f"{major}.{minor}.{patch}{pre_text}.dev{distance}"


def semver_bump(messages: str) -> str | None:
    """The strongest ``Sem-Ver:`` impact in commit messages: "major", "minor" or None."""
    symbols: set[str] = set()
    for line in messages.splitlines():
        line = line.strip().lower()
        if line.startswith("sem-ver:"):
            symbols.update(s.strip() for s in line[len("sem-ver:"):].split(","))
    if "api-break" in symbols:
        return "major"
    if symbols & {"feature", "deprecation"}:
        return "minor"
    return None


def _apply(tree: Path, patch: Path, entry: dict[str, str]) -> dict[str, str]:
    """Apply one patch; return its record entry, or raise a one-line error."""
    data = _patch_bytes(patch)
    failure = git.apply_patch(tree, patch)
    if failure is not None:
        raise patch_error(patch, failure, data.decode("utf-8", errors="replace"), entry)
    return {"name": patch.name, "sha256": hashlib.sha256(data).hexdigest()}


def patch_error(patch: Path, failure: git.ApplyFailure, text: str,
                entry: dict[str, str]) -> AirlockError:
    """Name the patch, the file and the hunk git refused, and what to do."""
    shown = display_path(patch)
    onto = f"rebase the patch onto {entry['ref']} ({entry['sha'][:12]})"
    if failure.malformed:
        return AirlockError(shown, f"not a valid patch: {failure.reason}",
                            "regenerate it with git format-patch")
    if failure.path and failure.line is not None:
        header = hunk_header(text, failure.path, failure.line)
        hunk = f"hunk {header}" if header else f"the hunk at line {failure.line}"
        return AirlockError(shown, f"{hunk} does not apply to {failure.path}", onto)
    return AirlockError(shown, f"does not apply: {failure.reason}", onto)


_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


def hunk_header(text: str, path: str, old_start: int) -> str | None:
    """The ``@@ -A,B +C,D @@`` header of the hunk of ``path`` starting at old line ``old_start``.

    git apply reports only "patch failed: PATH:LINE"; the header is what a
    person finds in the patch file. Hunk bodies are skipped by their line
    counts, so a removed line that looks like a header ("--- x") is not one.
    """
    names: set[str] = set()
    old_left = new_left = 0
    for line in text.splitlines():
        if old_left > 0 or new_left > 0:
            if line.startswith("-"):
                old_left -= 1
            elif line.startswith("+"):
                new_left -= 1
            elif not line.startswith("\\"):
                old_left, new_left = old_left - 1, new_left - 1
            continue
        if line.startswith("diff "):
            names = set()
        elif line.startswith(("--- ", "+++ ")):
            names.add(_patch_name(line[4:]))
        elif match := _HUNK.match(line):
            old_left = int(match[2]) if match[2] is not None else 1
            new_left = int(match[4]) if match[4] is not None else 1
            if path in names and int(match[1]) == old_start:
                return match[0]
    return None


def _patch_name(field: str) -> str:
    """A ``---``/``+++`` file name as git apply -p1 reports it."""
    name = field.split("\t")[0].strip().strip('"')
    return name.split("/", 1)[1] if "/" in name else name


def display_path(path: Path) -> str:
    """``path`` relative to the working directory when below it: shorter messages."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def normalise(tree: Path, epoch: int) -> None:
    """Give every file the commit's time and a umask-independent mode.

    A build copies the tree into an image layer, whose digest depends on
    timestamps and modes: with checkout time and the caller's umask, the
    same lock would give different images. Nothing is followed: a link's
    own time is set (its target, maybe a host file, is never touched) and
    only what ``lstat`` finds a file or folder is chmod-ed.
    """
    for top, dirs, files in os.walk(tree, topdown=False):
        for name in [*files, *dirs]:
            _normalise_one(Path(top, name), epoch)
    _normalise_one(tree, epoch)


def _normalise_one(path: Path, epoch: int) -> None:
    mode = os.lstat(path).st_mode
    if stat.S_ISDIR(mode):
        os.chmod(path, 0o755)
    elif stat.S_ISREG(mode):
        os.chmod(path, 0o755 if mode & 0o111 else 0o644)
    # Links keep their mode (Linux has none to set); anything else git cannot make.
    os.utime(path, (epoch, epoch), follow_symlinks=False)


def links_match(trees: list[Path], dest: Path) -> bool:
    """Whether ``dest`` holds exactly ``NN-<name>`` hard-link copies of ``trees``, in order.

    What a build's named ``sources`` context is made of. Making it again
    links every file once more, and a link moves the file's ctime: every
    file of every source tree would then be read and hashed again by the
    next input digest, which is most of a no-op build. Nothing is written
    here: same names, same types, folders of the same mode, each regular
    file the very inode of its tree's (so its content, even edited in
    place), each symbolic link the same target. Anything else (a file
    added or removed, a tree prepared again, a FIFO) is no match, and the
    caller makes the context again.
    """
    try:
        if not stat.S_ISDIR(os.lstat(dest).st_mode):
            return False
        with os.scandir(dest) as entries:
            names = {entry.name for entry in entries}
        wanted = {f"{number:02d}-{tree.name}": tree for number, tree in enumerate(trees)}
        return names == set(wanted) and all(_same_links(str(tree), str(dest / name))
                                            for name, tree in wanted.items())
    except OSError:
        return False


def _same_links(tree: str, copy: str) -> bool:
    """One tree and its hard-link copy, folder by folder (raises OSError on a vanished one)."""
    one, other = os.lstat(tree), os.lstat(copy)
    if not (stat.S_ISDIR(one.st_mode) and stat.S_ISDIR(other.st_mode)) \
            or stat.S_IMODE(one.st_mode) != stat.S_IMODE(other.st_mode):
        return False
    pending = [(tree, copy)]
    while pending:
        left, right = pending.pop()
        with os.scandir(left) as entries:
            mine = {entry.name: entry for entry in entries}
        with os.scandir(right) as entries:
            theirs = {entry.name: entry for entry in entries}
        if mine.keys() != theirs.keys():
            return False
        for name, entry in mine.items():
            a, b = entry.stat(follow_symlinks=False), theirs[name].stat(follow_symlinks=False)
            if stat.S_IFMT(a.st_mode) != stat.S_IFMT(b.st_mode):
                return False
            if stat.S_ISDIR(a.st_mode):
                if stat.S_IMODE(a.st_mode) != stat.S_IMODE(b.st_mode):
                    return False
                pending.append((entry.path, theirs[name].path))
            elif stat.S_ISREG(a.st_mode):
                if (a.st_dev, a.st_ino) != (b.st_dev, b.st_ino):
                    return False
            elif stat.S_ISLNK(a.st_mode):
                if os.readlink(entry.path) != os.readlink(theirs[name].path):
                    return False
            else:
                return False
    return True
