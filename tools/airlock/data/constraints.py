"""The constraints one build installs with: upstream pins, site overrides, minus sources.

``upper-constraints.txt`` is a verbatim upstream copy, so a site's changes
live apart in ``constraint-overrides.txt``, one per line::

    pkg===ver[;marker]   replace every pin of pkg (pkg must be pinned upstream)
    +pkg===ver[;marker]  add a pin (pkg must not be pinned upstream)
    -pkg                 remove every pin of pkg (pkg must be pinned upstream)

The "must" rules make a refresh of upper-constraints safe: an override that
no longer touches a real pin is reported instead of silently doing nothing.

A component built from source must not stay pinned: pip would refuse the
local tree, or install the released version instead. So :func:`merged` drops
the pins of the components of the build. Everything here is plain data in,
plain data out; the only input is the two files of the release folder.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from packaging.markers import InvalidMarker, Marker
from packaging.version import InvalidVersion, Version

from airlock import files
from airlock.data.release import Release, canonical_name
from airlock.errors import AirlockError

# name===version[;marker]: names as PEP 508 allows them, === (arbitrary
# equality) as upper-constraints writes every pin.
_PIN = re.compile(
    r"(?P<name>[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)"
    r"\s*===\s*(?P<version>[^\s;]+)"
    r"\s*(?:;\s*(?P<marker>.*\S))?"
)
_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?")
# pip's rule for comments: '#' at the start or after whitespace.
_COMMENT = re.compile(r"(^|\s+)#.*$")

_OVERRIDE_FIX = ("write 'pkg===ver' to replace a pin, '+pkg===ver' to add one "
                 "or '-pkg' to remove one")


@dataclass(frozen=True)
class Constraint:
    """One pin: ``name===version`` that applies where ``marker`` holds (always if None)."""

    name: str
    version: str
    marker: str | None = None

    @property
    def key(self) -> str:
        """The PEP 503 name: pins of oslo.messaging and oslo_messaging are one package."""
        return canonical_name(self.name)

    def __str__(self) -> str:
        return f"{self.name}==={self.version}" + (f";{self.marker}" if self.marker else "")


@dataclass(frozen=True)
class Override:
    """One line of constraint-overrides.txt."""

    action: str  # "replace", "add" or "remove"
    name: str
    pin: Constraint | None  # None for "remove"
    where: str  # file:line, for messages
    text: str  # the line as written

    @property
    def key(self) -> str:
        return canonical_name(self.name)


class Merged(list[Constraint]):
    """The constraints of one build: a list of Constraint that knows what it is for.

    ``release`` and ``component`` let :func:`render` write a header naming
    them, so a constraints file found in a build context says where it came
    from.
    """

    def __init__(self, entries: Iterable[Constraint], release: str, component: str | None):
        super().__init__(entries)
        self.release = release
        self.component = component


def _strip(line: str) -> str:
    return _COMMENT.sub("", line).strip()


def _pin(text: str, where: str, errors: list[AirlockError], fix: str) -> Constraint | None:
    """Parse ``name===version[;marker]``; None (and an error) if it is not one.

    ``===`` would let pip compare any string, but every pin upstream writes
    is a PEP 440 version, and the wheel and sdist steps parse it as one: a
    version that is not one is refused here, where the line is known.
    """
    match = _PIN.fullmatch(text)
    if not match:
        errors.append(AirlockError(where, f"malformed pin '{text}'", fix))
        return None
    try:
        Version(match.group("version"))
    except InvalidVersion:
        errors.append(AirlockError(where, f"'{match.group('version')}' in '{text}' is not a "
                                   "PEP 440 version", "write a version such as 1.2.3"))
        return None
    marker = match.group("marker")
    if marker is not None:
        try:
            Marker(marker)
        except InvalidMarker:
            errors.append(AirlockError(where, f"invalid marker in '{text}'",
                                       "write a PEP 508 marker, e.g. python_version>='3.10'"))
            return None
    return Constraint(match.group("name"), match.group("version"), marker)


_UC_FIX = "copy upper-constraints.txt of this release from openstack/requirements"
_OVERRIDES_FIX = "make it a regular file of overrides, or remove it (it is optional)"


def _read_lines(path: Path, fix: str) -> list[tuple[int, str]]:
    """(line number, text) of the lines that are not blank or comments.

    Read as every release file is (:func:`airlock.files.read_text`): a
    regular file inside the releases folder (the folder of the release's
    folder), of bounded size; anything else is an AirlockError with ``fix``.
    """
    rows = []
    text = files.read_text(path, fix=fix, within=path.parent.parent)
    for number, line in enumerate(text.splitlines(), start=1):
        text = _strip(line)
        if text:
            rows.append((number, text))
    return rows


def parse_upper_constraints(path: Path) -> tuple[list[Constraint], list[AirlockError]]:
    """Every pin of an upper-constraints file, in file order, and every bad line.

    One package may have several pins with different markers (one per
    Python version); the same package twice under the same marker is an
    error, as pip would not know which to take.
    """
    try:
        rows = _read_lines(path, _UC_FIX)
    except AirlockError as error:
        return [], [error]
    pins: list[Constraint] = []
    errors: list[AirlockError] = []
    seen: dict[tuple[str, str | None], int] = {}
    for number, text in rows:
        where = f"{path}:{number}"
        pin = _pin(text, where, errors, "write name===version[;marker]")
        if pin is None:
            continue
        first = seen.setdefault((pin.key, pin.marker), number)
        if first != number:
            errors.append(AirlockError(where, f"'{pin.name}' is pinned twice "
                                       f"(also on line {first})", "keep one"))
            continue
        pins.append(pin)
    if not rows:
        errors.append(AirlockError(str(path), "holds no pins", _UC_FIX))
    return pins, errors


def parse_overrides(path: Path) -> tuple[list[Override], list[AirlockError]]:
    """The lines of constraint-overrides.txt (a missing file has none) and their syntax errors."""
    if not os.path.lexists(path):
        return [], []
    try:
        rows = _read_lines(path, _OVERRIDES_FIX)
    except AirlockError as error:
        return [], [error]
    overrides: list[Override] = []
    errors: list[AirlockError] = []
    for number, text in rows:
        where = f"{path}:{number}"
        if text.startswith("-"):
            name = text[1:].strip()
            if _NAME.fullmatch(name):
                overrides.append(Override("remove", name, None, where, text))
            elif "===" in name:
                bare = name.split("===")[0].strip()
                errors.append(AirlockError(where, f"'{text}' removes a pin by name only",
                                           f"write '-{bare}'"))
            else:
                errors.append(AirlockError(where, f"'{text}' is not an override", _OVERRIDE_FIX))
            continue
        action, body = ("add", text[1:].strip()) if text.startswith("+") else ("replace", text)
        if not _PIN.fullmatch(body) and "===" not in body:
            errors.append(AirlockError(where, f"'{text}' is not an override", _OVERRIDE_FIX))
            continue
        pin = _pin(body, where, errors, _OVERRIDE_FIX)
        if pin is not None:
            overrides.append(Override(action, pin.name, pin, where, text))
    return overrides, errors


def _check_against(overrides: list[Override], pins: list[Constraint]) -> list[AirlockError]:
    """Each override must change a pin in the way it says; one package, one kind of change."""
    pinned = {pin.key for pin in pins}
    errors: list[AirlockError] = []
    first: dict[str, Override] = {}
    markers: set[tuple[str, str | None]] = set()
    for o in overrides:
        if o.action == "replace" and o.key not in pinned:
            errors.append(AirlockError(o.where, f"'{o.text}' replaces a pin that "
                                       "upper-constraints does not have",
                                       f"write '+{o.text}' to add it"))
            continue
        if o.action == "add" and o.key in pinned:
            errors.append(AirlockError(o.where, f"'{o.text}' adds a pin that "
                                       "upper-constraints already has",
                                       f"write '{o.text[1:].strip()}' to replace it"))
            continue
        if o.action == "remove" and o.key not in pinned:
            errors.append(AirlockError(o.where, f"'{o.text}' removes a pin that "
                                       "upper-constraints does not have", "delete this line"))
            continue
        earlier = first.setdefault(o.key, o)
        marker = o.pin.marker if o.pin else None
        if earlier is not o and (earlier.action != o.action or o.action == "remove"
                                 or (o.key, marker) in markers):
            line = earlier.where.rsplit(":", 1)[1]
            errors.append(AirlockError(o.where, f"'{o.text}' changes '{o.name}' again "
                                       f"(line {line})", "keep one line per package "
                                       "(several only for different markers)"))
            continue
        markers.add((o.key, marker))
    return errors


def _apply(pins: list[Constraint], overrides: list[Override]) -> list[Constraint]:
    """Upstream pins with the (checked) overrides applied, in upstream order."""
    replaced: dict[str, list[Constraint]] = {}
    removed: set[str] = set()
    added: list[Constraint] = []
    for o in overrides:
        if o.action == "remove":
            removed.add(o.key)
        elif o.action == "replace":
            assert o.pin is not None
            replaced.setdefault(o.key, []).append(o.pin)
        else:
            assert o.pin is not None
            added.append(o.pin)
    out: list[Constraint] = []
    done: set[str] = set()
    for pin in pins:
        if pin.key in removed or pin.key in done:
            continue
        if pin.key in replaced:
            out.extend(replaced[pin.key])  # every upstream pin of pkg goes, all at once
            done.add(pin.key)
        else:
            out.append(pin)
    return out + added


def check_upper_constraints(release: Release) -> list[AirlockError]:
    """Bad lines of upper-constraints.txt (a missing file is reported by the release loader)."""
    if not os.path.lexists(release.upper_constraints_path):
        return []
    return parse_upper_constraints(release.upper_constraints_path)[1]


def check_overrides(release: Release) -> list[AirlockError]:
    """Every error of constraint-overrides.txt: syntax, and changes to pins that do not exist."""
    overrides, errors = parse_overrides(release.overrides_path)
    pins, _ = parse_upper_constraints(release.upper_constraints_path)
    if not pins:
        return errors  # nothing to check against: missing, unreadable or empty, reported apart
    return errors + _check_against(overrides, pins)


def from_source(release: Release, component: str | None = None) -> set[str]:
    """Canonical packages a build installs from source, so they must not stay pinned.

    For the whole release: every component. For one component's image: its
    own package and every library (libraries built from source go into
    every image); the other services are simply not installed.
    """
    refs = release.components
    if component is None:
        return {canonical_name(ref.component.package) for ref in refs.values()}
    if component not in refs:
        raise AirlockError(str(release.source_refs_path), f"unknown component '{component}'",
                           f"use one of: {', '.join(refs) or 'none'}")
    return {canonical_name(refs[component].component.package)} | {
        canonical_name(ref.component.package) for ref in release.libraries()}


def merged(release: Release, component: str | None = None) -> Merged:
    """The constraints of a build: upstream pins, overrides applied, sources removed.

    Raises the first AirlockError of either file; ``release validate``
    reports all of them.
    """
    drop = from_source(release, component)
    pins, errors = parse_upper_constraints(release.upper_constraints_path)
    overrides, more = parse_overrides(release.overrides_path)
    errors += more + _check_against(overrides, pins)
    if errors:
        raise errors[0]
    return Merged((c for c in _apply(pins, overrides) if c.key not in drop),
                  release=release.name, component=component)


def render(entries: Iterable[Constraint]) -> str:
    """The constraints file text: a header, then one pin a line, sorted.

    Sorted by canonical name, pins of one package in their original order
    (markers), so the same inputs give the same bytes and a diff between two
    builds shows only real changes.
    """
    release = getattr(entries, "release", None)
    component = getattr(entries, "component", None)
    scope = f"release {release}" if release else "a release"
    scope += f", component {component}" if component else ", all components"
    header = (f"# Constraints for {scope}; generated by airlock, do not edit.\n"
              "# upper-constraints.txt + constraint-overrides.txt, "
              "minus the packages built from source.\n")
    ordered = sorted(entries, key=lambda c: c.key)
    return header + "".join(f"{c}\n" for c in ordered)
