"""A prepared source tree as the wheelhouse reads it: requirements and build needs.

Only what a tree declares is read (requirements.txt and pyproject.toml's
``[build-system] requires``); nothing is executed. The same reading serves
an sdist's pyproject.toml, whose build needs join the wheelhouse too.

A tree comes from upstream and the site's patches: a file in it that is a
link leading out of it (``requirements.txt -> /etc/shadow``) is refused,
never read (airlock runs as root, and a bad line is quoted in the error).
"""

from __future__ import annotations

import os
import tarfile
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement

from airlock.data import constraints
from airlock.data.release import Release, canonical_name
from airlock.errors import AirlockError, ToolError
from airlock.files import read_text
from airlock.inputs.sources import RECORD, own_record


@dataclass(frozen=True)
class Source:
    """A prepared source tree as the wheelhouse sees it."""

    path: Path
    component: str
    package: str  # canonical distribution name
    requirements: tuple[str, ...]  # requirements.txt entries, comments stripped
    build_requires: tuple[str, ...]  # pyproject.toml [build-system] requires


def read_source(release: Release, path: Path) -> Source:
    """A prepared tree (``airlock sources prepare``) of a component of ``release``."""
    record_path = path / RECORD
    record = own_record(path)
    if record is None:
        raise AirlockError(str(path), "not a prepared source tree (no .airlock/source.json)",
                           "pass the folder that `airlock sources prepare` made")
    component = record.get("component")
    if record.get("release") != release.name:
        raise AirlockError(str(record_path), f"prepared for release {record.get('release')}, "
                           f"not {release.name}", "prepare it again for this release")
    if component not in release.components:
        raise AirlockError(str(record_path), f"component {component!r} is not in release "
                           f"{release.name}", f"use one of: {', '.join(release.components)}")
    package = canonical_name(release.components[component].component.package)
    return Source(path=path, component=component, package=package,
                  requirements=tuple(read_requirements(path / "requirements.txt", tree=path)),
                  build_requires=tuple(pyproject_requires(path / "pyproject.toml", tree=path)))


def _tree_file(path: Path, tree: Path | None) -> str | None:
    """The text of ``path`` in a source tree; None when there is none.

    Inside ``tree`` (when given) only: a link out of the tree is an error.
    """
    if not os.path.lexists(path):
        return None
    return read_text(path, within=tree, fix="a prepared tree holds regular files here")


def read_requirements(path: Path, tree: Path | None = None) -> list[str]:
    """The requirement lines of a requirements.txt, comments stripped.

    Options (``-r``, ``-e``, ``--index-url`` ...) are refused: a source's
    requirements name packages, and where they come from is airlock's choice.
    """
    text = _tree_file(path, tree)
    if text is None:
        return []
    entries = []
    for number, line in enumerate(text.splitlines(), start=1):
        text = line.split(" #", 1)[0].split("\t#", 1)[0].strip()
        if not text or text.startswith("#"):
            continue
        if text.startswith("-"):
            raise AirlockError(f"{path}:{number}", f"option {text.split()[0]!r} in a "
                               "requirements file", "list package requirements only")
        try:
            Requirement(text)
        except InvalidRequirement as error:
            raise AirlockError(f"{path}:{number}", f"not a requirement: {error}",
                               "write a PEP 508 requirement") from None
        entries.append(text)
    return entries


def pyproject_requires(path: Path, tree: Path | None = None) -> list[str]:
    """``[build-system] requires`` of a pyproject.toml file (none if it has none)."""
    text = _tree_file(path, tree)
    if text is None:
        return []
    return _build_requires(text.encode("utf-8"), str(path))


def sdist_requires(sdist: Path) -> list[str]:
    """``[build-system] requires`` of the pyproject.toml at the top of an sdist."""
    try:
        if sdist.name.endswith(".zip"):
            with zipfile.ZipFile(sdist) as archive:
                names = [n for n in archive.namelist() if n.count("/") == 1
                         and n.endswith("/pyproject.toml")]
                return _build_requires(archive.read(names[0]), str(sdist)) if names else []
        with tarfile.open(sdist) as archive:
            for member in archive:
                if member.name.count("/") == 1 and member.name.endswith("/pyproject.toml"):
                    data = archive.extractfile(member)
                    return _build_requires(data.read(), str(sdist)) if data else []
    except (OSError, tarfile.TarError, zipfile.BadZipFile) as error:
        raise ToolError(str(sdist), f"not a readable sdist: {error}") from None
    return []


def _build_requires(data: bytes, where: str) -> list[str]:
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise AirlockError(where, f"pyproject.toml is not valid TOML: {error}",
                           "fix the file") from None
    requires = (doc.get("build-system") or {}).get("requires") or []
    return [str(r) for r in requires]


def requirements_in(sources: list[Source], from_source: set[str]) -> str:
    """The requirements to resolve: every source's, minus packages built from source.

    A requirement on a component that is built from source is met by that
    source (whose own requirements are in), never by the index.
    """
    lines: list[str] = []
    for src in sources:
        for text in src.requirements:
            if canonical_name(Requirement(text).name) in from_source:
                continue
            if text not in lines:
                lines.append(text)
    return "".join(f"{line}\n" for line in lines)


def check_sources(release: Release, service: str, sources: list[Source]) -> None:
    """The service's own tree must be there, and every library it needs from source.

    A library built from source is dropped from the constraints; without its
    tree here, uv would take any version from the index.
    """
    given = {src.component for src in sources}
    if service not in given:
        raise AirlockError("--source", f"no prepared tree of {service} among the sources",
                           f"pass --source <tree of airlock sources prepare --component "
                           f"{service}>")
    missing = set(constraints.from_source(release, service)) - {s.package for s in sources}
    needed = sorted({canonical_name(Requirement(text).name) for src in sources
                     for text in src.requirements} & missing)
    if needed:
        raise AirlockError("--source", f"{service} needs {', '.join(needed)}, which release "
                           f"{release.name} builds from source",
                           "pass --source for each (airlock sources prepare --component ...)")
