"""Credentials for a registry: the auth file a site gives airlock, for every client.

Credentials are never on a command line nor in a log: when the registry
needs them, ``$AIRLOCK_REGISTRY_AUTH_FILE`` names a containers auth.json
(``skopeo login --authfile FILE`` writes one). It is checked before use
(:func:`check_auth_file`): a regular file of at most 1 MiB holding JSON
with an ``"auths"`` object whose entries carry ``"auth"`` as base64 of
``user:password``; anything else is one line that never quotes the file.
That file is then the only one: skopeo gets it as ``--authfile``
(:func:`auth_args`), the HTTP questions read it (:func:`credentials`), and
the docker client and BuildKit a private copy as their config.json
(:func:`docker_config`). Without it, the files skopeo would read are
searched in skopeo's order (``$REGISTRY_AUTH_FILE`` alone when set; else
``$XDG_RUNTIME_DIR/containers/auth.json``,
``~/.config/containers/auth.json``, ``~/.docker/config.json``); the most
specific key (``host/ns/repo``, ``host/ns``, ``host``) wins, as for skopeo.
Credential helpers (``credsStore``) are not read: use an auth file.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from airlock import files
from airlock.errors import AirlockError

AUTH_FILE_ENV = "AIRLOCK_REGISTRY_AUTH_FILE"
AUTH_FILE_LIMIT = files.MiB


@dataclass(frozen=True)
class _AuthFile:
    path: Path
    auths: dict[str, str]  # normalised key -> base64 "user:password"


_auth_cache: dict[tuple, _AuthFile] = {}


def _load_auth_file(path: Path, where: str, *, strict: bool) -> _AuthFile:
    """Read and check a containers auth.json; every mistake is a line that quotes nothing of it.

    ``strict``: the file was named by the user and must have ``"auths"``;
    a default file (a docker config.json) may have none.
    """
    fix = "point it at a containers auth.json (skopeo login --authfile FILE writes one)"
    try:
        st = os.stat(path)
        key: tuple = (str(path), st.st_ino, st.st_size, st.st_mtime_ns)
    except OSError:
        key = ()
    if key and key in _auth_cache:
        return _auth_cache[key]
    try:
        data = files.read_bytes(path, limit=AUTH_FILE_LIMIT, fix=fix)
    except AirlockError as error:
        raise AirlockError(where, error.what, fix) from None
    try:
        doc = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise AirlockError(where, "is not UTF-8 text", fix) from None
    except json.JSONDecodeError as error:
        raise AirlockError(where, f"is not JSON ({error.msg.removesuffix(' at')} at line "
                           f"{error.lineno} column {error.colno})", fix) from None
    except RecursionError:
        raise AirlockError(where, "is not JSON (nested too deep)", fix) from None
    if not isinstance(doc, dict):
        raise AirlockError(where, "is not a JSON object", fix)
    if "auths" not in doc and not strict:
        doc = {"auths": {}}
    auths = doc.get("auths")
    if not isinstance(auths, dict):
        raise AirlockError(where, 'has no "auths" object', fix)
    found: dict[str, str] = {}
    for number, (name, entry) in enumerate(auths.items(), start=1):
        if not isinstance(entry, dict):
            raise AirlockError(where, f'"auths" entry {number} is not an object', fix)
        token = entry.get("auth", "")
        if token == "":
            continue  # e.g. docker's identitytoken entries: nothing to send
        if not isinstance(token, str) or not _valid_basic(token):
            raise AirlockError(where, f'"auth" of "auths" entry {number} is not base64 of '
                               "user:password", fix)
        found.setdefault(_normalise_key(str(name)), token)
    loaded = _AuthFile(path=path, auths=found)
    if key:
        _auth_cache[key] = loaded
    return loaded


def _valid_basic(token: str) -> bool:
    try:
        decoded = base64.b64decode(token, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return False
    return ":" in decoded


def _normalise_key(name: str) -> str:
    """An auths key as skopeo matches it: docker's ``https://host/v1/`` keys become ``host``."""
    if "://" in name:
        return name.split("://", 1)[1].split("/", 1)[0]
    return name.rstrip("/")


def _auth_file_env(env: Mapping[str, str] | None = None) -> Path | None:
    env = os.environ if env is None else env
    path = env.get(AUTH_FILE_ENV)
    return Path(path) if path else None


def check_auth_file(env: Mapping[str, str] | None = None) -> Path | None:
    """Check ``$AIRLOCK_REGISTRY_AUTH_FILE`` (when set) before any work; return its path.

    A user error (exit 1) names the variable and the file and says what is
    wrong with it, never what it holds.
    """
    path = _auth_file_env(env)
    if path is not None:
        _load_auth_file(path, f"${AUTH_FILE_ENV} ({path})", strict=True)
    return path


@contextlib.contextmanager
def docker_config(env: Mapping[str, str] | None = None) -> Iterator[dict[str, str]]:
    """The environment giving the docker client the credentials of ``$AIRLOCK_REGISTRY_AUTH_FILE``.

    skopeo reads the auth file itself; the docker client (``docker run``,
    ``docker pull``) and BuildKit (which asks the client, through its
    session, for the credentials of a ``FROM`` or a build argument image
    that lies in the site's registry) read ``$DOCKER_CONFIG/config.json``,
    whose ``"auths"`` has the same form. For the duration of one call a
    private folder (mode 700) holds that copy, and is removed after; the
    host's own docker configuration is never written. Without the variable
    the client's own configuration applies (``{}``).
    """
    path = check_auth_file(env)
    if path is None:
        yield {}
        return
    auths = json.loads(files.read_bytes(path, limit=AUTH_FILE_LIMIT))["auths"]
    with tempfile.TemporaryDirectory(prefix="airlock-docker-config-") as folder:
        os.chmod(folder, 0o700)
        fd = os.open(Path(folder) / "config.json", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump({"auths": auths}, handle)
        yield {"DOCKER_CONFIG": folder}


def _auth_files(env: Mapping[str, str] | None = None) -> list[_AuthFile]:
    """The auth files searched for credentials, as skopeo searches them.

    A file the user names (``$AIRLOCK_REGISTRY_AUTH_FILE``, else skopeo's
    ``$REGISTRY_AUTH_FILE``) is the only one; otherwise the primary file
    (``$XDG_RUNTIME_DIR/containers/auth.json``), then
    ``$XDG_CONFIG_HOME/containers/auth.json`` and docker's config.json.
    """
    env = os.environ if env is None else env
    chosen = _auth_file_env(env)
    if chosen is not None:
        return [_load_auth_file(chosen, f"${AUTH_FILE_ENV} ({chosen})", strict=True)]
    if env.get("REGISTRY_AUTH_FILE"):
        named = Path(env["REGISTRY_AUTH_FILE"])
        return [_load_auth_file(named, f"$REGISTRY_AUTH_FILE ({named})", strict=True)]
    home = Path(env.get("HOME") or Path.home())
    primary = Path(env["XDG_RUNTIME_DIR"]) / "containers" / "auth.json" \
        if env.get("XDG_RUNTIME_DIR") else Path(f"/run/containers/{os.getuid()}/auth.json")
    config = Path(env.get("XDG_CONFIG_HOME") or home / ".config")
    docker = Path(env.get("DOCKER_CONFIG") or home / ".docker")
    return [_load_auth_file(path, str(path), strict=False)
            for path in (primary, config / "containers" / "auth.json", docker / "config.json")
            if path.is_file()]


def credentials(host: str, repo: str, env: Mapping[str, str] | None = None
                 ) -> tuple[str, str] | None:
    """(user, password) for ``host/repo``: the most specific key of the first file that has one."""
    parts = repo.split("/")
    keys = [f"{host}/{'/'.join(parts[:n])}" for n in range(len(parts), 0, -1)] + [host]
    for auth in _auth_files(env):
        for key in keys:
            token = auth.auths.get(key)
            if token:
                user, _, password = base64.b64decode(token).decode("utf-8").partition(":")
                return user, password
    return None


def auth_args(env: Mapping[str, str] | None = None) -> list[str]:
    path = check_auth_file(env)
    return [] if path is None else ["--authfile", str(path)]
