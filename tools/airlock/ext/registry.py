"""The only module that talks to an OCI registry: its HTTP API for questions, skopeo for copies.

Operations work on plain references (``host[:port]/repo:tag`` or
``host[:port]/repo@sha256:...``) and return plain data (digests, tag lists,
parsed manifests).

Two ways in, each for what it does best:

- **Questions** (a manifest's bytes and digest, an image's platforms, the
  tags of a repository, whether a reference exists) go straight to the
  Registry HTTP API v2 (urllib). Its answers carry the registry's status
  and error codes, so "absent" is told from "refused" by what the registry
  said, never by reading a tool's message: skopeo prints some failures
  without their code (``list-tags`` of a missing repository says only
  "invalid status code from registry 404 (Not Found)"), and an
  ``unauthorized`` error for a tag holding ``404`` once read as "absent"
  and made a build rebuild instead of failing on its credentials.
- **Copies and pushes** run skopeo: it pushes an OCI archive with all its
  platforms and keeps every digest (``--preserve-digests`` makes it fail
  rather than silently convert), and copies between repositories without
  re-uploading blobs the registry already has. When skopeo fails, the
  registry is asked (the same HTTP requests, for the repositories
  involved) why: unreachable, refusing the credentials, or answering
  well, in which case skopeo's own last line is the reason.

What a registry answer means (:func:`classify`, by error code first, then
by HTTP status):

- *absent*: 404 with ``MANIFEST_UNKNOWN``, ``NAME_UNKNOWN``,
  ``BLOB_UNKNOWN`` or ``NOT_FOUND`` (Harbor's), or with no code at all
  (the host was checked to be a registry: ``GET /v2/`` answers 200 or
  401). A question then answers None (or no tags).
- *credentials*: 401, 403, ``UNAUTHORIZED``, ``DENIED``. A ToolError (exit
  2) naming the registry and saying to check ``$AIRLOCK_REGISTRY_AUTH_FILE``;
  never retried.
- *transient*: ``TOOMANYREQUESTS``, 429, 5xx, and failures to connect
  (refused, reset, timed out). Retried.
- anything else (a TLS certificate that does not verify, 400 ...): a
  ToolError with the registry's reason; not retried.

One retry policy, here: ``$AIRLOCK_REGISTRY_RETRIES`` attempts in all
(default 4), 1, 2, 4 ... s apart, for transient failures only. skopeo
runs without retries of its own, so attempts never multiply.

Credentials are never on a command line nor in a log: when the registry
needs them, ``$AIRLOCK_REGISTRY_AUTH_FILE`` names a containers auth.json
(``skopeo login --authfile FILE`` writes one), passed to skopeo as
``--authfile`` and read here for the HTTP requests. It is checked before
use (:func:`check_auth_file`): a regular file of at most 1 MiB holding JSON
with an ``"auths"`` object whose entries carry ``"auth"`` as base64 of
``user:password``; anything else is one line that never quotes the file.
That file is then the only one, for skopeo too. Without it, the files
skopeo would read are searched in skopeo's order (``$REGISTRY_AUTH_FILE``
alone when set; else ``$XDG_RUNTIME_DIR/containers/auth.json``,
``~/.config/containers/auth.json``, ``~/.docker/config.json``); the most
specific key (``host/ns/repo``, ``host/ns``, ``host``) wins, as for skopeo.
Credential helpers (``credsStore``) are not read: use an auth file.
Authentication follows the registry's challenge: none, HTTP Basic, or a
Bearer token from the realm it names (with Basic credentials if any);
tokens are kept per host and scope for their lifetime. A redirect to
another host (blob storage) never carries the credentials along.

TLS is verified (with the system's CAs and, as for skopeo, those in
``/etc/containers/certs.d/<host[:port]>/*.crt`` and
``/etc/docker/certs.d/...``, with a client certificate ``*.cert``/``*.key``
found there) except for registries on the loopback (127.0.0.1,
localhost, ::1, the local default) and hosts listed in
``$AIRLOCK_REGISTRY_INSECURE`` (comma-separated ``host[:port]``). Those are
spoken to as skopeo's ``--tls-verify=false`` does: HTTPS without
verification, else plain HTTP (the local registry), the choice kept per
host. Requests to the loopback never go through a proxy.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import http.client
import json
import os
import re
import ssl
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import TypeVar

from airlock import files
from airlock.errors import AirlockError, ToolError
from airlock.ext import exec as ext_exec

AUTH_FILE_ENV = "AIRLOCK_REGISTRY_AUTH_FILE"
INSECURE_ENV = "AIRLOCK_REGISTRY_INSECURE"
RETRIES_ENV = "AIRLOCK_REGISTRY_RETRIES"
DEFAULT_ATTEMPTS = 4

_LOOPBACK = ("127.0.0.1", "localhost", "[::1]", "::1")

# Seconds: one HTTP request (a manifest, a tag list, a token); one skopeo
# copy (a service image with all its platforms, over a slow link).
REQUEST_TIMEOUT = 60
COPY_TIMEOUT = 1800
DELETE_TIMEOUT = 120

# What an answer may weigh: a registry refuses manifests over 4 MiB.
MANIFEST_LIMIT = 4 * files.MiB
LIST_LIMIT = 16 * files.MiB
AUTH_FILE_LIMIT = files.MiB

# A manifest or index of either family, what a GET of a manifest accepts.
_INDEX_TYPES = ("application/vnd.oci.image.index.v1+json",
                "application/vnd.docker.distribution.manifest.list.v2+json")
_MANIFEST_TYPES = ("application/vnd.oci.image.manifest.v1+json",
                   "application/vnd.docker.distribution.manifest.v2+json")
_ACCEPT = ", ".join((*_INDEX_TYPES, *_MANIFEST_TYPES))

# The registry's error codes (distribution spec, plus Harbor's NOT_FOUND).
ABSENT_CODES = frozenset({"MANIFEST_UNKNOWN", "NAME_UNKNOWN", "BLOB_UNKNOWN", "NOT_FOUND"})
AUTH_CODES = frozenset({"UNAUTHORIZED", "DENIED"})
TRANSIENT_CODES = frozenset({"TOOMANYREQUESTS"})

ABSENT, AUTH, TRANSIENT, OTHER = "absent", "credentials", "transient", "other"

_AUTH_FIX = (f"check ${AUTH_FILE_ENV} (a containers auth.json, e.g. from "
             "skopeo login --authfile FILE) and its entry for this registry")
_UNREACHABLE_FIX = ("check that the registry runs (tools/setup-host build-host starts the "
                    "local one) and the address is right")
_TLS_FIX = (f"install the registry's CA certificate on this machine, or list the host in "
            f"${INSECURE_ENV} if it has none")


# --- references ---------------------------------------------------------------

def split_ref(ref: str) -> tuple[str, str, str]:
    """Split ``host/repo:tag`` / ``host/repo@sha256:..`` into (host, repo, tag-or-digest).

    Only fully qualified references are accepted: an unqualified name would
    be completed by skopeo's registries.conf, i.e. reach some default
    upstream host, which an air-gapped tool must never do.
    """
    where = f"image reference {ref!r}"
    if "://" in ref:
        raise AirlockError(where, "has a transport prefix", "write host[:port]/repo:tag")
    if "@" in ref:
        name, _, pointer = ref.partition("@")
    else:
        slash = ref.rfind("/")
        colon = ref.rfind(":")
        name, pointer = (ref[:colon], ref[colon + 1:]) if colon > slash else (ref, "latest")
    host, _, repo = name.partition("/")
    if not repo or not _looks_like_host(host):
        raise AirlockError(where, "does not start with a registry host",
                           "write host[:port]/repo:tag, e.g. 127.0.0.1:5000/airlock/x:tag")
    return host, repo, pointer


def _looks_like_host(text: str) -> bool:
    """A registry host as the distribution reference grammar tells it from a path."""
    return "." in text or ":" in text or text == "localhost"


# A host (DNS name, IPv4, or [IPv6]) with an optional port, and a path
# component, as the distribution reference grammar writes them.
_DNS_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_HOST = re.compile(rf"^(?:{_DNS_LABEL}(?:\.{_DNS_LABEL})*|\[[0-9A-Fa-f:.]+\])(?::[0-9]{{1,5}})?$")
_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_PREFIX_FIX = "write host[:port]/path, e.g. 127.0.0.1:5000/airlock or nexus.site:8443/openstack"


def check_prefix(prefix: str, where: str = "--registry") -> str:
    """Check a repository prefix (``host[:port][/path]``); return it without a trailing '/'.

    The host must be told from a path (a '.', a ':' or ``localhost``, as
    for :func:`split_ref`); each path component is lowercase letters and
    digits joined by '.', '_', '__' or dashes, as the distribution spec
    requires. A mistake is one line (``where``: the option or variable that
    gave it), before any work starts; a prefix holding '@' is not quoted
    (it may hold a password).
    """
    text = prefix.rstrip("/")
    if "@" in text:
        raise AirlockError(where, "contains '@' (credentials or a digest)",
                           f"{_PREFIX_FIX}; credentials go in ${AUTH_FILE_ENV}")

    def bad(why: str) -> AirlockError:
        return AirlockError(where, f"{prefix!r} is not a repository prefix ({why})",
                            _PREFIX_FIX)

    if not text:
        raise bad("it is empty")
    if "://" in text:
        raise bad("a registry is named without a scheme")
    if any(c.isspace() or ord(c) < 32 for c in text):
        raise bad("it holds white space")
    host, _, path = text.partition("/")
    if not _looks_like_host(host) or not _HOST.match(host):
        raise bad(f"{host!r} is not a registry host: a name with a '.', an address, a port, "
                  "or localhost")
    for component in path.split("/") if path else []:
        if not _COMPONENT.match(component):
            raise bad(f"path component {component!r} is not lowercase letters and digits "
                      "joined by '.', '_' or '-'")
    if len(text) > 200:
        raise bad("longer than 200 characters; a whole image name may have 255")
    return text


def _bare(host: str) -> str:
    """``host`` without its port (``[::1]:5000`` -> ``[::1]``)."""
    if host.startswith("["):
        return host[:host.index("]") + 1] if "]" in host else host
    return host.rsplit(":", 1)[0]


def _is_loopback(host: str) -> bool:
    return host in _LOOPBACK or _bare(host) in _LOOPBACK


def _insecure_host(host: str, env: Mapping[str, str] | None = None) -> bool:
    if _is_loopback(host):
        return True
    env = os.environ if env is None else env
    listed = [h.strip() for h in env.get(INSECURE_ENV, "").split(",") if h.strip()]
    return host in listed or _bare(host) in listed


def is_insecure(ref: str, env: Mapping[str, str] | None = None) -> bool:
    """True when the registry of ``ref`` is spoken to without TLS verification."""
    return _insecure_host(split_ref(ref)[0], env)


# --- credentials --------------------------------------------------------------

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


def _credentials(host: str, repo: str, env: Mapping[str, str] | None = None
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


def _auth_args(env: Mapping[str, str] | None = None) -> list[str]:
    path = check_auth_file(env)
    return [] if path is None else ["--authfile", str(path)]


# --- what an answer means -----------------------------------------------------

def error_codes(body: bytes) -> list[tuple[str, str]]:
    """The ``(code, message)`` pairs of a registry's JSON error body (none if it has none)."""
    try:
        doc = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return []
    errors = doc.get("errors") if isinstance(doc, dict) else None
    if not isinstance(errors, list):
        return []
    return [(str(e.get("code", "")).upper(), " ".join(str(e.get("message") or "").split())[:200])
            for e in errors if isinstance(e, dict)]


def classify(status: int, codes: list[tuple[str, str]]) -> str:
    """ABSENT, AUTH, TRANSIENT or OTHER for an HTTP status and the registry's error codes.

    Codes decide first; the status speaks when the registry gave none.
    """
    names = {code for code, _ in codes}
    if names & AUTH_CODES or status in (401, 403):
        return AUTH
    if names & TRANSIENT_CODES or status == 429 or 500 <= status <= 599:
        return TRANSIENT
    if status == 404 and names <= ABSENT_CODES:
        return ABSENT
    return OTHER


class RegistryFailure(Exception):
    """A classified failure of one request: its kind, and what to tell the user."""

    def __init__(self, kind: str, what: str, fix: str | None = None) -> None:
        super().__init__(what)
        self.kind, self.what, self.fix = kind, what, fix

    def error(self, where: str) -> ToolError:
        return ToolError(where, self.what, self.fix)


def _describe(status: int, reason: str, codes: list[tuple[str, str]]) -> str:
    said = "; ".join(f"{c}: {m}" if m else c for c, m in codes if c)
    return f"HTTP {status} {reason}".strip() + (f" ({said})" if said else "")


def _failure(host: str, status: int, reason: str, body: bytes) -> RegistryFailure:
    codes = error_codes(body)
    kind = classify(status, codes)
    said = _describe(status, reason, codes)
    if kind == AUTH:
        return RegistryFailure(AUTH, f"the registry {host} refused the credentials: {said}",
                               _AUTH_FIX)
    if kind == TRANSIENT:
        return RegistryFailure(TRANSIENT, f"the registry {host} failed: {said}", _UNREACHABLE_FIX)
    return RegistryFailure(kind, f"the registry {host} answered {said}")


# --- HTTP ---------------------------------------------------------------------

@dataclass
class _Answer:
    status: int
    reason: str
    headers: Message
    body: bytes


class _SameHostAuth(urllib.request.HTTPRedirectHandler):
    """Follow redirects, but never carry the credentials to another host (blob storage)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: ANN001
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and urllib.parse.urlsplit(newurl).netloc != \
                urllib.parse.urlsplit(req.full_url).netloc:
            new.remove_header("Authorization")
        return new


# Where skopeo (containers-certs.d(5)) and docker look for a registry's own CA
# certificates (``*.crt``) and client certificates (``*.cert`` + ``*.key``).
CERTS_DIRS = (Path("/etc/containers/certs.d"), Path("/etc/docker/certs.d"))
_openers: dict[tuple[str, bool], urllib.request.OpenerDirector] = {}


def _opener(host: str, verify: bool) -> urllib.request.OpenerDirector:
    """An opener for ``host``: its TLS settings as skopeo's, no proxy for the loopback."""
    known = _openers.get((host, verify))
    if known is not None:
        return known
    handlers: list = [urllib.request.HTTPSHandler(context=tls_context(host, verify)),
                      _SameHostAuth()]
    if _is_loopback(host):  # as Go's clients: the loopback is never reached through a proxy
        handlers.append(urllib.request.ProxyHandler({}))
    opener = urllib.request.build_opener(*handlers)
    _openers[(host, verify)] = opener
    return opener


def tls_context(host: str, verify: bool) -> ssl.SSLContext:
    """The TLS settings for ``host``: the system's CAs plus its certs.d folder, as skopeo."""
    context = ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    for folder in (base / host for base in CERTS_DIRS):
        try:
            if verify:
                for ca in sorted(folder.glob("*.crt")):
                    context.load_verify_locations(cafile=str(ca))
            for cert in sorted(folder.glob("*.cert")):
                context.load_cert_chain(str(cert), str(cert.with_suffix(".key")))
        except (OSError, ssl.SSLError) as error:
            raise ToolError(str(folder), f"cannot load a certificate: {error}",
                            "fix or remove the files there") from None
    return context


def _send(method: str, url: str, headers: dict[str, str], *, verify: bool,
          limit: int = MANIFEST_LIMIT) -> _Answer:
    """One HTTP exchange. An HTTP error status is an answer; not getting one is a failure."""
    host = urllib.parse.urlsplit(url).netloc
    opener = _opener(host, verify)
    request = urllib.request.Request(url, method=method, headers=headers)
    try:
        with opener.open(request, timeout=REQUEST_TIMEOUT) as response:
            body = response.read(limit + 1)
            status, reason, answer_headers = response.status, response.reason, response.headers
    except urllib.error.HTTPError as error:
        try:
            body = error.read(limit + 1)
        except (OSError, http.client.HTTPException):
            body = b""
        status, reason, answer_headers = error.code, str(error.reason or ""), error.headers
    except urllib.error.URLError as error:
        raise _connection_failure(host, error.reason) from None
    except (OSError, http.client.HTTPException) as error:
        raise _connection_failure(host, error) from None
    if len(body) > limit:
        path = urllib.parse.urlsplit(url).path
        raise RegistryFailure(OTHER, f"the registry {host} sent more than "
                              f"{limit // files.MiB} MiB for {method} {path}")
    return _Answer(status, reason, answer_headers, body)


def _connection_failure(host: str, reason: object) -> RegistryFailure:
    if isinstance(reason, ssl.SSLCertVerificationError):
        return RegistryFailure(OTHER, f"the TLS certificate of {host} does not verify: "
                               f"{reason.verify_message or reason}", _TLS_FIX)
    if isinstance(reason, ssl.SSLError):
        return RegistryFailure(OTHER, f"TLS with {host} failed: {reason.reason or reason}",
                               _TLS_FIX)
    text = getattr(reason, "strerror", None) or str(reason) or type(reason).__name__
    return RegistryFailure(TRANSIENT, f"registry unreachable: {host}: {text}",
                           _UNREACHABLE_FIX)


@dataclass
class _Host:
    """What one process learnt about a registry host: how to reach it, how it authenticates."""

    name: str
    base: str = ""  # https://host or http://host, once a ping answered
    verify: bool = True
    challenge: tuple[str, dict[str, str]] | None = None  # ("basic"|"bearer", params)
    tokens: dict[str, tuple[str, float]] = field(default_factory=dict)  # scope -> token, expiry


_hosts: dict[str, _Host] = {}
_CHALLENGE_PARAM = re.compile(r'(\w+)\s*=\s*(?:"([^"]*)"|([^\s,]+))')


def _parse_challenge(header: str | None) -> tuple[str, dict[str, str]] | None:
    if not header:
        return None
    scheme, _, rest = header.strip().partition(" ")
    params = {m[1].lower(): m[2] if m[2] is not None else m[3]
              for m in _CHALLENGE_PARAM.finditer(rest)}
    return scheme.lower(), params


def _host(name: str) -> _Host:
    """The host, pinged once per process: scheme, TLS and its authentication challenge.

    ``GET /v2/`` must answer 200 or 401 (every registry does): then a 404
    elsewhere is the registry's own "not there", not a wrong address.
    """
    known = _hosts.get(name)
    if known is not None:
        return known
    insecure = _insecure_host(name)
    failure: RegistryFailure | None = None
    for scheme in ("https", "http") if insecure else ("https",):
        try:
            answer = _send("GET", f"{scheme}://{name}/v2/", {}, verify=not insecure)
        except RegistryFailure as error:
            failure = error
            continue  # no TLS there: plain HTTP next (insecure hosts), as skopeo does
        if answer.status in (200, 401):
            challenge = _parse_challenge(answer.headers.get("WWW-Authenticate")) \
                if answer.status == 401 else None
            host = _Host(name, f"{scheme}://{name}", not insecure, challenge)
            _hosts[name] = host
            return host
        failure = _failure(name, answer.status, answer.reason, answer.body)
        if failure.kind in (ABSENT, OTHER):
            failure = RegistryFailure(OTHER, f"{name} is not a container registry (GET /v2/ "
                                      f"answered HTTP {answer.status})",
                                      "check the registry address")
        break
    assert failure is not None
    raise failure


def _token(host: _Host, scope: str, credentials: tuple[str, str] | None) -> str:
    """A Bearer token for ``scope`` from the realm the registry named (kept until it expires)."""
    cached = host.tokens.get(scope)
    if cached and cached[1] > time.monotonic():
        return cached[0]
    assert host.challenge is not None
    params = host.challenge[1]
    realm = params.get("realm", "")
    split = urllib.parse.urlsplit(realm)
    if split.scheme not in ("http", "https") or not split.netloc:
        raise RegistryFailure(OTHER, f"the registry {host.name} names no usable token realm")
    query = [(k, params[k]) for k in ("service",) if params.get(k)] + [("scope", scope)]
    url = realm + ("&" if split.query else "?") + urllib.parse.urlencode(query)
    headers = {}
    if credentials:
        headers["Authorization"] = _basic(credentials)
    answer = _send("GET", url, headers, verify=not _insecure_host(split.netloc))
    if answer.status != 200:
        failure = _failure(host.name, answer.status, answer.reason, answer.body)
        if failure.kind == ABSENT:  # a token service that 404s is no answer about an image
            failure = RegistryFailure(OTHER, failure.what)
        raise failure
    try:
        doc = json.loads(answer.body)
        token = doc.get("token") or doc.get("access_token")
        lifetime = float(doc.get("expires_in") or 60)
    except (ValueError, AttributeError, TypeError):
        token = None
    if not isinstance(token, str) or not token:
        raise RegistryFailure(OTHER, f"the token service of {host.name} sent no token")
    host.tokens[scope] = (token, time.monotonic() + max(10.0, lifetime - 10))
    return token


def _basic(credentials: tuple[str, str]) -> str:
    return "Basic " + base64.b64encode(":".join(credentials).encode()).decode()


def _request(host_name: str, repo: str, path: str, *, actions: str = "pull",
             accept: str | None = None, limit: int = MANIFEST_LIMIT) -> _Answer:
    """GET ``/v2/<repo>/<path>`` with whatever authentication the registry asks for.

    Returns 200 answers; raises RegistryFailure with its kind otherwise.
    """
    host = _host(host_name)
    scope = f"repository:{repo}:{actions}"
    credentials = _credentials(host_name, repo)
    for fresh in (False, True):
        headers = {"Accept": accept} if accept else {}
        if host.challenge and host.challenge[0] == "basic":
            if credentials is None:
                raise RegistryFailure(AUTH, f"the registry {host_name} asks for credentials "
                                      "and none are configured for it", _AUTH_FIX)
            headers["Authorization"] = _basic(credentials)
        elif host.challenge and host.challenge[0] == "bearer":
            if fresh:
                host.tokens.pop(scope, None)
            headers["Authorization"] = "Bearer " + _token(host, scope, credentials)
        answer = _send("GET", f"{host.base}/v2/{repo}/{path}", headers, verify=host.verify,
                       limit=limit)
        if answer.status == 200:
            return answer
        if answer.status == 401 and not fresh:
            challenge = _parse_challenge(answer.headers.get("WWW-Authenticate"))
            if challenge and challenge[0] in ("basic", "bearer") and (
                    host.challenge is None or challenge[0] != host.challenge[0]
                    or challenge[0] == "bearer"):
                host.challenge = challenge  # asked now (anonymous reads, or an expired token)
                continue
        failure = _failure(host_name, answer.status, answer.reason, answer.body)
        if failure.kind == AUTH and credentials is None:
            said = _describe(answer.status, answer.reason, error_codes(answer.body))
            failure = RegistryFailure(AUTH, f"the registry {host_name} asks for credentials "
                                      f"and none are configured for it ({said})", _AUTH_FIX)
        raise failure
    raise AssertionError("unreachable")  # pragma: no cover


# --- one retry policy -----------------------------------------------------------

def attempts(env: Mapping[str, str] | None = None) -> int:
    """How many times a transient failure is tried in all: ``$AIRLOCK_REGISTRY_RETRIES``."""
    env = os.environ if env is None else env
    text = env.get(RETRIES_ENV, "").strip()
    if not text:
        return DEFAULT_ATTEMPTS
    if not text.isdigit() or int(text) < 1:
        raise AirlockError(f"${RETRIES_ENV}", "is not a whole number of attempts (1 or more)",
                           f"unset it (default {DEFAULT_ATTEMPTS}) or set e.g. 4")
    return int(text)


T = TypeVar("T")
_sleep = time.sleep  # the backoff (a test records it instead of waiting)


def _retrying(where: str, call: Callable[[], T]) -> T:
    """``call()``, tried again after a transient failure with backoff (1, 2, 4 ... s)."""
    total = attempts()
    for attempt in range(1, total + 1):
        try:
            return call()
        except RegistryFailure as failure:
            if failure.kind == TRANSIENT and attempt < total:
                _sleep(2 ** (attempt - 1))
                continue
            if failure.kind == TRANSIENT and total > 1:
                raise ToolError(where, f"{failure.what} (after {total} attempts)",
                                failure.fix) from None
            raise failure.error(where) from None
    raise AssertionError("unreachable")  # pragma: no cover


# --- questions ------------------------------------------------------------------

def _manifest_answer(host: str, repo: str, pointer: str) -> bytes | None:
    try:
        return _request(host, repo, f"manifests/{pointer}", accept=_ACCEPT).body
    except RegistryFailure as failure:
        if failure.kind == ABSENT:
            return None
        raise


def manifest_raw(ref: str) -> bytes | None:
    """The manifest or index bytes at ``ref`` exactly as stored; None if absent."""
    host, repo, pointer = split_ref(ref)
    raw = _retrying(ref, lambda: _manifest_answer(host, repo, pointer))
    if raw is not None and pointer.startswith("sha256:") \
            and "sha256:" + hashlib.sha256(raw).hexdigest() != pointer:
        raise ToolError(ref, "the registry served a manifest whose digest is not the one asked "
                        "for", "check the registry (and any proxy in front of it)")
    return raw


def exists(ref: str) -> bool:
    """Whether the registry has ``ref`` (an unreachable or refusing registry raises)."""
    return manifest_raw(ref) is not None


def manifest(ref: str) -> dict | None:
    """The manifest or image index at ``ref`` as parsed JSON; None if absent."""
    raw = manifest_raw(ref)
    if raw is None:
        return None
    try:
        doc = json.loads(raw)
    except ValueError:
        raise ToolError(ref, "the registry served a manifest that is not JSON") from None
    if not isinstance(doc, dict):
        raise ToolError(ref, "the registry served a manifest that is not a JSON object")
    return doc


def digest(ref: str) -> str | None:
    """The digest of what ``ref`` points to (index or manifest); None if absent.

    Computed from the raw bytes the registry serves, which is how a
    registry defines it; an unreachable registry raises ToolError instead.
    """
    raw = manifest_raw(ref)
    return None if raw is None else "sha256:" + hashlib.sha256(raw).hexdigest()


def _blob(ref: str, blob_digest: str) -> bytes:
    """A blob (an image config) of the repository of ``ref``, checked against its digest."""
    host, repo, _ = split_ref(ref)
    body = _retrying(ref, lambda: _request(host, repo, f"blobs/{blob_digest}").body)
    if "sha256:" + hashlib.sha256(body).hexdigest() != blob_digest:
        raise ToolError(ref, f"the registry served blob {blob_digest} with other content")
    return body


def platforms(ref: str) -> list[str]:
    """The platforms (``os/arch[/variant]``) an index at ``ref`` offers."""
    doc = manifest(ref)
    if doc is None:
        raise ToolError(ref, "no such image in the registry")
    if doc.get("mediaType") not in _INDEX_TYPES and "manifests" not in doc:
        # A single-platform image: its platform is in its config blob.
        config_digest = (doc.get("config") or {}).get("digest")
        if not isinstance(config_digest, str):
            raise ToolError(ref, "the manifest names no config")
        try:
            conf = json.loads(_blob(ref, config_digest))
        except ValueError:
            raise ToolError(ref, "the image config is not JSON") from None
        return ["/".join(filter(None, (conf.get("os"), conf.get("architecture"),
                                       conf.get("variant"))))]
    found = []
    for entry in doc.get("manifests", []):
        plat = entry.get("platform") or {}
        if plat.get("os") and plat.get("architecture"):
            found.append("/".join(filter(None, (plat["os"], plat["architecture"],
                                                plat.get("variant")))))
    return found


def annotations(ref: str) -> dict[str, str] | None:
    """The annotations of the index (or manifest) at ``ref``; None if absent."""
    doc = manifest(ref)
    return None if doc is None else dict(doc.get("annotations") or {})


_NEXT = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')


def _tags(host: str, name: str) -> list[str]:
    tags: list[str] = []
    path = "tags/list?n=1000"
    for _ in range(10000):  # a registry that keeps sending "next" is not followed forever
        try:
            answer = _request(host, name, path, limit=LIST_LIMIT)
        except RegistryFailure as failure:
            if failure.kind == ABSENT:
                return tags
            raise
        try:
            tags += list(json.loads(answer.body).get("tags") or [])
        except (ValueError, AttributeError, TypeError):
            raise RegistryFailure(OTHER, f"the registry {host} sent a tag list that is not "
                                  "JSON") from None
        link = _NEXT.search(answer.headers.get("Link") or "")
        if not link:
            return tags
        target = urllib.parse.urlsplit(link.group(1))
        prefix = f"/v2/{name}/"
        if not target.path.startswith(prefix):
            return tags
        path = target.path[len(prefix):] + (f"?{target.query}" if target.query else "")
    return tags


def list_tags(repo: str) -> list[str]:
    """The tags of ``host/repo`` (sorted); an absent repository has none."""
    host, name, _ = split_ref(f"{repo}:latest")
    return sorted(set(_retrying(f"{host}/{name}", lambda: _tags(host, name))))


# --- copies and pushes (skopeo) -----------------------------------------------

def copy_command(src: str, dest: str, *, src_insecure: bool = False,
                 dest_insecure: bool = False, digestfile: Path | None = None,
                 env: Mapping[str, str] | None = None) -> list[str]:
    """The argv of ``skopeo copy`` of every platform, digests kept (pure but for the auth file).

    No ``--retry-times``: retries are this module's (:func:`attempts`).
    """
    argv = ["skopeo", "copy", "--all", "--preserve-digests"]
    argv += _auth_args(env)
    if src.startswith("docker://"):
        argv.append(f"--src-tls-verify={'false' if src_insecure else 'true'}")
    if dest.startswith("docker://"):
        argv.append(f"--dest-tls-verify={'false' if dest_insecure else 'true'}")
    if digestfile is not None:
        argv += ["--digestfile", str(digestfile)]
    return [*argv, src, dest]


_LOGRUS = re.compile(r'level=(?:fatal|error) msg="((?:[^"\\]|\\.)*)"')


def _last_line(text: str) -> str:
    """skopeo's last stderr line, without its ``time=... level=fatal msg="..."`` frame."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return ""
    match = _LOGRUS.search(lines[-1])
    if match:
        return match.group(1).replace('\\"', '"').replace("\\\\", "\\")
    return lines[-1]


def _probe(source: str | None, dest: str | None, dest_actions: str = "pull,push") -> None:
    """Ask the registries of a failed copy why; raise their RegistryFailure, if any.

    The source must exist (absent is its own answer); the destination's
    repository must answer its tag list under ``dest_actions`` (absent is
    fine: a push creates it).
    """
    if source is not None:
        host, repo, pointer = split_ref(source)
        if _manifest_answer(host, repo, pointer) is None:
            raise RegistryFailure(ABSENT, "no such image in the registry")
    if dest is not None:
        host, repo, _ = split_ref(dest)
        try:
            _request(host, repo, "tags/list?n=1", actions=dest_actions, limit=LIST_LIMIT)
        except RegistryFailure as failure:
            if failure.kind != ABSENT:
                raise


def _skopeo(argv: list[str], where: str, *, source: str | None, dest: str | None,
            timeout: float = COPY_TIMEOUT, dest_actions: str = "pull,push") -> None:
    """Run skopeo; after a failure, the registries say whether to try again.

    Transient (the registry is unreachable, overloaded or failing):
    another attempt after a backoff. Credentials refused, or the source
    absent: that line. The registries answering well: skopeo's own last
    line, not retried (a digest skopeo refuses to change will not change).
    """
    def once() -> None:
        proc = ext_exec.run(argv, where=where, timeout=timeout, check=False)
        if proc.returncode == 0:
            return
        said = _last_line(proc.stderr) or f"skopeo exited {proc.returncode}"
        _probe(source, dest, dest_actions)
        raise RegistryFailure(OTHER, said)

    _retrying(where, once)


def push_archive(archive: Path, ref: str) -> str:
    """Push an OCI archive (all platforms, digests kept) to ``ref``; return the digest."""
    split_ref(ref)
    if not archive.is_file():
        raise AirlockError(str(archive), "no such OCI archive", "build the image first")
    with tempfile.TemporaryDirectory(prefix="airlock-push-") as tmp:
        digestfile = Path(tmp) / "digest"
        argv = copy_command(f"oci-archive:{archive.resolve()}", f"docker://{ref}",
                            dest_insecure=is_insecure(ref), digestfile=digestfile)
        _skopeo(argv, f"skopeo copy {archive.name} -> {ref}", source=None, dest=ref)
        return digestfile.read_text().strip()


def copy(src: str, dest: str) -> str:
    """Copy ``src`` (a tag or digest reference) to ``dest``; return the digest.

    Within one registry the blobs are already there and only the manifests
    are written: tagging and promotion do not re-upload layers.
    """
    split_ref(src)
    split_ref(dest)
    with tempfile.TemporaryDirectory(prefix="airlock-copy-") as tmp:
        digestfile = Path(tmp) / "digest"
        argv = copy_command(f"docker://{src}", f"docker://{dest}",
                            src_insecure=is_insecure(src), dest_insecure=is_insecure(dest),
                            digestfile=digestfile)
        _skopeo(argv, f"skopeo copy {src} -> {dest}", source=src, dest=dest)
        return digestfile.read_text().strip()


def tag(ref_by_digest: str, new_tag: str) -> str:
    """Give the image at ``repo@sha256:...`` the tag ``new_tag`` in the same repository."""
    host, repo, pointer = split_ref(ref_by_digest)
    if not pointer.startswith("sha256:"):
        raise AirlockError(ref_by_digest, "is not a digest reference", "pass repo@sha256:...")
    return copy(ref_by_digest, f"{host}/{repo}:{new_tag}")


def delete(ref: str) -> bool:
    """Delete the manifest ``ref`` points to; False if it was absent."""
    if manifest_raw(ref) is None:
        return False
    argv = ["skopeo", "delete", f"--tls-verify={'false' if is_insecure(ref) else 'true'}",
            *_auth_args(), f"docker://{ref}"]
    _skopeo(argv, f"skopeo delete {ref}", source=ref, dest=ref, timeout=DELETE_TIMEOUT,
            dest_actions="pull,push,delete")
    return True
