"""How a run reaches a site's stores: the URLs with their credentials, for this process only.

site.yaml names where the credentials are; this module reads them when a
run needs them and hands them to the clients the way each takes them
without a command line: index and apt URLs carry ``user:password@`` (pip,
uv and apt get them through their environment or ``auth.conf``, and every
printed line is redacted), the registry gets a private containers
auth.json named by ``$AIRLOCK_REGISTRY_AUTH_FILE`` for the length of the
run, removed afterwards, whatever ends it.

:func:`settings` maps a site onto what a build takes (plain data);
:func:`check_reachable` asks each store once, up front, so that a site
build with a store missing fails naming it before any work.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from airlock import files
from airlock.data.release import Release
from airlock.errors import AirlockError, ToolError
from airlock.ext import git, registry, registryauth
from airlock.site.config import Site, Store
from airlock.urls import basic_authorization, strip_userinfo

TIMEOUT = 30


LIBRARIES = "airlock/libraries"


def libraries_path(wheel: str) -> str:
    """Where the raw store keeps which package provides each library ``wheel`` needs."""
    return f"{LIBRARIES}/{wheel}.json"


@dataclass(frozen=True)
class BuildSettings:
    """What a build at the site reads from and publishes to, credentials included."""

    git_base: str
    index_url: str
    apt_repos: dict[str, str]
    registry: str
    base_image: str
    known_libraries: Callable[[str], dict[str, str]] | None = None


def with_userinfo(url: str, store: Store) -> str:
    """``url`` with the store's ``user:password@`` (quoted), when it has credentials."""
    pair = store.credentials()
    if pair is None:
        return url
    parts = urllib.parse.urlsplit(url)
    user, password = (urllib.parse.quote(p, safe="") for p in pair)
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:{password}@{parts.netloc}"))


def apt_repo_url(site: Site, distro: str, codename: str, arch: str) -> str:
    """Where an imported bundle's flat apt repository of ``arch`` is in the raw store."""
    return f"{site.raw.urls['url']}debs/{distro}-{codename}/{arch}/"


def base_image_ref(site: Site, release: Release, env: dict[str, str] | None = None) -> str:
    """The release's base image in the site's registry: ``<prefix>/<name>:<tag>``.

    The name and tag are those of the release's own base image reference
    (``.../debian:bookworm`` -> ``<prefix>/debian:bookworm``), which is
    where ``bundle import`` puts the bundle's base image.
    """
    last = release.base_image_ref(env).rsplit("/", 1)[-1]
    return f"{site.registry.urls['prefix']}/{last}"


def settings(site: Site, release: Release, env: dict[str, str] | None = None) -> BuildSettings:
    """What ``build --site`` uses for ``release``: every input from the site's stores."""
    return BuildSettings(
        git_base=site.git.urls["base"],
        index_url=with_userinfo(site.pypi.urls["simple"], site.pypi),
        apt_repos={arch: with_userinfo(apt_repo_url(site, release.distro.name,
                                                    release.distro.codename, arch), site.raw)
                   for arch in _arches(release)},
        registry=site.registry.urls["prefix"],
        base_image=base_image_ref(site, release, env),
        known_libraries=lambda wheel: wheel_libraries(site, wheel))


def wheel_libraries(site: Site, wheel: str) -> dict[str, str]:
    """``{soname: package}`` the import left in the raw store for ``wheel`` ({} if none)."""
    url = site.raw.urls["url"] + libraries_path(urllib.parse.quote(wheel))
    request = urllib.request.Request(url)
    pair = site.raw.credentials()
    if pair:
        request.add_header("Authorization", basic_authorization(*pair))
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as answer:
            data = json.loads(answer.read(files.MiB))
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return {}
        raise ToolError(site.raw.where, f"raw {url}: HTTP {error.code}",
                        "check the raw store and its credentials") from None
    except (urllib.error.URLError, OSError, ValueError) as error:
        raise ToolError(site.raw.where, f"raw {url}: {getattr(error, 'reason', error)}",
                        "check the raw store") from None
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _arches(release: Release) -> list[str]:
    from airlock.data import platforms

    native = platforms.native()
    names = {*release.platforms, *([native.platform] if native else [])}
    return sorted(platforms.get(name).arch for name in names)


@contextlib.contextmanager
def registry_auth(site: Site) -> Iterator[None]:
    """``$AIRLOCK_REGISTRY_AUTH_FILE`` naming a private auth.json for the site's registry.

    Written into a fresh folder only this user can read, removed on the way
    out; the variable is restored to what it was.
    """
    pair = site.registry.credentials()
    host = site.registry.urls["prefix"].split("/", 1)[0]
    before = os.environ.get(registryauth.AUTH_FILE_ENV)
    with tempfile.TemporaryDirectory(prefix="airlock-site-auth-") as tmp:
        path = Path(tmp) / "auth.json"
        auths = {host: {"auth": base64.b64encode(":".join(pair).encode()).decode()}} \
            if pair else {}
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump({"auths": auths}, handle)
        os.environ[registryauth.AUTH_FILE_ENV] = str(path)
        try:
            yield
        finally:
            if before is None:
                os.environ.pop(registryauth.AUTH_FILE_ENV, None)
            else:
                os.environ[registryauth.AUTH_FILE_ENV] = before


def check_imported(site: Site, bundle_id: str) -> None:
    """``build --site --bundle ID``: the raw store holds that bundle's import record.

    The bundle id goes into the images' annotations: it must name a bundle
    this site imported, not a typo. Run inside :func:`registry_auth`.
    """
    from airlock.site import importer, stores

    path = importer.record_path(bundle_id)
    if stores.RawStore(site.raw).get(path) is None:
        raise AirlockError(f"--bundle {bundle_id}", "the site imported no such bundle (no "
                           f"{strip_userinfo(site.raw.urls['url'])}{path})",
                           "pass the id airlock bundle import printed, or import it first")


def check_reachable(site: Site) -> None:
    """Ask every store once; the first that does not answer (or refuses) is one line.

    The PyPI index and the raw store by HTTP (with their credentials), the
    registry's API root, the git mirror by ``ls-remote`` of nothing (a
    folder must exist). Run inside :func:`registry_auth`.
    """
    _http(site.pypi, site.pypi.urls["simple"])
    _http(site.raw, site.raw.urls["url"], missing_ok=True)
    host, _, path = site.registry.urls["prefix"].partition("/")
    try:
        registry.list_tags(f"{host}/{path or 'airlock'}/airlock-probe")
    except ToolError as error:
        if "no such" not in error.what and "not found" not in error.what.lower():
            raise ToolError(site.registry.where, f"registry {site.registry.urls['prefix']}: "
                            f"{error.what}", "start it, or fix registry: in site.yaml and its "
                            "credentials") from None
    base = site.git.urls["base"]
    if "://" not in base:
        if not Path(base).is_dir():
            raise AirlockError(site.git.where, f"git base {base}: no such folder",
                               "fix git.base in site.yaml")
    else:
        proc = git.run(["ls-remote", "--heads", "--", f"{base.rstrip('/')}/openstack/airlock"
                        "-probe"], check=False, where=base)
        if proc.returncode != 0 and _unreachable(proc.stderr):
            raise ToolError(site.git.where, f"git mirror {strip_userinfo(base)}: "
                            f"{git.reason(proc.stderr)}", "start it, or fix git.base in site.yaml")


def _unreachable(stderr: str) -> bool:
    text = stderr.lower()
    return any(word in text for word in ("unable to connect", "connection refused",
                                         "could not resolve", "timed out", "unable to look up"))


def _http(store: Store, url: str, missing_ok: bool = False) -> None:
    request = urllib.request.Request(url, method="GET")
    pair = store.credentials()
    if pair:
        request.add_header("Authorization", basic_authorization(*pair))
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as answer:
            answer.read(1)
    except urllib.error.HTTPError as error:
        if error.code in (401, 403):
            raise ToolError(store.where, f"{store.name} {url}: credentials refused "
                            f"(HTTP {error.code})", "check the credentials site.yaml names"
                            ) from None
        if not (missing_ok and error.code == 404):
            raise ToolError(store.where, f"{store.name} {url}: HTTP {error.code}",
                            "check the URL in site.yaml") from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise ToolError(store.where, f"{store.name} {url}: unreachable ({reason})",
                        "start it, or fix the URL in site.yaml") from None
