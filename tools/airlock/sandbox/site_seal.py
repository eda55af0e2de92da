"""A sealed site on one machine: an engine of its own, and commands run as the site runs them.

Why: a network namespace holding only ``lo`` (``tools/site-up start --netns``)
cuts the stores off from every network, but not from this machine's
filesystem. From inside it, the build host's Docker socket is still there
(an engine with the network), and so are this machine's package settings
(``/etc/pip.conf`` and ``PIP_FIND_LINKS`` name wheel folders on its disk).
A site build that used either would pass here and fail at a real site.

* :class:`Engine`: a second ``dockerd`` inside the namespace, with its own
  socket, data root and exec root (``tools/site-up start --netns NS
  --engine``). Started with ``nsenter --net``: ``ip netns exec`` remounts
  /sys, and dockerd then finds no devices cgroup. No bridge, no iptables:
  every build step runs with ``--network none`` anyway. binfmt being the
  kernel's, arm64 emulation works in it as on the host.
* :func:`sealed_argv`: a command as the site runs it (``tools/site-up exec
  -- CMD``): inside the namespace, in a mount namespace of its own where
  the host engine's socket and state, every pip/uv configuration file, the
  local wheel folders and the apt sources are covered (``/dev/null`` over a
  file, an empty tmpfs over a folder), with an environment made from
  nothing but PATH, HOME, the locale, ``DOCKER_HOST`` naming the site's
  engine and a ``DOCKER_CONFIG`` of its own.

Standard library only, like :mod:`site_stores` (which calls this).
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import signal
import subprocess
import time
from pathlib import Path

# The host's files a site must not read: covered by /dev/null.
HIDDEN_FILES = ("/run/docker.sock", "/etc/pip.conf", "/etc/uv/uv.toml",
                "/etc/apt/sources.list")
# The host's folders a site must not read: covered by an empty tmpfs.
HIDDEN_DIRS = ("/run/docker", "/run/containerd", "/run/buildkit", "/var/lib/docker",
               "/var/lib/containerd", "/etc/xdg/pip", "/etc/xdg/uv", "/etc/docker",
               "/etc/apt/sources.list.d", "/opt/wheels")
# Below HOME: its pip, uv and Docker settings and caches.
HIDDEN_HOME_DIRS = (".config/pip", ".pip", ".config/uv", ".docker", ".cache")
# What the sealed environment keeps of the caller's.
KEPT_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TERM", "TZ")


class SealError(Exception):
    """A one-line reason, with what to do."""


class Engine:
    """The site's own Docker engine, in the stores' network namespace."""

    def __init__(self, base: Path, netns: str) -> None:
        self.base = base
        self.netns = netns
        # Sockets have a 108-byte path limit: the socket and the exec root
        # (containerd's sockets) live in a short folder of /run named
        # after DIR, the data in DIR.
        key = hashlib.sha256(str(base).encode()).hexdigest()[:12]
        self.run_dir = Path("/run/airlock-site") / key
        self.socket = self.run_dir / "docker.sock"
        self.pidfile = self.run_dir / "docker.pid"
        self.data_root = base / "engine" / "data"
        self.config_file = base / "engine" / "daemon.json"
        self.docker_config = base / "engine" / "client"

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"

    def _pid(self) -> int | None:
        try:
            return int(self.pidfile.read_text())
        except (OSError, ValueError):
            return None

    def alive(self) -> bool:
        """The pid file names a live dockerd of this folder."""
        pid = self._pid()
        if pid is None:
            return False
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        # The exact argument pair: the folder's path alone is also in other
        # programs' command lines (an editor, tail -f), which stop would kill.
        return (stat.rsplit(")", 1)[1].split()[0] != "Z"
                and f"\0--data-root\0{self.data_root}\0" in cmdline)

    def _answers(self) -> bool:
        done = subprocess.run(["docker", "-H", self.host, "version", "--format",
                               "{{.Server.Version}}"], capture_output=True, text=True,
                              timeout=20, check=False,
                              env={**os.environ, "DOCKER_CONFIG": str(self.docker_config)})
        return done.returncode == 0

    def start(self, log: Path, timeout: float = 90) -> None:
        """Start dockerd in the namespace unless it runs; wait until its API answers."""
        if self.alive() and self._answers():
            return
        for folder in (self.run_dir, self.data_root, self.docker_config):
            folder.mkdir(parents=True, exist_ok=True)
        self.run_dir.chmod(0o700)
        self.config_file.write_text(json.dumps({
            "features": {"containerd-snapshotter": True},
            "builder": {"gc": {"enabled": True, "defaultKeepStorage": "20GB"}}}) + "\n")
        argv = ["nsenter", f"--net=/run/netns/{self.netns}", "--", "dockerd",
                "--host", self.host, "--data-root", str(self.data_root),
                "--exec-root", str(self.run_dir / "exec"), "--pidfile", str(self.pidfile),
                "--iptables=false", "--ip6tables=false", "--bridge=none",
                "--config-file", str(self.config_file)]
        self.pidfile.unlink(missing_ok=True)
        with log.open("a") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            if self.pidfile.is_file() and self._answers():
                return
            time.sleep(0.5)
        tail = " | ".join(log.read_text(errors="replace").splitlines()[-2:])
        if proc.poll() is None:
            proc.terminate()
        raise SealError(f"the site's engine did not answer on {self.host} within "
                        f"{timeout:.0f} s; see {log}: {tail}")

    def stop(self, timeout: float = 40) -> bool:
        """SIGTERM (its containerd and mounts go with it), SIGKILL after TIMEOUT."""
        if not self.alive():
            self.pidfile.unlink(missing_ok=True)
            return False
        pid = self._pid()
        assert pid is not None
        try:  # it may exit between alive() and kill()
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while self.alive() and time.monotonic() < deadline:
                time.sleep(0.3)
            if self.alive():
                os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.pidfile.unlink(missing_ok=True)
        return True


def sealed_argv(netns: str, engine: Engine, command: list[str],
                extra_env: dict[str, str] | None = None) -> list[str]:
    """COMMAND as the site runs it: see the module docstring.

    The covers are mounted by a shell in the new mount namespace, which
    then execs ``env -i`` with the kept variables: nothing of the caller's
    pip, uv, Docker or proxy settings reaches COMMAND.
    """
    if not command:
        raise SealError("exec: give the command to run after --")
    # The caller's HOME and the one --env gives COMMAND: pip reads the
    # latter's ~/.config/pip, so covering only the former leaks it.
    homes = {os.environ.get("HOME") or "/root", (extra_env or {}).get("HOME") or "/root"}
    hidden_dirs = [*HIDDEN_DIRS, *(f"{home.rstrip('/')}/{d}" for home in homes
                                   for d in HIDDEN_HOME_DIRS if home.startswith("/"))]
    # Folders named by the caller's pip settings are the host's wheel stores.
    # What COMMAND needs to start: a cover over any of it hides COMMAND.
    needed = [os.path.realpath(p) for p in (*os.environ.get("PATH", "").split(":"),
                                            os.getcwd(), str(engine.base), command[0])
              if p.startswith("/")]
    for name in ("PIP_FIND_LINKS", "PIP_EXTRA_INDEX_URL", "PIP_INDEX_URL"):
        for item in os.environ.get(name, "").split():
            path = item.removeprefix("file://")
            if path.startswith("/") and os.path.isdir(path):
                real = os.path.realpath(path)
                inside = [n for n in needed if n == real or n.startswith(real.rstrip("/") + "/")]
                if inside:
                    raise SealError(f"${name} names {path}, which holds {inside[0]}: covering "
                                    "it would hide what the command needs; unset "
                                    f"{name} (or point it at the wheel folder itself)")
                hidden_dirs.append(path)
    lines = ["set -e"]
    for path in HIDDEN_FILES:
        lines.append(f"if [ -e {shlex.quote(path)} ] && [ ! -d {shlex.quote(path)} ]; "
                     f"then mount --bind /dev/null {shlex.quote(path)}; fi")
    for path in sorted(set(hidden_dirs)):
        lines.append(f"if [ -d {shlex.quote(path)} ]; then mount -t tmpfs -o "
                     f"size=256m,mode=0755 airlock-sealed {shlex.quote(path)}; fi")
    env = {name: os.environ[name] for name in KEPT_ENV if name in os.environ}
    env.setdefault("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    env.setdefault("LANG", "C.UTF-8")
    env.update({"DOCKER_HOST": engine.host, "DOCKER_CONFIG": str(engine.docker_config)})
    env.update(extra_env or {})
    assigns = " ".join(shlex.quote(f"{k}={v}") for k, v in sorted(env.items()))
    lines.append(f'exec env -i {assigns} "$@"')
    return ["nsenter", f"--net=/run/netns/{netns}", "--",
            "unshare", "--mount", "--propagation", "private", "--",
            "/bin/sh", "-c", "\n".join(lines), "airlock-sealed", *command]
