"""site.yaml: where the air-gapped site's four stores are, and where their credentials live.

The site side reads only from these stores and publishes only to them: the
Artifacts Nexus (a PyPI-hosted repository; a raw-hosted one for the apt
repositories and import records), the Images Nexus (a Docker-hosted
registry) and the git mirror. The file names URLs and, per store, where
its credentials are (``credentials_file`` or ``credentials_env``, each
holding one line ``user:password``); a secret in the YAML itself is
refused, and no credential reaches a message, a log or a record. Relative
paths are taken from the folder of site.yaml.

Plain data out (:class:`Site`); :func:`load` is the only reader.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

from airlock import files
from airlock.data import yamlfile
from airlock.errors import AirlockError
from airlock.urls import has_userinfo

STORES = ("pypi", "raw", "registry", "git")
KEYS = {"pypi": ("upload", "simple"), "raw": ("url",), "registry": ("prefix",),
        "git": ("base", "push")}
CREDENTIAL_KEYS = ("credentials_file", "credentials_env")
# ``anonymous: true``: the store is read (and written) without credentials,
# e.g. a Nexus that allows anonymous reads, as the Zuul jobs read it. Said
# explicitly: a store that merely forgot its credentials is still an error.
ANONYMOUS = "anonymous"
# git's push credentials are optional: a folder or ssh needs none.
OPTIONAL_CREDENTIALS = ("git",)
CREDENTIALS_LIMIT = 4096
FIX = "see README, 'The site's stores: site.yaml'"
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Store:
    """One store: its locations, and where its credentials are (never the secret itself)."""

    name: str
    urls: dict[str, str]
    credentials_file: Path | None = None
    credentials_env: str | None = None
    where: str = ""  # site.yaml:LINE, for messages

    def credentials(self) -> tuple[str, str] | None:
        """``(user, password)`` from the file or variable site.yaml names; None when none."""
        if self.credentials_env is not None:
            value = os.environ.get(self.credentials_env)
            if not value:
                raise AirlockError(f"{self.where}", f"{self.name}: ${self.credentials_env} "
                                   "is not set", f"export it as user:password; {FIX}")
            return _pair(value, f"${self.credentials_env}", self.name)
        if self.credentials_file is not None:
            text = files.read_text(self.credentials_file, limit=CREDENTIALS_LIMIT,
                                   fix=f"write user:password into it; {FIX}")
            # One line; a CRLF file's "\r" is its line end, not the password's.
            return _pair(text.removesuffix("\n").removesuffix("\r"),
                         str(self.credentials_file), self.name)
        return None


@dataclass(frozen=True)
class Site:
    """The four stores of one site, as site.yaml names them."""

    path: Path
    stores: dict[str, Store] = field(default_factory=dict)

    @property
    def pypi(self) -> Store:
        return self.stores["pypi"]

    @property
    def raw(self) -> Store:
        return self.stores["raw"]

    @property
    def registry(self) -> Store:
        return self.stores["registry"]

    @property
    def git(self) -> Store:
        return self.stores["git"]


def _pair(value: str, where: str, store: str) -> tuple[str, str]:
    user, sep, password = value.partition(":")
    if not sep or not user or not password or "\n" in value or "\r" in value:
        raise AirlockError(where, f"{store}: not one line user:password",
                           f"write exactly user:password; {FIX}")
    return user, password


def load(path: Path) -> Site:
    """Read and check site.yaml: every store, every key, no secret; one line per mistake."""
    path = Path(path)
    data = yamlfile.load(path, fix=f"pass the site's site.yaml; {FIX}")
    if not isinstance(data, dict):
        raise AirlockError(str(path), "is not a mapping of the four stores "
                           f"({', '.join(STORES)})", FIX)
    unknown = [k for k in data if k not in STORES]
    if unknown:
        raise AirlockError(yamlfile.where(path, data, unknown[0]),
                           f"unknown store {unknown[0]!r}", f"use {', '.join(STORES)}")
    stores = {}
    for name in STORES:
        if name not in data:
            raise AirlockError(f"{path}:{name}", "missing", f"every store must be named; {FIX}")
        stores[name] = _store(path, name, data[name], data)
    return Site(path, stores)


def _store(path: Path, name: str, entry: object, parent: object) -> Store:
    where = yamlfile.where(path, parent, name)
    if not isinstance(entry, dict):
        raise AirlockError(where, f"{name}: not a mapping", FIX)
    allowed = (*KEYS[name], *CREDENTIAL_KEYS, ANONYMOUS)
    for key in entry:
        if key not in allowed:
            secret = any(w in str(key).lower() for w in ("pass", "token", "secret", "user"))
            what = "a secret does not belong here" if secret else "unknown key"
            # A key that is not a plain name may be the secret itself (u:pw:).
            shown = f" ({key})" if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]{0,39}", str(key)) \
                else ""
            raise AirlockError(yamlfile.where(path, entry, key), f"{name}: {what}{shown}",
                               f"use {', '.join(allowed)}; credentials go in a file "
                               "(credentials_file) or a variable (credentials_env)")
    urls = {}
    for key in KEYS[name]:
        value = entry.get(key)
        at = yamlfile.where(path, entry, key)
        if not isinstance(value, str) or not value.strip():
            raise AirlockError(at, f"{name}.{key}: missing or not a string", FIX)
        if has_userinfo(value) and not _ssh_login(value):
            raise AirlockError(at, f"{name}.{key}: holds credentials", "remove user:password@ "
                               "from the URL; name a credentials_file or credentials_env")
        urls[key] = _location(path, name, key, value.strip(), at)
    cred_file, cred_env = entry.get("credentials_file"), entry.get("credentials_env")
    if cred_file is not None and cred_env is not None:
        raise AirlockError(where, f"{name}: both credentials_file and credentials_env",
                           "name one of them")
    if cred_env is not None and (not isinstance(cred_env, str) or not _ENV_NAME.match(cred_env)):
        raise AirlockError(yamlfile.where(path, entry, "credentials_env"),
                           f"{name}.credentials_env: not a variable name", FIX)
    if cred_file is not None and (not isinstance(cred_file, str) or not cred_file.strip()):
        raise AirlockError(yamlfile.where(path, entry, "credentials_file"),
                           f"{name}.credentials_file: not a path", FIX)
    if cred_file is not None and ":" in cred_file \
            and not os.path.lexists(_relative(path, cred_file)):
        # Not printed: a user:password written where its file's path goes.
        raise AirlockError(yamlfile.where(path, entry, "credentials_file"),
                           f"{name}.credentials_file: names no file, and looks like "
                           "user:password (a secret does not belong in site.yaml)",
                           f"write user:password into a file and name that file; {FIX}")
    anonymous = entry.get(ANONYMOUS, False)
    if anonymous is not True and anonymous is not False:
        raise AirlockError(yamlfile.where(path, entry, ANONYMOUS),
                           f"{name}.{ANONYMOUS}: not true or false", FIX)
    if anonymous and (cred_file is not None or cred_env is not None):
        raise AirlockError(where, f"{name}: anonymous and credentials_file/credentials_env",
                           "name credentials, or anonymous: true, not both")
    if cred_file is None and cred_env is None and not anonymous \
            and name not in OPTIONAL_CREDENTIALS:
        raise AirlockError(where, f"{name}: no credentials_file or credentials_env",
                           f"name where its user:password is (or anonymous: true); {FIX}")
    return Store(name, urls, credentials_file=_relative(path, cred_file) if cred_file else None,
                 credentials_env=cred_env, where=where)


def _ssh_login(value: str) -> bool:
    """``ssh://user@host...``: a login name, no password (Gerrit's push URL), is no secret."""
    try:
        parts = urllib.parse.urlsplit(value)
        return (parts.scheme == "ssh" and parts.password is None
                and parts.netloc.count("@") == 1 and ":" not in parts.netloc.split("@")[0])
    except ValueError:
        return False


def _relative(site_yaml: Path, value: str) -> Path:
    candidate = Path(value)
    return candidate if candidate.is_absolute() else site_yaml.parent / candidate


def _location(path: Path, store: str, key: str, value: str, at: str) -> str:
    """A URL the store's clients take, or (registry prefix, git folder) its own form."""
    if "://" not in value and "@" in value.partition("/")[0] \
            and not (store == "git" and re.match(r"^[^/:@]+@[^/:@]+:", value)):
        # user:password@host without a scheme: has_userinfo does not see it,
        # and the value would be printed, pushed to and recorded as is.
        raise AirlockError(at, f"{store}.{key}: holds credentials (user@ before the host)",
                           "remove user:password@; name a credentials_file or "
                           "credentials_env")
    if store == "registry":
        if "://" in value or value.startswith("/"):
            raise AirlockError(at, f"registry.prefix: {value!r} is not host[:port]/path",
                               "write the docker-hosted connector, e.g. "
                               "nexus.site:8443/openstack")
        return value.rstrip("/")
    if store == "git" and "://" not in value:
        if re.match(r"^[^/:@]+@[^/:@]+:", value):
            return value  # ssh's user@host:path (GitStore pushes to it as such)
        return str(_relative(path, value))  # a folder of bare repositories
    parts = urllib.parse.urlsplit(value)
    schemes = ("http", "https") if store in ("pypi", "raw") else ("git", "http", "https", "ssh",
                                                                   "file")
    if parts.scheme not in schemes or not (parts.netloc or parts.scheme == "file"):
        raise AirlockError(at, f"{store}.{key}: {value!r} is not a {'/'.join(schemes)} URL",
                           FIX)
    return value.rstrip("/") + "/" if store in ("pypi", "raw") else value.rstrip("/")
