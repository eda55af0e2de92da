"""The Zuul sandbox's static nodes and secret: what zuul_site names and what
airlock/sandbox/zuul.py starts must agree (no Zuul started here).

Why: the launcher only knows the nodes of ``zuul_site/zuul.d/nodes.yaml``;
the sandbox starts one sshd per node. A node named there but not started
(or started on another port or for another user) shows only as a job that
waits forever for a node, so the two are compared here.
"""

from __future__ import annotations

import unittest

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


if __name__ == "__main__":
    unittest.main()
