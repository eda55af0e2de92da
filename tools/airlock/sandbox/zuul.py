"""A real Zuul on 127.0.0.1 that loads this repository as a site would.

Why a real one: the only judge of ``zuul.d/`` is Zuul itself. A site loads
this repository as an *untrusted* project next to its own config project
(pipelines, the base job, nodes); what Zuul refuses there (pipelines in an
untrusted project, a job attribute a child may not set, a playbook that
breaks in the executor's sandbox) shows only when a real scheduler loads the
tenant and a real executor runs a job on a real node.

The sandbox, everything under one folder (``AIRLOCK_ZUUL_DIR``, default
``/var/tmp/airlock-zuul``), every listener on 127.0.0.1:

* ZooKeeper (Debian's package, TLS with a throw-away CA) and PostgreSQL (a
  private cluster run from Debian's binaries, not the machine's own);
* Zuul from PyPI in its own venv made with /usr/bin/python3 (a Python under
  /root is invisible inside the executor's bubblewrap sandbox): scheduler,
  executor (it merges too), web and the launcher;
* two static nodes, so that two jobs of one buildset run side by side
  (the service jobs of a release, each on its own node): each a private
  sshd on its own port for its own unprivileged user whose home is in the
  sandbox, so a job touches neither root's home nor the system sshd, and
  two jobs never share a home (``~/src``, the work folder);
* the git driver over local bare repositories: the site's config project
  (``zuul_site/`` beside this file, plus the pipelines example that this
  repository ships in ``zuul-config/``) and ``airlock``, a bare clone of the
  checkout under test at its HEAD, as an untrusted project;
* a ``gerrit`` connection that points at a closed port on 127.0.0.1: the
  shipped pipelines trigger on and report to Gerrit, and Zuul checks them
  against a connection of that name.

``install`` (venv, Ansible for the executor) downloads and is retried by
``tools/run-tests``; ``start`` is then offline and always begins from an
empty ZooKeeper and database; ``stop`` ends the services in the order that
lets each shut down cleanly (executor and launcher, web, scheduler, then
sshd, ZooKeeper, PostgreSQL). Run as root: ``tools/zuul-sandbox``.
"""

from __future__ import annotations

import argparse
import configparser
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[3]
SITE_TEMPLATE = Path(__file__).resolve().parent / "zuul_site"
PIPELINES_EXAMPLE = "zuul-config/pipelines.yaml"

DEFAULT_DIR = "/var/tmp/airlock-zuul"
ZUUL_VERSION = os.environ.get("AIRLOCK_ZUUL_VERSION", "14.3.0")
ZUUL_CLIENT_VERSION = os.environ.get("AIRLOCK_ZUUL_CLIENT_VERSION", "14.0.0")
# Made with this Python, not the one running the tests: see the docstring.
SYSTEM_PYTHON = "/usr/bin/python3"

TENANT = "airlock-sandbox"
PROJECT = "airlock"
CONFIG_PROJECT = "site-config"
BRANCH = "main"
# Zuul reads a config project's configuration from master only (unless the
# tenant sets load-branch), whatever the other branches hold.
CONFIG_BRANCH = "master"
NODE_USER = "airlock-zuul"
NODE_USER_COMMENT = "airlock zuul-sandbox static node"
HOST = "127.0.0.1"

# Components in start order; stop goes the other way round, in groups.
ZUUL_COMPONENTS = ("scheduler", "web", "executor", "launcher")
STOP_ORDER = (("executor", "launcher"), ("web",), ("scheduler",),
              ("sshd", "sshd-2"), ("zookeeper",))


class SandboxError(Exception):
    """A one-line reason the sandbox cannot start, with where to look."""


def without_timers(text: str) -> str:
    """The site's pipelines with every timer trigger removed, for the sandbox.

    A sandbox has two nodes and tests that wait for both: the example's
    periodic pipeline (03:00 every day) would start airlock-build-local on
    one of them whenever a run spans that minute, and a buildset enqueued
    meanwhile would run its service jobs one after the other. The pipelines
    themselves stay, so the tenant loads what a site loads; only the clock
    never enqueues anything.
    """
    items = yaml.safe_load(text) or []
    for item in items:
        trigger = (item.get("pipeline") or {}).get("trigger") if isinstance(item, dict) else None
        if isinstance(trigger, dict) and "timer" in trigger:
            del trigger["timer"]
    return ("# zuul-config/pipelines.yaml without timer triggers (zuul-sandbox: no job\n"
            "# starts by the clock).\n" + yaml.safe_dump(items, sort_keys=False))


@dataclass(frozen=True)
class Ports:
    """The sandbox's listeners, all on 127.0.0.1 (none of them 5000)."""

    zookeeper: int = 2281
    postgres: int = 5434
    web: int = 9000
    finger: int = 7900
    sshd: int = 2222
    # The second static node's sshd.
    sshd2: int = 2223
    # Nothing listens here: the Gerrit stand-in only has to be configured.
    gerrit: int = 29419


@dataclass(frozen=True)
class Node:
    """One static node: its sshd's process name, port, user and home folder name.

    zuul_site/zuul.d/nodes.yaml names the same (a unit test compares them).
    """

    process: str
    port: int
    user: str
    home: str


@dataclass
class Sandbox:
    """One real Zuul under ``base``; see the module docstring."""

    base: Path = field(default_factory=lambda: Path(
        os.environ.get("AIRLOCK_ZUUL_DIR") or DEFAULT_DIR))
    repo: Path = REPO_ROOT
    ports: Ports = field(default_factory=Ports)
    # What the site's base job sets as ``airlock_site`` (the URLs of its
    # stores, README "Zuul"): the generated release jobs read it. None: the
    # base job sets nothing, as before (the validate job needs no stores).
    airlock_site: dict[str, dict[str, str]] | None = None
    # Build nodes: the node users may use this machine's Docker engine (the
    # docker group: root-equivalent, so only when asked) and the base job
    # sets ensure_build_host_setup false (the machine is a build host
    # already; the node users have no sudo). Off: plain unprivileged nodes.
    build_nodes: bool = False

    # --- paths ---------------------------------------------------------

    @property
    def venv(self) -> Path:
        return self.base / "venv"

    @property
    def conf(self) -> Path:
        return self.base / "etc" / "zuul.conf"

    @property
    def logs(self) -> Path:
        return self.base / "logs"

    @property
    def joblogs(self) -> Path:
        """Where the site's base job copies each build's logs (by build uuid)."""
        return self.base / "joblogs"

    @property
    def web_url(self) -> str:
        return f"http://{HOST}:{self.ports.web}"

    @property
    def marker(self) -> Path:
        """Names the versions the venv was made for; its absence means no venv."""
        return self.venv / ".airlock-sandbox"

    def _pidfile(self, name: str) -> Path:
        return self.base / "run" / f"{name}.pid"

    @property
    def nodes(self) -> tuple[Node, ...]:
        """The static nodes: the first keeps the names it always had."""
        return (Node("sshd", self.ports.sshd, NODE_USER, "node-home"),
                Node("sshd-2", self.ports.sshd2, f"{NODE_USER}-2", "node-home-2"))

    # --- install (network: PyPI; retried by the caller) ----------------

    def install(self) -> None:
        """The Zuul venv and the Ansible versions its executor runs.

        Kept between runs: a marker names the versions it was made for.
        """
        marker = self.marker
        want = f"zuul=={ZUUL_VERSION} zuul-client=={ZUUL_CLIENT_VERSION}\n"
        if marker.is_file() and marker.read_text() == want:
            print(f"zuul-sandbox: ok: {self.venv} ({want.strip()})")
            return
        if not Path(SYSTEM_PYTHON).is_file():
            raise SandboxError(f"{SYSTEM_PYTHON} is missing; run tools/setup-host zuul")
        shutil.rmtree(self.venv, ignore_errors=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        print(f"zuul-sandbox: making {self.venv} with {want.strip()}")
        self._run([SYSTEM_PYTHON, "-m", "venv", str(self.venv)], "venv")
        self._run([str(self.venv / "bin" / "pip"), "install", "-q",
                   f"zuul=={ZUUL_VERSION}", f"zuul-client=={ZUUL_CLIENT_VERSION}"],
                  "pip-install")
        print("zuul-sandbox: zuul-manage-ansible (Ansible for the executor)")
        self._run([str(self.venv / "bin" / "zuul-manage-ansible")], "manage-ansible")
        marker.write_text(want)

    def _run(self, argv: list[str], log: str, **kwargs: object) -> None:
        """Run ARGV with its output in logs/LOG.log; the log's tail on failure."""
        path = self.logs / f"{log}.log"
        with path.open("a") as handle:
            done = subprocess.run(argv, stdout=handle, stderr=subprocess.STDOUT,
                                  check=False, **kwargs)  # type: ignore[call-overload]
        if done.returncode != 0:
            tail = path.read_text(errors="replace").splitlines()[-5:]
            raise SandboxError(f"{argv[0]} failed ({done.returncode}), {path}: "
                               + " | ".join(tail))

    # --- start ---------------------------------------------------------

    def start(self) -> None:
        """Stop what a previous run left, then bring everything up afresh."""
        if os.geteuid() != 0:
            raise SandboxError("run as root (it starts sshd, ZooKeeper, PostgreSQL)")
        self._require_tools()
        marker = self.marker
        if not marker.is_file():
            raise SandboxError(f"no Zuul venv in {self.venv}; run tools/zuul-sandbox install")
        self.stop(quiet=True)
        self._check_ports_free()
        for sub in ("etc", "run", "logs", "certs", "state"):
            (self.base / sub).mkdir(parents=True, exist_ok=True)
        for name in ("state", "joblogs", "git", "work", "zk"):
            shutil.rmtree(self.base / name, ignore_errors=True)
            (self.base / name).mkdir(parents=True)
        for log in self.logs.glob("*.log"):
            if log.name not in ("venv.log", "pip-install.log", "manage-ansible.log"):
                log.unlink()
        self._certificates()
        self._start_zookeeper()
        self._start_postgres()
        self._start_node()
        oldrev, newrev = self._repositories()
        (self.base / "run" / "revisions.json").write_text(
            json.dumps({"oldrev": oldrev, "newrev": newrev}))
        self._write_config()
        for component in ZUUL_COMPONENTS:
            self._start_zuul(component)
        self._wait_for_tenant()

    def _require_tools(self) -> None:
        missing = [tool for tool in ("java", "bwrap", "openssl", "git", "ssh-keygen")
                   if shutil.which(tool) is None]
        if not Path("/usr/sbin/sshd").is_file():
            missing.append("sshd")
        if not Path("/usr/share/java/zookeeper.jar").is_file():
            missing.append("zookeeper")
        if not self._pg_bindir():
            missing.append("postgresql")
        if missing:
            raise SandboxError(f"missing {', '.join(missing)}; run tools/setup-host zuul")

    def _check_ports_free(self) -> None:
        for name, port in vars(self.ports).items():
            with socket.socket() as sock:
                sock.settimeout(1)
                if sock.connect_ex((HOST, port)) == 0:
                    raise SandboxError(f"{HOST}:{port} ({name}) is in use by another program")

    def _certificates(self) -> None:
        """A throw-away CA, ZooKeeper's server certificate and Zuul's client one."""
        certs = self.base / "certs"
        for old in certs.iterdir():
            old.unlink()

        def openssl(*args: str) -> None:
            self._run(["openssl", *args], "certs", cwd=certs)

        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key",
                "-out", "ca.pem", "-days", "7", "-subj", "/CN=airlock-zuul-sandbox-ca")
        (certs / "san.ext").write_text(f"subjectAltName=DNS:localhost,IP:{HOST}\n")
        for name, cn, ext in (("zk", "localhost", True), ("client", "zuul", False)):
            openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
                    "-out", f"{name}.csr", "-subj", f"/CN={cn}")
            openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                    "-CAcreateserial", "-out", f"{name}.pem", "-days", "7",
                    *(["-extfile", "san.ext"] if ext else []))
        (certs / "zk-keystore.pem").write_text(
            (certs / "zk.pem").read_text() + (certs / "zk.key").read_text())

    def _spawn(self, name: str, argv: list[str], **kwargs: object) -> None:
        """Start ARGV in its own session (it outlives the CLI), output to logs/NAME.log."""
        with (self.logs / f"{name}.log").open("a") as log:
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True,
                                    **kwargs)  # type: ignore[call-overload]
        self._pidfile(name).write_text(f"{proc.pid}\n")

    def _wait_port(self, name: str, port: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                sock.settimeout(1)
                if sock.connect_ex((HOST, port)) == 0:
                    return
            if not self._alive(name):
                break
            time.sleep(0.5)
        raise SandboxError(f"{name} did not listen on {HOST}:{port}; see {self.logs}/{name}.log")

    def _start_zookeeper(self) -> None:
        """Debian's ZooKeeper with TLS only, started directly (no init script).

        Debian's zookeeper.jar names its class path in its manifest but
        leaves out netty-codec and netty-resolver, which TLS needs.
        """
        zk = self.base / "zk"
        (zk / "data").mkdir()
        certs = self.base / "certs"
        (zk / "zoo.cfg").write_text(
            f"tickTime=2000\ndataDir={zk / 'data'}\nadmin.enableServer=false\n"
            f"secureClientPort={self.ports.zookeeper}\nsecureClientPortAddress={HOST}\n"
            "serverCnxnFactory=org.apache.zookeeper.server.NettyServerCnxnFactory\n"
            f"ssl.keyStore.location={certs / 'zk-keystore.pem'}\nssl.keyStore.type=PEM\n"
            f"ssl.trustStore.location={certs / 'ca.pem'}\nssl.trustStore.type=PEM\n"
            "ssl.clientAuth=need\n"
            # Only the TLS port: no plain client port, no admin server.
            "4lw.commands.whitelist=\n")
        jars = [f"/usr/share/java/{jar}.jar" for jar in
                ("zookeeper", "netty-codec", "netty-resolver", "slf4j-simple")]
        self._spawn("zookeeper", [
            "java", "-Xmx256m", "-cp", ":".join(j for j in jars if Path(j).is_file()),
            "org.apache.zookeeper.server.quorum.QuorumPeerMain", str(zk / "zoo.cfg")])
        self._wait_port("zookeeper", self.ports.zookeeper)

    @staticmethod
    def _pg_bindir() -> Path | None:
        """The newest PostgreSQL server of Debian's packages."""
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"),
                       key=lambda p: int(p.parent.parent.name) if
                       p.parent.parent.name.isdigit() else 0)
        return found[-1].parent if found else None

    def _start_postgres(self) -> None:
        """A private cluster as user postgres; Zuul's database made anew each start."""
        bindir = self._pg_bindir()
        assert bindir is not None
        pg = self.base / "postgres"
        data, sockets = pg / "data", pg / "run"
        postgres = pwd.getpwnam("postgres")
        for path in (pg, sockets):
            path.mkdir(parents=True, exist_ok=True)
            os.chown(path, postgres.pw_uid, postgres.pw_gid)
            path.chmod(0o700)
        as_postgres = ["runuser", "-u", "postgres", "--"]
        if not (data / "PG_VERSION").is_file():
            shutil.rmtree(data, ignore_errors=True)
            self._run([*as_postgres, str(bindir / "initdb"), "-D", str(data),
                       "--auth-local=peer", "--auth-host=scram-sha-256", "-U", "postgres"],
                      "postgres-initdb")
        self._run([*as_postgres, str(bindir / "pg_ctl"), "-D", str(data), "-w",
                   "-l", str(pg / "postgres.log"), "-o",
                   f"-c listen_addresses={HOST} -p {self.ports.postgres} "
                   f"-c unix_socket_directories={sockets}", "start"], "postgres")
        password = secrets.token_hex(16)
        (self.base / "run" / "db-password").write_text(password)
        # One -c each: psql runs a multi-statement -c as one transaction,
        # and DROP DATABASE refuses to run inside one.
        statements = ("DROP DATABASE IF EXISTS zuul", "DROP ROLE IF EXISTS zuul",
                      f"CREATE ROLE zuul LOGIN PASSWORD '{password}'",
                      "CREATE DATABASE zuul OWNER zuul")
        self._run([*as_postgres, str(bindir / "psql"), "-q", "-v", "ON_ERROR_STOP=1",
                   "-h", str(sockets), "-p", str(self.ports.postgres), "-d", "postgres",
                   *(arg for sql in statements for arg in ("-c", sql))], "postgres")

    def _stop_postgres(self) -> None:
        bindir = self._pg_bindir()
        data = self.base / "postgres" / "data"
        if bindir and (data / "postmaster.pid").is_file():
            subprocess.run(["runuser", "-u", "postgres", "--", str(bindir / "pg_ctl"),
                            "-D", str(data), "-m", "fast", "-w", "stop"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)

    def _start_node(self) -> None:
        """The static nodes: each its user (home in the sandbox) behind its own sshd."""
        etc = self.base / "etc"
        for key in ("id_ed25519", "ssh_host_ed25519_key"):
            if not (etc / key).is_file():
                self._run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", key,
                           "-f", str(etc / key)], "ssh-keygen")
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        for node in self.nodes:
            self._start_one_node(node)

    def _start_one_node(self, node: Node) -> None:
        etc = self.base / "etc"
        home = self.base / node.home
        try:
            user = pwd.getpwnam(node.user)
        except KeyError:
            self._run(["useradd", "--system", "--shell", "/bin/bash", "--home-dir", str(home),
                       "--comment", NODE_USER_COMMENT, node.user], "node-user")
            user = pwd.getpwnam(node.user)
        if user.pw_dir != str(home):
            self._run(["usermod", "--home", str(home), node.user], "node-user")
        # sshd without PAM refuses a locked account ("!"): no password, not locked.
        self._run(["usermod", "-p", "*", node.user], "node-user")
        if self.build_nodes:
            self._run(["usermod", "-aG", "docker", node.user], "node-user")
        else:
            subprocess.run(["gpasswd", "-d", node.user, "docker"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, check=False)
        shutil.rmtree(home, ignore_errors=True)
        (home / ".ssh").mkdir(parents=True)
        (home / ".ssh" / "authorized_keys").write_text((etc / "id_ed25519.pub").read_text())
        for path in (home, home / ".ssh", home / ".ssh" / "authorized_keys"):
            os.chown(path, user.pw_uid, user.pw_gid)
        (home / ".ssh").chmod(0o700)
        config = etc / f"{node.process}_config"
        config.write_text(
            f"Port {node.port}\nListenAddress {HOST}\n"
            f"HostKey {etc / 'ssh_host_ed25519_key'}\n"
            f"PidFile {self.base / 'run' / f'{node.process}-daemon.pid'}\n"
            f"AllowUsers {node.user}\nPermitRootLogin no\nPubkeyAuthentication yes\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
            "AuthorizedKeysFile .ssh/authorized_keys\n"
            # The home is under /var/tmp (world-writable): StrictModes would refuse it.
            "StrictModes no\nX11Forwarding no\nPrintMotd no\n"
            "Subsystem sftp internal-sftp\n")
        self._spawn(node.process, ["/usr/sbin/sshd", "-D", "-e", "-f", str(config)])
        self._wait_port(node.process, node.port)

    def _git(self, *args: str, cwd: Path | None = None) -> str:
        done = subprocess.run(
            ["git", "-c", "user.name=zuul-sandbox", "-c", "user.email=zuul-sandbox@localhost",
             *args],
            cwd=cwd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SandboxError(f"git {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout.strip()

    def _repositories(self) -> tuple[str, str]:
        """The site's config project and airlock's bare clone; the revisions to enqueue.

        airlock gets one empty commit on top of the checkout's HEAD: an
        enqueued ref needs a real old and new revision (an all-zero old one
        enqueues nothing), and a shallow checkout may have no parent.
        """
        git, work = self.base / "git", self.base / "work"
        site = work / CONFIG_PROJECT
        shutil.copytree(SITE_TEMPLATE, site)
        if self.base_vars():
            self._set_base_vars(site / "zuul.d" / "jobs.yaml")
        example = self.repo / PIPELINES_EXAMPLE
        if not example.is_file():
            raise SandboxError(f"{example} is missing: the site's pipelines come from it")
        (site / "zuul.d" / "pipelines.yaml").write_text(without_timers(example.read_text()))
        self._git("init", "-q", "--initial-branch", CONFIG_BRANCH, str(site))
        self._git("add", "-A", cwd=site)
        self._git("commit", "-q", "-m", "The sandbox site's configuration", cwd=site)
        self._git("clone", "-q", "--bare", str(site), str(git / CONFIG_PROJECT))

        head = self._git("rev-parse", "HEAD", cwd=self.repo)
        self._git("init", "-q", "--bare", "--initial-branch", BRANCH, str(git / PROJECT))
        self._git("push", "-q", str(git / PROJECT), f"{head}:refs/heads/{BRANCH}",
                  cwd=self.repo)
        clone = work / PROJECT
        self._git("clone", "-q", "--branch", BRANCH, str(git / PROJECT), str(clone))
        self._git("commit", "-q", "--allow-empty", "-m", "zuul-sandbox: the ref to enqueue",
                  cwd=clone)
        self._git("push", "-q", "origin", BRANCH, cwd=clone)
        return head, self._git("rev-parse", "HEAD", cwd=clone)

    def base_vars(self) -> dict[str, object]:
        """What the site's base job sets for every job (see the fields)."""
        found: dict[str, object] = {}
        if self.airlock_site is not None:
            found["airlock_site"] = self.airlock_site
        if self.build_nodes:
            found["ensure_build_host_setup"] = False
        return found

    def _set_base_vars(self, jobs: Path) -> None:
        """The base job's ``vars:`` (:meth:`base_vars`), set once as a site sets them.

        Appended as the last key of the base job (the last item of the
        file), in JSON (YAML flow values): the template keeps its comments.
        """
        text = jobs.read_text()
        if "\n    vars:" in text or not text.rstrip().endswith("playbooks/base/post.yaml"):
            raise SandboxError(f"{jobs}: the base job must be last and set no vars "
                               "(the sandbox appends airlock_site to it)")
        lines = [f"      {key}: {json.dumps(value, sort_keys=True)}"
                 for key, value in self.base_vars().items()]
        jobs.write_text(text.rstrip("\n") + "\n    vars:\n" + "\n".join(lines) + "\n")

    def _write_config(self) -> None:
        etc, run, certs, state = (self.base / n for n in ("etc", "run", "certs", "state"))
        (etc / "main.yaml").write_text(
            "- tenant:\n"
            f"    name: {TENANT}\n"
            "    source:\n"
            "      git:\n"
            f"        config-projects:\n          - {CONFIG_PROJECT}\n"
            f"        untrusted-projects:\n          - {PROJECT}\n")
        # Site variables are the operator's (trusted): where the base job's
        # post-run may write the build's logs.
        (etc / "site-variables.yaml").write_text(
            f"zuul_sandbox_joblogs_dir: {self.joblogs}\n")
        password = (run / "db-password").read_text()
        config = configparser.ConfigParser(interpolation=None)
        config.read_dict({
            "zookeeper": {"hosts": f"{HOST}:{self.ports.zookeeper}",
                          "tls_cert": str(certs / "client.pem"),
                          "tls_key": str(certs / "client.key"),
                          "tls_ca": str(certs / "ca.pem")},
            "keystore": {"password": secrets.token_hex(16)},
            "database": {"dburi": f"postgresql://zuul:{password}@{HOST}:"
                                  f"{self.ports.postgres}/zuul"},
            "scheduler": {"tenant_config": str(etc / "main.yaml"),
                          "command_socket": str(run / "scheduler.socket"),
                          "state_dir": str(state / "scheduler")},
            "merger": {"git_dir": str(state / "merger-git"),
                       "git_user_email": "zuul@localhost", "git_user_name": "zuul"},
            "executor": {"state_dir": str(state / "executor"),
                         "git_dir": str(state / "executor-git"),
                         "job_dir": str(state / "builds"),
                         "command_socket": str(run / "executor.socket"),
                         "private_key_file": str(etc / "id_ed25519"),
                         "variables": str(etc / "site-variables.yaml"),
                         "trusted_rw_paths": str(self.joblogs),
                         "finger_port": str(self.ports.finger),
                         # Two small cores: never refuse a job for load.
                         "load_multiplier": "100", "min_avail_mem": "1",
                         "min_avail_hdd": "1"},
            "web": {"listen_address": HOST, "port": str(self.ports.web),
                    "root": self.web_url, "command_socket": str(run / "web.socket")},
            "launcher": {"temp_dir": str(state / "launcher"),
                         "command_socket": str(run / "launcher.socket")},
            "auth zuul_operator": {"driver": "HS256", "allow_authz_override": "true",
                                   "realm": "zuul-sandbox", "client_id": "zuul-sandbox",
                                   "issuer_id": "zuul_operator",
                                   "secret": secrets.token_hex(32)},
            "connection git": {"driver": "git", "baseurl": str(self.base / "git"),
                               "poll_delay": "5"},
            "connection gerrit": {"driver": "gerrit", "server": HOST,
                                  "port": str(self.ports.gerrit), "user": "zuul",
                                  "sshkey": str(etc / "id_ed25519")},
            "connection static": {"driver": "static"},
        })
        for sub in ("scheduler", "executor", "executor-git", "merger-git", "builds",
                    "launcher"):
            (state / sub).mkdir(parents=True, exist_ok=True)
        with self.conf.open("w") as handle:
            config.write(handle)
        self.conf.chmod(0o600)
        (etc / "main.yaml").chmod(0o644)

    def _start_zuul(self, component: str) -> None:
        python = str(self.venv / "bin" / "python")
        args = ["-c", str(self.conf), "-f", "-d"]
        if component == "executor":
            # Zuul's executor binds its finger log streamer to every address
            # ("::"), with no setting to change it: keep it on 127.0.0.1.
            argv = [python, "-c",
                    "import sys, zuul.lib.log_streamer as s\n"
                    "init = s.LogStreamer.__init__\n"
                    f"s.LogStreamer.__init__ = lambda self, host, port, root: "
                    f"init(self, {HOST!r}, port, root)\n"
                    "import zuul.cmd.executor\n"
                    "zuul.cmd.executor.main()\n", *args]
        else:
            argv = [str(self.venv / "bin" / f"zuul-{component}"), *args]
        self._spawn(component, argv, cwd=self.base)

    def _wait_for_tenant(self, timeout: float = 180) -> None:
        """Until the scheduler has loaded the tenant and the web serves it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for component in ZUUL_COMPONENTS:
                if not self._alive(component):
                    raise SandboxError(f"zuul-{component} exited; see "
                                       f"{self.logs}/{component}.log")
            try:
                tenants = self.api("/api/tenants")
                if any(t.get("name") == TENANT for t in tenants):
                    self.api(f"/api/tenant/{TENANT}/jobs")
                    return
            except (OSError, ValueError):
                pass
            time.sleep(1)
        raise SandboxError(f"tenant {TENANT} did not load within {timeout:.0f} s; "
                           f"see {self.logs}/scheduler.log")

    # --- use -----------------------------------------------------------

    def api(self, path: str) -> object:
        """GET a zuul-web API path; the decoded JSON."""
        with urllib.request.urlopen(self.web_url + path, timeout=10) as response:
            return json.load(response)

    def public_key(self) -> Path:
        """The project's secrets key, as zuul-web serves it to a site's operator."""
        url = f"{self.web_url}/api/tenant/{TENANT}/key/{PROJECT}.pub"
        with urllib.request.urlopen(url, timeout=10) as response:
            key = response.read()
        if b"PUBLIC KEY" not in key:
            raise SandboxError(f"{url}: not a public key")
        path = self.base / "run" / f"{PROJECT}.pub"
        path.write_bytes(key)
        return path

    def encrypt_secret(self, name: str, fields: dict[str, str]) -> str:
        """A ``- secret:`` stanza, every field encrypted by ``zuul-client encrypt``.

        What README tells a site to run, one field at a time; each value
        goes in on stdin (never a command line or a file) and comes out as
        ciphertext only the scheduler can read.
        """
        key = self.public_key()
        lines = ["- secret:", f"    name: {name}", "    data:"]
        for field_name, value in fields.items():
            done = subprocess.run(
                [str(self.venv / "bin" / "zuul-client"), "--zuul-url", self.web_url,
                 "encrypt", "--public-key", str(key), "--tenant", TENANT,
                 "--project", PROJECT, "--secret-name", name, "--field-name", field_name,
                 "--no-strip"],
                input=value, capture_output=True, text=True, check=False, timeout=60)
            out = done.stdout.splitlines()
            if done.returncode != 0 or "    data:" not in out:
                raise SandboxError(f"zuul-client encrypt ({field_name}) failed "
                                   f"({done.returncode}): {done.stderr.strip()[-300:]}")
            # Its own stanza for one field: keep what follows "data:".
            lines += [line for line in out[out.index("    data:") + 1:] if line.strip()]
        return "\n".join(lines) + "\n"

    def commit(self, files: dict[str, str | None], message: str) -> str:
        """Commit FILES (path: text, None deletes) on airlock's branch, push it; the sha.

        The sandbox's own clone of the bare repository, never this checkout:
        what a site's operator does with its copy of the repository. Zuul's
        git driver sees the new head within its poll delay and reloads the
        project's configuration (:meth:`wait_for_reconfiguration`).
        """
        clone = self.base / "work" / PROJECT
        self._wait_watched(PROJECT)
        for name, text in files.items():
            path = clone / name
            if text is None:
                path.unlink(missing_ok=True)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
        self._git("add", "-A", cwd=clone)
        self._git("commit", "-q", "-m", message, cwd=clone)
        self._git("push", "-q", "origin", BRANCH, cwd=clone)
        return self._git("rev-parse", "HEAD", cwd=clone)

    def _wait_watched(self, project: str, timeout: float = 60) -> None:
        """Until the git driver's watcher has read PROJECT's refs once.

        Its first reading is its baseline, compared with no earlier one:
        a push made before it is never an event, and the tenant would keep
        the old configuration (seen: a commit right after start).
        """
        line = f"refs for project {project}"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            log = self.logs / "scheduler.log"
            if log.is_file() and line in log.read_text(errors="replace"):
                return
            time.sleep(1)
        raise SandboxError(f"the git watcher did not read {project} within {timeout:.0f} s; "
                           f"see {self.logs}/scheduler.log")

    def write_secret(self, name: str, fields: dict[str, str], header: str = "") -> str:
        """zuul.d/secrets.yaml replaced by the encrypted secret, committed; the sha."""
        text = header + self.encrypt_secret(name, fields)
        return self.commit({"zuul.d/secrets.yaml": text},
                           f"zuul-sandbox: the site's {name} secret, encrypted")

    def last_reconfigured(self) -> int:
        """When the scheduler last loaded the tenant (zuul-web's status, ms)."""
        status = self.api(f"/api/tenant/{TENANT}/status")
        assert isinstance(status, dict)
        return int(status.get("last_reconfigured") or 0)

    def wait_for_reconfiguration(self, after: int, timeout: float = 180) -> None:
        """Until the tenant was loaded again after AFTER (:meth:`last_reconfigured`)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.last_reconfigured() > after:
                return
            time.sleep(1)
        raise SandboxError(f"tenant {TENANT} was not reloaded within {timeout:.0f} s; "
                           f"see {self.logs}/scheduler.log")

    def revisions(self) -> tuple[str, str]:
        """The old and new revision of the airlock branch that start pushed."""
        data = json.loads((self.base / "run" / "revisions.json").read_text())
        return data["oldrev"], data["newrev"]

    def enqueue_ref(self, pipeline: str, oldrev: str | None, newrev: str) -> None:
        """What an operator types: zuul-client enqueue-ref, with an admin token.

        ``oldrev`` None: left out; Zuul then matches the jobs' ``files:``
        against the files the head commit itself changed.
        """
        token = subprocess.run(
            [str(self.venv / "bin" / "zuul-admin"), "-c", str(self.conf),
             "create-auth-token", "--auth-config", "zuul_operator", "--user", "sandbox",
             "--tenant", TENANT, "--expires-in", "600"],
            capture_output=True, text=True, check=True).stdout.strip()
        token = token.removeprefix("Bearer ")
        subprocess.run(
            [str(self.venv / "bin" / "zuul-client"), "--zuul-url", self.web_url,
             "--auth-token", token, "enqueue-ref", "--tenant", TENANT,
             "--pipeline", pipeline, "--project", PROJECT, "--ref", f"refs/heads/{BRANCH}",
             *(["--oldrev", oldrev] if oldrev else []), "--newrev", newrev],
            capture_output=True, text=True, check=True)

    def wait_for_build(self, pipeline: str, job: str, timeout: float = 300) -> dict:
        """The finished build of JOB in PIPELINE (zuul-client exits 0 even when
        nothing was enqueued, so the builds API is the only proof)."""
        query = urllib.parse.urlencode({"pipeline": pipeline, "job_name": job,
                                        "project": PROJECT, "limit": 1})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            builds = self.api(f"/api/tenant/{TENANT}/builds?{query}")
            if isinstance(builds, list) and builds and builds[0].get("result"):
                return builds[0]
            time.sleep(2)
        raise SandboxError(f"no result for {job} in {pipeline} within {timeout:.0f} s; "
                           f"see {self.logs}/executor.log")

    # --- stop ----------------------------------------------------------

    def _pid(self, name: str) -> int | None:
        try:
            return int(self._pidfile(name).read_text())
        except (OSError, ValueError):
            return None

    def _alive(self, name: str) -> bool:
        pid = self._pid(name)
        if pid is None:
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        if self._zombie(pid):
            return False
        # A pid file that outlived its process may name someone else's now.
        cmdline = Path(f"/proc/{pid}/cmdline")
        try:
            text = cmdline.read_bytes().decode(errors="replace")
        except OSError:
            return False
        # Empty while the process execs (java's launcher re-execs itself).
        return not text or str(self.base) in text

    def _stop_group(self, names: tuple[str, ...], timeout: float = 60) -> None:
        running = [n for n in names if self._alive(n)]
        for name in running:
            pid = self._pid(name)
            assert pid is not None
            try:
                os.killpg(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + timeout
        while running and time.monotonic() < deadline:
            running = [n for n in running if self._alive(n)]
            time.sleep(0.5)
        for name in running:
            pid = self._pid(name)
            assert pid is not None
            print(f"zuul-sandbox: {name} ignored SIGTERM for {timeout:.0f} s; killing it",
                  file=sys.stderr)
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for name in names:
            self._pidfile(name).unlink(missing_ok=True)

    @staticmethod
    def _zombie(pid: int) -> bool:
        """PID has exited (reaped here when this process started it)."""
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return True
        if stat.rsplit(")", 1)[1].split()[0] != "Z":
            return False
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        return True

    def stop(self, quiet: bool = False) -> None:
        """Zuul first (executor and launcher, web, scheduler), then what it uses."""
        for group in STOP_ORDER:
            self._stop_group(group)
        self._stop_postgres()
        if not quiet:
            print(f"zuul-sandbox: stopped (logs in {self.logs})")

    def remove_node_user(self) -> None:
        """Delete the static nodes' users, those this sandbox made."""
        for node in self.nodes:
            try:
                user = pwd.getpwnam(node.user)
            except KeyError:
                continue
            if user.pw_gecos == NODE_USER_COMMENT:
                subprocess.run(["userdel", node.user], check=False)


def site_template_files() -> list[Path]:
    """The config project's files (for a test that lists what the site ships)."""
    return sorted(p for p in SITE_TEMPLATE.rglob("*") if p.is_file())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="zuul-sandbox", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("install", "start", "stop", "status", "purge"),
                        help="install: the Zuul venv (downloads); start: (re)start it all; "
                             "stop: ordered stop; status: what runs; purge: stop, remove "
                             "the node user and the sandbox folder")
    args = parser.parse_args(argv)
    sandbox = Sandbox()
    try:
        if args.command == "install":
            sandbox.install()
        elif args.command == "start":
            sandbox.start()
            print(f"zuul-sandbox: tenant {TENANT} loaded: {sandbox.web_url}/t/{TENANT}/status")
        elif args.command == "stop":
            sandbox.stop()
        elif args.command == "status":
            for group in STOP_ORDER:
                for name in group:
                    state = "running" if sandbox._alive(name) else "stopped"
                    print(f"{name}: {state}")
        elif args.command == "purge":
            sandbox.stop()
            sandbox.remove_node_user()
            shutil.rmtree(sandbox.base, ignore_errors=True)
    except SandboxError as error:
        print(f"zuul-sandbox: ERROR: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
