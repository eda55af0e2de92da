"""The only module that reads a package index's "simple" API: which files a project has.

:mod:`airlock.ext.index` downloads with pip; some questions need no
download, only the list of a project's files (does ``scrypt==0.8.20`` have
a wheel for aarch64?). pip has no command that answers them for a thousand
projects, so this module reads the index itself, as pip would:

- an index (``index_url``, every ``extra_index_url``) over http(s): the
  project page ``<index>/<canonical name>/``, asked for in PEP 691 JSON and
  accepted in PEP 503 HTML (``Accept:`` :data:`ACCEPT`); over ``file://``:
  the PEP 503 folder ``<index>/<name>/index.html``;
- a find-links location: a local folder (or ``file://`` folder) is listed
  directly; an http(s) one is an HTML page of links.

Where those are comes from :class:`airlock.ext.index.Locations` (the
``--index-url`` given, or the machine's pip configuration), so the answer
is about exactly the files pip would download from.

What a hostile or broken index can do is bounded: every request has a
timeout and a deadline, every page a size limit (:data:`PAGE_LIMIT`), a
redirect may not change the scheme (an https index never turns into http,
nor into ``file://``), and the credentials of an index URL
(``https://user:token@host/simple``) are sent as a Basic header to that
host only and never printed: every error is an AirlockError/ToolError,
whose text is redacted, naming the index without them. A project the index
does not know (404) has no files; any other failure is a ToolError naming
the index and the project. Rate limits and passing failures (429, 5xx, a
dropped connection) are retried a few times before that.
"""

from __future__ import annotations

import contextlib
import html.parser
import http.client
import json
import os
import ssl
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from pathlib import Path

from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)

from airlock import files
from airlock.errors import AirlockError, ToolError
from airlock.ext.index import Locations
from airlock.urls import basic_authorization, credentials, strip_userinfo

# pip's own default when no index URL is configured.
DEFAULT_INDEX = "https://pypi.org/simple"
ACCEPT = "application/vnd.pypi.simple.v1+json, text/html;q=0.1"
_JSON_TYPE = "application/vnd.pypi.simple.v1+json"
_HTML_TYPES = ("text/html", "application/vnd.pypi.simple.v1+html")
# The largest real project pages (grpcio, botocore) are a few MiB of JSON.
PAGE_LIMIT = 64 * files.MiB
TIMEOUT = 30  # seconds without a byte: connect, and each read
DEADLINE = 120  # seconds for one whole page, however slowly it drips
REDIRECTS = 5
ATTEMPTS = 3  # a rate limit or a passing failure is asked again, after BACKOFF
BACKOFF = 1.0  # seconds, doubled at each attempt; a Retry-After up to RETRY_AFTER_MAX wins
RETRY_AFTER_MAX = 30.0
_RETRY_STATUS = (429, 500, 502, 503, 504)
JOBS = 16
_FIX = ("check the index URL (--index-url or $AIRLOCK_INDEX_URL), the network and "
        "pip's configuration")


class _Missing(Exception):
    """The index answered 404: no such project (or find-links page)."""


class _Stopped(Exception):
    """Another page failed: this one is not worth waiting for any more."""


class _Retry(Exception):
    """A failure worth asking again; ``wait`` seconds first when the server said so."""

    def __init__(self, reason: str, wait: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.wait = wait


def _context() -> ssl.SSLContext:
    """TLS as pip verifies it: ``$PIP_CERT`` when set, else the system's CAs."""
    cafile = os.environ.get("PIP_CERT")
    if cafile and Path(cafile).is_file():
        return ssl.create_default_context(cafile=cafile)
    return ssl.create_default_context()


class _Session:
    """Kept-alive connections, one per thread and host, closed together at the end.

    A thousand project pages over a thousand new connections means a
    thousand name lookups and TLS handshakes: slow, and a busy resolver
    starts failing them. The proxy of ``$https_proxy``/``$http_proxy`` (and
    ``$no_proxy``) is used as urllib would.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[tuple[int, str, str], http.client.HTTPConnection] = {}
        self._context: ssl.SSLContext | None = None
        self._proxies = urllib.request.getproxies()
        self.stopped = threading.Event()  # set on the first failure: no more retries

    def connection(self, scheme: str, netloc: str) -> tuple[http.client.HTTPConnection, bool]:
        """(connection, whether it is new) for this thread to ``scheme://netloc``."""
        key = (threading.get_ident(), scheme, netloc)
        with self._lock:
            found = self._open.get(key)
            if found is not None:
                return found, False
            if scheme == "https" and self._context is None:
                self._context = _context()
            conn = self._new(scheme, netloc)
            self._open[key] = conn
            return conn, True

    def _new(self, scheme: str, netloc: str) -> http.client.HTTPConnection:
        host = urllib.parse.urlsplit(f"//{netloc}").hostname or ""
        proxy = self._proxies.get(scheme)
        if proxy and not urllib.request.proxy_bypass(host):
            parts = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
            conn = http.client.HTTPConnection(parts.hostname or "", parts.port or 80,
                                              timeout=TIMEOUT)
            given = credentials(proxy)
            headers = {"Proxy-Authorization": basic_authorization(*given)} if given else {}
            if scheme == "https":
                conn = http.client.HTTPSConnection(parts.hostname or "", parts.port or 80,
                                                   timeout=TIMEOUT, context=self._context)
                conn.set_tunnel(netloc, headers=headers)
            else:
                conn.proxy_headers = headers  # type: ignore[attr-defined]
            conn.via_proxy = scheme == "http"  # type: ignore[attr-defined]
            return conn
        if scheme == "https":
            return http.client.HTTPSConnection(netloc, timeout=TIMEOUT, context=self._context)
        return http.client.HTTPConnection(netloc, timeout=TIMEOUT)

    def drop(self, conn: http.client.HTTPConnection) -> None:
        """Close a connection that cannot be used again (an error, a body left unread)."""
        conn.close()
        with self._lock:
            for key in [k for k, v in self._open.items() if v is conn]:
                del self._open[key]

    def close(self) -> None:
        with self._lock:
            found, self._open = list(self._open.values()), {}
        for conn in found:
            conn.close()


def shown(url: str) -> str:
    """An index URL as a message names it: never its credentials."""
    return strip_userinfo(url).rstrip("/")


def _get(session: _Session, url: str, auth: str | None, limit: int) -> tuple[bytes, str]:
    """(body, content type) of ``url`` over http(s), redirects and limits enforced.

    ``auth`` is the Basic header of the index; it goes to the index's own
    scheme, host and port only, never to a host a redirect names.
    """
    origin = urllib.parse.urlsplit(url)
    current = url
    for _ in range(REDIRECTS + 1):
        here = urllib.parse.urlsplit(current)
        headers = {"Accept": ACCEPT, "User-Agent": "airlock", "Host": here.netloc}
        if auth and (here.scheme, here.netloc) == (origin.scheme, origin.netloc):
            headers["Authorization"] = auth
        status, answer_headers, body = _exchange(session, here, headers, limit)
        if status in (301, 302, 303, 307, 308) and answer_headers.get("Location"):
            target = urllib.parse.urljoin(current, answer_headers["Location"])
            scheme = urllib.parse.urlsplit(target).scheme
            if scheme != origin.scheme:
                raise AirlockError("", f"redirected from {origin.scheme} to {scheme or '?'}; "
                                   "refused")
            current = target
            continue
        if status == 404:
            raise _Missing()
        if status != 200:
            reason = f"HTTP {status} {http.client.responses.get(status, '')}".strip()
            if status in _RETRY_STATUS:
                raise _Retry(reason, _retry_after(answer_headers.get("Retry-After")))
            if status in (401, 403):
                reason += " (credentials missing or refused)"
            raise AirlockError("", reason)
        return body, answer_headers.get("Content-Type", "")
    raise AirlockError("", f"more than {REDIRECTS} redirects")


def _exchange(session: _Session, url: urllib.parse.SplitResult, headers: dict[str, str],
              limit: int) -> tuple[int, http.client.HTTPMessage, bytes]:
    """One GET on a kept-alive connection: (status, headers, body of a 200 or redirect).

    A kept-alive connection the server has closed meanwhile is opened again
    once, at once; any other failure to talk is a :class:`_Retry`.
    """
    path = url.path or "/"
    if url.query:
        path += "?" + url.query
    for _ in range(2):
        conn, fresh = session.connection(url.scheme, url.netloc)
        target = url.geturl() if getattr(conn, "via_proxy", False) else path
        sent = dict(headers, **getattr(conn, "proxy_headers", {}))
        try:
            conn.request("GET", target, headers=sent)
            answer = conn.getresponse()
        except ssl.SSLCertVerificationError as error:
            session.drop(conn)
            raise AirlockError("", f"TLS certificate not trusted ({error.verify_message})"
                               ) from None
        except (OSError, http.client.HTTPException) as error:
            session.drop(conn)
            if not fresh:
                continue  # closed by the server while idle: one new connection
            text = getattr(error, "strerror", None) or str(error) or type(error).__name__
            raise _Retry(f"cannot connect: {text}") from None
        if answer.status in (200, 301, 302, 303, 307, 308):
            length = answer.headers.get("Content-Length")
            if length and length.isdigit() and int(length) > limit:
                session.drop(conn)
                raise AirlockError("", f"page of {int(length) // files.MiB} MiB, over the "
                                   f"limit of {limit // files.MiB} MiB")
            body = _read_limited(session, conn, answer, limit)
        else:
            # A short error body keeps the connection; a long one is not read.
            length = answer.headers.get("Content-Length") or ""
            if length.isdigit() and int(length) <= 1 << 16:
                _read_limited(session, conn, answer, 1 << 16)
            else:
                session.drop(conn)
            body = b""
        if answer.will_close:
            session.drop(conn)
        return answer.status, answer.headers, body
    raise _Retry("connection closed by the server")


def _read_limited(session: _Session, conn: http.client.HTTPConnection,
                  answer: http.client.HTTPResponse, limit: int) -> bytes:
    """The body, at most ``limit`` bytes, within :data:`DEADLINE` seconds."""
    started = time.monotonic()
    chunks, size = [], 0
    try:
        while True:
            chunk = answer.read(min(1 << 16, limit + 1 - size))
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                session.drop(conn)
                raise AirlockError("", f"page over the limit of {limit // files.MiB} MiB")
            if time.monotonic() - started > DEADLINE:
                session.drop(conn)
                raise _Retry(f"page not read within {DEADLINE} s")
    except (OSError, ValueError, http.client.HTTPException) as error:  # dropped, bad chunk
        session.drop(conn)
        raise _Retry(f"connection lost: {error or type(error).__name__}") from None


def _retry_after(value: str | None) -> float | None:
    if value and value.strip().isdigit():
        return min(float(value.strip()), RETRY_AFTER_MAX)
    return None


class _Links(html.parser.HTMLParser):
    """The file names of a PEP 503 page: the last path part of every ``<a href>``."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.names: list[str] = []
        self.hrefs: list[str] = []  # each name's link as written

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag != "a":
            return
        href = dict(attrs).get("href")
        if href:
            name = urllib.parse.unquote(urllib.parse.urlsplit(href).path.rsplit("/", 1)[-1])
            if name:
                self.names.append(name)
                self.hrefs.append(href)


def parse_page(body: bytes, content_type: str) -> list[str]:
    """The file names of a project page, JSON (PEP 691) or HTML (PEP 503).

    Anything else (another content type, JSON without a ``files`` list of
    objects with a ``filename``, bytes that are not UTF-8) raises an
    AirlockError saying what the page is.
    """
    kind = content_type.split(";", 1)[0].strip().lower()
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise AirlockError("", "page is not UTF-8 text") from None
    if kind == _JSON_TYPE or kind == "application/json":
        try:
            data = json.loads(text)
        except ValueError as error:
            raise AirlockError("", f"malformed JSON page ({error.msg} at line {error.lineno})"
                               ) from None
        found = data.get("files") if isinstance(data, dict) else None
        if not isinstance(found, list) or not all(
                isinstance(f, dict) and isinstance(f.get("filename"), str) for f in found):
            raise AirlockError("", "JSON page without a 'files' list of file names "
                               "(not a PEP 691 project page)")
        return [f["filename"] for f in found]
    if kind in _HTML_TYPES or not kind:
        parser = _Links()
        try:
            parser.feed(text)
            parser.close()
        except AssertionError as error:  # html.parser's way to give up
            raise AirlockError("", f"malformed HTML page ({error})") from None
        return parser.names
    raise AirlockError("", f"answered {kind[:60]!r}, not a simple index page")


def page_entries(body: bytes, content_type: str) -> dict[str, tuple[str, str | None]]:
    """``{file name: (link as written, sha256 or None)}`` of a project page (JSON or HTML).

    The sha256 is the JSON ``hashes`` entry or the ``#sha256=`` fragment of
    the link; None when the index gives none (the caller must not take an
    unknown hash for a match). Malformed pages as :func:`parse_page`.
    """
    names = parse_page(body, content_type)  # the same checks, the same errors
    kind = content_type.split(";", 1)[0].strip().lower()
    found: dict[str, tuple[str, str | None]] = {name: ("", None) for name in names}
    if kind == _JSON_TYPE or kind == "application/json":
        for entry in json.loads(body)["files"]:
            hashes = entry.get("hashes")
            digest = hashes.get("sha256") if isinstance(hashes, dict) else None
            url = entry.get("url") if isinstance(entry.get("url"), str) else ""
            found[entry["filename"]] = (url, digest.lower() if isinstance(digest, str)
                                        else None)
        return found
    parser = _Links()
    parser.feed(body.decode("utf-8"))
    parser.close()
    for name, href in zip(parser.names, parser.hrefs, strict=True):
        key, _, value = urllib.parse.urlsplit(href).fragment.partition("=")
        found[name] = (href, value.lower() if key == "sha256" and value else None)
    return found


def page_hashes(body: bytes, content_type: str) -> dict[str, str | None]:
    """``{file name: sha256 or None}`` of a project page (see :func:`page_entries`)."""
    return {name: sha for name, (_, sha) in page_entries(body, content_type).items()}


def project_files(index: str, name: str, *, limit: int | None = None,
                  fix: str = _FIX) -> dict[str, tuple[str, str | None]]:
    """``{file name: (absolute URL without credentials, sha256 or None)}`` of ``name``.

    ``index`` (http or https) may carry credentials (sent as a Basic header
    to it only, never printed). A project the index does not know has none;
    any other failure is a ToolError naming the index without its
    credentials.
    """
    limit = PAGE_LIMIT if limit is None else limit
    given = credentials(index)
    auth = basic_authorization(*given) if given else None
    url = f"{strip_userinfo(index).rstrip('/')}/{canonicalize_name(name)}/"
    session = _Session()
    with contextlib.closing(session):
        try:
            body, content_type = _ask(session, url, auth, limit)
            entries = page_entries(body, content_type)
        except _Missing:
            return {}
        except ToolError:
            raise
        except AirlockError as error:
            raise ToolError(shown(index), f"cannot read the page of {name}: {error.what}",
                            fix) from None
    return {filename: (urllib.parse.urljoin(url, href).split("#", 1)[0], sha)
            for filename, (href, sha) in entries.items()}


def _file_path(url: str) -> Path:
    return Path(urllib.parse.unquote(urllib.parse.urlsplit(url).path))


def _read_local_page(path: Path, limit: int) -> bytes:
    """A page of a ``file://`` index: its ``index.html`` when a folder (as pip reads it)."""
    if path.is_dir():
        path = path / "index.html"
    if not path.exists():
        raise _Missing()
    return files.read_bytes(path, limit=limit, fix="check the index folder")


def _index_page(session: _Session, index: str, name: str, limit: int) -> list[str]:
    """The file names on ``index``'s page of project ``name`` (none: 404)."""
    project = canonicalize_name(name)
    scheme = urllib.parse.urlsplit(index).scheme.lower()
    if scheme == "file":
        try:
            body = _read_local_page(_file_path(index) / project, limit)
        except _Missing:
            return []
        return parse_page(body, "text/html")
    if scheme not in ("http", "https"):
        raise AirlockError("", f"'{scheme}:' is not an index scheme airlock reads "
                           "(http, https, file)")
    given = credentials(index)
    auth = basic_authorization(*given) if given else None
    url = f"{strip_userinfo(index).rstrip('/')}/{project}/"
    try:
        body, content_type = _ask(session, url, auth, limit)
    except _Missing:
        return []
    return parse_page(body, content_type)


def _ask(session: _Session, url: str, auth: str | None, limit: int) -> tuple[bytes, str]:
    """:func:`_get` with retries for rate limits and passing failures."""
    delay = BACKOFF
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return _get(session, url, auth, limit)
        except _Retry as retry:
            if attempt == ATTEMPTS:
                raise AirlockError("", retry.reason) from None
            if session.stopped.wait(retry.wait if retry.wait is not None else delay):
                raise _Stopped() from None
            delay *= 2
    raise AssertionError("unreachable")


def _find_links_files(session: _Session, location: str, limit: int) -> list[str]:
    """Every file name a find-links location offers (a folder, or a page of links)."""
    scheme = urllib.parse.urlsplit(location).scheme.lower()
    if scheme in ("http", "https"):
        given = credentials(location)
        try:
            body, content_type = _ask(session, strip_userinfo(location),
                                      basic_authorization(*given) if given else None, limit)
        except _Missing:
            return []
        return parse_page(body, content_type or "text/html")
    path = _file_path(location) if scheme == "file" else Path(location)
    if path.is_dir():
        return sorted(entry.name for entry in path.iterdir() if entry.is_file())
    if path.is_file():
        return parse_page(files.read_bytes(path, limit=limit), "text/html")
    return []  # pip, too, only warns about a find-links location that is not there


def _project_of(filename: str) -> str | None:
    """The canonical project name a distribution file name carries; None for other files."""
    try:
        if filename.endswith(".whl"):
            return str(parse_wheel_filename(filename)[0])
        return str(parse_sdist_filename(filename)[0])
    except (InvalidWheelFilename, InvalidSdistFilename, ValueError):
        return None


def indexes(where: Locations) -> list[str]:
    """The index URLs ``where`` names, in pip's order (PyPI when none is set)."""
    if where.no_index:
        return []
    return [where.index_url or DEFAULT_INDEX, *where.extra_index_urls]


def _failed(location: str, name: str | None, error: AirlockError) -> ToolError:
    what = f"cannot read the page of {name}" if name else "cannot list its files"
    return ToolError(shown(location), f"{what}: {error.what}", _FIX)


def files_of(name: str, where: Locations, *, limit: int | None = None) -> list[str]:
    """The file names of every distribution file of project ``name`` in ``where``.

    Indexes, extra indexes and find-links together, each name once, in the
    order found. A project no location knows has none (an empty list).
    """
    return files_of_many([name], where, limit=limit)[canonicalize_name(name)]


def files_of_many(names: Iterable[str], where: Locations, *, limit: int | None = None,
                  jobs: int = JOBS) -> dict[str, list[str]]:
    """:func:`files_of` for many projects at once: ``{canonical name: file names}``.

    The project pages are read by ``jobs`` threads; the find-links
    locations are listed once for all. The first failure (after its
    retries) stops the others and is raised as one ToolError. ``limit``:
    the largest page read (default :data:`PAGE_LIMIT`).
    """
    limit = PAGE_LIMIT if limit is None else limit
    wanted = sorted({canonicalize_name(n) for n in names})
    found: dict[str, dict[str, None]] = {n: {} for n in wanted}
    tasks = [(index, name) for name in wanted for index in indexes(where)]
    tasks += [(link, None) for link in where.find_links]
    session = _Session()

    def one(location: str, name: str | None) -> tuple[str | None, list[str]]:
        if session.stopped.is_set():
            raise _Stopped()
        try:
            if name is None:
                return None, _find_links_files(session, location, limit)
            return name, _index_page(session, location, name, limit)
        except ToolError:
            raise
        except AirlockError as error:
            raise _failed(location, name, error) from None

    with contextlib.closing(session), \
            ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="airlock-pypi") as pool:
        futures = [pool.submit(one, location, name) for location, name in tasks]
        done, pending = wait(futures, return_when=FIRST_EXCEPTION)
        failed = next((f for f in futures if f in done and f.exception()), None)
        if failed is not None:
            session.stopped.set()
            for future in pending:
                future.cancel()
            raise failed.exception()  # type: ignore[misc]
        for future in futures:
            name, listed = future.result()
            if name is not None:
                found[name].update(dict.fromkeys(listed))
                continue
            for filename in listed:
                project = _project_of(filename)
                if project in found:
                    found[project][filename] = None
    return {name: list(listed) for name, listed in found.items()}
