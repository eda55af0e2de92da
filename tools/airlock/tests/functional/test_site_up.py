"""tools/site-up: the four stand-ins of a site's stores, proven with real clients.

Started into a temporary folder on free ports (never the defaults, so a
developer's running site is left alone), each store is used the way
``bundle import`` and ``build --site`` will use it: twine uploads a real
wheel and pip downloads it with the password (401 without); an HTTP PUT
then GET gives the same bytes (401 for PUT without the password); skopeo
copies a tiny image into the registry with credentials (refused without);
``git ls-remote`` reads a bare repository put in DIR/git. Then stop: nothing
listens any more. With ``--netns``, the stores listen on the namespace's
loopback only. Only 127.0.0.1 is used; the passwords appear in no output
or log. Needs root and ``tools/setup-host site`` (and build-host for
skopeo); start makes the pypiserver venv from PyPI (retried by site-up).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import unittest
import urllib.error
import urllib.request
import uuid
import zipfile
from pathlib import Path

import yaml

from airlock.ext import registry
from airlock.tests.functional import tinyimage
from airlock.tests.functional.registries import free_port

REPO_ROOT = Path(__file__).resolve().parents[4]
SITE_UP = REPO_ROOT / "tools" / "site-up"
STORES = ("pypi", "raw", "registry", "git")
PROBE = "site-probe"


def make_wheel(folder: Path) -> Path:
    """A small, real, pure-Python wheel (what pip installs), built by hand."""
    files = {
        "site_probe/__init__.py": b"VALUE = 42\n",
        "site_probe-1.0.dist-info/METADATA":
            b"Metadata-Version: 2.1\nName: site-probe\nVersion: 1.0\n"
            b"Summary: a probe of tools/site-up\n",
        "site_probe-1.0.dist-info/WHEEL":
            b"Wheel-Version: 1.0\nGenerator: airlock-test\nRoot-Is-Purelib: true\n"
            b"Tag: py3-none-any\n",
    }
    record = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
        record.append(f"{name},sha256={digest.decode()},{len(data)}")
    record.append("site_probe-1.0.dist-info/RECORD,,")
    files["site_probe-1.0.dist-info/RECORD"] = ("\n".join(record) + "\n").encode()
    path = folder / "site_probe-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(zipfile.ZipInfo(name, (2020, 1, 1, 0, 0, 0)), data)
    return path


def free_ports() -> dict[str, int]:
    """A free port of 127.0.0.1 for each store, all different."""
    ports: dict[str, int] = {}
    while len(set(ports.values())) < len(STORES):
        ports = {store: free_port() for store in STORES}
    return ports


def port_args(ports: dict[str, int]) -> list[str]:
    """site-up's options for PORTS: --pypi-port N ..."""
    return [arg for store, port in ports.items() for arg in (f"--{store}-port", str(port))]


def reachable_by_nginx(folder: Path) -> None:
    """nginx's workers (www-data) must reach DIR/raw: FOLDER and every folder above searchable."""
    folder.chmod(folder.stat().st_mode | 0o755)
    for parent in folder.parents:
        if parent.stat().st_mode & 0o001 == 0:
            parent.chmod(parent.stat().st_mode | 0o001)


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without the machine's pip/uv/twine settings (PIP_FIND_LINKS...)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PIP_", "UV_", "TWINE_"))}
    env.update(PIP_CONFIG_FILE="/dev/null", PIP_NO_INPUT="1",
               PIP_DISABLE_PIP_VERSION_CHECK="1", **extra)
    return env


def status_of(url: str, method: str = "GET", data: bytes | None = None,
              auth: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=data, method=method)
    if auth:
        request.add_header("Authorization",
                           "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


class SiteUpTest(unittest.TestCase):
    tmp: Path
    dir: Path
    ports: dict[str, int]
    outputs: list[str]

    @classmethod
    def site_up(cls, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run([str(SITE_UP), *args, "--dir", str(cls.dir)],
                              capture_output=True, text=True, timeout=600, check=False,
                              env=clean_env())
        cls.outputs.append(done.stdout + done.stderr)
        if check and done.returncode != 0:
            raise AssertionError(f"site-up {' '.join(args)}: {done.returncode}: "
                                 f"{done.stdout}{done.stderr}")
        return done

    @classmethod
    def setUpClass(cls) -> None:
        cls.tmp = Path(tempfile.mkdtemp(prefix="airlock-site-up-"))
        reachable_by_nginx(cls.tmp)
        cls.dir = cls.tmp / "site"
        cls.outputs = []
        cls.ports = free_ports()
        try:
            cls.site_up("start", *port_args(cls.ports))
        except BaseException:
            cls.site_up("stop", check=False)
            raise
        cls.site = yaml.safe_load((cls.dir / "site.yaml").read_text())
        cls.creds = {store: (cls.dir / "credentials" / store).read_text().strip()
                     for store in ("pypi", "raw", "registry")}

    @classmethod
    def tearDownClass(cls) -> None:
        cls.site_up("stop", check=False)
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_1_site_yaml_and_credentials(self) -> None:
        p = self.ports
        self.assertEqual(self.site["pypi"]["upload"], f"http://127.0.0.1:{p['pypi']}/")
        self.assertEqual(self.site["pypi"]["simple"], f"http://127.0.0.1:{p['pypi']}/simple/")
        self.assertEqual(self.site["raw"]["url"], f"http://127.0.0.1:{p['raw']}/airlock/")
        self.assertEqual(self.site["registry"]["prefix"], f"127.0.0.1:{p['registry']}/airlock")
        self.assertEqual(self.site["git"]["base"], f"git://127.0.0.1:{p['git']}")
        self.assertEqual(self.site["git"]["push"], str(self.dir / "git"))
        for store in ("pypi", "raw", "registry"):
            path = Path(self.site[store]["credentials_file"])
            self.assertEqual(path, self.dir / "credentials" / store)
            self.assertEqual(path.stat().st_mode & 0o777, 0o600)
            user, _, password = self.creds[store].partition(":")
            self.assertEqual(user, "airlock")
            self.assertGreaterEqual(len(password), 24)
            self.assertNotIn(password, (self.dir / "site.yaml").read_text())
        self.assertEqual(len(set(self.creds.values())), 3, "one password per store")

    def test_2_start_again_and_status(self) -> None:
        again = self.site_up("start")
        self.assertIn("already running", again.stdout)
        status = self.site_up("status")
        for store in STORES:
            self.assertIn(f"{store}: running", status.stdout)

    def test_3_pypi_upload_and_download(self) -> None:
        work = Path(tempfile.mkdtemp(dir=self.tmp))
        wheel = make_wheel(work)
        user, _, password = self.creds["pypi"].partition(":")
        upload = self.site["pypi"]["upload"]
        twine = [str(Path(sys.executable).parent / "twine"), "upload", "--non-interactive",
                 "--disable-progress-bar", "--repository-url", upload, str(wheel)]
        wrong = subprocess.run(twine, capture_output=True, text=True, timeout=120,
                               env=clean_env(TWINE_USERNAME=user, TWINE_PASSWORD="wrong"))
        self.outputs.append(wrong.stdout + wrong.stderr)
        self.assertNotEqual(wrong.returncode, 0, wrong.stdout + wrong.stderr)
        self.assertEqual(list((self.dir / "pypi").iterdir()), [])
        done = subprocess.run(twine, capture_output=True, text=True, timeout=120,
                              env=clean_env(TWINE_USERNAME=user, TWINE_PASSWORD=password))
        self.outputs.append(done.stdout + done.stderr)
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)

        simple = self.site["pypi"]["simple"]
        self.assertEqual(status_of(simple + f"{PROBE}/")[0], 401)
        pip = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-cache-dir",
               "-d", str(work / "got"), f"{PROBE}==1.0"]
        anonymous = subprocess.run(pip, capture_output=True, text=True, timeout=120,
                                   env=clean_env(PIP_INDEX_URL=simple))
        self.assertNotEqual(anonymous.returncode, 0)
        authed = simple.replace("http://", f"http://{user}:{password}@")
        got = subprocess.run(pip, capture_output=True, text=True, timeout=120,
                             env=clean_env(PIP_INDEX_URL=authed))
        self.outputs.append(got.stdout + got.stderr)
        self.assertEqual(got.returncode, 0, got.stdout + got.stderr)
        self.assertEqual((work / "got" / wheel.name).read_bytes(), wheel.read_bytes())

    def test_4_raw_put_and_get(self) -> None:
        url = self.site["raw"]["url"] + "debs/debian-bookworm/amd64/probe.deb"
        data = os.urandom(70000)
        self.assertEqual(status_of(url, "PUT", data)[0], 401)
        self.assertEqual(status_of(url, "PUT", data, auth="airlock:wrong")[0], 401)
        self.assertEqual(status_of(url)[0], 404)
        self.assertEqual(status_of(url, "PUT", data, auth=self.creds["raw"])[0], 201)
        code, body = status_of(url)
        self.assertEqual(code, 200)
        self.assertEqual(body, data)
        self.assertEqual(status_of(url, "DELETE")[0], 401)
        self.assertEqual(status_of(url)[0], 200)

    def test_5_registry_copy(self) -> None:
        work = Path(tempfile.mkdtemp(dir=self.tmp))
        archive = work / "probe.oci.tar"
        digest = tinyimage.make(archive, ["linux/amd64", "linux/arm64"], "site-up")
        host = self.site["registry"]["prefix"].split("/", 1)[0]
        target = f"docker://{self.site['registry']['prefix']}/probe:1"
        self.assertEqual(status_of(f"http://{host}/v2/")[0], 401)
        auth = work / "auth.json"
        auth.write_text(json.dumps({"auths": {host: {
            "auth": base64.b64encode(self.creds["registry"].encode()).decode()}}}))
        auth.chmod(0o600)
        none = work / "none.json"
        none.write_text('{"auths": {}}')
        copy = ["skopeo", "copy", "--all", "--preserve-digests", "--dest-tls-verify=false",
                f"oci-archive:{archive}", target]
        refused = subprocess.run([*copy, "--dest-authfile", str(none)], capture_output=True,
                                 text=True, timeout=120)
        self.assertNotEqual(refused.returncode, 0, refused.stdout)
        done = subprocess.run([*copy, "--dest-authfile", str(auth)], capture_output=True,
                              text=True, timeout=120)
        self.outputs.append(done.stdout + done.stderr)
        self.assertEqual(done.returncode, 0, done.stderr)
        raw = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false",
                              "--authfile", str(auth), target], capture_output=True,
                             timeout=60, check=True).stdout
        self.assertEqual("sha256:" + hashlib.sha256(raw).hexdigest(), digest)

    def test_6_git_ls_remote(self) -> None:
        bare = self.dir / "git" / "openstack" / "probe"
        work = Path(tempfile.mkdtemp(dir=self.tmp))
        git = ["git", "-c", "user.name=airlock-test", "-c", "user.email=test@localhost"]
        subprocess.run([*git, "init", "-q", "--bare", str(bare)], check=True, timeout=30)
        subprocess.run([*git, "init", "-q", str(work)], check=True, timeout=30)
        subprocess.run([*git, "-C", str(work), "commit", "-q", "--allow-empty", "-m", "probe"],
                       check=True, timeout=30)
        subprocess.run([*git, "-C", str(work), "push", "-q", str(bare), "HEAD:refs/heads/main"],
                       check=True, timeout=30)
        head = subprocess.run([*git, "-C", str(work), "rev-parse", "HEAD"], check=True,
                              capture_output=True, text=True, timeout=30).stdout.strip()
        listed = subprocess.run(["git", "ls-remote", f"{self.site['git']['base']}/openstack/probe"],
                                capture_output=True, text=True, timeout=30)
        self.assertEqual(listed.returncode, 0, listed.stderr)
        self.assertIn(f"{head}\trefs/heads/main", listed.stdout)
        # Read-only: a push over git:// is refused.
        pushed = subprocess.run([*git, "-C", str(work), "push", "-q",
                                 f"{self.site['git']['base']}/openstack/probe",
                                 "HEAD:refs/heads/other"], capture_output=True, text=True,
                                timeout=30)
        self.assertNotEqual(pushed.returncode, 0)

    def test_9_stop_leaves_nothing_listening(self) -> None:
        self.site_up("stop")
        self.site_up("stop")
        for store, port in self.ports.items():
            with socket.socket() as sock:
                sock.settimeout(2)
                self.assertNotEqual(sock.connect_ex(("127.0.0.1", port)), 0, store)
        self.assertEqual(self.site_up("status", check=False).returncode, 3)
        # No password in any output of site-up or the clients, nor in a log.
        logs = [p.read_text(errors="replace") for p in (self.dir / "logs").iterdir()]
        for store, cred in self.creds.items():
            password = cred.partition(":")[2]
            for text in [*self.outputs, *logs]:
                self.assertNotIn(password, text, store)


class SiteUpNetnsTest(unittest.TestCase):
    """--netns: the stores listen on the namespace's own loopback, not the host's;
    and what start refuses in one line (a missing namespace, a port in use)."""

    def setUp(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="airlock-site-up-netns-"))
        self.tmp.chmod(0o755)
        self.dir = self.tmp / "site"
        self.netns = f"airlock-site-{uuid.uuid4().hex[:8]}"
        subprocess.run(["ip", "netns", "add", self.netns], check=True, timeout=30)
        self.addCleanup(subprocess.run, ["ip", "netns", "delete", self.netns],
                        check=False, timeout=30)
        subprocess.run(["ip", "-n", self.netns, "link", "set", "lo", "up"], check=True,
                       timeout=30)
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)

    def site_up(self, command: str, *args: str) -> subprocess.CompletedProcess:
        # --dir before the rest: what follows exec's "--" is the command.
        return subprocess.run([str(SITE_UP), command, "--dir", str(self.dir), *args],
                              capture_output=True, text=True, timeout=600, check=False,
                              env=clean_env())

    def listening_inside(self, port: int) -> bool:
        probe = ("import socket, sys; s = socket.socket(); s.settimeout(2); "
                 f"sys.exit(s.connect_ex(('127.0.0.1', {port})))")
        return subprocess.run(["nsenter", f"--net=/run/netns/{self.netns}", "--",
                               sys.executable, "-c", probe], timeout=30).returncode == 0

    def test_stores_live_in_the_namespace(self) -> None:
        ports = free_ports()
        port_args = [arg for store, port in ports.items()
                     for arg in (f"--{store}-port", str(port))]
        started = self.site_up("start", "--netns", self.netns, *port_args)
        self.addCleanup(self.site_up, "stop")
        self.assertEqual(started.returncode, 0, started.stdout + started.stderr)
        self.assertIn(f"in netns {self.netns}", started.stdout)
        for store, port in ports.items():
            self.assertTrue(self.listening_inside(port), store)
            with socket.socket() as sock:
                sock.settimeout(2)
                self.assertNotEqual(sock.connect_ex(("127.0.0.1", port)), 0,
                                    f"{store} reachable from the host")
        self.assertEqual(self.site_up("status").returncode, 0)
        stopped = self.site_up("stop")
        self.assertEqual(stopped.returncode, 0, stopped.stderr)
        for store, port in ports.items():
            self.assertFalse(self.listening_inside(port), store)

    def test_a_missing_namespace_is_one_line(self) -> None:
        done = self.site_up("start", "--netns", "airlock-no-such-netns")
        self.assertEqual(done.returncode, 1)
        self.assertEqual(done.stderr.count("\n"), 1, done.stderr)
        self.assertIn("no network namespace /run/netns/airlock-no-such-netns", done.stderr)
        self.assertFalse(self.dir.exists())

    def test_a_port_in_use_is_one_line(self) -> None:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            done = self.site_up("start", "--raw-port", str(port),
                                *[arg for store in ("pypi", "registry", "git")
                                  for arg in (f"--{store}-port", str(free_port()))])
        self.assertEqual(done.returncode, 1)
        self.assertEqual(done.stderr,
                         f"site-up: ERROR: 127.0.0.1:{port} (raw) is in use by another "
                         "program; choose another with --raw-port\n")
        self.assertEqual(self.site_up("status").returncode, 3)
    def test_engine_and_exec_make_a_sealed_site(self) -> None:
        ports = free_ports()
        started = self.site_up("start", "--netns", self.netns, "--engine",
                               *[arg for store, port in ports.items()
                                 for arg in (f"--{store}-port", str(port))])
        self.addCleanup(self.site_up, "stop")
        self.assertEqual(started.returncode, 0, started.stdout + started.stderr)
        self.assertIn("engine unix:///run/airlock-site/", started.stdout)
        self.assertIn("engine: running", self.site_up("status").stdout)
        said = self.site_up("exec", "--env", "AIRLOCK_X=1", "--", "sh", "-c",
                            "docker info --format '{{.Name}}' >/dev/null && echo engine; "
                            "docker -H unix:///var/run/docker.sock info >/dev/null 2>&1 "
                            "|| echo no-host-engine; cat /etc/pip.conf; env | sort; exit 7")
        self.assertEqual(said.returncode, 7, said.stderr)
        lines = said.stdout.splitlines()
        self.assertEqual(lines[:2], ["engine", "no-host-engine"])
        names = sorted(line.split("=", 1)[0] for line in lines[2:])
        self.assertEqual([n for n in names if n not in ("PWD", "SHLVL", "TERM", "TZ",
                                                        "LC_ALL", "_")],
                         ["AIRLOCK_X", "DOCKER_CONFIG", "DOCKER_HOST", "HOME", "LANG", "PATH"])
        stopped = self.site_up("stop")
        self.assertIn("stopped the site's engine", stopped.stdout)
        self.assertEqual(self.site_up("status").returncode, 3)

    def test_exec_and_engine_refuse_without_a_sealed_site(self) -> None:
        done = self.site_up("exec", "--", "true")
        self.assertEqual((done.returncode, done.stderr.count("\n")), (1, 1), done.stderr)
        self.assertIn("no sealed site runs in", done.stderr)
        done = self.site_up("start", "--engine")
        self.assertEqual((done.returncode, done.stderr.count("\n")), (1, 1), done.stderr)
        self.assertIn("--engine needs --netns", done.stderr)
        done = self.site_up("status", "--", "true")
        self.assertEqual(done.returncode, 1)
        self.assertIn("only exec takes a command", done.stderr)


class SiteUpOpenReadsTest(unittest.TestCase):
    """--registry-reads open: a registry read anonymously and pushed with the password
    (a Nexus with anonymous read), through the real nginx in front of the real
    docker-registry, with the real clients airlock and a site use: skopeo and
    docker push with credentials, pull without; anonymous writes are refused."""

    def setUp(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="airlock-site-up-open-"))
        self.tmp.chmod(0o755)
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)
        self.dir = self.tmp / "site"
        self.ports = {store: free_port() for store in STORES}
        self.outputs: list[str] = []
        started = self.site_up("start", "--registry-reads", "open", "--pypi-reads", "open",
                               *[arg for store, port in self.ports.items()
                                 for arg in (f"--{store}-port", str(port))])
        self.addCleanup(self.site_up, "stop")
        self.assertEqual(started.returncode, 0, started.stdout + started.stderr)
        self.host = f"127.0.0.1:{self.ports['registry']}"
        self.creds = (self.dir / "credentials" / "registry").read_text().strip()
        self.auth = self.tmp / "auth.json"
        self.auth.write_text(json.dumps({"auths": {self.host: {
            "auth": base64.b64encode(self.creds.encode()).decode()}}}))
        self.auth.chmod(0o600)

    def site_up(self, command: str, *args: str) -> subprocess.CompletedProcess:
        done = subprocess.run([str(SITE_UP), command, "--dir", str(self.dir), *args],
                              capture_output=True, text=True, timeout=600, check=False,
                              env=clean_env())
        self.outputs.append(done.stdout + done.stderr)
        return done

    def run_tool(self, argv: list[str], **kwargs: object) -> subprocess.CompletedProcess:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=300,
                              check=False, **kwargs)  # type: ignore[call-overload]
        self.outputs.append(done.stdout + done.stderr)
        return done

    def test_pypi_reads_open_uploads_need_the_password(self) -> None:
        pypi = f"http://127.0.0.1:{self.ports['pypi']}"
        self.assertEqual(status_of(f"{pypi}/simple/")[0], 200)
        code, _ = status_of(f"{pypi}/", "POST", b":action=file_upload")
        self.assertEqual(code, 401)

    def test_anonymous_reads_authenticated_writes(self) -> None:
        archive = self.tmp / "probe.oci.tar"
        digest = tinyimage.make(archive, ["linux/amd64", "linux/arm64"], "open-reads")
        target = f"{self.host}/airlock/probe"
        none = self.tmp / "none.json"
        none.write_text('{"auths": {}}')
        copy = ["skopeo", "copy", "--all", "--preserve-digests", "--dest-tls-verify=false",
                f"oci-archive:{archive}", f"docker://{target}:1"]
        self.assertEqual(status_of(f"http://{self.host}/v2/")[0], 200)
        refused = self.run_tool([*copy, "--dest-authfile", str(none)])
        self.assertNotEqual(refused.returncode, 0, refused.stdout)
        self.assertEqual(status_of(f"http://{self.host}/v2/airlock/probe/blobs/uploads/",
                                   "POST", b"")[0], 401)
        self.assertEqual(status_of(f"http://{self.host}/v2/airlock/probe/blobs/uploads/",
                                   "POST", b"", auth="airlock:wrong")[0], 401)
        pushed = self.run_tool([*copy, "--dest-authfile", str(self.auth)])
        self.assertEqual(pushed.returncode, 0, pushed.stderr)
        # Read without any credentials: skopeo, plain HTTP and the docker engine.
        raw = self.run_tool(["skopeo", "inspect", "--raw", "--tls-verify=false", "--no-creds",
                             f"docker://{target}:1"])
        self.assertEqual(raw.returncode, 0, raw.stderr)
        self.assertEqual("sha256:" + hashlib.sha256(raw.stdout.encode()).hexdigest(), digest)
        # airlock's own registry client, anonymously (no auth file).
        self.assertEqual(registry.digest(f"{target}:1"), digest)
        self.assertEqual(status_of(f"http://{self.host}/v2/airlock/probe/manifests/1",
                                   "DELETE")[0], 401)
        empty = self.tmp / "docker-anonymous"
        empty.mkdir()
        pulled = self.run_tool(["docker", "--config", str(empty), "pull", "-q",
                                f"{target}@{digest}"])
        self.addCleanup(subprocess.run, ["docker", "rmi", "-f", f"{target}@{digest}"],
                        capture_output=True, check=False, timeout=60)
        self.assertEqual(pulled.returncode, 0, pulled.stderr)

        # docker push with credentials (docker login into a private config).
        config = self.tmp / "docker-config"
        config.mkdir(mode=0o700)
        user, _, password = self.creds.partition(":")
        login = self.run_tool(["docker", "--config", str(config), "login", "-u", user,
                               "--password-stdin", self.host], input=password)
        self.assertEqual(login.returncode, 0, login.stderr)
        # One platform: the engine pushes only what it holds (its pull of
        # the index above fetched amd64's content alone).
        single = self.tmp / "single.oci.tar"
        tinyimage.make(single, ["linux/amd64"], "docker-push")
        tagged = f"{self.host}/airlock/docker-probe:1"
        docker_tar = self.tmp / "single.docker.tar"
        made = self.run_tool(["skopeo", "copy", f"oci-archive:{single}",
                              f"docker-archive:{docker_tar}:{tagged}"])
        self.assertEqual(made.returncode, 0, made.stderr)
        loaded = self.run_tool(["docker", "load", "-q", "-i", str(docker_tar)])
        self.assertEqual(loaded.returncode, 0, loaded.stderr)
        self.addCleanup(subprocess.run, ["docker", "rmi", "-f", tagged],
                        capture_output=True, check=False, timeout=60)
        anonymous_push = self.run_tool(["docker", "--config", str(empty), "push", "-q", tagged])
        self.assertNotEqual(anonymous_push.returncode, 0, anonymous_push.stdout)
        self.assertIn("auth", anonymous_push.stderr)
        docker_push = self.run_tool(["docker", "--config", str(config), "push", "-q", tagged])
        self.assertEqual(docker_push.returncode, 0, docker_push.stderr)
        self.assertTrue(registry.exists(tagged))

        # No password in any output or log; stop leaves nothing listening.
        stopped = self.site_up("stop")
        self.assertIn("stopped (4 of 4 were running)", stopped.stdout)
        with socket.socket() as sock:
            sock.settimeout(2)
            self.assertNotEqual(sock.connect_ex(("127.0.0.1", self.ports["registry"])), 0)
        logs = [p.read_text(errors="replace") for p in (self.dir / "logs").iterdir()]
        for text in [*self.outputs, *logs]:
            self.assertNotIn(password, text)


if __name__ == "__main__":
    unittest.main()

