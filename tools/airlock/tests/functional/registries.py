"""A private, real registry for one test: Debian's docker-registry on a free loopback port.

The local registry of tools/setup-host (127.0.0.1:5000) is shared by every
test and has no auth. Tests of registry faults need their own: one that
requires a password (htpasswd, bcrypt as the registry demands), one they
may stop in the middle of a publish and start again on the same port and
storage. Only 127.0.0.1 is used.
"""

from __future__ import annotations

import base64
import json
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import bcrypt

REGISTRY_BINARY = "docker-registry"


def free_port() -> int:
    """A TCP port nobody listens on at this moment, on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PrivateRegistry:
    """``docker-registry serve`` with its own storage, port and, optionally, users.

    ``host`` is ``127.0.0.1:<port>``; :meth:`stop` and :meth:`start` keep
    the storage, so a test can take the registry away mid-operation and
    bring it back. :meth:`auth_file` writes a containers auth.json.
    """

    def __init__(self, users: dict[str, str] | None = None) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="airlock-registry-"))
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.users = dict(users or {})
        self.proc: subprocess.Popen | None = None
        auth = ""
        if self.users:
            lines = [f"{user}:{bcrypt.hashpw(pw.encode(), bcrypt.gensalt(rounds=4)).decode()}"
                     for user, pw in self.users.items()]
            (self.root / "htpasswd").write_text("\n".join(lines) + "\n")
            auth = (f"auth:\n  htpasswd:\n    realm: airlock-test\n"
                    f"    path: {self.root / 'htpasswd'}\n")
        (self.root / "config.yml").write_text(
            f"version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n"
            f"    rootdirectory: {self.root / 'data'}\n  delete:\n    enabled: true\n"
            f"http:\n  addr: {self.host}\n{auth}")

    def start(self) -> None:
        """Start (or restart) serving; wait until /v2/ answers."""
        if self.proc is not None and self.proc.poll() is None:
            return
        log = open(self.root / "registry.log", "a")  # noqa: SIM115 - kept open while it runs
        self.proc = subprocess.Popen([REGISTRY_BINARY, "serve", str(self.root / "config.yml")],
                                     stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://{self.host}/v2/", timeout=2).close()
                return
            except urllib.error.HTTPError as error:
                if error.code == 401:  # answering, and asking for a password
                    return
            except OSError:
                pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        raise RuntimeError(f"docker-registry on {self.host} did not start: "
                           f"{(self.root / 'registry.log').read_text()[-500:]}")

    def stop(self) -> None:
        """Stop serving (the storage stays)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def close(self) -> None:
        """Stop and remove everything."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def auth_file(self, user: str, password: str, path: Path | None = None) -> Path:
        """A containers auth.json holding ``user:password`` for this registry."""
        if path is None:
            path = self.root / f"auth-{len(list(self.root.glob('auth-*.json')))}.json"
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        path.write_text(json.dumps({"auths": {self.host: {"auth": token}}}))
        path.chmod(0o600)
        return path

    def __enter__(self) -> PrivateRegistry:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()
