"""The only module that runs git.

Everything else asks this module for plain data (SHAs, ref lists) or for an
effect on a directory. Failures become one-line :class:`ToolError`/
:class:`AirlockError` messages naming the repository.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from airlock.errors import ToolError
from airlock.ext import exec as ext_exec
from airlock.urls import basic_authorization, credentials, strip_userinfo

# git must never prompt (no terminal in CI or Zuul) nor read the user's
# configuration (hooks, signing, url rewrites would make runs differ).
_ENV = {
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_ASKPASS": "/bin/false",
    "LC_ALL": "C",
}

# Seconds a git call may take. Work on a local repository (read-tree,
# checkout-index of a large tree, fast-import of thousands of files) ends
# in seconds; asking a server for its refs in well under a minute; a fetch
# may bring a large history over a slow link.
LOCAL_TIMEOUT = 600
LS_REMOTE_TIMEOUT = 300
FETCH_TIMEOUT = 3600


def run(args: list[str], cwd: Path | str | None = None, *, where: str = "git",
        check: bool = True, input: str | None = None,
        env: dict[str, str] | None = None,
        timeout: float = LOCAL_TIMEOUT) -> subprocess.CompletedProcess[str]:
    """Run ``git ARGS`` and return the completed process (text mode).

    With ``check`` a non-zero exit raises ToolError whose message is
    ``where`` plus git's last stderr line, the one that says what went wrong.
    A missing git, and a run longer than ``timeout`` seconds, are
    ToolErrors whatever ``check`` says (:func:`airlock.ext.exec.run`).
    """
    proc = ext_exec.run(["git", *args], where=where, timeout=timeout, cwd=cwd, input=input,
                        env=ext_exec.environ(**_ENV, **(env or {})), check=False)
    if check and proc.returncode != 0:
        lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
        last = lines[-1] if lines else f"git {args[0]} exited {proc.returncode}"
        raise ToolError(where, last)
    return proc


def _remote(url: str) -> tuple[str, dict[str, str]]:
    """``url`` without its credentials, and the environment that gives them to git.

    A credentialed URL on git's command line shows in ``ps`` to every user
    of the host. For http(s) the credentials travel instead as an
    ``Authorization`` header scoped to that URL, in the environment
    (``GIT_CONFIG_COUNT``/``KEY``/``VALUE``: git's config from the
    environment, as private as the process itself). Other schemes (ssh
    users carry no secret) are left as they are.
    """
    given = credentials(url)
    if given is None or urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        return url, {}
    bare = strip_userinfo(url)
    return bare, {"GIT_CONFIG_COUNT": "1",
                  "GIT_CONFIG_KEY_0": f"http.{bare}.extraHeader",
                  "GIT_CONFIG_VALUE_0": f"Authorization: {basic_authorization(*given)}"}


# --- refs and sources: ls-remote, fetch by SHA, export, describe, apply ------
#
# These return plain data. A repository that cannot be read raises ToolError
# whose ``what`` is git's own reason (see :func:`reason`); callers add the
# component, the file and the fix, which this module does not know.

# How servers say "I do not have that object": C git (protocol v2), JGit
# ("want SHA not valid"), and the client when a named ref is missing.
_MISSING = re.compile(r"not our ref|want [0-9a-f]{40} not valid|no such remote ref"
                      r"|couldn't find remote ref")


# git's words when it would have prompted for credentials.
_ASKED = re.compile(r"unable to read askpass response|could not read (Username|Password)"
                    r"|Authentication failed for")


def reason(stderr: str) -> str:
    """git's own one-line reason for a failure.

    git ends many failures with generic advice ("Please make sure you have
    the correct access rights"); the first ``fatal:``/``error:`` line is the
    one that says what went wrong, so that is the one a user should see.
    """
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    if any(_ASKED.search(line) for line in lines):
        # git wanted to prompt (askpass is /bin/false): credentials were
        # refused, or none were given; its own words name /bin/false.
        return ("authentication failed: the server refused the credentials given, "
                "or asked for some and none were given")
    for line in lines:
        for prefix in ("fatal: ", "error: "):
            if line.startswith(prefix):
                return line[len(prefix):]
    return lines[-1] if lines else "git failed without a message"


def ls_remote(url: str, patterns: list[str], *, heads: bool = False,
              tags: bool = False) -> dict[str, str]:
    """Map ref name -> object SHA for the refs of ``url`` that match ``patterns``.

    An annotated tag is listed twice, ``refs/tags/X`` (the tag object) and
    ``refs/tags/X^{}`` (the commit), when the patterns let ``X^{}`` through:
    see :func:`peeled`. ``heads``/``tags`` make the server send only
    branches/tags (protocol v2 ref-prefix), which matters on Gerrit, whose
    refs/changes/ is huge. Patterns match whole trailing path components.
    """
    args = ["ls-remote"]
    if heads:
        args.append("--heads")
    if tags:
        args.append("--tags")
    bare, env = _remote(url)
    proc = run([*args, "--", bare, *patterns], check=False, where=bare, env=env,
               timeout=LS_REMOTE_TIMEOUT)
    if proc.returncode != 0:
        raise ToolError(bare, reason(proc.stderr))
    refs: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        sha, _, name = line.partition("\t")
        if name:
            refs[name.strip()] = sha.strip()
    return refs


def peeled(refs: dict[str, str]) -> dict[str, str]:
    """Map ref name -> commit SHA, using the ``^{}`` entry of annotated tags.

    A lock must hold the commit, not the tag object: only the commit is what
    gets checked out, and a re-created tag object would change the SHA.
    """
    result = {name: sha for name, sha in refs.items() if not name.endswith("^{}")}
    for name, sha in refs.items():
        if name.endswith("^{}"):
            result[name[:-3]] = sha
    return result


def init_bare(git_dir: Path) -> None:
    """Create an empty bare repository to fetch into (a scratch area)."""
    proc = run(["init", "--quiet", "--bare", str(git_dir)], check=False)
    if proc.returncode != 0:
        raise ToolError(str(git_dir), f"git init failed: {reason(proc.stderr)}")


def fetch_commit(git_dir: Path, url: str, sha: str, *, depth: int | None = None,
                 tags: bool = False) -> bool:
    """Fetch commit ``sha`` (and with ``tags`` every tag) from ``url`` into ``git_dir``.

    Fetching by SHA needs no ref pointing at the commit: a protocol v2 server
    (git >= 2.18, the default since git 2.26) serves any commit it holds.
    Returns False when the server does not have the commit; raises ToolError
    when the repository cannot be read or refuses requests by SHA.
    """
    args = ["--git-dir", str(git_dir), "fetch", "--quiet", "--no-tags", "--no-write-fetch-head"]
    if depth:
        args.append(f"--depth={depth}")
    refspecs = [sha, "+refs/tags/*:refs/tags/*"] if tags else [sha]
    bare, env = _remote(url)
    proc = run([*args, "--", bare, *refspecs], check=False, where=bare, env=env,
               timeout=FETCH_TIMEOUT)
    if proc.returncode == 0:
        return True
    why = reason(proc.stderr)
    if "unadvertised object" in why:
        raise ToolError(bare, "the server does not serve commits by SHA (protocol v0/v1 "
                        "without uploadpack.allowAnySHA1InWant)")
    if _MISSING.search(why):
        return False
    raise ToolError(bare, why)


def has_commit(url: str, sha: str) -> bool:
    """Whether the repository at ``url`` holds commit ``sha``.

    ls-remote only lists ref tips, so a SHA in the middle of a branch is
    checked by a shallow fetch into a scratch repository: one commit and its
    tree, no history.
    """
    with tempfile.TemporaryDirectory(prefix="airlock-git-") as tmp:
        git_dir = Path(tmp) / "probe.git"
        init_bare(git_dir)
        return fetch_commit(git_dir, url, sha, depth=1)


def _checked(git_dir: Path, args: list[str], what: str, **kwargs) -> str:
    """Run git on ``git_dir``; a failure is a ToolError naming ``what`` was being done."""
    proc = run(["--git-dir", str(git_dir), *args], check=False, where=str(git_dir), **kwargs)
    if proc.returncode != 0:
        raise ToolError(str(git_dir), f"{what}: {reason(proc.stderr)}")
    return proc.stdout


def export_tree(git_dir: Path, sha: str, dest: Path) -> None:
    """Write the tree of ``sha`` into the existing directory ``dest`` (no .git).

    read-tree + checkout-index writes the files exactly as a checkout would
    (symlinks, executable bits) without making ``dest`` a work tree and
    without the export-ignore filtering that ``git archive`` would apply.
    """
    worktree = ["--work-tree", str(dest)]
    _checked(git_dir, [*worktree, "read-tree", sha], f"cannot read the tree of {sha}")
    _checked(git_dir, [*worktree, "checkout-index", "--all", "--force"],
             f"cannot export {sha}", cwd=dest)


def commit_time(git_dir: Path, sha: str) -> int:
    """The committer time of ``sha`` (Unix seconds): a reproducible timestamp."""
    return int(_checked(git_dir, ["log", "-1", "--format=%ct", sha], "git log").strip())


def tag_names(git_dir: Path) -> list[str]:
    """Every tag name in ``git_dir``."""
    out = _checked(git_dir, ["for-each-ref", "--format=%(refname:strip=2)", "refs/tags/"],
                   "cannot list tags")
    return out.split()


def _glob_escape(name: str) -> str:
    """Escape a literal name for git's wildmatch (describe --exclude)."""
    return "".join(f"\\{c}" if c in "*?[\\" else c for c in name)


def describe(git_dir: Path, sha: str, exclude: list[str] | None = None) -> tuple[str, int] | None:
    """The nearest tag reachable from ``sha`` and the number of commits since it.

    Tags listed in ``exclude`` (literal names) are skipped. None when no tag
    is reachable. Lightweight tags count too: some mirrors only have those.
    """
    args = ["describe", "--tags", "--long", "--abbrev=40"]
    for name in exclude or []:
        args += ["--exclude", _glob_escape(name)]
    proc = run(["--git-dir", str(git_dir), *args, sha], check=False)
    if proc.returncode != 0:
        why = reason(proc.stderr)
        if "No names found" in why or "No tags can describe" in why:
            return None
        raise ToolError(str(git_dir), f"git describe {sha}: {why}")
    tag, count, _ = proc.stdout.strip().rsplit("-", 2)
    return tag, int(count)


def count_commits(git_dir: Path, rev: str) -> int:
    """The number of commits reachable from ``rev`` (``rev-list --count``)."""
    return int(_checked(git_dir, ["rev-list", "--count", rev], "git rev-list").strip())


def log_messages(git_dir: Path, rev_range: str) -> str:
    """The raw messages (``%B``) of the commits in ``rev_range``."""
    return _checked(git_dir, ["log", "--format=%B", rev_range], "git log")


@dataclass(frozen=True)
class ApplyFailure:
    """Why ``git apply`` refused a patch, in its own terms.

    ``path`` and ``line`` come from "patch failed: PATH:LINE", where LINE is
    the old start line of the failing hunk; ``malformed`` is set when git
    could not even parse the patch; ``reason`` is git's first error line.
    """

    reason: str
    path: str | None = None
    line: int | None = None
    malformed: bool = False


_PATCH_FAILED = re.compile(r"^patch failed: (?P<path>.+):(?P<line>\d+)$")
_DOES_NOT_APPLY = re.compile(r"^(?P<path>.+): patch does not apply$")


def apply_patch(tree: Path, patch: Path) -> ApplyFailure | None:
    """Apply ``patch`` (``-p1``) to the plain directory ``tree``; None on success.

    git apply is all-or-nothing per patch. GIT_CEILING_DIRECTORIES stops git
    from finding a repository above ``tree`` (the tree may sit inside a
    checkout), which would make it apply relative to that repository's top.
    """
    tree = tree.resolve()
    proc = run(["apply", "--whitespace=nowarn", str(patch.resolve())], cwd=tree, check=False,
               env={"GIT_CEILING_DIRECTORIES": str(tree.parent)})
    if proc.returncode == 0:
        return None
    errors = [line.removeprefix("error: ").strip() for line in proc.stderr.splitlines()
              if line.startswith(("error: ", "fatal: "))]
    errors = [e.removeprefix("fatal: ") for e in errors]
    path, line, first = None, None, None
    for text in errors:
        if match := _PATCH_FAILED.match(text):
            path, line = match["path"], int(match["line"])
        elif match := _DOES_NOT_APPLY.match(text):
            path = path or match["path"]
        elif first is None and not text.startswith("while searching for"):
            first = text
    return ApplyFailure(reason=first or "patch does not apply", path=path, line=line,
                        malformed=proc.returncode == 128)


# --- mirror: bare repositories made from released sdists ---------------------
#
# ``airlock mirror create`` writes the local stand-in for the site's git
# mirror. Commits are written with fast-import (no work tree, no index, one
# process for thousands of files) with the identity and clock the caller
# gives, so the same files make the same SHAs on every machine.

# A file of a snapshot: (path in the tree, git mode "100644"/"100755"/
# "120000", content; a symlink's content is its target).
SnapshotFile = tuple[str, str, bytes]

_SCRATCH_REF = "refs/airlock/snapshot"


def rev_sha(git_dir: Path, rev: str) -> str | None:
    """The object SHA ``rev`` names in ``git_dir``, or None when it names nothing."""
    proc = run(["--git-dir", str(git_dir), "rev-parse", "--verify", "--quiet",
                "--end-of-options", rev], check=False)
    return proc.stdout.strip() if proc.returncode == 0 else None


def write_snapshot(git_dir: Path, files: list[SnapshotFile], *, message: str, ident: str,
                   when: int) -> str:
    """Write ``files`` as one parentless commit into ``git_dir``; return its SHA.

    No ref is left pointing at it: the caller tags it or points a branch at
    it. A parentless commit's SHA depends only on the files, the message,
    ``ident`` ("Name <email>") and ``when`` (Unix seconds, UTC), which is
    what makes a mirror reproducible: no earlier run can change it.
    """
    proc = ext_exec.run(["git", "--git-dir", str(git_dir), "fast-import", "--quiet", "--force"],
                        where=str(git_dir), timeout=LOCAL_TIMEOUT, text=False, check=False,
                        input=_fast_import_stream(files, message=message, ident=ident,
                                                  when=when),
                        env=ext_exec.environ(**_ENV))
    if proc.returncode != 0:
        raise ToolError(str(git_dir), "git fast-import: "
                        + reason(proc.stderr.decode("utf-8", errors="replace")))
    sha = rev_sha(git_dir, _SCRATCH_REF)
    _checked(git_dir, ["update-ref", "-d", _SCRATCH_REF], "cannot drop the scratch ref")
    assert sha is not None
    return sha


def _fast_import_stream(files: list[SnapshotFile], *, message: str, ident: str,
                        when: int) -> bytes:
    """The fast-import commands for one parentless commit on the scratch ref."""
    signature = f"{ident} {when} +0000\n".encode()
    text = message.encode()
    parts = [f"reset {_SCRATCH_REF}\ncommit {_SCRATCH_REF}\n".encode(),
             b"author " + signature, b"committer " + signature,
             b"data %d\n" % len(text), text, b"\n"]
    for path, mode, data in files:
        parts += [f"M {mode} inline ".encode(), _fast_import_path(path), b"\n",
                  b"data %d\n" % len(data), data, b"\n"]
    parts.append(b"done\n")
    return b"".join(parts)


def _fast_import_path(path: str) -> bytes:
    """``path`` as fast-import reads it: C-quoted when it could be misread."""
    raw = path.encode()
    if not any(c in raw for c in b'"\\\n'):
        return raw
    escaped = raw.replace(b"\\", b"\\\\").replace(b'"', b'\\"').replace(b"\n", b"\\n")
    return b'"' + escaped + b'"'


def write_tag(git_dir: Path, name: str, commit: str, *, message: str, ident: str,
              when: int) -> str:
    """Create the annotated tag ``name`` on ``commit``; return the tag object's SHA.

    The tag object is written byte for byte (mktag), so its SHA is as
    reproducible as the commit's. Refuses to move a tag that exists: a
    release tag never changes.
    """
    body = (f"object {commit}\ntype commit\ntag {name}\ntagger {ident} {when} +0000\n\n"
            f"{message}")
    sha = _checked(git_dir, ["mktag"], f"cannot write tag {name}", input=body).strip()
    # The empty old value makes update-ref fail if the tag appeared meanwhile.
    _checked(git_dir, ["update-ref", f"refs/tags/{name}", sha, ""],
             f"cannot create tag {name}")
    return sha


def set_branch(git_dir: Path, branch: str, commit: str) -> str | None:
    """Point ``refs/heads/<branch>`` at ``commit``; return where it pointed before."""
    ref = f"refs/heads/{branch}"
    old = rev_sha(git_dir, ref)
    if old != commit:
        _checked(git_dir, ["update-ref", ref, commit], f"cannot set branch {branch}")
    return old


def set_default_branch(git_dir: Path, branch: str) -> None:
    """Make ``branch`` HEAD when HEAD names a branch that does not exist.

    ``git init`` points HEAD at a branch with no commits; a clone of such a
    repository warns and checks out nothing. An existing HEAD is left alone.
    """
    head = _checked(git_dir, ["symbolic-ref", "--quiet", "HEAD"], "cannot read HEAD").strip()
    if rev_sha(git_dir, head) is None:
        _checked(git_dir, ["symbolic-ref", "HEAD", f"refs/heads/{branch}"],
                 f"cannot point HEAD at {branch}")


# --- patches without a tree ---------------------------------------------------


def patch_paths(patch: Path, *, timeout: float = 60) -> tuple[list[str], str | None]:
    """The paths ``patch`` touches, as ``git apply -p1`` would, without a tree to apply to.

    Returns (sorted paths, None), or ([], git's reason) when git cannot read
    the patch. ``--numstat`` names one side of a rename or copy, the new
    one; ``--reverse`` names the old one, so both runs together give every
    path. git runs in an empty folder below no repository: a patch is read
    the same wherever airlock is started.
    """
    found: set[str] = set()
    with tempfile.TemporaryDirectory(prefix="airlock-patch-") as empty:
        env = ext_exec.environ(**_ENV, GIT_CEILING_DIRECTORIES=str(Path(empty).parent))
        for reverse in ([], ["--reverse"]):
            proc = ext_exec.run(["git", "apply", "--numstat", "-z", *reverse,
                                 str(Path(patch).resolve())],
                                where=str(patch), timeout=timeout, env=env, cwd=empty,
                                check=False, text=False)
            if proc.returncode != 0:
                return [], reason(proc.stderr.decode("utf-8", errors="replace"))
            for record in proc.stdout.split(b"\0"):
                fields = record.split(b"\t", 2)
                if len(fields) == 3 and fields[2]:
                    found.add(os.fsdecode(fields[2]))
    return sorted(found), None


# --- git bundles: what crosses the air gap ------------------------------------


def fetch_refs(git_dir: Path, url: str, refspecs: list[str]) -> None:
    """Fetch ``refspecs`` (``+refs/tags/X:refs/tags/X``...) from ``url`` into ``git_dir``."""
    bare, env = _remote(url)
    proc = run(["--git-dir", str(git_dir), "fetch", "--quiet", "--no-tags",
                "--no-write-fetch-head", "--", bare, *refspecs], check=False, where=bare,
               env=env, timeout=FETCH_TIMEOUT)
    if proc.returncode != 0:
        raise ToolError(bare, reason(proc.stderr))


def set_ref(git_dir: Path, ref: str, target: str) -> None:
    """Point ``ref`` (a full ref name) at the object ``target``."""
    _checked(git_dir, ["update-ref", ref, target], f"cannot set {ref}")


def tag_object(git_dir: Path, tag: str) -> str | None:
    """The object ``refs/tags/<tag>`` names (the tag object of an annotated tag)."""
    return rev_sha(git_dir, f"refs/tags/{tag}")


def bundle_create(git_dir: Path, out: Path, refs: list[str]) -> None:
    """Write a git bundle of ``refs`` with their whole history to ``out``.

    One pack thread: the same objects then give the same bytes, so a bundle
    made again for the same commit is the same artifact (a delta bundle
    carries it only when it changed).
    """
    _checked(git_dir, ["-c", "pack.threads=1", "bundle", "create", "--quiet", str(out),
                       *refs], f"cannot write the git bundle {out.name}")


def bundle_heads(bundle: Path) -> dict[str, str]:
    """``{ref: sha}`` a git bundle holds (``git bundle list-heads``)."""
    proc = run(["bundle", "list-heads", str(bundle)], check=False, where=str(bundle))
    if proc.returncode != 0:
        raise ToolError(str(bundle), f"not a readable git bundle: {reason(proc.stderr)}")
    heads: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        sha, _, name = line.partition(" ")
        if name:
            heads[name.strip()] = sha.strip()
    return heads


def unbundle(git_dir: Path, bundle: Path) -> None:
    """Fetch every ref of ``bundle`` into the bare repository ``git_dir``."""
    _checked(git_dir, ["fetch", "--quiet", "--no-tags", "--no-write-fetch-head",
                       str(bundle), "+refs/*:refs/*"], f"cannot read the git bundle {bundle}")


def has_object(git_dir: Path, rev: str) -> bool:
    """Whether ``rev`` names a commit held by ``git_dir``."""
    return run(["--git-dir", str(git_dir), "cat-file", "-e", f"{rev}^{{commit}}"],
               check=False).returncode == 0


def is_ancestor(git_dir: Path, old: str, new: str) -> bool:
    """Whether commit ``old`` is ``new`` or an ancestor of it in ``git_dir`` (absent: False)."""
    if not has_object(git_dir, old):
        return False
    return run(["--git-dir", str(git_dir), "merge-base", "--is-ancestor", old, new],
               check=False).returncode == 0


def remote_refs(url: str) -> dict[str, str]:
    """``{ref: object sha}`` of every ref of ``url`` as stored (tags unpeeled, no HEAD)."""
    return {name: sha for name, sha in ls_remote(url, []).items()
            if name.startswith("refs/") and not name.endswith("^{}")}


def push_refs(git_dir: Path, url: str, updates: dict[str, str]) -> None:
    """Push ``{ref: sha}`` from ``git_dir`` to ``url``, never forced, all or nothing.

    Without ``+`` the receiving side itself refuses to move a tag or to
    move a branch anywhere but forward: the caller's checks are not the
    only guard. Credentials of an http(s) ``url`` travel as a header in the
    environment (:func:`_remote`), never on the command line.
    """
    if not updates:
        return
    bare, env = _remote(url)
    refspecs = [f"{sha}:{ref}" for ref, sha in sorted(updates.items())]
    proc = run(["--git-dir", str(git_dir), "push", "--quiet", "--atomic", "--", bare,
                *refspecs], check=False, where=bare, env=env, timeout=FETCH_TIMEOUT)
    if proc.returncode != 0:
        raise ToolError(bare, reason(proc.stderr))


# --- airlock's own checkout: what it is, and a commit of its working tree ----
#
# ``bundle create`` carries the checkout airlock runs from. Nothing here
# writes into that checkout: no ref, no index, no object. Objects a
# snapshot needs are written into a scratch repository that borrows the
# checkout's objects (an alternate), and the checkout's index is read
# through a private copy.


@dataclass(frozen=True)
class Checkout:
    """A work tree's HEAD: its commit, its branch (None: detached), the tags on it."""

    top: Path
    head: str
    branch: str | None
    tags: dict[str, str]  # refs/tags/X -> the object the tag ref holds
    objects: Path  # the repository's object store (shared by every worktree)
    index: Path  # this work tree's index


def checkout(work_tree: Path) -> Checkout | None:
    """What ``work_tree`` has checked out; None when it is not the top of a git work tree.

    Reads only (``GIT_OPTIONAL_LOCKS=0``: not even the index's stat cache
    is refreshed).
    """
    def ask(*args: str) -> str | None:
        proc = run(["-C", str(work_tree), *args], check=False, where=str(work_tree),
                   env={"GIT_OPTIONAL_LOCKS": "0"})
        return proc.stdout.strip() if proc.returncode == 0 else None

    top = ask("rev-parse", "--show-toplevel")
    if top is None or Path(top).resolve() != Path(work_tree).resolve():
        return None
    head = ask("rev-parse", "--verify", "--quiet", "HEAD^{commit}")
    paths = ask("rev-parse", "--path-format=absolute", "--git-path", "objects",
                "--git-path", "index")
    if not head or not paths:
        return None
    objects, index = paths.splitlines()
    branch = ask("symbolic-ref", "--quiet", "HEAD")
    listed = ask("for-each-ref", "--points-at", head, "--format=%(refname) %(objectname)",
                 "refs/tags/") or ""
    tags = dict(line.split(" ", 1) for line in listed.splitlines() if " " in line)
    return Checkout(Path(top), head, branch.removeprefix("refs/heads/")
                    if branch and branch.startswith("refs/heads/") else None,
                    tags, Path(objects), Path(index))


def borrow_objects(git_dir: Path, objects: Path) -> None:
    """Let the bare repository ``git_dir`` read ``objects`` (an alternate), copying nothing."""
    info = git_dir / "objects" / "info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "alternates").write_text(f"{objects}\n")


def working_tree(work: Checkout, scratch: Path) -> str:
    """The tree of ``work``'s tracked files as they are on disk; its objects go to ``scratch``.

    Tracked means in the work tree's index (staged new files too, files
    deleted from disk left out; untracked files never). The index is read
    through a copy (its times kept, so git's racy-file check still holds)
    and every object written goes to the bare repository ``scratch``,
    which borrows the checkout's objects: the checkout is not written to.
    """
    borrow_objects(scratch, work.objects)
    index = scratch / "airlock-index"
    if work.index.is_file():
        shutil.copy2(work.index, index)
    env = {"GIT_INDEX_FILE": str(index), "GIT_OBJECT_DIRECTORY": str(scratch / "objects"),
           "GIT_OPTIONAL_LOCKS": "0"}
    where = str(work.top)
    if not index.is_file():
        _checked_in(work.top, ["read-tree", work.head], "cannot read HEAD", env)
    _checked_in(work.top, ["add", "--update", "--", "."], f"{where}: cannot read the tracked "
                "files", env)
    return _checked_in(work.top, ["write-tree"], f"{where}: cannot write the tree", env).strip()


def _checked_in(work_tree: Path, args: list[str], what: str, env: dict[str, str]) -> str:
    proc = run(["-C", str(work_tree), *args], check=False, where=str(work_tree), env=env)
    if proc.returncode != 0:
        raise ToolError(str(work_tree), f"{what}: {reason(proc.stderr)}")
    return proc.stdout


def tree_of(git_dir: Path, rev: str) -> str:
    """The tree SHA of commit ``rev``."""
    return _checked(git_dir, ["rev-parse", "--verify", f"{rev}^{{tree}}"],
                    f"cannot read the tree of {rev}").strip()


def commit_tree(git_dir: Path, tree: str, parents: list[str], *, message: str, ident: str,
                when: int) -> str:
    """Write a commit of ``tree`` (no ref moves); the same arguments give the same SHA.

    Name, email and both dates are fixed here and signing is off whatever
    the repository's configuration says, so nothing of the machine or the
    moment gets into the commit.
    """
    name, _, email = ident.partition(" <")
    env = {"GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": email.rstrip(">"),
           "GIT_COMMITTER_NAME": name, "GIT_COMMITTER_EMAIL": email.rstrip(">"),
           "GIT_AUTHOR_DATE": f"@{when} +0000", "GIT_COMMITTER_DATE": f"@{when} +0000"}
    args = ["-c", "i18n.commitEncoding=UTF-8", "commit-tree", "--no-gpg-sign", tree]
    for parent in parents:
        args += ["-p", parent]
    return _checked(git_dir, args, "cannot write the commit", input=message,
                    env=env).strip()
