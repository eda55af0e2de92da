"""Resolve the git ref of every component of a release to a commit: the lock.

``source-refs.yaml`` names refs (a tag, a branch, a full SHA or a full ref
name); a build must name commits, so that the same lock always gives the same
sources even after a branch moves or a tag is re-created. Resolution asks
each repository with ``git ls-remote`` (no clone), one repository per worker
thread, since the cost is almost all waiting on remotes.

The lock is plain data, dumped as YAML::

    release: "2025.2"
    components:
      keystone: {sha: <40 hex>, ref: "28.1.0", repo: <url>, resolved-at: <UTC ISO-8601>}

``repo`` never holds a credential: a URL given as
``https://user:token@host/...`` is used as given to resolve, and recorded as
``https://host/...`` (:func:`airlock.urls.strip_userinfo`); whoever fetches
from the lock gets the credential back from the URL of that run
(:func:`airlock.urls.with_credentials`) or from git's own ``~/.netrc``.
"""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from airlock.data import yamlfile
from airlock.data.release import ComponentRef, Release, ref_problem, repo_problem, shown
from airlock.errors import AirlockError, ErrorList, ToolError
from airlock.ext import exec as ext_exec
from airlock.ext import git
from airlock.urls import strip_userinfo

ENTRY_FIELDS = ("sha", "ref", "repo", "resolved-at")

_FULL_SHA = re.compile(r"[0-9a-fA-F]{40}")
_SHORT_SHA = re.compile(r"[0-9a-fA-F]{7,39}")

_HEADER = ("# airlock refs lock: the commit each component of release {release} is built from.\n"
           "# Written by `airlock refs resolve`; do not edit, resolve again instead.\n")


def resolve_release(release: Release, git_base: str | None, jobs: int = 8,
                    only: list[str] | None = None) -> dict[str, Any]:
    """Resolve the refs of ``release`` (or of the components in ``only``) to a lock.

    Every component is tried, so one run reports every broken entry: a single
    failure is raised as is, several as one ErrorList.
    """
    if jobs < 1:
        raise AirlockError("--jobs", f"must be at least 1, not {jobs}", "pass --jobs 1 or more")
    selected = _select(release, only)
    workers = max(1, min(jobs, len(selected)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="airlock-refs") as pool:
        futures = [pool.submit(_attempt, release, ref, git_base) for ref in selected]
        outcomes = [ext_exec.result(future) for future in futures]
    errors = [outcome for outcome in outcomes if isinstance(outcome, AirlockError)]
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise ErrorList(errors)
    return {"release": release.name,
            "components": {ref.name: entry for ref, entry in zip(selected, outcomes, strict=True)}}


def _select(release: Release, only: list[str] | None) -> list[ComponentRef]:
    """The component refs to resolve, in the release's order."""
    if only is None:
        return list(release.components.values())
    unknown = [name for name in only if name not in release.components]
    if unknown:
        known = ", ".join(sorted(release.components)) or "none"
        raise AirlockError(str(release.source_refs_path),
                           f"no component {', '.join(unknown)} (known: {known})",
                           "add it to source-refs.yaml or name a known component")
    return [release.components[name] for name in only]


def _attempt(release: Release, ref: ComponentRef,
             git_base: str | None) -> dict[str, str] | AirlockError:
    """Resolve one ref; return its error instead of raising, so others still run."""
    try:
        return resolve_ref(ref, git_base, where=f"{release.source_refs_path}:{ref.name}")
    except AirlockError as error:
        return error


def resolve_ref(ref: ComponentRef, git_base: str | None, where: str) -> dict[str, str]:
    """Resolve one ComponentRef to its lock entry; ``where`` names it in errors.

    git is given the URL with its credentials; the entry and every message
    name it without.
    """
    repo = ref.repo_url(git_base)
    shown = strip_userinfo(repo)
    fix = ("check the entry's repo: in source-refs.yaml" if ref.repo else
           "check --git-base / AIRLOCK_GIT_BASE (the repository is "
           f"<git-base>/openstack/{ref.component.project}) or give the entry a repo:")
    try:
        sha = _find_commit(ref.ref, repo, where, shown)
    except ToolError as error:
        raise ToolError(where, f"cannot read repository {shown}: {error.what}", fix) from None
    return {"sha": sha, "ref": ref.ref, "repo": shown, "resolved-at": _now()}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _find_commit(name: str, repo: str, where: str, shown: str) -> str:
    """The commit SHA ``name`` stands for in ``repo``; AirlockError if none or ambiguous.

    ``shown`` is ``repo`` as messages name it (no credentials).
    """
    if _FULL_SHA.fullmatch(name):
        sha = name.lower()
        if not git.has_commit(repo, sha):
            raise AirlockError(where, f"commit {sha} not found in {shown}",
                               "check the SHA, or update the mirror that serves this repository")
        return sha
    if name.startswith("refs/"):
        found = git.peeled(git.ls_remote(repo, [name, f"{name}^{{}}"],
                                         heads=name.startswith("refs/heads/"),
                                         tags=name.startswith("refs/tags/")))
        if name in found:
            return found[name]
        raise _unknown(name, shown, where)
    found = git.peeled(git.ls_remote(repo, [name, f"{name}^{{}}"], heads=True, tags=True))
    tag, branch = found.get(f"refs/tags/{name}"), found.get(f"refs/heads/{name}")
    if tag and branch:
        raise AirlockError(where, f"ref \"{name}\" is both a branch and a tag in {shown}",
                           f"write refs/tags/{name} or refs/heads/{name}")
    sha = tag or branch
    if sha:
        return sha
    raise _unknown(name, shown, where)


def _unknown(name: str, repo: str, where: str) -> AirlockError:
    """The error for a ref that the repository does not have."""
    if _SHORT_SHA.fullmatch(name):
        fix = "write the full 40-character SHA, not an abbreviation"
    else:
        fix = f"write an existing tag, branch or full SHA (git ls-remote {repo} lists them)"
    return AirlockError(where, f"ref \"{name}\" not found in {repo}", fix)


def dump_lock(lock: dict[str, Any]) -> str:
    """The lock as YAML text: a header, then components by name, fields in a fixed order.

    Stable text makes a lock reviewable and diffable: re-resolving unchanged
    refs only changes the resolved-at lines.
    """
    components = {
        name: {field: str(entry[field]) for field in ENTRY_FIELDS}
        for name, entry in sorted(lock["components"].items())
    }
    body = yaml.safe_dump({"release": str(lock["release"]), "components": components},
                          sort_keys=False, default_flow_style=False, width=1000)
    return _HEADER.format(release=lock["release"]) + body


def load_lock(path: Path) -> dict[str, Any]:
    """Read a lock written by :func:`dump_lock`; AirlockError naming what is wrong."""
    fix = "write it again with: airlock refs resolve --release REL -o FILE"
    if not os.path.lexists(path):
        raise AirlockError(str(path), "no such lock file", fix)
    data = yamlfile.load(path, fix=fix)  # a regular file of bounded size: no FIFO, no device
    if not isinstance(data, dict):
        raise AirlockError(str(path), "not a refs lock (expected a mapping with release: "
                           "and components:)", fix)
    for key, kind in (("release", str), ("components", dict)):
        if not isinstance(data.get(key), kind):
            what = "missing" if key not in data else f"not a {kind.__name__}"
            raise AirlockError(yamlfile.where(path, data, key), f"{key}: {what}", fix)
    components: dict[str, dict[str, str]] = {}
    for name, entry in data["components"].items():
        components[str(name)] = _entry(path, data["components"], name, entry, fix)
    return {"release": data["release"], "components": components}


def _entry(path: Path, parent: Any, name: Any, entry: Any, fix: str) -> dict[str, str]:
    """Check one component entry of a lock and return it as plain strings."""
    where = yamlfile.where(path, parent, name)
    if not isinstance(entry, dict):
        raise AirlockError(where, f"component {name}: not a mapping", fix)
    missing = [field for field in ENTRY_FIELDS if not isinstance(entry.get(field), str)]
    if missing:
        raise AirlockError(where, f"component {name}: missing or not a string: "
                           f"{', '.join(missing)}", fix)
    if not _FULL_SHA.fullmatch(entry["sha"]):
        raise AirlockError(yamlfile.where(path, entry, "sha"),
                           f"component {name}: sha is not a 40-character hex SHA", fix)
    # A lock written by hand (or by an older airlock) may hold a credential:
    # it is not carried on into records; the run's URLs give it back.
    repo = strip_userinfo(entry["repo"])
    # A lock is input too: what validate refuses in source-refs.yaml (an
    # option, a remote helper, shell text) is refused here before git sees it.
    repo_wrong = repo_problem(repo)
    if repo_wrong is not None:
        raise AirlockError(yamlfile.where(path, entry, "repo"),
                           f"component {name}: repo {shown(repo)} {repo_wrong[0]}", fix)
    ref_wrong = ref_problem(entry["ref"])
    if ref_wrong is not None:
        raise AirlockError(yamlfile.where(path, entry, "ref"),
                           f"component {name}: ref {shown(entry['ref'])} {ref_wrong}", fix)
    return {**{field: entry[field] for field in ENTRY_FIELDS}, "repo": repo}
