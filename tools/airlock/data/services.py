"""What a service's processes need beyond its requirements: ``images/<service>/service.yaml``.

A service's ``requirements.txt`` names what its code imports
unconditionally. The processes an operator runs from the image need more:
nova-compute's libvirt driver imports ``libvirt`` (``libvirt-python``, an
optional package pinned in upper-constraints), keystone's LDAP identity
backend needs its ``ldap`` extra. LOCI adds such things per image with
profiles and ``PIP_PACKAGES``; airlock declares them per service, beside
the image's Dockerfile and ``bindep.txt`` (the system tools)::

    python:                      # installed on top of the requirements,
      - libvirt-python           # at the version the constraints pin
      - keystone[ldap]           # the service's own extra (setup.cfg)
    checks:                      # what proves the image runs its processes
      imports: [libvirt, nova.virt.libvirt.driver]
      commands:
        - [qemu-img, --version]

A ``python`` entry names a package (versions come from the release's
merged constraints, where it must be pinned) or, for the service itself,
its extras, which are read from the service's prepared tree. A missing
file means nothing beyond the requirements and no extra check.
"""

from __future__ import annotations

import configparser
import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement

from airlock import files
from airlock.data import yamlfile
from airlock.data.release import canonical_name
from airlock.errors import AirlockError

FILE = "service.yaml"
_TREE_FIX = "fix it with a patch"
_MODULE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_KEYS = {"python", "checks"}
_CHECK_KEYS = {"imports", "commands"}


@dataclass(frozen=True)
class Service:
    """The declarations of one service image (empty when it has no service.yaml)."""

    name: str
    python: tuple[str, ...] = ()  # PEP 508 requirements, as written
    imports: tuple[str, ...] = ()
    commands: tuple[tuple[str, ...], ...] = ()


def load(images_dir: Path, service: str) -> Service:
    """``images/<service>/service.yaml``; every mistake is one line naming file and line."""
    path = images_dir / service / FILE
    if not os.path.lexists(path):
        return Service(service)
    # within: a link out of images/ would make another file decide what the
    # image installs and which commands the check runs.
    doc = yamlfile.load(path, fix="replace it with a service.yaml (images/README.md)",
                        within=images_dir)
    if doc is None:
        return Service(service)
    if not isinstance(doc, dict):
        raise AirlockError(str(path), "is not a mapping", "write 'python:' and 'checks:' keys")
    _known_keys(path, doc, _KEYS)
    python = _strings(path, doc, "python")
    for number, text in enumerate(python):
        try:
            req = Requirement(text)
        except InvalidRequirement as error:
            raise AirlockError(yamlfile.where(path, doc["python"], number),
                               f"not a requirement: {error}",
                               "write a package name, or the service's own name with extras "
                               "(keystone[ldap])") from None
        if req.url or req.specifier:
            raise AirlockError(yamlfile.where(path, doc["python"], number),
                               f"{text!r} carries a version or URL",
                               "name the package only: its version comes from the release's "
                               "constraints")
        if not req.extras and canonical_name(req.name) == canonical_name(service):
            # 'nova' or 'nova[]' would install the service a second time, from the index.
            raise AirlockError(yamlfile.where(path, doc["python"], number),
                               f"{text!r} names the service itself",
                               f"name one of its extras ({service}[extra]), or leave it out")
        if req.extras and canonical_name(req.name) != canonical_name(service):
            raise AirlockError(yamlfile.where(path, doc["python"], number),
                               f"{text!r}: only the service's own extras are read here",
                               "list the extra's packages by name instead")
    checks = _value(doc, "checks", {})
    if not isinstance(checks, dict):
        raise AirlockError(yamlfile.where(path, doc, "checks"), "is not a mapping",
                           "write 'imports:' and 'commands:' under it")
    _known_keys(path, checks, _CHECK_KEYS)
    imports = _strings(path, checks, "imports")
    for number, module in enumerate(imports):
        if not _MODULE.fullmatch(module):
            raise AirlockError(yamlfile.where(path, checks["imports"], number),
                               f"{module!r} is not a module name", "write a dotted module name")
    commands = []
    raw = _value(checks, "commands", [])
    if not isinstance(raw, list):
        raw = None
    for number, command in enumerate(raw or []):
        if not (isinstance(command, list) and command
                and all(isinstance(a, str) and a for a in command)):
            raise AirlockError(yamlfile.where(path, checks["commands"], number),
                               "is not a command", "write a list of words, e.g. "
                               "[qemu-img, --version]")
        commands.append(tuple(command))
    if raw is None:
        raise AirlockError(yamlfile.where(path, checks, "commands"), "is not a list",
                           "write a list of commands")
    return Service(service, tuple(python), tuple(imports), tuple(commands))


def _value(doc: dict, key: str, empty: object) -> object:
    """``doc[key]``, ``empty`` when absent or null, and as written otherwise.

    Not ``doc.get(key) or empty``: ``python: false`` or ``commands: 0`` is
    a mistake to name, not an empty list to accept without a word.
    """
    value = doc.get(key)
    return empty if value is None else value


def _known_keys(path: Path, doc: dict, known: set[str]) -> None:
    """A key the file format does not have is a typo: one line naming it and its line."""
    for key in doc:
        if key not in known:
            raise AirlockError(yamlfile.where(path, doc, key), f"unknown key {key!r}",
                               f"use {' or '.join(sorted(known))}")


def _strings(path: Path, doc: dict, key: str) -> list[str]:
    value = _value(doc, key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise AirlockError(yamlfile.where(path, doc, key), "is not a list of strings",
                           "write one name per item")
    return list(value)


def requirements(spec: Service, service_tree: Path | None) -> list[str]:
    """The requirement lines to install on top of the requirements, extras expanded.

    ``keystone[ldap]`` becomes the packages of keystone's ``ldap`` extra as
    its prepared tree declares them (setup.cfg ``[extras]``, pbr's form, or
    pyproject.toml ``[project.optional-dependencies]``).
    """
    lines: list[str] = []
    for text in spec.python:
        req = Requirement(text)
        if not req.extras:
            lines.append(text)
            continue
        declared = _extras(service_tree) if service_tree else {}
        for extra in sorted(req.extras):
            found = declared.get(canonical_name(extra))
            if found is None:
                raise AirlockError(f"{spec.name}[{extra}]", f"{spec.name} declares no extra "
                                   f"{extra!r} (it has: {', '.join(sorted(declared)) or 'none'})",
                                   f"fix images/{spec.name}/{FILE}")
            lines.extend(found)
    return list(dict.fromkeys(lines))


def _extras(tree: Path) -> dict[str, list[str]]:
    """``{extra: [requirement]}`` of a prepared source tree."""
    found: dict[str, list[str]] = {}
    cfg = tree / "setup.cfg"
    if os.path.lexists(cfg):
        parser = configparser.ConfigParser(interpolation=None)
        try:
            parser.read_string(files.read_text(cfg, within=tree, fix=_TREE_FIX))
        except configparser.Error as error:
            raise AirlockError(str(cfg), f"not a valid setup.cfg: {error.message}",
                               "fix it with a patch") from None
        if parser.has_section("extras"):
            for extra, value in parser.items("extras"):
                found[canonical_name(extra)] = _requirement_lines(value, str(cfg))
    toml = tree / "pyproject.toml"
    if os.path.lexists(toml):
        try:
            doc = tomllib.loads(files.read_text(toml, within=tree, fix=_TREE_FIX))
        except tomllib.TOMLDecodeError as error:
            raise AirlockError(str(toml), f"not valid TOML: {error}", _TREE_FIX) from None
        except RecursionError:  # tomllib recurses per nested array or inline table
            raise AirlockError(str(toml), "not valid TOML: nested too deeply", _TREE_FIX
                               ) from None
        project = doc.get("project", {})
        optional = project.get("optional-dependencies", {}) if isinstance(project, dict) \
            else None
        if not isinstance(optional, dict):
            what = "[project]" if optional is None else "[project.optional-dependencies]"
            raise AirlockError(f"{toml}:{what}", "is not a table", _TREE_FIX)
        for extra, value in optional.items():
            if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
                # Skipped, it made "declares no extra" for an extra that is there.
                raise AirlockError(f"{toml}:project.optional-dependencies.{extra}",
                                   "is not a list of strings", _TREE_FIX)
            found.setdefault(canonical_name(extra),
                             _requirement_lines("\n".join(value), str(toml)))
    return found


def _requirement_lines(value: str, where: str) -> list[str]:
    """The requirements of one extra, one a line.

    pbr writes a marker after a colon (``foo:python_version<'3.12'``, see
    pbr's docs on ``[extras]``); that becomes PEP 508's ``foo; marker``.
    A URL is refused: it would be fetched from outside the package index,
    and a credential in it would be recorded with the requirements.
    """
    lines = []
    for line in value.splitlines():
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        if ";" not in text and "://" not in text and ":" in text:
            name, _, marker = text.partition(":")
            text = f"{name.strip()}; {marker.strip()}"
        try:
            req = Requirement(text)
        except InvalidRequirement as error:
            raise AirlockError(where, f"extras: not a requirement: {error}", _TREE_FIX
                               ) from None
        if req.url:
            raise AirlockError(where, f"extras: {text!r} is a URL",
                               "name a package pinned by the release's constraints, with a "
                               "patch") from None
        lines.append(text)
    return lines
