"""Local stand-ins for an air-gapped site's four stores, on one machine.

Why: ``airlock bundle import`` and ``airlock build --site`` talk to a site's
Artifacts Nexus (PyPI-hosted and raw-hosted repositories), Images Nexus
(docker-hosted) and Gerrit mirror. Development and the functional tests need
the same four kinds of store, with the same authentication rules, without a
Nexus: each stand-in is a stock server, started from one folder (``DIR``,
default ``/var/lib/airlock/site``), listening on 127.0.0.1 only:

* **pypi** (default port 8080): ``pypiserver`` (pinned, from PyPI, in
  ``DIR/venv``), packages in ``DIR/pypi``; upload, download and list all
  need the password (``-a update,download,list``), and it never falls back
  to the public index (``--disable-fallback``). ``--pypi-reads open``:
  only upload needs it (``-a update``), a Nexus PyPI-hosted repository
  with anonymous read, as the Zuul jobs install airlock from it.
* **raw** (8081): Debian's nginx with its DAV module, files in ``DIR/raw``;
  PUT, DELETE and MKCOL need the password, GET and HEAD are open (what a
  Nexus raw-hosted repository with anonymous read does, and what
  ``deb [trusted=yes] URL ./`` needs without an apt auth file). Its own
  configuration, pid, logs and temp folders under ``DIR/nginx``; the
  system's nginx and ``/etc/nginx`` are never used. As root, its workers
  run as www-data, which owns ``DIR/raw`` and the temp folders.
* **registry** (5001, not the build host's 5000): Debian's
  ``docker-registry`` with htpasswd (bcrypt) auth, storage ``DIR/registry``.
  ``--registry-reads open`` is a Nexus docker-hosted repository with
  anonymous read, what the Zuul jobs of a site expect (their service jobs
  read without credentials): Debian's docker-registry knows no such mode
  (htpasswd refuses every anonymous request), so it runs without auth on
  an internal 127.0.0.1 port and a second nginx of its own
  (``DIR/nginx-registry``) on the registry's port passes GET and HEAD
  through anonymously and wants the password (Basic) for every other
  method. Its ``/v2/`` answer names the Basic challenge, so that clients
  which decide on authentication from that first answer (skopeo) send
  the credentials they have with a push.
* **git** (9418): ``git daemon`` read-only over the bare repositories of
  ``DIR/git``, which ``bundle import`` writes directly.

One random password per store, made once per ``DIR`` and kept in
``DIR/credentials/<store>`` (one line ``user:password``, mode 0600), never
printed. ``DIR/site.yaml`` names the four stores and those files, as
``/work/wt/SITE-CONTRACT.md`` (airlock.site.config) reads them.

``--netns NAME`` starts every daemon inside the existing network namespace
``/run/netns/NAME`` (``nsenter --net``, not ``ip netns exec``, which
remounts /sys); the venv is made beforehand in the host's namespace, where
PyPI is reachable. Every daemon is stopped by the pid in its own pid file,
checked against its command line (a stale file may name another process).
Only the standard library: ``tools/site-up`` runs this with
/usr/bin/python3 before airlock is installed.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

if not __package__:  # run as a script by tools/site-up, before airlock is installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from airlock.sandbox.site_seal import Engine, SealError, sealed_argv  # noqa: E402

DEFAULT_DIR = "/var/lib/airlock/site"
HOST = "127.0.0.1"
USER = "airlock"
STORES = ("pypi", "raw", "registry", "git")
# Authenticated stores: one credentials file each.
SECRET_STORES = ("pypi", "raw", "registry")
DEFAULT_PORTS = {"pypi": 8080, "raw": 8081, "registry": 5001, "git": 9418}
PYPISERVER = os.environ.get("AIRLOCK_SITE_PYPISERVER", "pypiserver[passlib]==2.4.2")
PASSLIB = "passlib==1.7.4"
WEB_USER = "www-data"  # nginx's workers, when started as root
# Debian packages (bindep profile "site", tools/setup-host site).
# --registry-reads: "auth" (every request needs the password, the default)
# or "open" (anonymous GET/HEAD, pushes with the password: the proxy).
REGISTRY_READS = ("auth", "open")
FRONT = "registry-front"  # the proxy's nginx, a process of the registry store
TOOLS = {"nginx": "nginx", "docker-registry": "docker-registry",
         "htpasswd": "apache2-utils", "git": "git", "nsenter": "util-linux"}


class SiteError(Exception):
    """A one-line reason, with what to do."""


def _say(text: str) -> None:
    print(f"site-up: {text}", flush=True)


def _retry(attempts: int, argv: list[str], log: Path) -> None:
    """tools/common.sh's retry: N attempts, 5, 10, ... s apart (infrastructure only)."""
    for attempt in range(1, attempts + 1):
        with log.open("a") as handle:
            done = subprocess.run(argv, stdout=handle, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, check=False)
        if done.returncode == 0:
            return
        print(f"site-up: attempt {attempt}/{attempts} failed: {' '.join(argv[:3])}...",
              file=sys.stderr)
        if attempt < attempts:
            time.sleep(attempt * 5)
    tail = " | ".join(log.read_text(errors="replace").splitlines()[-3:])
    raise SiteError(f"{argv[0]} failed {attempts} times ({log}): {tail}")


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    """Write atomically with MODE (a secret never exists with a wider mode)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


@dataclass
class Site:
    """The four stand-ins of one folder; see the module docstring."""

    base: Path
    ports: dict[str, int]
    netns: str | None = None
    engine: bool = False
    registry_reads: str = "auth"
    pypi_reads: str = "auth"

    # --- paths ---------------------------------------------------------

    def _pidfile(self, store: str) -> Path:
        """The server's own pid file (nginx and git daemon write theirs)."""
        return self.base / "run" / f"{store}.pid"

    @property
    def state_file(self) -> Path:
        return self.base / "run" / "state.json"

    def credentials(self, store: str) -> Path:
        return self.base / "credentials" / store

    @property
    def venv(self) -> Path:
        return self.base / "venv"

    def site_engine(self) -> Engine:
        """The sealed site's own Docker engine (``--engine``): see :mod:`site_seal`."""
        assert self.netns is not None
        return Engine(self.base, self.netns)

    # --- install (network: PyPI; retried) ------------------------------

    def install(self) -> None:
        """pypiserver in DIR/venv; a marker names what it was made with."""
        marker = self.venv / ".airlock-site"
        want = f"{PYPISERVER} {PASSLIB} {sys.version_info[:2]}\n"
        if marker.is_file() and marker.read_text() == want:
            return
        logs = self.base / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.venv, ignore_errors=True)
        _say(f"making {self.venv} with {PYPISERVER} (PyPI)")
        _retry(1, [sys.executable, "-m", "venv", str(self.venv)], logs / "venv.log")
        _retry(3, [str(self.venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check",
                   PYPISERVER, PASSLIB], logs / "venv.log")
        marker.write_text(want)

    # --- start ---------------------------------------------------------

    def _require(self) -> None:
        missing = sorted({pkg for tool, pkg in TOOLS.items() if shutil.which(tool) is None})
        if missing:
            raise SiteError(f"missing {', '.join(missing)}; run tools/setup-host site (as root)")
        if self.netns is not None:
            if os.geteuid() != 0:
                raise SiteError("--netns needs root (nsenter)")
            if not re.fullmatch(r"[A-Za-z0-9_.-]+", self.netns) or self.netns in (".", ".."):
                raise SiteError(f"--netns {self.netns!r}: give the name of a namespace "
                                "in /run/netns (letters, digits, . _ -)")
            if not Path(f"/run/netns/{self.netns}").exists():
                raise SiteError(f"no network namespace /run/netns/{self.netns}; "
                                f"make it first: ip netns add {self.netns}")

    def _in_netns(self, argv: list[str]) -> list[str]:
        """ARGV run inside the namespace: nsenter execs it (same pid, no wrapper)."""
        if self.netns is None:
            return argv
        return ["nsenter", f"--net=/run/netns/{self.netns}", "--", *argv]

    def start(self) -> None:
        """Start every store that does not run (and the engine); say so when all do."""
        running = [s for s in STORES if self.alive(s)]
        engine = self.engine
        if running:
            # Some run already: keep their ports and namespace.
            self._load_state()
            self.engine = self.engine or engine
        if self.engine and self.netns is None:
            raise SiteError("--engine needs --netns: the site's own engine is what makes "
                            "the namespace a sealed site")
        if len(running) == len(STORES) and not self.engine:
            _say(f"already running in {self.base} ({self._where()})")
            return
        self._require()
        self._check_free([s for s in STORES if s not in running])
        self.install()
        for sub, mode in (("", 0o755), ("run", 0o755), ("logs", 0o755),
                          ("credentials", 0o700), ("auth", 0o750), ("pypi", 0o755),
                          ("raw", 0o755), ("raw/airlock", 0o755), ("registry", 0o700),
                          ("git", 0o755), ("nginx", 0o755)):
            (self.base / sub).mkdir(mode=mode, parents=True, exist_ok=True)
            (self.base / sub).chmod(mode)
        _write(self.state_file, json.dumps({"ports": self.ports, "netns": self.netns,
                                            "engine": self.engine,
                                            "registry_reads": self.registry_reads,
                                            "pypi_reads": self.pypi_reads}) + "\n")
        passwords = self._passwords()
        self._htpasswd(passwords)
        starters = {"pypi": self._start_pypi, "raw": self._start_raw,
                    "registry": self._start_registry, "git": self._start_git}
        for store in STORES:
            if store not in running:
                starters[store]()
        for store in STORES:
            self._wait_listening(store)
        if self.engine:
            self.site_engine().start(self.base / "logs" / "engine.log")
        self._write_site_yaml()
        _say(f"running in {self.base} ({self._where()}); site.yaml: {self.base / 'site.yaml'}")

    def _load_state(self) -> None:
        """The ports and namespace the running stores were started with."""
        try:
            state = json.loads(self.state_file.read_text())
            self.ports, self.netns = state["ports"], state["netns"]
            self.engine = bool(state.get("engine"))
            self.registry_reads = state.get("registry_reads") or "auth"
            self.pypi_reads = state.get("pypi_reads") or "auth"
        except (OSError, ValueError, KeyError, TypeError):
            pass

    def _where(self) -> str:
        where = ", ".join(f"{s} {HOST}:{self.ports[s]}" for s in STORES)
        where += f", in netns {self.netns}" if self.netns else ""
        return where + (f", engine {self.site_engine().host}" if self.engine else "")

    def _check_free(self, stores: list[str]) -> None:
        listening = self._listening_ports()
        for store in stores:
            if self.ports[store] in listening:
                raise SiteError(f"{HOST}:{self.ports[store]} ({store}) is in use by another "
                                f"program; choose another with --{store}-port")

    def _listening_ports(self) -> set[int]:
        """TCP ports in LISTEN on 127.0.0.1 or any address, in the stores' namespace."""
        if self.netns is None:
            text = Path("/proc/net/tcp").read_text()
        else:
            text = subprocess.run(self._in_netns(["cat", "/proc/net/tcp"]), check=True,
                                  capture_output=True, text=True, timeout=10).stdout
        ports = set()
        for line in text.splitlines()[1:]:
            fields = line.split()
            address, port = fields[1].split(":")
            if fields[3] == "0A" and address in ("0100007F", "00000000"):
                ports.add(int(port, 16))
        return ports

    def _passwords(self) -> dict[str, str]:
        """The password of each authenticated store: made once per folder, kept."""
        passwords = {}
        for store in SECRET_STORES:
            path = self.credentials(store)
            if not path.is_file():
                _write(path, f"{USER}:{secrets.token_urlsafe(24)}\n", 0o600)
            user, _, password = path.read_text().strip().partition(":")
            if user != USER or not password:
                raise SiteError(f"{path}: not one line '{USER}:password'; delete it to "
                                "make a new one")
            passwords[store] = password
        return passwords

    def _htpasswd(self, passwords: dict[str, str]) -> None:
        """Hashed passwords for each server (the password on htpasswd's stdin)."""
        # The registry takes bcrypt only; pypiserver's passlib has no bcrypt
        # backend without the bcrypt package, so APR1 for it and for nginx.
        # The registry's proxy (--registry-reads open) is an nginx too: APR1.
        web_read = ("raw", FRONT)
        for name, store, flag in (("pypi", "pypi", "-m"), ("raw", "raw", "-m"),
                                  ("registry", "registry", "-B"), (FRONT, "registry", "-m")):
            line = subprocess.run(["htpasswd", "-ni", flag, USER], input=passwords[store],
                                  capture_output=True, text=True, check=True,
                                  timeout=30).stdout.strip()
            path = self.base / "auth" / f"{name}.htpasswd"
            _write(path, line + "\n", 0o640 if name in web_read else 0o600)
        if os.geteuid() == 0:
            web = pwd.getpwnam(WEB_USER)
            os.chown(self.base / "auth", 0, web.pw_gid)
            for name in web_read:
                os.chown(self.base / "auth" / f"{name}.htpasswd", 0, web.pw_gid)

    def _spawn(self, store: str, argv: list[str], pidfile: bool = True) -> None:
        """Start ARGV in its own session (it outlives this command), output in logs/."""
        with (self.base / "logs" / f"{store}.log").open("a") as log:
            proc = subprocess.Popen(self._in_netns(argv), stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True,
                                    cwd=self.base)
        if pidfile:
            _write(self._pidfile(store), f"{proc.pid}\n")

    def _start_pypi(self) -> None:
        # -i: it listens on 0.0.0.0 unless told; --disable-fallback: it
        # redirects a missing package to pypi.org unless told.
        self._spawn("pypi", [
            str(self.venv / "bin" / "pypi-server"), "run", "-i", HOST,
            "-p", str(self.ports["pypi"]), "-P", str(self.base / "auth" / "pypi.htpasswd"),
            "-a", "update" if self.pypi_reads == "open" else "update,download,list",
            "--disable-fallback", str(self.base / "pypi")])

    @staticmethod
    def _nginx_workers(folder: Path, *owned: Path) -> tuple[list[Path], str]:
        """An nginx's temp folders under ``folder``, and its ``user`` line.

        As root, the workers run as WEB_USER and own the temp folders and
        ``owned`` (what they write); otherwise nginx runs as the caller and
        the line is empty. One place for the raw store and the registry's proxy.
        """
        temps = [folder / "tmp" / t for t in ("body", "proxy", "fastcgi", "uwsgi", "scgi")]
        for temp in temps:
            temp.mkdir(parents=True, exist_ok=True)
        if os.geteuid() != 0:
            return temps, ""
        web = pwd.getpwnam(WEB_USER)
        for top in [*owned, folder / "tmp"]:
            for root, dirs, names in os.walk(top):
                for name in [".", *dirs, *names]:
                    os.lchown(os.path.join(root, name), web.pw_uid, web.pw_gid)
        return temps, f"user {WEB_USER} {WEB_USER};\n"

    def _start_raw(self) -> None:
        nginx = self.base / "nginx"
        if os.geteuid() == 0:
            self._reachable(self.base / "raw")
        # PUT writes as the workers: they own the files and temp folders
        # (as root-owned folders, PUT fails with 500).
        temps, user = self._nginx_workers(nginx, self.base / "raw")
        auth = self.base / "auth" / "raw.htpasswd"
        logs = self.base / "logs"
        _write(nginx / "nginx.conf", (
            "# Written by tools/site-up: the raw store (DAV), not the system's nginx.\n"
            f"{user}daemon off;\nworker_processes 1;\n"
            f"pid {self._pidfile('raw')};\nerror_log {logs / 'nginx-error.log'} warn;\n"
            "events { worker_connections 256; }\n"
            "http {\n"
            f"  access_log {logs / 'nginx-access.log'};\n"
            f"  client_body_temp_path {temps[0]};\n  proxy_temp_path {temps[1]};\n"
            f"  fastcgi_temp_path {temps[2]};\n  uwsgi_temp_path {temps[3]};\n"
            f"  scgi_temp_path {temps[4]};\n"
            "  default_type application/octet-stream;\n  server_tokens off;\n"
            "  server {\n"
            f"    listen {HOST}:{self.ports['raw']};\n"
            f"    root {self.base / 'raw'};\n"
            "    client_max_body_size 0;\n"
            "    location / {\n"
            "      autoindex on;\n"
            "      dav_methods PUT DELETE MKCOL;\n"
            "      create_full_put_path on;\n"
            "      dav_access user:rw group:r all:r;\n"
            "      # Writes need the password; reads are open.\n"
            "      limit_except GET HEAD {\n"
            "        auth_basic \"airlock site raw\";\n"
            f"        auth_basic_user_file {auth};\n"
            "      }\n    }\n  }\n}\n"))
        argv = ["nginx", "-p", str(nginx), "-c", str(nginx / "nginx.conf"),
                "-e", str(logs / "nginx-error.log")]
        test = subprocess.run([*argv, "-t", "-q"], capture_output=True, text=True,
                              timeout=30, check=False)
        if test.returncode != 0:
            raise SiteError(f"nginx refuses {nginx / 'nginx.conf'}: "
                            + " | ".join(test.stderr.strip().splitlines()[-2:])
                            + " (the DAV module comes with Debian's nginx package)")
        self._pidfile("raw").unlink(missing_ok=True)
        self._spawn("raw", argv, pidfile=False)

    def _reachable(self, path: Path) -> None:
        """www-data must reach PATH through every folder above it."""
        for parent in [*reversed(path.parents), path]:
            if parent.stat().st_mode & 0o001 == 0:
                raise SiteError(f"{parent} is not searchable by others, so nginx's workers "
                                f"({WEB_USER}) cannot reach {path}; chmod o+x {parent} or "
                                "choose another --dir")

    def _start_registry(self) -> None:
        config = self.base / "registry.yml"
        port = self.ports["registry"]
        auth = ("auth:\n  htpasswd:\n    realm: airlock-site\n"
                f"    path: {self.base / 'auth' / 'registry.htpasswd'}\n")
        if self.registry_reads == "open" and self._alive("registry"):
            # Only the proxy had stopped: start it in front of the running one.
            self._start_registry_front(self._registry_internal_port())
            return
        if self.registry_reads == "open":
            # Behind the proxy: no auth of its own, on a port only it uses.
            port, auth = self._internal_port(), ""
            _write(self.base / "run" / "registry-internal.port", f"{port}\n")
        _write(config, (
            "version: 0.1\nlog:\n  level: info\n"
            f"storage:\n  filesystem:\n    rootdirectory: {self.base / 'registry'}\n"
            "  delete:\n    enabled: true\n"
            f"http:\n  addr: {HOST}:{port}\n"
            f"  secret: {secrets.token_hex(16)}\n" + auth), 0o600)
        self._spawn("registry", ["docker-registry", "serve", str(config)])
        if self.registry_reads == "open":
            self._start_registry_front(port)

    def _registry_internal_port(self) -> int:
        """The port of the registry behind the proxy (--registry-reads open)."""
        return int((self.base / "run" / "registry-internal.port").read_text())

    def _internal_port(self) -> int:
        """A free port on 127.0.0.1 (in the stores' namespace) for the registry itself."""
        probe = ("import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); "
                 "print(s.getsockname()[1])")
        listening = self._listening_ports()
        for _ in range(20):
            port = int(subprocess.run(self._in_netns([sys.executable, "-c", probe]),
                                      check=True, capture_output=True, text=True,
                                      timeout=30).stdout)
            if port not in listening and port not in self.ports.values():
                return port
        raise SiteError("found no free port on 127.0.0.1 for the registry behind its proxy")

    def _start_registry_front(self, internal: int) -> None:
        """nginx on the registry's port: anonymous GET/HEAD, Basic auth for the rest."""
        front = self.base / "nginx-registry"
        temps, user = self._nginx_workers(front)
        auth = self.base / "auth" / f"{FRONT}.htpasswd"
        logs = self.base / "logs"
        upstream = f"http://{HOST}:{internal}"
        proxy = (
            f"      proxy_pass {upstream};\n"
            # The registry builds upload Locations from Host: the proxy's.
            "      proxy_set_header Host $http_host;\n"
            "      proxy_set_header X-Forwarded-Proto $scheme;\n"
            "      proxy_http_version 1.1;\n"
            # Layers of any size, streamed both ways (chunked uploads too).
            "      proxy_request_buffering off;\n      proxy_buffering off;\n"
            "      proxy_read_timeout 900s;\n      proxy_send_timeout 900s;\n")
        _write(front / "nginx.conf", (
            "# Written by tools/site-up: the registry's proxy (--registry-reads open).\n"
            f"{user}daemon off;\nworker_processes 1;\n"
            f"pid {self._pidfile(FRONT)};\nerror_log {logs / 'registry-front-error.log'} warn;\n"
            "events { worker_connections 256; }\n"
            "http {\n"
            f"  access_log {logs / 'registry-front-access.log'};\n"
            f"  client_body_temp_path {temps[0]};\n  proxy_temp_path {temps[1]};\n"
            f"  fastcgi_temp_path {temps[2]};\n  uwsgi_temp_path {temps[3]};\n"
            f"  scgi_temp_path {temps[4]};\n"
            "  server_tokens off;\n"
            "  server {\n"
            f"    listen {HOST}:{self.ports['registry']};\n"
            "    client_max_body_size 0;\n    chunked_transfer_encoding on;\n"
            "    location = /v2/ {\n"
            # Open, like every read; the challenge tells a client with
            # credentials to send them (a push's 401 alone does not, for some).
            "      add_header WWW-Authenticate 'Basic realm=\"airlock-site\"' always;\n"
            + proxy + "    }\n"
            "    location /v2/ {\n"
            "      limit_except GET HEAD {\n"
            "        auth_basic \"airlock-site\";\n"
            f"        auth_basic_user_file {auth};\n"
            "      }\n" + proxy + "    }\n"
            "    location / { return 404; }\n"
            "  }\n}\n"))
        argv = ["nginx", "-p", str(front), "-c", str(front / "nginx.conf"),
                "-e", str(logs / "registry-front-error.log")]
        test = subprocess.run([*argv, "-t", "-q"], capture_output=True, text=True,
                              timeout=30, check=False)
        if test.returncode != 0:
            raise SiteError(f"nginx refuses {front / 'nginx.conf'}: "
                            + " | ".join(test.stderr.strip().splitlines()[-2:]))
        self._pidfile(FRONT).unlink(missing_ok=True)
        self._spawn(FRONT, argv, pidfile=False)

    def _start_git(self) -> None:
        # `git daemon` runs git-daemon as its child: the pid file names the
        # server itself. Read-only: receive-pack is off unless enabled.
        git = self.base / "git"
        self._pidfile("git").unlink(missing_ok=True)
        self._spawn("git", [
            "git", "daemon", "--export-all", f"--base-path={git}", "--reuseaddr",
            f"--listen={HOST}", f"--port={self.ports['git']}",
            f"--pid-file={self._pidfile('git')}", str(git)], pidfile=False)

    def _wait_listening(self, store: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            listening = self._listening_ports()
            if store == "registry" and self.registry_reads == "open" and \
                    self._registry_internal_port() not in listening:
                listening = set()  # the proxy alone answers 502
            if self.alive(store) and self.ports[store] in listening:
                return
            time.sleep(0.3)
        log = self.base / "logs" / ("nginx-error.log" if store == "raw" else f"{store}.log")
        tail = ""
        if log.is_file():
            tail = ": " + " | ".join(log.read_text(errors="replace").splitlines()[-2:])
        raise SiteError(f"{store} did not listen on {HOST}:{self.ports[store]} within "
                        f"{timeout:.0f} s; see {log}{tail}")

    def _write_site_yaml(self) -> None:
        """The contract's site.yaml: URLs and credentials files, never a secret."""
        p = self.ports
        values = {
            "pypi": {"upload": f"http://{HOST}:{p['pypi']}/",
                     "simple": f"http://{HOST}:{p['pypi']}/simple/"},
            "raw": {"url": f"http://{HOST}:{p['raw']}/airlock/"},
            "registry": {"prefix": f"{HOST}:{p['registry']}/airlock"},
            "git": {"base": f"git://{HOST}:{p['git']}", "push": str(self.base / "git")},
        }
        lines = [f"# Written by tools/site-up for the stand-ins in {self.base}."]
        for store, keys in values.items():
            if store in SECRET_STORES:
                keys["credentials_file"] = str(self.credentials(store))
            lines.append(f"{store}:")
            # A JSON string is a YAML scalar, whatever the folder's name holds.
            lines += [f"  {key}: {json.dumps(value)}" for key, value in keys.items()]
        _write(self.base / "site.yaml", "\n".join(lines) + "\n")

    # --- status and stop -----------------------------------------------

    def _pid(self, store: str) -> int | None:
        try:
            return int(self._pidfile(store).read_text())
        except (OSError, ValueError):
            return None

    def alive(self, store: str) -> bool:
        """STORE's server runs (the registry: and its proxy, with --registry-reads open)."""
        if store == "registry" and self.registry_reads == "open" and not self._alive(FRONT):
            return False
        return self._alive(store)

    def _alive(self, store: str) -> bool:
        """The pid file names a live process of this folder (not a reused pid)."""
        pid = self._pid(store)
        if pid is None:
            return False
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            return False
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
        # One whole argument of the server's (nginx's master joins its
        # arguments with spaces): DIR alone is also inside DIR2's paths, an
        # editor's or a `tail -f DIR/logs/...`, which stop would then kill.
        return re.search(rf"(^|[\x00 =]){re.escape(self._marker(store))}($|[\x00 ])",
                         cmdline) is not None

    def _marker(self, store: str) -> str:
        """A path only STORE's server of this folder has as an argument."""
        return str({"pypi": self.base / "auth" / "pypi.htpasswd",
                    "raw": self.base / "nginx" / "nginx.conf",
                    "registry": self.base / "registry.yml",
                    FRONT: self.base / "nginx-registry" / "nginx.conf",
                    "git": self.base / "git"}[store])

    def status(self) -> bool:
        """Print each store's state; True when all four run."""
        self._load_state()
        up = True
        for store in STORES:
            if self.alive(store):
                where = f"{HOST}:{self.ports[store]}"
                where += f" in netns {self.netns}" if self.netns else ""
                _say(f"{store}: running (pid {self._pid(store)}) on {where}")
            else:
                up = False
                _say(f"{store}: stopped")
        if self.engine:
            engine = self.site_engine()
            if engine.alive():
                _say(f"engine: running on {engine.host} in netns {self.netns}")
            else:
                up = False
                _say("engine: stopped")
        return up

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM each server named by its pid file; SIGKILL what ignores it."""
        self._load_state()
        if self.netns is not None and self.site_engine().stop():
            _say(f"stopped the site's engine in netns {self.netns}")
        running = [s for s in (*STORES, FRONT) if self._alive(s)]
        pids = {s: self._pid(s) for s in running}
        for pid in pids.values():
            try:
                os.kill(pid, signal.SIGTERM)  # type: ignore[arg-type]
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + timeout
        while running and time.monotonic() < deadline:
            time.sleep(0.2)
            running = [s for s in running if self._alive(s)]
        for store in running:
            print(f"site-up: {store} ignored SIGTERM for {timeout:.0f} s; killing it",
                  file=sys.stderr)
            try:
                os.kill(pids[store], signal.SIGKILL)  # type: ignore[arg-type]
            except ProcessLookupError:
                pass
        for store in (*STORES, FRONT):
            self._pidfile(store).unlink(missing_ok=True)
        stores = len([s for s in pids if s != FRONT])
        _say(f"stopped ({stores} of {len(STORES)} were running) in {self.base}")


def _ports(args: argparse.Namespace) -> dict[str, int]:
    ports = {}
    for store in STORES:
        value = getattr(args, f"{store}_port")
        if value is None:
            env = os.environ.get(f"AIRLOCK_SITE_{store.upper()}_PORT")
            value = env if env else DEFAULT_PORTS[store]
        try:
            port = int(value)
        except ValueError:
            port = 0
        if not 0 < port < 65536:
            raise SiteError(f"--{store}-port / AIRLOCK_SITE_{store.upper()}_PORT={value}: "
                            "give a TCP port (1-65535)")
        ports[store] = port
    if len(set(ports.values())) != len(ports):
        raise SiteError(f"two stores on one port ({ports}); give each its own")
    return ports


def _exec(site: Site, command: list[str], assigns: list[str]) -> int:
    """Run COMMAND sealed in the site started with --netns and --engine; its exit status."""
    # The command line first: a mistake in it is named even with no site running.
    extra = {}
    for assign in assigns:
        name, sep, value = assign.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise SiteError(f"--env {assign!r}: give NAME=VALUE")
        extra[name] = value
    if not command:
        raise SiteError("exec: give the command to run after --")
    site._load_state()
    if site.netns is None or not site.engine or not site.site_engine().alive():
        raise SiteError(f"no sealed site runs in {site.base}; start one with: tools/site-up "
                        "start --netns NS --engine")
    return _run_forwarding(sealed_argv(site.netns, site.site_engine(), command, extra))


def _run_forwarding(argv: list[str], grace: float = 20) -> int:
    """ARGV's exit status; SIGINT, SIGTERM and SIGHUP are passed on to it.

    Why: nsenter, unshare, sh and env each exec the next, so ARGV's pid is
    COMMAND's. Python's default SIGTERM/SIGHUP kill only this process and
    leave COMMAND running, sealed, with nobody waiting; subprocess.run
    answers SIGINT sent to this pid alone with SIGKILL, so COMMAND gets no
    chance to clean up. Here COMMAND gets the signal itself, GRACE seconds
    to exit, then SIGKILL; the result is 128 + the signal's number. A
    Ctrl-C at the terminal reaches COMMAND already (same foreground process
    group): it is not sent twice, which would cut COMMAND's own clean-up.
    """
    caught: list[int] = []
    procs: list[subprocess.Popen[bytes]] = []
    try:
        tty_reaches_child = os.tcgetpgrp(sys.stdin.fileno()) == os.getpgrp()
    except (OSError, ValueError):
        tty_reaches_child = False

    def forward(signum: int, _frame: object) -> None:
        caught.append(signum)
        if signum == signal.SIGINT and tty_reaches_child and len(caught) == 1:
            return
        for child in procs:
            try:
                child.send_signal(signum)
            except ProcessLookupError:
                pass

    forwarded = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {signum: signal.signal(signum, forward) for signum in forwarded}
    try:
        proc = subprocess.Popen(argv)
        procs.append(proc)
        if caught:  # a signal before the child existed
            proc.send_signal(caught[0])
        deadline = None
        while True:
            try:
                code = proc.wait(timeout=0.2)
                break
            except subprocess.TimeoutExpired:
                pass
            if caught and deadline is None:
                deadline = time.monotonic() + grace
            if deadline is not None and time.monotonic() > deadline:
                proc.kill()
                code = proc.wait()
                break
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if caught:
        return 128 + caught[0]
    return 128 - code if code < 0 else code  # killed by a signal: the shell's number


class _Parser(argparse.ArgumentParser):
    """A usage mistake is exit 1 with one line, as every airlock command has it."""

    def error(self, message: str):  # type: ignore[override]
        print(f"site-up: ERROR: {message}; see tools/site-up --help", file=sys.stderr)
        sys.exit(1)


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(prog="site-up", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("start", "stop", "status", "install", "exec"),
                        help="start: the four stores (and site.yaml); stop: stop them; "
                             "status: what runs (exit 3 unless all four); install: only "
                             "the pypiserver venv (PyPI); exec -- CMD: run CMD sealed, "
                             "as the site (needs start --netns NS --engine)")
    parser.add_argument("--dir", default=os.environ.get("AIRLOCK_SITE_DIR") or DEFAULT_DIR,
                        help=f"the site's folder (default {DEFAULT_DIR}, AIRLOCK_SITE_DIR)")
    parser.add_argument("--netns", help="start every daemon inside /run/netns/NETNS")
    parser.add_argument("--engine", action="store_true",
                        help="with --netns: also a Docker engine of the site's own in it")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="exec: one more variable for CMD (its environment is "
                             "otherwise PATH, HOME, the locale and the engine's)")
    parser.add_argument("--registry-reads", choices=REGISTRY_READS, default="auth",
                        help="auth (default): every registry request needs the password; "
                             "open: GET/HEAD anonymous, pushes with the password (a "
                             "Nexus with anonymous read; an nginx in front)")
    parser.add_argument("--pypi-reads", choices=REGISTRY_READS, default="auth",
                        help="auth (default): upload, download and list need the "
                             "password; open: only upload does")
    for store in STORES:
        parser.add_argument(f"--{store}-port", help=f"default {DEFAULT_PORTS[store]} "
                            f"(AIRLOCK_SITE_{store.upper()}_PORT)")
    argv = list(sys.argv[1:] if argv is None else argv)
    # exec's command: everything after the first "--", never parsed here.
    command = argv[argv.index("--") + 1:] if "--" in argv else []
    args = parser.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    try:
        base = Path(args.dir)
        if not base.is_absolute():
            base = Path.cwd() / base
        site = Site(base=base, ports=_ports(args), netns=args.netns, engine=args.engine,
                    registry_reads=args.registry_reads, pypi_reads=args.pypi_reads)
        if "--" in argv and args.command != "exec":
            raise SiteError(f"unexpected '-- {' '.join(command)}': only exec takes a command")
        if args.command == "exec":
            return _exec(site, command, args.env)
        if args.command == "start":
            site.start()
        elif args.command == "install":
            site.install()
            _say(f"ok: {site.venv}")
        elif args.command == "stop":
            site.stop()
        elif args.command == "status":
            return 0 if site.status() else 3
    except (SiteError, SealError) as error:
        print(f"site-up: ERROR: {error}", file=sys.stderr)
        return 1
    except subprocess.CalledProcessError as error:
        print(f"site-up: ERROR: {error.cmd[0]} failed ({error.returncode})", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
