"""The patch series of a component: which files, in which order, and whether git can use them.

A site's changes to a component live in
``patches/<component>/<release>/NNNN-*.patch``, applied in lexical order
of their names by ``airlock sources prepare``. Both that command and
``airlock release validate`` list and check a series here, so that what
the one refuses the other refuses first, with the same line:

- a series that cannot be read is an error, never "0 patch(es)": a
  patches folder that is a file, a release folder that is not a folder,
  a ``*.patch`` that is a FIFO, a folder, a dangling link, a link out of
  the patches tree, or larger than :data:`airlock.files.PATCH_LIMIT`;
- a patch must be one git can apply at all: not empty, not binary (NUL
  bytes), parsed by ``git apply`` without a tree, and touching no path
  git refuses (``..``, ``.git``) nor ``.airlock/``, where airlock records
  what it prepared.

Whether a patch applies to the component's tree is known only once the
tree is exported: that is ``sources prepare``'s to say.

A patches folder that is simply absent is an empty series (most sites
patch nothing); one given explicitly must exist, which
:func:`airlock.data.layout.resolve_layout` checks.
"""

from __future__ import annotations

import os
from pathlib import Path

from airlock import files
from airlock.errors import AirlockError
from airlock.ext import git

SUFFIX = ".patch"
# airlock's record inside a prepared tree (inputs/sources.py writes it).
RECORD_DIR = ".airlock"

_READ_FIX = "a patch folder holds regular *.patch files: replace it by the patch, or remove it"
_REGENERATE = "regenerate it with git format-patch"


def series(patches_dir: Path, component: str, release: str) -> list[Path]:
    """The ``*.patch`` files of ``component`` for ``release``, in lexical order, all checked.

    Raises the first problem of :func:`check_series` as an AirlockError.
    Other files in the folder (a README) are left alone here; ``release
    validate`` reports them.
    """
    paths, errors = check_series(patches_dir, component, release)
    if errors:
        raise errors[0]
    return paths


def check_series(patches_dir: Path, component: str, release: str, *, strays: bool = False,
                 ) -> tuple[list[Path], list[AirlockError]]:
    """The series of ``component`` for ``release`` and every problem found in it.

    With ``strays``, an entry that is not a ``*.patch`` is a problem too
    (``release validate``: a file nothing applies is a mistake waiting to
    surprise someone). Problems come in the order of the entries' names.
    """
    errors = check_root(patches_dir)
    if errors or not os.path.lexists(patches_dir):
        return [], errors
    folder = patches_dir / component / release
    if not os.path.lexists(folder):
        return [], []
    if not folder.is_dir():
        return [], [AirlockError(str(folder), "is not a folder",
                                 f"make it the folder of {component}'s patches for {release}, "
                                 "or remove it")]
    paths: list[Path] = []
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        if entry.suffix != SUFFIX:
            if strays:
                errors.append(AirlockError(str(entry), f"not a {SUFFIX} file",
                                           f"only *{SUFFIX} files may be in a patch folder; "
                                           "rename or remove it"))
            continue
        found = check_patch(entry, patches_dir)
        if found:
            errors += found
        else:
            paths.append(entry)
    return paths, errors


def check_root(patches_dir: Path) -> list[AirlockError]:
    """The patches folder, when there is something at its path, must be a folder."""
    if os.path.lexists(patches_dir) and not patches_dir.is_dir():
        return [AirlockError(str(patches_dir), "is not a folder",
                             "the patches folder holds <component>/<release>/*.patch: pass "
                             "--patches-dir a folder, or remove what is there")]
    return []


def check_patch(path: Path, tree: Path) -> list[AirlockError]:
    """What makes the patch at ``path`` unusable, whatever tree it is applied to.

    ``tree`` is the patches folder, which the file must not lead out of.
    """
    try:
        data = files.read_bytes(path, limit=files.PATCH_LIMIT, fix=_READ_FIX, within=tree)
    except AirlockError as error:
        return [error]
    if not data.strip():
        return [AirlockError(str(path), "is empty",
                             "write the change into it (git format-patch), or remove it")]
    if b"\0" in data:
        return [AirlockError(str(path), "is binary (it holds NUL bytes), not a patch",
                             f"{_REGENERATE} (binary files go in as 'GIT binary patch' text)")]
    touched, why = git.patch_paths(path)
    if why is not None:
        return [AirlockError(str(path), f"not a valid patch: {_without_hint(why)}", _REGENERATE)]
    for name in touched:
        problem = path_problem(name)
        if problem is not None:
            return [AirlockError(str(path), f"the patch touches '{name}': {problem[0]}",
                                 problem[1])]
    return []


def path_problem(name: str) -> tuple[str, str] | None:
    """Why a patch must not touch ``name`` (a path in the tree) as (what, fix); None if fine."""
    parts = name.split("/")
    if parts[0] == RECORD_DIR:
        # Worded as sources.py words the same refusal once a patch is applied.
        return (f"{RECORD_DIR} is the name airlock keeps for its own record",
                "drop that part of the patch")
    if any(part in ("", ".", "..") for part in parts) or name.startswith("/"):
        return ("a path with '..' or an empty part, which git refuses",
                "make the patch change files inside the tree only")
    if any(part.rstrip(". ").lower() in (".git", "git~1") for part in parts):
        return ("a path inside .git, which git refuses",
                "make the patch change the tree's files only")
    return None


def _without_hint(reason: str) -> str:
    """git's reason without its advice for people who know what they do ("allow with ...")."""
    return reason.split(" (allow with", 1)[0]
