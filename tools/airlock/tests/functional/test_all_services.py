"""Every service image of 2025.2 builds for linux/amd64 and its main command runs.

keystone, glance, placement, nova, neutron and cinder, each from its
released source (local mirror), its wheelhouse and its runtime OS packages,
built with the network off and published to the local registry; then each
image's own management command runs in a container with no network.
"""

from __future__ import annotations

import json
import unittest

import yaml

from airlock.ext import containers, registry
from airlock.tests.functional import pipeline
from airlock.tests.functional.engine import REPO_ROOT, base_image, require_engine

RELEASE = "2025.2"
# The command that proves the image works, and what its output must hold.
MAIN_COMMANDS = {
    "keystone": (["keystone-manage", "--version"], "{version}"),
    "glance": (["glance-manage", "--version"], "{version}"),
    "placement": (["placement-manage", "--version"], "{version}"),
    "nova": (["nova-manage", "--version"], "{version}"),
    "neutron": (["neutron-db-manage", "--help"], "usage: neutron-db-manage"),
    "cinder": (["cinder-manage", "--version"], "{version}"),
}


# pbr's wsgi_scripts, which uv does not write: airlock-venv does.
WSGI_SCRIPTS = {
    "glance": ["glance-wsgi-api"],
    "placement": ["placement-api"],
    "nova": ["nova-api-wsgi", "nova-metadata-wsgi"],
    "neutron": ["neutron-api"],
    "cinder": ["cinder-wsgi"],
}


class AllServicesAmd64Test(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        require_engine()
        base_image()
        services = list(MAIN_COMMANDS)
        git = pipeline.git_base(*services)
        args = [arg for s in services for arg in ("--service", s)]
        prefix = pipeline.fresh_prefix("services")
        common = [*args, "--platform", "linux/amd64", "--git-base", git]
        cls.record = pipeline.build(RELEASE, prefix, *common)
        # Nothing published yet: a second build keeps the archives it made,
        # and publish then pushes those (from the second build's record).
        cls.again = pipeline.build(RELEASE, prefix, *common)
        pipeline.airlock("publish", "--release", RELEASE)
        cls.refs = yaml.safe_load(
            (REPO_ROOT / "releases" / RELEASE / "source-refs.yaml").read_text())

    def test_every_service_image_runs_its_main_command(self) -> None:
        for service, (command, expected) in MAIN_COMMANDS.items():
            with self.subTest(service=service):
                row = pipeline.image(self.record, service)
                self.assertEqual(row["status"], "built")
                ref = f"{row['ref'].split('@')[0]}@{row['digest']}"
                output = containers.run(ref, command, platform="linux/amd64")
                self.assertIn(expected.format(version=self.refs[service]), output)
                self.assertEqual(containers.run(ref, ["id", "-u"], platform="linux/amd64").strip(),
                                 "42424")

    def test_unpublished_images_are_kept_not_built_again(self) -> None:
        self.assertEqual({row["image"]: row["status"] for row in self.again["images"]},
                         {"python-base": "skipped", "venv-builder": "skipped",
                          **{service: "kept" for service in MAIN_COMMANDS}})
        for service in MAIN_COMMANDS:
            with self.subTest(service=service):
                self.assertEqual(pipeline.image(self.again, service)["digest"],
                                 pipeline.image(self.record, service)["digest"])
                # publish pushed the kept archive: the registry serves it
                row = pipeline.image(self.again, service)
                tagged = f"{row['ref'].split('@')[0]}:{row['tag']}"
                self.assertEqual(registry.digest(tagged), row["digest"])

    def test_every_image_passes_airlock_check(self) -> None:
        """Console scripts, WSGI modules and service.yaml's checks: libvirt for nova."""
        proc = pipeline.airlock("check", "--release", RELEASE, "--json", check=False)
        doc = json.loads(proc.stdout)
        failures = {row["image"]: row["failures"] for row in doc["images"] if row["failures"]}
        self.assertEqual(failures, {})
        # Scripts whose optional dependency was never installed are named,
        # not failed (glance's glance-rootwrap without oslo.rootwrap).
        unavailable = {row["image"]: row.get("unavailable", []) for row in doc["images"]}
        self.assertTrue(any(u.startswith("script glance-rootwrap: needs oslo_rootwrap")
                            for u in unavailable["glance"]), unavailable)
        self.assertEqual(proc.returncode, 0)
        self.assertEqual(sorted(row["image"] for row in doc["images"]), sorted(MAIN_COMMANDS))
        # The bytecode slim.toml keeps covers what keystone's process loads
        # (its API modules load by name, dnspython through eventlet): only
        # the platform's _sysconfigdata module, named by the interpreter at
        # run time, is compiled at every start.
        uncompiled = {row["image"]: row.get("uncompiled") for row in doc["images"]}
        self.assertTrue(all(isinstance(u, list) for u in uncompiled.values()), uncompiled)
        self.assertEqual([m for m in uncompiled["keystone"]
                          if not m.startswith("_sysconfigdata_")], [])
        nova = pipeline.image(self.record, "nova")
        ref = f"{nova['ref'].split('@')[0]}@{nova['digest']}"
        out = containers.run(ref, ["python3", "-c", "import libvirt; "
                                   "print(libvirt.getVersion() > 0)"], platform="linux/amd64")
        self.assertEqual(out.strip(), "True")

    def test_wsgi_entry_points_are_there_and_import(self) -> None:
        for service, scripts in WSGI_SCRIPTS.items():
            row = pipeline.image(self.record, service)
            ref = f"{row['ref'].split('@')[0]}@{row['digest']}"
            for script in scripts:
                with self.subTest(service=service, script=script):
                    path = f"/var/lib/openstack/bin/{script}"
                    # The module holding the application factory imports
                    # (the factory itself wants a configuration to run).
                    out = containers.run(ref, ["sh", "-c", f"test -x {path} && head -n 1 {path} && "
                                           f"python3 -c \"import ast, importlib; "
                                           f"t = ast.parse(open('{path}').read()); "
                                           f"m = [n.module for n in t.body if "
                                           f"isinstance(n, ast.ImportFrom)][0]; "
                                           f"importlib.import_module(m); print('imported', m)\""],
                                     platform="linux/amd64")
                    self.assertIn("#!/var/lib/openstack/bin/python", out)
                    self.assertIn("imported", out)
