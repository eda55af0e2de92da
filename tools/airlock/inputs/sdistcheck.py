"""Which pins of a release come only as sdists, and whether their builds are declared.

The wheelhouse step builds a pin that has no wheel for a platform from its
sdist, offline, with only the Debian packages ``images/sdists.txt``
declares for it (:mod:`airlock.data.sdists`). A refresh of
upper-constraints can bring in a new such pin; found in that step, at the
site, it is too late. This check runs on the connected side (``airlock
release validate --sdists``): it asks the package index, once per project,
which files each pin has (:mod:`airlock.ext.pypi`), and reports, per release
and platform:

- the *sdist-only* pins: no wheel of that exact version that the platform's
  CPython accepts (:func:`airlock.inputs.wheeltags.supported_tags`, the tags
  pip downloads for in the wheelhouse step), but an sdist;
- the *undeclared* ones among them: no line in sdists.txt;
- the *missing* pins: neither a wheel for the platform nor an sdist of that
  version (the wheelhouse step would fail on them too).

The pins are the release's merged constraints (upper-constraints, the
site's overrides, minus what the release builds from source), with their
markers evaluated for the release's Python on Linux and the platform's
machine. The result is plain data (:meth:`ReleaseCheck.as_dict`); the
lines a user reads come from :func:`problems` and :func:`summary`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from packaging.markers import Marker
from packaging.version import InvalidVersion, Version

from airlock.data import constraints, sdists
from airlock.data import platforms as platforms_mod
from airlock.data.release import Release
from airlock.errors import AirlockError
from airlock.ext import index, pypi
from airlock.inputs import wheeltags

FilesOfMany = Callable[[Iterable[str], index.Locations], dict[str, list[str]]]


@dataclass
class PlatformCheck:
    """One platform of one release: ``(canonical name, version)`` pins, sorted."""

    platform: str
    sdist_only: list[tuple[str, str]] = field(default_factory=list)
    undeclared: list[tuple[str, str]] = field(default_factory=list)
    missing: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class ReleaseCheck:
    """One release: where its pins are written, its Python, and each platform's result."""

    release: str
    constraints_path: str
    python: str
    platforms: list[PlatformCheck] = field(default_factory=list)

    def sdist_only(self) -> set[str]:
        """Canonical names that are sdist-only on at least one platform."""
        return {name for p in self.platforms for name, _ in p.sdist_only}

    def as_dict(self) -> dict:
        return {"release": self.release, "constraints": self.constraints_path,
                "python": self.python,
                "platforms": {p.platform: {
                    "sdist_only": [f"{n}=={v}" for n, v in p.sdist_only],
                    "undeclared": [f"{n}=={v}" for n, v in p.undeclared],
                    "missing": [f"{n}=={v}" for n, v in p.missing],
                } for p in self.platforms}}


def pins_for(release: Release, machine: str) -> dict[str, str]:
    """``{canonical name: version}`` a build of ``release`` installs from, on ``machine``.

    The merged constraints for the whole release, markers evaluated as
    :func:`airlock.inputs.wheels.pins_of` does (the release's Python,
    CPython on Linux) and with the platform's ``platform_machine``.
    """
    python = release.python
    env = {"python_version": python, "python_full_version": f"{python}.0",
           "sys_platform": "linux", "platform_system": "Linux", "os_name": "posix",
           "implementation_name": "cpython", "platform_python_implementation": "CPython",
           "platform_machine": machine}
    result = {}
    for pin in constraints.merged(release):
        if pin.marker and not Marker(pin.marker).evaluate(env):
            continue
        result[pin.key] = pin.version
    return result


def classify(files: list[str], name: str, version: str, supported) -> str:
    """``"wheel"``, ``"sdist"`` (sdist-only) or ``"missing"`` for one pin on one platform."""
    try:
        chosen = wheeltags.choose(files, name, version, supported)
    except InvalidVersion:
        return "missing"  # a pin no file can match (validate reports the pin itself)
    if chosen is None:
        return "missing"
    return "wheel" if chosen.endswith(".whl") else "sdist"


def _by_version(files: list[str]) -> dict[Version, list[str]]:
    """A project's file names by version, each name parsed once (pages list thousands)."""
    found: dict[Version, list[str]] = {}
    for filename in files:
        dist = wheeltags.dist_of(filename)
        if dist is not None:
            found.setdefault(dist[1], []).append(filename)
    return found


def _of_version(files: dict[Version, list[str]], version: str) -> list[str]:
    try:
        return files.get(Version(version), [])
    except InvalidVersion:
        return []


def check(releases: list[Release], declared: sdists.Declarations, where: index.Locations, *,
          files_of_many: FilesOfMany = pypi.files_of_many) -> list[ReleaseCheck]:
    """Every release × platform: its sdist-only, undeclared and missing pins.

    The index is asked once per project for all releases together. An
    unreachable or broken index is the ToolError of :mod:`airlock.ext.pypi`.
    """
    targets = {r.name: [platforms_mod.get(p) for p in r.platforms] for r in releases}
    pins = {(r.name, t.platform): pins_for(r, t.machine) for r in releases
            for t in targets[r.name]}
    listed = files_of_many(sorted({n for found in pins.values() for n in found}), where)
    files = {name: _by_version(found) for name, found in listed.items()}
    results = []
    for release in releases:
        result = ReleaseCheck(release.name, str(release.upper_constraints_path), release.python)
        for target in targets[release.name]:
            supported = wheeltags.supported_tags(release.python, target.machine)
            row = PlatformCheck(target.platform)
            for name, version in sorted(pins[(release.name, target.platform)].items()):
                kind = classify(_of_version(files.get(name, {}), version), name, version,
                                supported)
                if kind == "sdist":
                    row.sdist_only.append((name, version))
                elif kind == "missing":
                    row.missing.append((name, version))
            undeclared = set(declared.undeclared(n for n, _ in row.sdist_only))
            row.undeclared = [(n, v) for n, v in row.sdist_only if n in undeclared]
            result.platforms.append(row)
        results.append(result)
    return results


def _by_pin(rows: list[tuple[str, tuple[str, str]]]) -> dict[tuple[str, str], list[str]]:
    grouped: dict[tuple[str, str], list[str]] = {}
    for platform, pin in rows:
        grouped.setdefault(pin, []).append(platform)
    return grouped


def problems(results: list[ReleaseCheck], declared: sdists.Declarations) -> list[AirlockError]:
    """One error per release × pin that a build would stop at: undeclared or missing.

    A pin sdist-only on both platforms is one line naming both.
    """
    errors: list[AirlockError] = []
    for result in results:
        python = f"(Python {result.python})"
        undeclared = _by_pin([(p.platform, pin) for p in result.platforms
                              for pin in p.undeclared])
        for (name, version), where in sorted(undeclared.items()):
            errors.append(AirlockError(
                result.constraints_path,
                f"{name}=={version} has no wheel for {' or '.join(where)} {python} and no "
                f"line in {declared.path}", declared.fix([name])))
        missing = _by_pin([(p.platform, pin) for p in result.platforms for pin in p.missing])
        for (name, version), where in sorted(missing.items()):
            errors.append(AirlockError(
                result.constraints_path,
                f"{name}=={version} has neither a wheel for {' or '.join(where)} {python} "
                "nor an sdist on the package index",
                "check the pin (a version the index has), or the index "
                "(--index-url or $AIRLOCK_INDEX_URL)"))
    return errors


def unused(results: list[ReleaseCheck], declared: sdists.Declarations) -> list[str]:
    """Declared names that no checked release needs built from an sdist, sorted."""
    needed = set().union(*(r.sdist_only() for r in results)) if results else set()
    return sorted(set(declared.packages) - needed)


def shown_locations(where: index.Locations) -> str:
    """The locations asked, as a message names them (no credentials)."""
    return ", ".join(pypi.shown(u) for u in (*pypi.indexes(where), *where.find_links))


def summary(results: list[ReleaseCheck], declared: sdists.Declarations) -> str:
    """One line: how many sdist-only pins per release, all declared."""
    counts = ", ".join(f"{r.release} {len(r.sdist_only())}" for r in results)
    return f"sdist-only pins, all declared in {declared.path}: {counts}"
