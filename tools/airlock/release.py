"""The Release model: one folder of ``releases/`` loaded into plain data.

Everything downstream (refs, sources, constraints, packages, build) takes a
:class:`Release` or its parts, never the YAML files, so the file format is
known in exactly one place.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from airlock import yamlfile
from airlock.errors import AirlockError
from airlock.layout import Layout


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
            return self.repo
        if not git_base:
            raise AirlockError(
                f"component {self.name}",
                "no repository: the entry has no repo: and no git base is set",
                "pass --git-base URL or set AIRLOCK_GIT_BASE",
            )
        return f"{git_base.rstrip('/')}/openstack/{self.component.project}"


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

    @property
    def upper_constraints_path(self) -> Path:
        return self.path / "upper-constraints.txt"

    @property
    def overrides_path(self) -> Path:
        return self.path / "constraint-overrides.txt"

    def base_image_ref(self, env: dict[str, str] | None = None) -> str:
        """The base image reference with ``${VAR}`` expanded from ``env``."""
        return expand_vars(self.base_image, os.environ if env is None else env,
                           where=f"{self.path / 'release.yaml'}:base_image")


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


def load_release_checked(layout: Layout, name: str) -> tuple[Release | None, list[AirlockError]]:
    """Load ``releases/<name>/`` and return it with every schema error found.

    Checks release.yaml and source-refs.yaml (types, required keys,
    duplicate keys, unknown components); cross-file checks (images, patches,
    overrides) live in :mod:`airlock.validate`.
    """
    raise NotImplementedError
