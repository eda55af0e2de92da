"""The Release model: one folder of ``releases/`` loaded into plain data.

Everything downstream (refs, sources, constraints, packages, build) takes a
:class:`Release` or its parts, never the YAML files, so the file format is
known in exactly one place.
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from packaging.utils import canonicalize_name

from airlock import files, settings
from airlock.data import platforms as platforms_mod
from airlock.data import yamlfile
from airlock.data.layout import Layout
from airlock.errors import AirlockError


@dataclass(frozen=True)
class Component:
    """What airlock knows about a component it can build from source.

    ``project`` is the git project under ``<git-base>/openstack/``;
    ``package`` is the Python distribution name (as pinned in
    upper-constraints and published on the package index).
    """

    name: str
    project: str
    package: str
    kind: str  # "service" or "library"


# Services airlock has images for. Libraries are not listed: any package
# pinned in the release's upper-constraints may be built from source.
SERVICES: dict[str, Component] = {
    c.name: c
    for c in (
        Component("keystone", "keystone", "keystone", "service"),
        Component("glance", "glance", "glance", "service"),
        Component("placement", "placement", "openstack-placement", "service"),
        Component("nova", "nova", "nova", "service"),
        Component("neutron", "neutron", "neutron", "service"),
        Component("cinder", "cinder", "cinder", "service"),
    )
}


@dataclass(frozen=True)
class ComponentRef:
    """One entry of ``source-refs.yaml``: a component and the ref to build."""

    component: Component
    ref: str
    repo: str | None = None  # explicit repository (long form); else derived

    @property
    def name(self) -> str:
        return self.component.name

    def repo_url(self, git_base: str | None) -> str:
        """The repository to resolve and fetch from.

        ``<git-base>/openstack/<project>`` unless the entry names its own
        ``repo:``. ``git_base`` may be a URL, a file:// URL or a local path.
        """
        if self.repo:
            return _absolute_if_local(self.repo)
        if not git_base:
            raise AirlockError(
                f"component {self.name}",
                "no repository: the entry has no repo: and no git base is set",
                "pass --git-base URL or set AIRLOCK_GIT_BASE",
            )
        return f"{_absolute_if_local(git_base).rstrip('/')}/openstack/{self.component.project}"


def _absolute_if_local(location: str) -> str:
    """Make a local repository path absolute, leave URLs alone.

    The lock records the repository; a relative path in it would mean
    something else to the next command run from another directory.
    """
    if "://" in location or re.match(r"^[^/]+:", location):  # URL or scp-like host:path
        return location
    return os.path.abspath(location)


@dataclass(frozen=True)
class Distro:
    """The target distribution: selects bindep profiles and OS packages."""

    name: str
    codename: str
    version: str


@dataclass(frozen=True)
class Release:
    """One OpenStack release as airlock builds it."""

    name: str
    path: Path
    python: str
    distro: Distro
    base_image: str  # as written: may hold ${VAR} / ${VAR:-default}
    platforms: tuple[str, ...]
    services: tuple[str, ...]
    components: dict[str, ComponentRef] = field(default_factory=dict)
    codename: str = ""

    @property
    def release_yaml_path(self) -> Path:
        return self.path / "release.yaml"

    @property
    def source_refs_path(self) -> Path:
        return self.path / "source-refs.yaml"

    @property
    def upper_constraints_path(self) -> Path:
        return self.path / "upper-constraints.txt"

    @property
    def overrides_path(self) -> Path:
        return self.path / "constraint-overrides.txt"

    def base_image_ref(self, env: dict[str, str] | None = None) -> str:
        """The base image reference with ``${VAR}`` expanded from ``env``.

        What the variable holds is checked as validate checks the default:
        a fully qualified reference, or the engine would complete it with
        Docker Hub. A value holding credentials is not quoted.
        """
        where = f"{self.path / 'release.yaml'}:base_image"
        value = expand_vars(self.base_image, os.environ if env is None else env, where=where)
        if not _IMAGE_REF.fullmatch(value):
            quoted = f"'{shown(value)}'" if "@" not in value.replace("@sha256:", "") \
                else "a value holding '@'"
            raise AirlockError(where, f"expands to {quoted}, which is not a fully qualified "
                               "image reference", "set the variable to host[:port]/path:tag "
                               "or host[:port]/path@sha256:<hex>")
        return value

    def libraries(self) -> list[ComponentRef]:
        """The library components: built from source and installed into every image."""
        return [ref for ref in self.components.values() if ref.component.kind == "library"]


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_vars(text: str, env, where: str) -> str:
    """Expand ``${VAR}`` and ``${VAR:-default}``; an unset VAR without default is an error."""

    def sub(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        value = env.get(name)
        if value:
            return value
        if default is not None:
            return default
        raise AirlockError(where, f"${{{name}}} is not set and has no default",
                           f"export {name}=... or write ${{{name}:-default}}")

    return _VAR.sub(sub, text)


def load_release(layout: Layout, name: str) -> Release:
    """Load ``releases/<name>/`` into a Release, or raise AirlockError.

    Commands other than ``release validate`` stop at the first error;
    :func:`load_release_checked` collects them all.
    """
    release, errors = load_release_checked(layout, name)
    if errors:
        raise errors[0]
    assert release is not None
    return release


# Files a release folder must hold; constraint-overrides.txt is optional.
RELEASE_FILES = ("release.yaml", "source-refs.yaml", "upper-constraints.txt")
# What to do about a release file that is there but cannot be read as one
# (a FIFO, a folder, a dangling link, far too large): one fix for every case.
FILE_FIX = "replace it with the release's real file (see releases/README.md)"

# Top-level keys of release.yaml and an example value for "add it" messages.
_RELEASE_KEYS = {
    "name": '"<the folder name>"',
    "codename": "<release codename, e.g. flamingo>",
    "python": '"3.N"',
    "distro": '{name: debian, codename: bookworm, version: "12"}',
    "base_image": '"${AIRLOCK_BASE_IMAGE:-<registry>/<image>:<tag>}"',
    "platforms": f"[{', '.join(platforms_mod.NAMES)}]",
    "services": f"[{', '.join(SERVICES)}]",
}
_DISTRO_KEYS = {"name": "debian", "codename": "bookworm", "version": '"12"'}
_REF_KEYS = ("ref", "repo")
_PYTHON = re.compile(r"3\.\d+")
# 7..39 hex digits: an abbreviated SHA, which may become ambiguous later.
_ABBREVIATED_SHA = re.compile(r"[0-9a-fA-F]{7,39}")
_REF_FIX = "write a tag, a branch or a full 40-character SHA"
# The leading project name of a requirements line (PEP 508).
_PIN_NAME = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def load_release_checked(layout: Layout, name: str) -> tuple[Release | None, list[AirlockError]]:
    """Load ``releases/<name>/`` and return it with every schema error found.

    Checks release.yaml and source-refs.yaml (types, required keys,
    duplicate keys, unknown components); cross-file checks (images, patches,
    overrides) live in :mod:`airlock.data.validate`.

    ``release validate`` wants every error in one run, so nothing stops at
    the first one. The Release is None only when release.yaml is unusable
    (missing, malformed, not a mapping); when errors are returned it is
    partial (invalid entries left out) and good only for finding more errors.
    """
    if name not in release_names(layout):
        return None, [no_such_release(layout, name)]
    path = layout.release_dir(name)
    errors: list[AirlockError] = []
    if name in settings.WORK_FOLDERS:
        # work/<release>/ would be the shared cache, the base image's
        # root filesystems or the local git mirror.
        errors.append(AirlockError(str(path), f"a release may not be named '{name}': the work "
                                   "folder uses that name for "
                                   f"{', '.join(settings.WORK_FOLDERS)}",
                                   "name the folder after the release, e.g. 2025.2"))
    # Only what is not there at all is "no such file": a FIFO or a folder in
    # its place is reported by the read, as what it is.
    for missing in [f for f in RELEASE_FILES if not os.path.lexists(path / f)]:
        errors.append(AirlockError(str(path / missing), "no such file",
                                   f"every release folder needs {', '.join(RELEASE_FILES)}"))
    tree = layout.releases_dir
    fields = _load_release_yaml(path / "release.yaml", name, errors, tree)
    pinned = _pinned_or_none(path / "upper-constraints.txt", tree)
    services = fields["services"] if fields else ()
    components = _load_source_refs(path / "source-refs.yaml", services, pinned, errors,
                                   check_services=fields is not None, tree=tree)
    if fields is None:
        return None, errors
    return Release(path=path, components=components, **fields), errors


def release_names(layout: Layout) -> list[str]:
    """The release folders under releases/, sorted; files (README.md) and dot-folders ignored."""
    try:
        entries = list(layout.releases_dir.iterdir())
    except OSError:
        return []
    return sorted(p.name for p in entries if p.is_dir() and not p.name.startswith("."))


def no_such_release(layout: Layout, name: str) -> AirlockError:
    """The error for a release name that is not a folder of releases/, listing the real ones."""
    known = release_names(layout)
    return AirlockError(str(layout.releases_dir / name), "no such release",
                        f"known: {', '.join(known) or 'none'}")


def canonical_name(name: str) -> str:
    """PEP 503 name: how pip compares oslo.messaging, oslo_messaging and Oslo-Messaging."""
    return str(canonicalize_name(name))


def pinned_packages(path: Path, tree: Path | None = None) -> set[str]:
    """Canonical names of the packages pinned in an upper-constraints file.

    Only the names: enough to tell a library component from a typo. The full
    parse, with its errors, is :mod:`airlock.data.constraints` (which sits above
    this module, so it cannot be used here); a malformed line is reported
    there by ``release validate``. ``tree`` is the releases folder the file
    must not lead out of.
    """
    names = set()
    text = files.read_text(path, fix=FILE_FIX, within=tree)
    for line in text.splitlines():
        if line.strip().startswith("#"):
            continue
        match = _PIN_NAME.match(line)
        if match:
            names.add(canonical_name(match.group(1)))
    return names


def _pinned_or_none(path: Path, tree: Path) -> set[str] | None:
    try:
        return pinned_packages(path, tree)
    except AirlockError:
        return None  # reported as missing, or by the constraints check that reads it again


def _kind(value: Any) -> str:
    """How a YAML value reads to a user, for "must be a string, not ..." messages."""
    if value is None:
        return "empty"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, date):
        return f"the date {value}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, str):
        return "a string"
    return type(value).__name__


def _at(path: Path, data: Any, key: Any, label: str) -> str:
    """``path:LINE`` of ``key`` in ``data``, else ``path:label`` (e.g. a missing key)."""
    line = yamlfile.line_of(data, key)
    return f"{path}:{line}" if line else f"{path}:{label}"


def _unknown_key(path: Path, data: dict, key: Any, allowed: list[str],
                 label: str = "") -> AirlockError:
    """An unknown key: a typo must not pass silently, so suggest the closest name."""
    close = difflib.get_close_matches(str(key), allowed, n=1)
    fix = f"did you mean '{close[0]}'?" if close else f"remove it (allowed: {', '.join(allowed)})"
    what = f"unknown key '{key}'" + (f" in '{label}'" if label else "")
    return AirlockError(_at(path, data, key, str(key)), what, fix)


def _string(path: Path, data: dict, key: str, label: str, errors: list[AirlockError],
            example: str) -> str | None:
    """The non-empty string at ``data[key]``, or None after recording why not."""
    if key not in data:
        errors.append(AirlockError(f"{path}:{label}", f"missing key '{label}'",
                                   f"add {key}: {example}"))
        return None
    value = data[key]
    where = _at(path, data, key, label)
    if isinstance(value, str):
        if value.strip():
            return value
        errors.append(AirlockError(where, f"{label} is empty", f"write {key}: {example}"))
        return None
    raw = yamlfile.raw(data, key)
    if value is not None and raw is not None:
        fix = f'quote it: {key}: "{raw}"'
    else:
        fix = f"write {key}: {example}"
    errors.append(AirlockError(where, f"{label} must be a string, not {_kind(value)}", fix))
    return None


def _names(path: Path, data: dict, key: str, allowed: list[str], errors: list[AirlockError],
           ) -> tuple[str, ...]:
    """A non-empty list of distinct names from ``allowed`` (platforms, services)."""
    noun = key.rstrip("s")
    example = _RELEASE_KEYS[key]
    if key not in data:
        errors.append(AirlockError(f"{path}:{key}", f"missing key '{key}'",
                                   f"add {key}: {example}"))
        return ()
    items = data[key]
    where = _at(path, data, key, key)
    if not isinstance(items, list):
        errors.append(AirlockError(where, f"{key} must be a list, not {_kind(items)}",
                                   f"write {key}: {example}"))
        return ()
    if not items:
        errors.append(AirlockError(where, f"{key} is empty",
                                   f"list at least one of {', '.join(allowed)}"))
        return ()
    good: list[str] = []
    for index, item in enumerate(items):
        item_at = _at(path, items, index, key)
        if not isinstance(item, str):
            errors.append(AirlockError(item_at, f"a {noun} must be a name, not {_kind(item)}",
                                       f"use one of: {', '.join(allowed)}"))
        elif item not in allowed:
            errors.append(AirlockError(item_at, f"unknown {noun} '{item}'",
                                       f"use one of: {', '.join(allowed)}"))
        elif item in good:
            errors.append(AirlockError(item_at, f"{noun} '{item}' is listed twice", "keep one"))
        else:
            good.append(item)
    return tuple(good)


def _load_release_yaml(path: Path, folder: str, errors: list[AirlockError], tree: Path,
                       ) -> dict[str, Any] | None:
    """The Release fields from release.yaml (invalid ones emptied), or None if unusable."""
    if not os.path.lexists(path):
        return None  # reported with the other missing files
    try:
        data = yamlfile.load(path, within=tree, fix=FILE_FIX)
    except AirlockError as error:
        errors.append(error)
        return None
    if not isinstance(data, dict):
        errors.append(AirlockError(f"{path}:1" if data is not None else str(path),
                                   f"expected a mapping of release settings, not {_kind(data)}",
                                   "see releases/README.md"))
        return None
    name = _string(path, data, "name", "name", errors, f'"{folder}"')
    if name is not None and name != folder:
        errors.append(AirlockError(_at(path, data, "name", "name"),
                                   f"name '{name}' does not match the folder name '{folder}'",
                                   f'write name: "{folder}" or rename the folder'))
    codename = _string(path, data, "codename", "codename", errors, _RELEASE_KEYS["codename"])
    python = _string(path, data, "python", "python", errors, _RELEASE_KEYS["python"])
    if python is not None and not _PYTHON.fullmatch(python):
        errors.append(AirlockError(_at(path, data, "python", "python"),
                                   f"python '{python}' is not a version like \"3.11\"",
                                   'write python: "3.N"'))
        python = None
    distro = _distro(path, data, errors)
    base_image = _base_image(path, data, errors)
    platforms = _names(path, data, "platforms", list(platforms_mod.NAMES), errors)
    services = _names(path, data, "services", list(SERVICES), errors)
    for key in data:
        if key not in _RELEASE_KEYS:
            errors.append(_unknown_key(path, data, key, list(_RELEASE_KEYS)))
    return {
        "name": folder,
        "codename": codename or "",
        "python": python or "",
        "distro": distro,
        "base_image": base_image or "",
        "platforms": platforms,
        "services": services,
    }


def _distro(path: Path, data: dict, errors: list[AirlockError]) -> Distro:
    """The distro mapping: name, codename and version, all strings."""
    empty = Distro("", "", "")
    if "distro" not in data:
        errors.append(AirlockError(f"{path}:distro", "missing key 'distro'",
                                   f"add distro: {_RELEASE_KEYS['distro']}"))
        return empty
    distro = data["distro"]
    if not isinstance(distro, dict):
        errors.append(AirlockError(_at(path, data, "distro", "distro"),
                                   f"distro must be a mapping, not {_kind(distro)}",
                                   f"write distro: {_RELEASE_KEYS['distro']}"))
        return empty
    values = {}
    for key, example in _DISTRO_KEYS.items():
        if key not in distro:
            errors.append(AirlockError(_at(path, data, "distro", "distro"),
                                       f"missing key 'distro.{key}'", f"add {key}: {example}"))
            continue
        values[key] = _string(path, distro, key, f"distro.{key}", errors, example)
    for key in distro:
        if key not in _DISTRO_KEYS:
            errors.append(_unknown_key(path, distro, key, list(_DISTRO_KEYS), "distro"))
    return Distro(**{k: values.get(k) or "" for k in _DISTRO_KEYS})


def _base_image(path: Path, data: dict, errors: list[AirlockError]) -> str | None:
    """base_image must hold a ${VAR}: a site points it at its own registry, nothing is fixed."""
    value = _string(path, data, "base_image", "base_image", errors, _RELEASE_KEYS["base_image"])
    if value is None:
        return None
    where = _at(path, data, "base_image", "base_image")
    fix = (f"write it as {_RELEASE_KEYS['base_image']} so a site can point it "
           "at its own registry")
    if "$" in _VAR.sub("", value):
        errors.append(AirlockError(where, f"base_image '{value}' has a malformed variable",
                                   "write ${VAR} or ${VAR:-default}"))
        return None
    if not _VAR.search(value):
        errors.append(AirlockError(where, f"base_image '{value}' holds no ${{VAR}}", fix))
        return None
    # What the data decides: the text around the variables and their
    # defaults. A build pulls by the expanded text, so it must be nothing but
    # a registry reference, qualified by its host (never a default registry).
    written = _VAR.sub(lambda m: m.group(2) or "", value)
    problem = _char_problem(written)
    if problem is not None:
        errors.append(AirlockError(where, f"base_image '{shown(value)}' {problem}",
                                   f"write {_RELEASE_KEYS['base_image']}: an image reference, "
                                   "nothing else"))
        return None
    if all(m.group(2) is not None for m in _VAR.finditer(value)) \
            and not _IMAGE_REF.fullmatch(written):
        errors.append(AirlockError(where, f"base_image default '{written}' is not a fully "
                                   "qualified image reference",
                                   "write host[:port]/path:tag or host[:port]/path@sha256:<hex>, "
                                   "e.g. 127.0.0.1:5000/airlock/debian:bookworm"))
        return None
    return value


# A fully qualified image reference (the distribution reference grammar):
# a registry host (with a '.' or a port, or localhost, or [IPv6]), a path,
# then a tag, a digest or both.
_HOST_PART = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_IMAGE_REF = re.compile(
    rf"(?:(?:{_HOST_PART}\.)+{_HOST_PART}(?::\d+)?|{_HOST_PART}:\d+|localhost|\[[0-9A-Fa-f:]+\]"
    r"(?::\d+)?)"
    r"(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)+"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}(?:@sha256:[0-9a-f]{64})?|@sha256:[0-9a-f]{64})")


def _load_source_refs(path: Path, services: tuple[str, ...], pinned: set[str] | None,
                      errors: list[AirlockError], check_services: bool, tree: Path,
                      ) -> dict[str, ComponentRef]:
    """The components of source-refs.yaml, in file order; invalid entries left out."""
    if not os.path.lexists(path):
        return {}  # reported with the other missing files
    try:
        data = yamlfile.load(path, within=tree, fix=FILE_FIX)
    except AirlockError as error:
        errors.append(error)
        return {}
    if data is None:
        data = yamlfile.YamlMap()  # every service then misses its ref
    if not isinstance(data, dict):
        errors.append(AirlockError(f"{path}:1", f"expected a mapping of component: ref, "
                                   f"not {_kind(data)}", 'write one line per component, '
                                   'e.g. nova: "<tag>"'))
        return {}
    components: dict[str, ComponentRef] = {}
    packages: dict[str, str] = {}  # canonical package -> component name
    for key in data:
        where = _at(path, data, key, str(key))
        if not isinstance(key, str):
            errors.append(AirlockError(where, f"component name {key!r} is not a string",
                                       f'quote it: "{key}"'))
            continue
        component = _component(key, pinned)
        if component is None:
            errors.append(AirlockError(where, f"unknown component '{key}'",
                                       f"use a service ({', '.join(SERVICES)}) or a package "
                                       "pinned in upper-constraints.txt"))
        elif canonical_name(component.package) in packages:
            errors.append(AirlockError(where, f"'{key}' is the same package as "
                                       f"'{packages[canonical_name(component.package)]}'",
                                       "keep one"))
            component = None
        entry = _entry(path, data, key, errors)
        if component is not None and entry is not None:
            packages[canonical_name(component.package)] = key
            components[key] = ComponentRef(component, *entry)
    if check_services:
        for service in services:
            if service not in data:
                errors.append(AirlockError(str(path), f"missing ref for service '{service}'",
                                           f'add {service}: "<tag, branch or full SHA>"'))
    return components


def _component(key: str, pinned: set[str] | None) -> Component | None:
    """A service by name, or a library pinned upstream; None for an unknown name."""
    if key in SERVICES:
        return SERVICES[key]
    if pinned is not None and canonical_name(key) not in pinned:
        return None
    return Component(key, project=key, package=key, kind="library")


def _entry(path: Path, data: dict, key: str, errors: list[AirlockError],
           ) -> tuple[str, str | None] | None:
    """(ref, repo) of the short form ``key: ref`` or the long form ``key: {ref:, repo:}``."""
    value = data[key]
    if not isinstance(value, dict):
        ref = _ref(path, data, key, key, key, errors)
        return (ref, None) if ref is not None else None
    ok = True
    for extra in value:
        if extra not in _REF_KEYS:
            errors.append(_unknown_key(path, value, extra, list(_REF_KEYS), key))
            ok = False
    if "ref" not in value:
        errors.append(AirlockError(_at(path, data, key, key), f"'{key}' has no ref",
                                   'add ref: "<tag, branch or full SHA>"'))
        return None
    ref = _ref(path, value, "ref", key, "ref", errors)
    repo = value.get("repo")
    if "repo" in value and (not isinstance(repo, str) or not repo.strip()):
        errors.append(AirlockError(_at(path, value, "repo", key),
                                   f"repo of '{key}' must be a URL or path, not {_kind(repo)}",
                                   "write repo: <URL or path>, or drop it to use "
                                   "<git-base>/openstack/<project>"))
        ok = False
    elif repo is not None:
        problem = repo_problem(repo)
        if problem is not None:
            errors.append(AirlockError(_at(path, value, "repo", key),
                                       f"repo of '{key}' {problem[0]}", problem[1]))
            ok = False
    return (ref, repo) if ok and ref is not None else None


# Transports git speaks itself; "<helper>::<address>" would run a remote
# helper program (ext:: runs any command), which release data never needs.
_GIT_SCHEMES = ("https", "http", "ssh", "git", "file", "git+ssh", "ssh+git")
_REPO_FIX = ("write https://host/path, ssh://host/path, file:///path, host:path "
             "or a local path")
# Characters no ref or repository of ours needs and a shell would act on.
_SHELL = set("$`;|&<>()\"'\\")


def repo_problem(repo: str) -> tuple[str, str] | None:
    """What is wrong with a ``repo:`` of source-refs.yaml as (what, fix); None if nothing.

    Release data is reviewed in public, so a credential in it is refused
    (git finds them in ~/.netrc at run time, or in a credentialed
    --git-base); so is anything git could not use as a repository or would
    take for an option or a helper program.
    """
    try:
        url = urlsplit(repo) if "://" in repo else None
        password = url.password if url else None
        user = url.username if url else None
        _ = url.port if url else None  # a port that is not a number raises here
    except ValueError:  # a malformed port or IPv6 host
        return "is not a URL or path git can use (malformed URL)", _REPO_FIX
    if password is not None or (user is not None and url and url.scheme in ("http", "https")):
        return ("holds credentials (the user:password@ or token@ part of the URL)",
                "release data is reviewed in public: remove them and let git read them from "
                "~/.netrc at run time, or pass a --git-base that carries them")
    problem = _text_problem(repo)
    if problem is None and "::" in repo.split("/", 1)[0]:
        problem = "names a git remote helper (<helper>::)"
    if problem is None and url is not None:
        if url.scheme.lower() not in _GIT_SCHEMES:
            problem = f"has the scheme '{url.scheme}', not one of {', '.join(_GIT_SCHEMES)}"
        elif not url.path.strip("/") or (not url.netloc and url.scheme != "file"):
            problem = "has no host or no path"
    if problem is not None:
        return f"is not a URL or path git can use ({problem})", _REPO_FIX
    return None


def _text_problem(text: str) -> str | None:
    """A leading '-', whitespace, control or shell characters in a ref or repository."""
    if text.startswith("-"):
        return "starts with '-', which git takes for an option"
    return _char_problem(text)


def _char_problem(text: str) -> str | None:
    """Whitespace, control or shell characters: what no name or reference of ours holds."""
    for char in text:
        if char.isspace() or not char.isprintable():
            return "holds whitespace or a control character"
        if char in _SHELL:
            return f"holds '{char}', which is shell text"
    return None


def ref_problem(ref: str) -> str | None:
    """Why git would refuse ``ref`` as a ref name (``git check-ref-format
    --allow-onelevel``), or why airlock does (shell text; HEAD, which
    ``refs resolve`` never finds among tags and branches); None if fine.

    A full SHA passes: it breaks none of the rules.
    """
    problem = _text_problem(ref)
    if problem is not None:
        return problem
    for text in ("~", "^", ":", "?", "*", "[", "..", "@{"):
        if text in ref:
            return f"holds '{text}'"
    if ref == "@":
        return "is '@'"
    if ref == "HEAD":
        # refs resolve asks for tags and branches only; git refuses both named HEAD.
        return "is HEAD, which is neither a tag nor a branch"
    if ref.startswith("/") or ref.endswith("/") or "//" in ref:
        return "has an empty part between '/'"
    if ref.endswith("."):
        return "ends with '.'"
    for part in ref.split("/"):
        if part.startswith("."):
            return "has a part starting with '.'"
        if part.endswith(".lock"):
            return "has a part ending with '.lock'"
    return None


def shown(text: str, limit: int = 80) -> str:
    """``text`` fit for a one-line message: control characters escaped, long text cut."""
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text if len(text) <= limit else text[:limit] + "..."


def _ref(path: Path, data: dict, key: str, component: str, written_as: str,
         errors: list[AirlockError]) -> str | None:
    """A usable git ref: a non-empty string that is not an abbreviated SHA."""
    value = data[key]
    where = _at(path, data, key, component)
    if value is None:
        errors.append(AirlockError(where, f"'{component}' has no ref", _REF_FIX))
        return None
    if not isinstance(value, str):
        raw = yamlfile.raw(data, key)
        fix = f'quote it: {written_as}: "{raw}"' if raw is not None else _REF_FIX
        errors.append(AirlockError(where, f"ref of '{component}' must be a string, "
                                   f"not {_kind(value)}", fix))
        return None
    if not value.strip():
        errors.append(AirlockError(where, f"empty ref for '{component}'", _REF_FIX))
        return None
    if _ABBREVIATED_SHA.fullmatch(value):
        errors.append(AirlockError(where, f"ref '{value}' of '{component}' looks like an "
                                   "abbreviated SHA", "write the full 40-character SHA, "
                                   "a tag or a branch"))
        return None
    problem = ref_problem(value)
    if problem is not None:
        errors.append(AirlockError(where, f"ref '{shown(value)}' of '{component}' is not a "
                                   f"ref name git accepts: it {problem}", _REF_FIX))
        return None
    return value
