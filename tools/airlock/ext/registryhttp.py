"""The Registry HTTP API v2: one request, its authentication, and what the answer means.

:mod:`airlock.ext.registry` asks its questions through :func:`request`.
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

One retry policy, here (:func:`retrying`): ``$AIRLOCK_REGISTRY_RETRIES``
attempts in all (default 4), 1, 2, 4 ... s apart, for transient failures
only. skopeo runs without retries of its own, so attempts never multiply.

Authentication follows the registry's challenge: none, HTTP Basic, or a
Bearer token from the realm it names (with Basic credentials if any, from
:mod:`airlock.ext.registryauth`); tokens are kept per host and scope for
their lifetime. A redirect to another host (blob storage) never carries
the credentials along.

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

import http.client
import json
import os
import re
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import TypeVar

from airlock import files
from airlock.errors import AirlockError, ToolError
from airlock.ext.registryauth import AUTH_FILE_ENV, credentials
from airlock.urls import basic_authorization

INSECURE_ENV = "AIRLOCK_REGISTRY_INSECURE"
RETRIES_ENV = "AIRLOCK_REGISTRY_RETRIES"
DEFAULT_ATTEMPTS = 4

_LOOPBACK = ("127.0.0.1", "localhost", "[::1]", "::1")

# Seconds one HTTP request (a manifest, a tag list, a token) may take.
REQUEST_TIMEOUT = 60
# What an answer may weigh: a registry refuses manifests over 4 MiB.
MANIFEST_LIMIT = 4 * files.MiB

# The registry's error codes (distribution spec, plus Harbor's NOT_FOUND).
ABSENT_CODES = frozenset({"MANIFEST_UNKNOWN", "NAME_UNKNOWN", "BLOB_UNKNOWN", "NOT_FOUND"})
AUTH_CODES = frozenset({"UNAUTHORIZED", "DENIED"})
TRANSIENT_CODES = frozenset({"TOOMANYREQUESTS"})

ABSENT, AUTH, TRANSIENT, OTHER = "absent", "credentials", "transient", "other"

AUTH_FIX = (f"check ${AUTH_FILE_ENV} (a containers auth.json, e.g. from "
            "skopeo login --authfile FILE) and its entry for this registry")
_UNREACHABLE_FIX = ("check that the registry runs (tools/setup-host build-host starts the "
                    "local one) and the address is right")
_TLS_FIX = (f"install the registry's CA certificate on this machine, or list the host in "
            f"${INSECURE_ENV} if it has none")


# --- hosts --------------------------------------------------------------------

def _bare(host: str) -> str:
    """``host`` without its port (``[::1]:5000`` -> ``[::1]``)."""
    if host.startswith("["):
        return host[:host.index("]") + 1] if "]" in host else host
    return host.rsplit(":", 1)[0]


def is_loopback(host: str) -> bool:
    return host in _LOOPBACK or _bare(host) in _LOOPBACK


def insecure_host(host: str, env: Mapping[str, str] | None = None) -> bool:
    if is_loopback(host):
        return True
    env = os.environ if env is None else env
    listed = [h.strip() for h in env.get(INSECURE_ENV, "").split(",") if h.strip()]
    return host in listed or _bare(host) in listed


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
                               AUTH_FIX)
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
    if is_loopback(host):  # as Go's clients: the loopback is never reached through a proxy
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
          limit: int = MANIFEST_LIMIT, data: bytes | None = None) -> _Answer:
    """One HTTP exchange. An HTTP error status is an answer; not getting one is a failure."""
    host = urllib.parse.urlsplit(url).netloc
    opener = _opener(host, verify)
    request = urllib.request.Request(url, method=method, headers=headers, data=data)
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
    insecure = insecure_host(name)
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
        headers["Authorization"] = basic_authorization(*credentials)
    answer = _send("GET", url, headers, verify=not insecure_host(split.netloc))
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


def request(host_name: str, repo: str, path: str, *, actions: str = "pull",
            accept: str | None = None, limit: int = MANIFEST_LIMIT, method: str = "GET",
            data: bytes | None = None, content_type: str | None = None,
            ok: tuple[int, ...] = (200,)) -> _Answer:
    """``METHOD /v2/<repo>/<path>`` with whatever authentication the registry asks for.

    Returns the answers whose status is in ``ok`` (200 by default; a push
    expects 201 or 202); raises RegistryFailure with its kind otherwise.
    ``path`` may be an absolute URL on the same host, or an absolute path
    (an upload's ``Location``): the credentials never go to another host.
    """
    host = _host(host_name)
    scope = f"repository:{repo}:{actions}"
    given = credentials(host_name, repo)
    if "://" in path:
        url = path
        if urllib.parse.urlsplit(url).netloc != urllib.parse.urlsplit(host.base).netloc:
            raise RegistryFailure(OTHER, f"the registry {host_name} sent an upload location "
                                  "on another host", "use a registry that keeps uploads on "
                                  "its own host")
    elif path.startswith("/"):
        url = host.base + path
    else:
        url = f"{host.base}/v2/{repo}/{path}"
    for fresh in (False, True):
        headers = {"Accept": accept} if accept else {}
        if content_type:
            headers["Content-Type"] = content_type
        if host.challenge and host.challenge[0] == "basic":
            if given is None:
                raise RegistryFailure(AUTH, f"the registry {host_name} asks for credentials "
                                      "and none are configured for it", AUTH_FIX)
            headers["Authorization"] = basic_authorization(*given)
        elif host.challenge and host.challenge[0] == "bearer":
            if fresh:
                host.tokens.pop(scope, None)
            headers["Authorization"] = "Bearer " + _token(host, scope, given)
        answer = _send(method, url, headers, verify=host.verify, limit=limit, data=data)
        if answer.status in ok:
            return answer
        if answer.status == 401 and not fresh:
            challenge = _parse_challenge(answer.headers.get("WWW-Authenticate"))
            if challenge and challenge[0] in ("basic", "bearer") and (
                    host.challenge is None or challenge[0] != host.challenge[0]
                    or challenge[0] == "bearer"):
                host.challenge = challenge  # asked now (anonymous reads, or an expired token)
                continue
        failure = _failure(host_name, answer.status, answer.reason, answer.body)
        if failure.kind == AUTH and given is None:
            said = _describe(answer.status, answer.reason, error_codes(answer.body))
            failure = RegistryFailure(AUTH, f"the registry {host_name} asks for credentials "
                                      f"and none are configured for it ({said})", AUTH_FIX)
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


def retrying(where: str, call: Callable[[], T]) -> T:
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
