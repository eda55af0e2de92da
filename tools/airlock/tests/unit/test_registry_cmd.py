"""Registry references, TLS choice, skopeo command lines, and what a registry's answer means.

The answers come over real HTTP from a stand-in registry on 127.0.0.1
(:class:`FakeRegistry`): the real one (tests/functional/test_registry_faults.py)
cannot be made to answer 503, 429, a token flow or a redirect on demand.
skopeo's failures come from a stand-in ``skopeo`` on PATH for the same
reason (:mod:`fakeprogram`).
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import os
import tempfile
import threading
import unittest
from collections.abc import Callable
from pathlib import Path
from unittest import mock

from airlock.errors import AirlockError, ToolError
from airlock.ext import registry, registryauth, registryhttp
from airlock.tests.unit import fakeprogram

Route = Callable[["FakeRegistry", dict[str, str]], tuple[int, dict[str, str], bytes]]


def error_body(code: str, message: str) -> bytes:
    return json.dumps({"errors": [{"code": code, "message": message, "detail": None}]}).encode()


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


INDEX = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                    "manifests": [{"digest": "sha256:" + "a" * 64, "size": 1,
                                   "platform": {"os": "linux", "architecture": "arm64"}}],
                    "annotations": {"k": "v"}}).encode()
INDEX_DIGEST = "sha256:" + hashlib.sha256(INDEX).hexdigest()


class FakeRegistry:
    """An HTTP server on 127.0.0.1 answering what each test tells it, and recording requests.

    ``routes`` maps a path (``/v2/a/b/manifests/t``) to a function giving
    (status, headers, body); ``/v2/`` answers 200 unless routed.
    """

    def __init__(self, test: unittest.TestCase) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[tuple[str, str]] = []  # (path, Authorization)
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                owner.requests.append((self.path, self.headers.get("Authorization", "")))
                route = owner.routes.get(self.path.split("?")[0])
                if route is None:
                    status, headers, body = ((200, {}, b"{}") if self.path == "/v2/" else
                                             (404, {}, error_body("NAME_UNKNOWN", "unknown")))
                else:
                    status, headers, body = route(owner, dict(self.headers))
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        test.addCleanup(self.server.server_close)
        test.addCleanup(self.server.shutdown)

    def paths(self) -> list[str]:
        return [path for path, _ in self.requests]

    def answer(self, path: str, *answers: tuple[int, dict[str, str], bytes]) -> None:
        """Answer ``path`` with ``answers`` in turn, the last one from then on."""
        queue = list(answers)

        def route(_: FakeRegistry, __: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
            return queue.pop(0) if len(queue) > 1 else queue[0]

        self.routes[path] = route


class RegistryTest(unittest.TestCase):
    """A fake registry, no auth file, 3 attempts, backoff recorded instead of slept."""

    def setUp(self) -> None:
        self.reg = FakeRegistry(self)
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        self.tmp = Path(tmp.name)
        env = mock.patch.dict(os.environ, {registry.RETRIES_ENV: "3", "HOME": str(self.tmp),
                                           "XDG_RUNTIME_DIR": str(self.tmp / "run")})
        env.start()
        self.addCleanup(env.stop)
        for name in (registry.AUTH_FILE_ENV, "REGISTRY_AUTH_FILE", "XDG_CONFIG_HOME",
                     "DOCKER_CONFIG"):
            os.environ.pop(name, None)
        self.sleeps: list[float] = []
        sleep = mock.patch.object(registryhttp, "_sleep", self.sleeps.append)
        sleep.start()
        self.addCleanup(sleep.stop)

    def auth_file(self, entries: dict[str, tuple[str, str]]) -> Path:
        path = self.tmp / "auth.json"
        path.write_text(json.dumps({"auths": {
            key: {"auth": base64.b64encode(f"{u}:{p}".encode()).decode()}
            for key, (u, p) in entries.items()}}))
        os.environ[registry.AUTH_FILE_ENV] = str(path)
        return path


class TestWhatAnAnswerMeans(RegistryTest):

    def test_absent_tag_and_repository_are_none(self):
        self.reg.answer("/v2/a/b/manifests/1.0", (404, {}, error_body("MANIFEST_UNKNOWN", "x")))
        self.assertIsNone(registry.digest(f"{self.reg.host}/a/b:1.0"))
        self.assertEqual(registry.list_tags(f"{self.reg.host}/no/repo"), [])
        self.assertEqual(self.reg.paths().count("/v2/a/b/manifests/1.0"), 1)

    def test_a_404_without_codes_from_a_registry_is_absent(self):
        self.reg.answer("/v2/a/b/manifests/1.0", (404, {}, b""))
        self.assertIsNone(registry.digest(f"{self.reg.host}/a/b:1.0"))

    def test_a_host_that_is_no_registry_is_an_error_not_absent(self):
        self.reg.answer("/v2/", (404, {}, b"<html>not here</html>"))
        with self.assertRaises(ToolError) as caught:
            registry.digest(f"{self.reg.host}/a/b:1.0")
        self.assertIn("is not a container registry (GET /v2/ answered HTTP 404)",
                      str(caught.exception))

    def test_an_auth_failure_on_a_tag_holding_404_is_an_auth_failure(self):
        self.reg.answer("/v2/a/b/manifests/1.0-404", (
            401, {"WWW-Authenticate": 'Basic realm="r"'},
            error_body("UNAUTHORIZED", "authentication required for tag 1.0-404: 404")))
        self.auth_file({self.reg.host: ("alice", "wrong-pass")})
        with self.assertRaises(ToolError) as caught:
            registry.digest(f"{self.reg.host}/a/b:1.0-404")
        line = str(caught.exception)
        self.assertEqual(caught.exception.exit_code, 2)
        self.assertIn(f"the registry {self.reg.host} refused the credentials", line)
        self.assertIn("$AIRLOCK_REGISTRY_AUTH_FILE", line)
        self.assertNotIn("wrong-pass", line)
        self.assertEqual(self.sleeps, [])  # credentials are not retried

    def test_denied_is_a_credentials_failure_even_as_a_404(self):
        self.reg.answer("/v2/a/b/manifests/t", (404, {}, error_body("DENIED", "no access")))
        with self.assertRaises(ToolError) as caught:
            registry.digest(f"{self.reg.host}/a/b:t")
        self.assertIn("asks for credentials and none are configured for it (HTTP 404 Not Found "
                      "(DENIED: no access)); check $AIRLOCK_REGISTRY_AUTH_FILE",
                      str(caught.exception))

    def test_transient_failures_are_retried_with_backoff(self):
        self.reg.answer("/v2/a/b/manifests/t", (503, {}, b""),
                        (429, {}, error_body("TOOMANYREQUESTS", "slow down")), (200, {}, INDEX))
        self.assertEqual(registry.digest(f"{self.reg.host}/a/b:t"), INDEX_DIGEST)
        self.assertEqual(self.sleeps, [1, 2])

    def test_transient_failures_end_after_the_attempts(self):
        self.reg.answer("/v2/a/b/manifests/t", (502, {}, b"bad gateway"))
        with self.assertRaises(ToolError) as caught:
            registry.digest(f"{self.reg.host}/a/b:t")
        self.assertIn("HTTP 502", str(caught.exception))
        self.assertIn("(after 3 attempts)", str(caught.exception))
        self.assertEqual(self.reg.paths().count("/v2/a/b/manifests/t"), 3)

    def test_unreachable_is_an_error_after_the_attempts(self):
        with mock.patch.dict(os.environ, {registry.RETRIES_ENV: "2"}), \
                self.assertRaises(ToolError) as caught:
            registry.digest("127.0.0.1:1/a/b:c")
        self.assertIn("registry unreachable: 127.0.0.1:1: Connection refused (after 2 attempts)",
                      str(caught.exception))

    def test_a_bad_retry_count_is_one_line(self):
        with mock.patch.dict(os.environ, {registry.RETRIES_ENV: "many"}), \
                self.assertRaises(AirlockError) as caught:
            registry.digest(f"{self.reg.host}/a/b:c")
        self.assertEqual(caught.exception.where, "$AIRLOCK_REGISTRY_RETRIES")

    def test_manifest_platforms_and_annotations(self):
        self.reg.answer("/v2/a/b/manifests/t", (200, {}, INDEX))
        ref = f"{self.reg.host}/a/b:t"
        self.assertEqual(registry.platforms(ref), ["linux/arm64"])
        self.assertEqual(registry.annotations(ref), {"k": "v"})
        self.assertTrue(registry.exists(ref))

    def test_a_proxy_is_never_used_for_the_loopback(self):
        self.reg.answer("/v2/a/b/manifests/t", (200, {}, INDEX))
        with mock.patch.dict(os.environ, {"http_proxy": "http://127.0.0.1:1",
                                          "https_proxy": "http://127.0.0.1:1"}):
            self.assertEqual(registry.digest(f"{self.reg.host}/a/b:t"), INDEX_DIGEST)

    def test_tags_follow_the_next_link(self):
        self.reg.answer("/v2/a/b/tags/list", (200, {"Link": '</v2/a/b/tags/list2?n=1>; rel="next"'},
                                              json.dumps({"tags": ["2", "1"]}).encode()))
        self.reg.answer("/v2/a/b/tags/list2", (200, {}, json.dumps({"tags": ["3"]}).encode()))
        # list2 lies outside tags/list: a registry's next link is followed as given.
        self.assertEqual(registry.list_tags(f"{self.reg.host}/a/b"), ["1", "2", "3"])


class TestAuthentication(RegistryTest):

    def test_basic_credentials_most_specific_key_first(self):
        self.reg.answer("/v2/", (401, {"WWW-Authenticate": 'Basic realm="r"'}, b""))
        expected = basic("team", "team-pass")

        def guarded(_, headers):
            if headers.get("Authorization") != expected:
                return 401, {"WWW-Authenticate": 'Basic realm="r"'}, error_body("UNAUTHORIZED", "")
            return 200, {}, INDEX

        self.reg.routes["/v2/team/img/manifests/t"] = guarded
        self.reg.routes["/v2/other/img/manifests/t"] = guarded
        self.auth_file({self.reg.host: ("anyone", "host-pass"),
                        f"{self.reg.host}/team": ("team", "team-pass")})
        self.assertEqual(registry.digest(f"{self.reg.host}/team/img:t"), INDEX_DIGEST)
        with self.assertRaises(ToolError):
            registry.digest(f"{self.reg.host}/other/img:t")  # host-pass: refused
        self.assertIn(("/v2/other/img/manifests/t", basic("anyone", "host-pass")),
                      self.reg.requests)

    def test_bearer_token_flow_and_its_cache(self):
        realm = f"http://{self.reg.host}/token"
        challenge = {"WWW-Authenticate": f'Bearer realm="{realm}",service="reg"'}
        self.reg.answer("/v2/", (401, challenge, b""))

        def token(_, headers):
            if headers.get("Authorization") != basic("bob", "bob-pass"):
                return 401, {}, error_body("UNAUTHORIZED", "bad credentials")
            return 200, {}, json.dumps({"token": "t0k3n", "expires_in": 300}).encode()

        def manifest(_, headers):
            if headers.get("Authorization") != "Bearer t0k3n":
                return 401, challenge, error_body("UNAUTHORIZED", "")
            return 200, {}, INDEX

        self.reg.routes["/token"] = token
        self.reg.routes["/v2/a/b/manifests/t"] = manifest
        self.auth_file({self.reg.host: ("bob", "bob-pass")})
        ref = f"{self.reg.host}/a/b:t"
        self.assertEqual(registry.digest(ref), INDEX_DIGEST)
        self.assertEqual(registry.digest(ref), INDEX_DIGEST)
        self.assertEqual(len([p for p in self.reg.paths() if p.startswith("/token?")]), 1)
        token_query = next(p for p in self.reg.paths() if p.startswith("/token"))
        self.assertIn("scope=repository%3Aa%2Fb%3Apull", token_query)
        self.assertIn("service=reg", token_query)

    def test_bearer_with_wrong_credentials_is_a_credentials_failure(self):
        realm = f"http://{self.reg.host}/token"
        self.reg.answer("/v2/", (401, {"WWW-Authenticate": f'Bearer realm="{realm}"'}, b""))
        self.reg.answer("/token", (401, {}, error_body("UNAUTHORIZED", "bad credentials")))
        self.auth_file({self.reg.host: ("bob", "not-bobs")})
        with self.assertRaises(ToolError) as caught:
            registry.digest(f"{self.reg.host}/a/b:404")
        self.assertIn("refused the credentials", str(caught.exception))
        self.assertNotIn("not-bobs", str(caught.exception))

    def test_no_credentials_for_a_registry_that_asks(self):
        self.reg.answer("/v2/", (401, {"WWW-Authenticate": 'Basic realm="r"'}, b""))
        with self.assertRaises(ToolError) as caught:
            registry.list_tags(f"{self.reg.host}/a/b")
        self.assertIn("asks for credentials and none are configured", str(caught.exception))

    def test_a_redirect_to_another_host_carries_no_credentials(self):
        storage = FakeRegistry(self)
        config = json.dumps({"os": "linux", "architecture": "arm", "variant": "v7"}).encode()
        config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
        storage.answer("/blob", (200, {}, config))
        image = json.dumps({"schemaVersion": 2, "config": {"digest": config_digest},
                            "mediaType": "application/vnd.oci.image.manifest.v1+json"}).encode()
        self.reg.answer("/v2/", (401, {"WWW-Authenticate": 'Basic realm="r"'}, b""))
        self.reg.answer("/v2/a/b/manifests/t", (200, {}, image))
        self.reg.answer(f"/v2/a/b/blobs/{config_digest}",
                        (307, {"Location": f"http://{storage.host}/blob"}, b""))
        self.auth_file({self.reg.host: ("carol", "carol-pass")})
        self.assertEqual(registry.platforms(f"{self.reg.host}/a/b:t"), ["linux/arm/v7"])
        self.assertEqual(storage.requests, [("/blob", "")])
        self.assertIn((f"/v2/a/b/blobs/{config_digest}", basic("carol", "carol-pass")),
                      self.reg.requests)


class TestAuthFile(RegistryTest):
    """$AIRLOCK_REGISTRY_AUTH_FILE is checked before use; a mistake never quotes it."""

    SECRET = "c2VjcmV0LXRva2Vu"

    def check(self, content: bytes | None, expected: str, make=None) -> None:
        path = self.tmp / f"auth-{len(list(self.tmp.iterdir()))}.json"
        if make is not None:
            make(path)
        else:
            path.write_bytes(content or b"")
        with mock.patch.dict(os.environ, {registry.AUTH_FILE_ENV: str(path)}), \
                self.assertRaises(AirlockError) as caught:
            registry.check_auth_file()
        line = str(caught.exception)
        self.assertEqual(caught.exception.exit_code, 1)
        self.assertEqual(caught.exception.what, expected)
        self.assertTrue(line.startswith(f"$AIRLOCK_REGISTRY_AUTH_FILE ({path}): "))
        self.assertNotIn(self.SECRET, line)
        self.assertNotIn("\n", line)
        self.assertNotIn("\\n", line)

    def test_every_kind_of_bad_file(self):
        self.check(b'{"auths": {"h": {"auth": "' + self.SECRET.encode() + b'\n\t"',
                   "is not JSON (Invalid control character at line 1 column 43)")
        self.check(b'{"auths": {"h": {"auth": "' + self.SECRET.encode() + b'"}',
                   "is not JSON (Expecting ',' delimiter at line 1 column 45)")
        self.check(b"\xff\xfe" + self.SECRET.encode(), "is not UTF-8 text")
        self.check(b'["' + self.SECRET.encode() + b'"]', "is not a JSON object")
        self.check(b'{"' + self.SECRET.encode() + b'": {}}', 'has no "auths" object')
        self.check(b'{"auths": {"h": "' + self.SECRET.encode() + b'"}}',
                   '"auths" entry 1 is not an object')
        self.check(b'{"auths": {"h": {"auth": "' + self.SECRET.encode() + b'\\n\\t"}}}',
                   '"auth" of "auths" entry 1 is not base64 of user:password')
        self.check(b'{"auths": {"h": {"auth": "' + self.SECRET.encode() + b'"}}}',
                   '"auth" of "auths" entry 1 is not base64 of user:password')  # no ':'
        self.check(None, "is a directory, not a regular file", make=lambda p: p.mkdir())
        self.check(None, "is a FIFO, not a regular file", make=os.mkfifo)
        self.check(b"{" * (2 * registryauth.AUTH_FILE_LIMIT), "is larger than 1 MiB, the limit "
                   "for this file")
        self.check(None, "no such file", make=lambda p: None)

    def test_a_good_file_is_passed_to_skopeo_by_path(self):
        path = self.auth_file({"a.site": ("user", "s3cr3t")})
        argv = registry.copy_command("docker://a.site/x:1", "docker://a.site/x:2")
        self.assertEqual(argv[argv.index("--authfile") + 1], str(path))
        self.assertNotIn("s3cr3t", " ".join(argv))
        self.assertNotIn(base64.b64encode(b"user:s3cr3t").decode(), " ".join(argv))


# A self-signed CA (CN airlock-test-site-ca, valid until 2126; its key was
# thrown away): a site's own registry CA.
SITE_CA = """\
-----BEGIN CERTIFICATE-----
MIIBlTCCATugAwIBAgIURpO/MJpRs5MB1ZhYINz1ukUAu9wwCgYIKoZIzj0EAwIw
HzEdMBsGA1UEAwwUYWlybG9jay10ZXN0LXNpdGUtY2EwIBcNMjYxMjAxMDIxNjI0
WhgPMjEyNjExMDcwMjE2MjRaMB8xHTAbBgNVBAMMFGFpcmxvY2stdGVzdC1zaXRl
LWNhMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAELBsleA5qHOISf7hfhNEgeY4x
XIDHbdJjXRlqxmKoov8N2R+HKRAjrF+kz9v6kK+s1seppfYNOBxDnVUzy0gJJ6NT
MFEwHQYDVR0OBBYEFJclq072t8huIqdaj6ALyNj8YgHuMB8GA1UdIwQYMBaAFJcl
q072t8huIqdaj6ALyNj8YgHuMA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwID
SAAwRQIhAOaDvB6gXJEZi2HBeTdIE2MFQJQadl2fHgJyKGiJtby3AiBM6NW2eRAX
hiwA9tx3smIteBsD76kd0FQoJkkNAk/IAQ==
-----END CERTIFICATE-----
"""


class TestCertificates(unittest.TestCase):
    """A registry's own CA in certs.d is trusted for it, as skopeo trusts it."""

    def setUp(self) -> None:
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        self.root = Path(tmp.name)
        patch = mock.patch.object(registryhttp, "CERTS_DIRS", (self.root / "containers",
                                                           self.root / "docker"))
        patch.start()
        self.addCleanup(patch.stop)

    def test_a_ca_in_certs_d_is_trusted_for_that_host_only(self) -> None:
        folder = self.root / "containers" / "nexus.site:8443"
        folder.mkdir(parents=True)
        (folder / "ca.crt").write_text(SITE_CA)

        def names(context) -> list[str]:
            return [dict(entry[0] for entry in ca["subject"]).get("commonName")
                    for ca in context.get_ca_certs()]

        site = registryhttp.tls_context("nexus.site:8443", True)
        self.assertIn("airlock-test-site-ca", names(site))
        other = registryhttp.tls_context("other.site", True)
        self.assertNotIn("airlock-test-site-ca", names(other))

    def test_a_broken_certificate_is_one_line(self) -> None:
        folder = self.root / "docker" / "nexus.site"
        folder.mkdir(parents=True)
        (folder / "ca.crt").write_text("not a certificate\n")
        with self.assertRaises(ToolError) as caught:
            registryhttp.tls_context("nexus.site", True)
        self.assertTrue(str(caught.exception).startswith(f"{folder}: cannot load a certificate"))
        self.assertNotIn("\n", str(caught.exception))


class TestCheckPrefix(unittest.TestCase):

    def test_good_prefixes(self):
        for prefix in ("127.0.0.1:5000/airlock", "nexus.site:8443/openstack", "localhost/a",
                       "registry.example/team/sub_team/x-y", "[::1]:5000/airlock",
                       "nexus.site:8443/", "127.0.0.1:5000"):
            with self.subTest(prefix=prefix):
                self.assertEqual(registry.check_prefix(prefix), prefix.rstrip("/"))

    def test_bad_prefixes_are_one_line(self):
        cases = {
            "airlock/images": "'airlock' is not a registry host",
            "https://nexus.site/x": "without a scheme",
            "nexus.site/Airlock": "path component 'Airlock' is not lowercase",
            "nexus.site/a//b": "path component '' is not lowercase",
            "nexus.site/-a": "path component '-a' is not lowercase",
            "127.0.0.1:5000/airlock:latest": "path component 'airlock:latest' is not lowercase",
            "nexus.site:port/a": "'nexus.site:port' is not a registry host",
            "nexus.site/a b": "holds white space",
            "": "it is empty",
        }
        for prefix, expected in cases.items():
            with self.subTest(prefix=prefix), self.assertRaises(AirlockError) as caught:
                registry.check_prefix(prefix)
            self.assertTrue(str(caught.exception).startswith(
                f"--registry: {prefix!r} is not a repository prefix ("), str(caught.exception))
            self.assertIn(expected, str(caught.exception))
            self.assertNotIn("\n", str(caught.exception))
        error = self._error("user:pw@nexus.site/x")
        self.assertEqual(error.what, "contains '@' (credentials or a digest)")
        self.assertNotIn("pw", str(error))

    def _error(self, prefix: str) -> AirlockError:
        try:
            registry.check_prefix(prefix)
        except AirlockError as error:
            return error
        raise AssertionError(prefix)


class TestSkopeoFailures(RegistryTest):
    """After skopeo fails, the registry's answer decides: retry, credentials, or skopeo's line."""

    def fake_skopeo(self, message: str) -> Path:
        return fakeprogram.install(self, "skopeo", 'echo "$*" >> "$FAKE_CALLS"\n'
                                   f"echo 'time=\"x\" level=fatal msg=\"{message}\"' >&2\nexit 1\n")

    def test_auth_refused_on_a_404_tag_is_credentials_not_retried(self):
        calls = self.fake_skopeo("reading manifest 1.0-404: invalid status code 404")
        refused = (401, {"WWW-Authenticate": 'Basic realm="r"'},
                   error_body("UNAUTHORIZED", "authentication required"))
        self.reg.answer("/v2/", refused)
        self.reg.answer("/v2/a/b/manifests/1.0-404", refused)
        self.auth_file({self.reg.host: ("u", "wrong")})
        with self.assertRaises(ToolError) as caught:
            registry.copy(f"{self.reg.host}/a/b:1.0-404", f"{self.reg.host}/a/b:moving")
        self.assertIn("refused the credentials", str(caught.exception))
        self.assertEqual(len(fakeprogram.calls(calls)), 1)

    def test_an_unreachable_registry_is_retried_by_airlock_alone(self):
        calls = self.fake_skopeo("pinging container registry: connection refused")
        with self.assertRaises(ToolError) as caught:
            registry.push_archive(Path(__file__), "127.0.0.1:1/a/b:t")
        self.assertIn("registry unreachable", str(caught.exception))
        runs = fakeprogram.calls(calls)
        self.assertEqual(len(runs), 3)  # $AIRLOCK_REGISTRY_RETRIES, not multiplied by skopeo's
        self.assertFalse([run for run in runs if "--retry-times" in run])
        self.assertEqual(self.sleeps, [1, 2])

    def test_a_healthy_registry_leaves_skopeos_own_reason(self):
        calls = self.fake_skopeo("copying: manifest digest would change")
        with self.assertRaises(ToolError) as caught:
            registry.push_archive(Path(__file__), f"{self.reg.host}/a/b:t")
        self.assertEqual(caught.exception.what, "copying: manifest digest would change")
        self.assertEqual(len(fakeprogram.calls(calls)), 1)

    def test_missing_skopeo_names_its_package(self):
        empty = self.tmp / "bin"
        empty.mkdir()
        with mock.patch.dict(os.environ, {"PATH": str(empty)}), \
                self.assertRaises(ToolError) as caught:
            registry.push_archive(Path(__file__), f"{self.reg.host}/a/b:t")
        self.assertIn("skopeo is not installed; install the Debian package skopeo",
                      str(caught.exception))


class TestSplitRef(unittest.TestCase):

    def test_tag_digest_and_default_tag(self):
        self.assertEqual(registry.split_ref("127.0.0.1:5000/airlock/debian:bookworm"),
                         ("127.0.0.1:5000", "airlock/debian", "bookworm"))
        self.assertEqual(registry.split_ref("nexus.site:8443/a/b@sha256:" + "c" * 64),
                         ("nexus.site:8443", "a/b", "sha256:" + "c" * 64))
        self.assertEqual(registry.split_ref("localhost:5000/x"), ("localhost:5000", "x", "latest"))

    def test_unqualified_names_are_refused(self):
        # skopeo would complete them from registries.conf: an upstream host.
        for ref in ("debian:bookworm", "library/debian", "docker://127.0.0.1:5000/x:y"):
            with self.subTest(ref=ref), self.assertRaises(AirlockError):
                registry.split_ref(ref)


class TestInsecure(unittest.TestCase):

    def test_loopback_only_by_default(self):
        for ref in ("127.0.0.1:5000/x:y", "localhost:5000/x:y", "[::1]:5000/x:y"):
            self.assertTrue(registry.is_insecure(ref, env={}), ref)
        self.assertFalse(registry.is_insecure("nexus.site/x:y", env={}))

    def test_configurable(self):
        env = {registry.INSECURE_ENV: "nexus.site:8082, other.site"}
        self.assertTrue(registry.is_insecure("nexus.site:8082/x:y", env=env))
        self.assertTrue(registry.is_insecure("other.site:443/x:y", env=env))
        self.assertFalse(registry.is_insecure("nexus.site:9000/x:y", env=env))


class TestCopyCommand(unittest.TestCase):

    def test_all_platforms_digests_kept_no_retries_of_its_own(self):
        argv = registry.copy_command("oci-archive:/w/x.tar", "docker://127.0.0.1:5000/a:b",
                                     dest_insecure=True, env={})
        self.assertEqual(argv[:2], ["skopeo", "copy"])
        self.assertIn("--all", argv)
        self.assertIn("--preserve-digests", argv)
        self.assertIn("--dest-tls-verify=false", argv)
        self.assertNotIn("--retry-times", argv)
        self.assertFalse([a for a in argv if a.startswith("--src-tls-verify")])
        self.assertEqual(argv[-2:], ["oci-archive:/w/x.tar", "docker://127.0.0.1:5000/a:b"])

    def test_tls_verified_for_other_registries(self):
        argv = registry.copy_command("docker://a.site/x:1", "docker://b.site/x:1", env={})
        self.assertIn("--src-tls-verify=true", argv)
        self.assertIn("--dest-tls-verify=true", argv)

    def test_missing_auth_file_is_a_user_error(self):
        with self.assertRaises(AirlockError) as caught:
            registry.copy_command("docker://a.site/x:1", "docker://a.site/x:2",
                                  env={registry.AUTH_FILE_ENV: "/nonexistent/auth.json"})
        self.assertEqual(str(caught.exception), "$AIRLOCK_REGISTRY_AUTH_FILE "
                         "(/nonexistent/auth.json): no such file; point it at a containers "
                         "auth.json (skopeo login --authfile FILE writes one)")


class TestPushArchive(unittest.TestCase):

    def test_missing_archive_is_a_user_error(self):
        with self.assertRaises(AirlockError):
            registry.push_archive(Path("/nonexistent.tar"), "127.0.0.1:5000/a:b")


if __name__ == "__main__":
    unittest.main()
