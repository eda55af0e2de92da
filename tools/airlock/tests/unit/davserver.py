"""A raw-hosted store for tests: GET/HEAD/PUT of files under a folder, with Basic auth.

What the site's raw store does for ``bundle import`` (Nexus raw-hosted,
nginx with its DAV methods): PUT creates a file (and its folders), GET and
HEAD serve it, 404 when absent, 401 without the right password. Used in
a thread by unit tests and as a process (``python davserver.py FOLDER
PORT USER``, the password on stdin) by functional tests where Debian's
nginx is not installed. It writes a file to a temporary name and renames
it, as nginx does: a reader never sees half a file.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from airlock.tests.unit.servers import basic_auth_ok


class DavServer:
    def __init__(self, folder: Path, users: dict[str, str], port: int = 0) -> None:
        self.folder = Path(folder)
        self.users = dict(users)
        self.port_wanted = port
        self.puts: list[str] = []
        self._server: ThreadingHTTPServer | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.server_address[1]

    def url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}"

    def _path(self, url_path: str) -> Path | None:
        parts = [p for p in urllib.parse.unquote(url_path.split("?", 1)[0]).split("/") if p]
        if any(p in (".", "..") for p in parts):
            return None
        return self.folder.joinpath(*parts) if parts else self.folder

    def _authorised(self, header: str | None) -> bool:
        return basic_auth_ok(self.users, header)

    def start(self) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _reply(self, status: int, body: bytes = b"", head: bool = False,
                       length: int | None = None) -> None:
                self.send_response(status)
                if status == 401:
                    self.send_header("WWW-Authenticate", 'Basic realm="raw"')
                self.send_header("Content-Length", str(len(body) if length is None else length))
                self.end_headers()
                if not head:
                    self.wfile.write(body)

            def _drain(self) -> bytes:
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _check(self) -> Path | None:
                if not owner._authorised(self.headers.get("Authorization")):
                    self._drain()
                    self._reply(401, b"authentication required\n",
                                head=self.command == "HEAD")
                    return None
                path = owner._path(self.path)
                if path is None:
                    self._drain()
                    self._reply(400, b"bad path\n", head=self.command == "HEAD")
                return path

            def do_GET(self) -> None:  # noqa: N802
                path = self._check()
                if path is None:
                    return
                if path.is_dir() and (path / "index.html").is_file():
                    path = path / "index.html"  # a PEP 503 page, as a static index serves it
                if not path.is_file():
                    self._reply(404, b"not found\n", head=self.command == "HEAD")
                    return
                data = path.read_bytes()
                self._reply(200, data, head=self.command == "HEAD", length=len(data))

            do_HEAD = do_GET

            def do_PUT(self) -> None:  # noqa: N802
                path = self._check()
                if path is None:
                    return
                data = self._drain()
                path.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".put-")
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                os.replace(tmp, path)
                owner.puts.append(str(path.relative_to(owner.folder)))
                self._reply(201, b"")

            def log_message(self, format: str, *args) -> None:  # noqa: A002
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port_wanted), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> DavServer:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str]) -> int:
    folder, port, user = argv
    password = sys.stdin.readline().rstrip("\n")
    server = DavServer(Path(folder), {user: password}, int(port))
    server.start()
    print(server.port, flush=True)
    threading.Event().wait()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
