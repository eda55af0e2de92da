"""Real servers that demand a password, on 127.0.0.1, for tests of credentialed URLs.

A site's git mirror and package index may need credentials
(``https://user:token@host/...``). These stand-ins make that real without
any engine or network:

- :class:`GitServer`: git's own smart HTTP server (``git http-backend``,
  protocol v2 included) for the bare or non-bare repositories below a
  folder, behind HTTP Basic auth;
- :class:`PackageIndex`: a PEP 503 simple index of the files in a folder
  (sdists, wheels), behind HTTP Basic auth;
- :class:`AuthProxy`: another HTTP server (an apt mirror) behind HTTP Basic
  auth: what a site's Nexus in front of Debian looks like.

Each runs in a thread of the test process (``with GitServer(root, users)
as server``), answers 401 to a request without the right password, and
counts what it served and refused. Nothing is logged to the terminal.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
import subprocess
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from packaging.utils import canonicalize_name


def basic_auth_ok(users: dict[str, str], header: str | None) -> bool:
    """Whether an ``Authorization`` header is Basic auth of one of ``users`` (user: password)."""
    if not header or not header.startswith("Basic "):
        return False
    try:
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return False
    return users.get(user) == password


class _Server(ThreadingHTTPServer):
    """A client that hangs up (airlock refusing a page) is no error to print."""

    daemon_threads = True

    def handle_error(self, request, client_address) -> None:  # noqa: ANN001
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _AuthServer:
    """A threading HTTP server on a free port of 127.0.0.1 that checks Basic auth."""

    realm = "airlock-test"

    def __init__(self, users: dict[str, str]) -> None:
        self.users = dict(users)
        self.served = 0  # requests answered with the right password
        self.refused = 0  # requests answered 401
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        assert self._server is not None, "not started"
        return self._server.server_address[1]

    def url(self, user: str | None = None, password: str | None = None, path: str = "") -> str:
        """``http://[user:password@]127.0.0.1:PORT/path``."""
        auth = ""
        if user is not None:
            auth = urllib.parse.quote(user, safe="")
            if password is not None:
                auth += ":" + urllib.parse.quote(password, safe="")
            auth += "@"
        return f"http://{auth}127.0.0.1:{self.port}/{path.lstrip('/')}"

    def authorised(self, header: str | None) -> bool:
        return basic_auth_ok(self.users, header)

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        """Answer an authorised request (subclasses)."""
        raise NotImplementedError

    def start(self) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _any(self) -> None:
                if not owner.authorised(self.headers.get("Authorization")):
                    with owner._lock:
                        owner.refused += 1
                    self._drain()
                    body = b"authentication required\n"
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", f'Basic realm="{owner.realm}"')
                    self.send_header("Content-Type", "text/plain")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                with owner._lock:
                    owner.served += 1
                owner.handle(self)

            def _drain(self) -> None:
                read_body(self)

            do_GET = do_POST = do_HEAD = _any

            def log_message(self, format: str, *args) -> None:  # noqa: A002
                pass

        self._server = _Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def read_body(request: BaseHTTPRequestHandler) -> bytes:
    """The request body: by Content-Length, or chunked (git sends large requests so)."""
    if request.headers.get("Transfer-Encoding", "").lower() == "chunked":
        parts = []
        while True:
            size = int(request.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while request.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(parts)
            parts.append(request.rfile.read(size))
            request.rfile.readline()
    length = int(request.headers.get("Content-Length") or 0)
    return request.rfile.read(length) if length else b""


def send(request: BaseHTTPRequestHandler, status: int, body: bytes,
         headers: dict[str, str] | None = None) -> None:
    request.send_response(status)
    for name, value in (headers or {}).items():
        request.send_header(name, value)
    request.send_header("Content-Length", str(len(body)))
    request.end_headers()
    if request.command != "HEAD":
        request.wfile.write(body)


class GitServer(_AuthServer):
    """``git http-backend`` over every repository below ``root``, password required.

    ``url(user, password, "openstack/keystone")`` is a clone URL. Protocol
    v2 (the client's ``Git-Protocol`` header) is passed on, so fetching a
    commit by SHA works as on a real server.
    """

    def __init__(self, root: Path, users: dict[str, str]) -> None:
        super().__init__(users)
        self.root = Path(root)

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        parsed = urllib.parse.urlsplit(request.path)
        body = read_body(request)
        env = {"GIT_PROJECT_ROOT": str(self.root), "GIT_HTTP_EXPORT_ALL": "1",
               "PATH_INFO": urllib.parse.unquote(parsed.path), "QUERY_STRING": parsed.query,
               "REQUEST_METHOD": request.command, "REMOTE_ADDR": "127.0.0.1",
               "REMOTE_USER": "test", "CONTENT_LENGTH": str(len(body)),
               "CONTENT_TYPE": request.headers.get("Content-Type", ""),
               "PATH": "/usr/bin:/bin", "GIT_CONFIG_NOSYSTEM": "1",
               "GIT_CONFIG_GLOBAL": "/dev/null"}
        for header, var in (("Git-Protocol", "GIT_PROTOCOL"),
                            ("Content-Encoding", "HTTP_CONTENT_ENCODING")):
            if request.headers.get(header):
                env[var] = request.headers[header]
        proc = subprocess.run(["git", "http-backend"], input=body, env=env,
                              capture_output=True, timeout=120)
        head, _, payload = proc.stdout.partition(b"\r\n\r\n")
        if not _:
            head, _, payload = proc.stdout.partition(b"\n\n")
        status, headers = 200, {}
        for line in head.decode("latin-1").splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.split()[0])
            elif name:
                headers[name.strip()] = value.strip()
        send(request, status, payload, headers)


class PackageIndex(_AuthServer):
    """A PEP 503 simple index of the files in ``folder``, password required.

    ``url(user, password, "simple/")`` is the index URL; files are served
    from ``/files/<name>`` with their sha256 in the link. A project page
    comes as PEP 691 JSON to a client that asks for it (``Accept``) when
    ``serve_json`` is True. ``pages`` answers chosen paths in its own way (a
    broken or hostile index): ``{path: handler(request)}``.
    """

    _NAME = re.compile(r"^(?P<name>.+?)-\d")
    JSON_TYPE = "application/vnd.pypi.simple.v1+json"

    def __init__(self, folder: Path, users: dict[str, str], serve_json: bool = False) -> None:
        super().__init__(users)
        self.folder = Path(folder)
        self.serve_json = serve_json
        self.pages: dict[str, Callable[[BaseHTTPRequestHandler], None]] = {}

    def projects(self) -> dict[str, list[Path]]:
        found: dict[str, list[Path]] = {}
        for path in sorted(self.folder.iterdir()):
            match = self._NAME.match(path.name)
            if match and path.is_file():
                found.setdefault(canonicalize_name(match["name"]), []).append(path)
        return found

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        read_body(request)
        path = urllib.parse.unquote(urllib.parse.urlsplit(request.path).path)
        projects = self.projects()
        page: Callable[[str], bytes] = lambda body: (  # noqa: E731
            f"<!DOCTYPE html><html><body>\n{body}</body></html>\n".encode())
        html_type = {"Content-Type": "text/html"}
        if path in self.pages:
            self.pages[path](request)
            return
        if path in ("/simple", "/simple/"):
            links = "".join(f'<a href="{name}/">{name}</a>\n' for name in sorted(projects))
            send(request, 200, page(links), html_type)
            return
        if path.startswith("/simple/"):
            name = canonicalize_name(path[len("/simple/"):].strip("/"))
            if name not in projects:
                send(request, 404, b"not found\n")
                return
            if self.serve_json and self.JSON_TYPE in request.headers.get("Accept", ""):
                doc = {"meta": {"api-version": "1.0"}, "name": name, "files": [
                    {"filename": f.name, "url": f"/files/{urllib.parse.quote(f.name)}",
                     "hashes": {"sha256": hashlib.sha256(f.read_bytes()).hexdigest()}}
                    for f in projects[name]]}
                send(request, 200, json.dumps(doc).encode(), {"Content-Type": self.JSON_TYPE})
                return
            links = "".join(
                f'<a href="/files/{html.escape(f.name)}#sha256='
                f'{hashlib.sha256(f.read_bytes()).hexdigest()}">{html.escape(f.name)}</a>\n'
                for f in projects[name])
            send(request, 200, page(links), html_type)
            return
        if path.startswith("/files/"):
            target = self.folder / path[len("/files/"):]
            if target.parent == self.folder and target.is_file():
                send(request, 200, target.read_bytes(),
                     {"Content-Type": "application/octet-stream"})
                return
        send(request, 404, b"not found\n")


class AuthProxy(_AuthServer):
    """``GET``/``HEAD`` of ``upstream`` + path, password required (a mirror behind a Nexus)."""

    def __init__(self, upstream: str, users: dict[str, str]) -> None:
        super().__init__(users)
        self.upstream = upstream.rstrip("/")

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        read_body(request)
        url = self.upstream + request.path
        try:
            with urllib.request.urlopen(urllib.request.Request(url, method=request.command),
                                        timeout=120) as answer:
                body = answer.read()
                headers = {"Content-Type": answer.headers.get("Content-Type",
                                                              "application/octet-stream")}
                if answer.headers.get("Last-Modified"):
                    headers["Last-Modified"] = answer.headers["Last-Modified"]
                send(request, answer.status, body, headers)
        except urllib.error.HTTPError as error:
            send(request, error.code, error.read())
