"""An index URL with credentials reaches pip and uv, but never a command line.

A real pip and a real uv fetch from a real (local) index that demands a
password. While they talk to it, the index looks at the command line of
every process on the machine (what ``ps`` shows any user): the password
must be in none of them, yet must arrive in the request.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import os
import tempfile
import threading
import unittest
from pathlib import Path

from airlock.ext import index, uv
from airlock.tests.unit.test_mirror import make_sdist
from airlock.tests.unit.test_wheels import make_wheel

USER, SECRET = "builder", "s3cr3t-index-token"


def command_lines_holding(secret: str) -> list[str]:
    """The command lines of this machine's processes that contain ``secret``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                text = handle.read().replace(b"\0", b" ").decode("utf-8", "replace")
        except OSError:
            continue
        if secret in text:
            found.append(text)
    return found


class PasswordIndex:
    """A PEP 503 index of the files in ``folder``, behind HTTP Basic auth."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.authorized: list[bool] = []
        self.leaks: list[str] = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_HEAD(self) -> None:  # noqa: N802 - http.server's name
                self.answer(with_body=False)

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                self.answer(with_body=True)

            def answer(self, with_body: bool) -> None:
                owner.leaks += command_lines_holding(SECRET)
                expected = "Basic " + base64.b64encode(f"{USER}:{SECRET}".encode()).decode()
                if self.headers.get("Authorization") != expected:
                    owner.authorized.append(False)
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="index"')
                    self.end_headers()
                    return
                owner.authorized.append(True)
                body, kind = owner.page(self.path)
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                if body is not None and with_body:
                    self.wfile.write(body)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()
        port = self.server.server_address[1]
        self.url = f"http://{USER}:{SECRET}@127.0.0.1:{port}/simple/"

    def page(self, path: str) -> tuple[bytes | None, str]:
        parts = [p for p in path.split("?")[0].split("/") if p]
        if parts[:1] == ["files"] and len(parts) == 2 and (self.folder / parts[1]).is_file():
            return (self.folder / parts[1]).read_bytes(), "application/octet-stream"
        if parts[:1] == ["simple"] and len(parts) == 2:
            links = []
            for file in sorted(self.folder.iterdir()):
                if file.name.split("-")[0].replace("_", "-") == parts[1]:
                    digest = hashlib.sha256(file.read_bytes()).hexdigest()
                    links.append(f'<a href="/files/{file.name}#sha256={digest}">{file.name}</a>')
            return ("<html><body>" + "".join(links) + "</body></html>").encode(), "text/html"
        return None, "text/plain"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class TestIndexCredentials(unittest.TestCase):

    def setUp(self) -> None:
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        self.root = Path(tmp.name)
        files = self.root / "files"
        files.mkdir()
        make_sdist(files, "demo", "1.0.0")
        make_wheel(files, "wheely", "2.0.0")
        self.index = PasswordIndex(files)
        self.addCleanup(self.index.close)

    def test_pip_gets_the_url_through_its_environment(self) -> None:
        path = index.download_sdist("demo", "1.0.0", self.root / "out", self.index.url)
        self.assertEqual(path.name, "demo-1.0.0.tar.gz")
        self.assertIn(True, self.index.authorized)
        self.assertEqual(self.index.leaks, [])

    def test_uv_gets_the_url_through_its_environment(self) -> None:
        requirements = self.root / "requirements.in"
        requirements.write_text("wheely\n")
        pins = uv.resolve(requirements, [], python_version="3.11",
                          python_platform="x86_64-manylinux_2_28",
                          where=index.locations(self.index.url),
                          cache_dir=self.root / "uv-cache")
        self.assertEqual(pins, [("wheely", "2.0.0")])
        self.assertIn(True, self.index.authorized)
        self.assertEqual(self.index.leaks, [])


if __name__ == "__main__":
    unittest.main()
