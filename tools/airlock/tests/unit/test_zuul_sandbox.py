"""The Zuul sandbox's static nodes and secret: what zuul_site names and what
airlock/sandbox/zuul.py starts must agree (no Zuul started here).

Why: the launcher only knows the nodes of ``zuul_site/zuul.d/nodes.yaml``;
the sandbox starts one sshd per node. A node named there but not started
(or started on another port or for another user) shows only as a job that
waits forever for a node, so the two are compared here.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
import tempfile
import unittest
import unittest.mock
from pathlib import Path

import yaml

from airlock.sandbox import zuul as zuul_sandbox


def site_config(name: str) -> list[dict]:
    path = zuul_sandbox.SITE_TEMPLATE / "zuul.d" / name
    return yaml.safe_load(path.read_text())


class SandboxNodesTest(unittest.TestCase):
    def setUp(self) -> None:
        self.sandbox = zuul_sandbox.Sandbox()
        providers = [item["provider"] for item in site_config("nodes.yaml")
                     if "provider" in item]
        self.assertEqual(len(providers), 1)
        self.provider = providers[0]

    def test_nodes_yaml_names_the_nodes_the_sandbox_starts(self) -> None:
        named = sorted((node["name"], node["connection-port"], node["username"])
                       for node in self.provider["nodes"])
        started = sorted((zuul_sandbox.HOST, node.port, node.user)
                         for node in self.sandbox.nodes)
        self.assertEqual(named, started)

    def test_two_nodes_of_the_base_jobs_label_each_with_its_own_home(self) -> None:
        nodes = self.sandbox.nodes
        self.assertGreaterEqual(len(nodes), 2, "two jobs must be able to run at once")
        for attribute in ("process", "port", "user", "home"):
            values = [getattr(node, attribute) for node in nodes]
            self.assertEqual(len(set(values)), len(values), attribute)
        base = [item["job"] for item in site_config("jobs.yaml")
                if item.get("job", {}).get("name") == "base"][0]
        labels = {node["label"] for node in base["nodeset"]["nodes"]}
        self.assertEqual({node["label"] for node in self.provider["nodes"]}, labels)
        # Every sshd is stopped with the others (before ZooKeeper).
        stopped = {name for group in zuul_sandbox.STOP_ORDER for name in group}
        self.assertLessEqual({node.process for node in nodes}, stopped)

    def test_every_listener_has_its_own_port(self) -> None:
        ports = list(vars(zuul_sandbox.Ports()).values())
        self.assertEqual(len(set(ports)), len(ports))
        self.assertNotIn(5000, ports)


class SandboxSiteVariableTest(unittest.TestCase):
    """The base job gets ``airlock_site`` the way a site sets it, once."""

    def setUp(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="airlock-zuul-sandbox-"))
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.jobs = self.tmp / "jobs.yaml"
        shutil.copy(zuul_sandbox.SITE_TEMPLATE / "zuul.d" / "jobs.yaml", self.jobs)

    def test_the_base_job_gets_airlock_site(self) -> None:
        stores = {"registry": {"prefix": "127.0.0.1:5001/airlock"},
                  "raw": {"url": "http://127.0.0.1:8081/air lock/'\"#: x/"}}
        zuul_sandbox.Sandbox(airlock_site=stores, build_nodes=True)._set_base_vars(self.jobs)
        base = [item["job"] for item in yaml.safe_load(self.jobs.read_text())
                if item["job"]["name"] == "base"][0]
        self.assertEqual(base["vars"], {"airlock_site": stores,
                                       "ensure_build_host_setup": False})
        # The rest of the base job is unchanged.
        self.assertEqual(base["post-run"], "playbooks/base/post.yaml")
        self.assertIn("# The site's base job", self.jobs.read_text())

    def test_plain_nodes_set_nothing(self) -> None:
        self.assertEqual(zuul_sandbox.Sandbox().base_vars(), {})

    def test_a_template_it_cannot_extend_is_refused(self) -> None:
        self.jobs.write_text(self.jobs.read_text() + "    vars:\n      x: 1\n")
        with self.assertRaisesRegex(zuul_sandbox.SandboxError, "set no vars"):
            zuul_sandbox.Sandbox(airlock_site={})._set_base_vars(self.jobs)


class SandboxSecretTest(unittest.TestCase):
    """encrypt_secret's stanza: what zuul-client encrypts, decrypted back with the
    private key (openssl, OAEP as Zuul's scheduler does). Zuul's public key is
    the one thing not real here: a key made for the test stands in for the
    project's, which only a running zuul-web serves (test_zuul_site uses that)."""

    def setUp(self) -> None:
        self.sandbox = zuul_sandbox.Sandbox()
        if not (self.sandbox.venv / "bin" / "zuul-client").is_file():
            self.skipTest("no Zuul venv: tools/zuul-sandbox install")
        self.tmp = Path(tempfile.mkdtemp(prefix="airlock-zuul-secret-"))
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.private = self.tmp / "key.pem"
        self.public = self.tmp / "key.pub"
        subprocess.run(["openssl", "genrsa", "-out", str(self.private), "4096"],
                       check=True, capture_output=True, timeout=120)
        subprocess.run(["openssl", "rsa", "-in", str(self.private), "-pubout",
                        "-out", str(self.public)], check=True, capture_output=True, timeout=60)

    def decrypt(self, chunks: list[str]) -> str:
        text = b""
        for chunk in chunks:
            cipher = self.tmp / "chunk"
            cipher.write_bytes(base64.b64decode(chunk))
            text += subprocess.run(
                ["openssl", "pkeyutl", "-decrypt", "-inkey", str(self.private),
                 "-pkeyopt", "rsa_padding_mode:oaep", "-in", str(cipher)],
                check=True, capture_output=True, timeout=60).stdout
        return text.decode()

    def test_every_field_is_encrypted_and_decrypts_to_its_value(self) -> None:
        fields = {"registry": "127.0.0.1:5001", "username": "site-pusher",
                  "password": " pw with spaces and a very long tail " + "x" * 600}
        with unittest.mock.patch.object(zuul_sandbox.Sandbox, "public_key",
                                        return_value=self.public):
            text = self.sandbox.encrypt_secret("airlock-images-nexus", fields)
        for value in fields.values():
            self.assertNotIn(value.strip(), text)

        class Loader(yaml.SafeLoader):
            pass

        Loader.add_constructor("!encrypted/pkcs1-oaep",
                               lambda loader, node: loader.construct_sequence(node))
        stanza = yaml.load(text, Loader=Loader)  # noqa: S506 (SafeLoader + one tag)
        self.assertEqual(stanza[0]["secret"]["name"], "airlock-images-nexus")
        data = stanza[0]["secret"]["data"]
        self.assertEqual(list(data), list(fields))
        self.assertEqual({k: self.decrypt(v) for k, v in data.items()}, fields)
        # The long password needed more than one chunk (RSA-OAEP's limit).
        self.assertGreater(len(data["password"]), 1)


class WithoutTimersTest(unittest.TestCase):
    def test_the_example_pipelines_keep_every_pipeline_but_no_timer(self) -> None:
        example = (zuul_sandbox.REPO_ROOT / zuul_sandbox.PIPELINES_EXAMPLE).read_text()
        before = yaml.safe_load(example)
        self.assertTrue(any("timer" in (i["pipeline"].get("trigger") or {}) for i in before))
        after = yaml.safe_load(zuul_sandbox.without_timers(example))
        self.assertEqual([i["pipeline"]["name"] for i in after],
                         [i["pipeline"]["name"] for i in before])
        for item in after:
            with self.subTest(pipeline=item["pipeline"]["name"]):
                self.assertNotIn("timer", item["pipeline"].get("trigger") or {})
        periodic = next(i["pipeline"] for i in after if i["pipeline"]["name"] == "periodic")
        self.assertEqual(periodic["trigger"], {})
        check = next(i["pipeline"] for i in after if i["pipeline"]["name"] == "check")
        self.assertEqual(check, next(i["pipeline"] for i in before
                                     if i["pipeline"]["name"] == "check"))


if __name__ == "__main__":
    unittest.main()
