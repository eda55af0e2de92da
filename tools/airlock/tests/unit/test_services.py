"""images/<service>/service.yaml: what a service's processes need, and its checks."""

from __future__ import annotations

import tempfile
import unittest
from pathlib import Path

from airlock.data import services
from airlock.data.layout import find_root
from airlock.errors import AirlockError

IMAGES = find_root(Path(__file__).parent) / "images"


class ServiceYamlTest(unittest.TestCase):
    def load(self, text: str, service: str = "nova") -> services.Service:
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / service).mkdir()
            (Path(tmp) / service / "service.yaml").write_text(text)
            return services.load(Path(tmp), service)

    def refused(self, text: str, service: str = "nova") -> str:
        with self.assertRaises(AirlockError) as caught:
            self.load(text, service)
        return str(caught.exception)

    def test_the_real_files(self) -> None:
        nova = services.load(IMAGES, "nova")
        self.assertIn("libvirt-python", nova.python)
        self.assertIn("nova.virt.libvirt.driver", nova.imports)
        self.assertIn(("qemu-img", "--version"), nova.commands)
        self.assertEqual(services.load(IMAGES, "keystone").python, ("keystone[ldap]",))
        for service in ("keystone", "glance", "placement", "nova", "neutron", "cinder"):
            self.assertTrue(services.load(IMAGES, service).imports, service)

    def test_no_file_means_nothing_more(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            self.assertEqual(services.load(Path(tmp), "glance"), services.Service("glance"))

    def test_mistakes_name_the_line(self) -> None:
        self.assertIn("service.yaml:2: unknown key 'pip'", self.refused("checks: {}\npip: [x]\n"))
        self.assertIn("service.yaml:2: 'libvirt-python>=1' carries a version",
                      self.refused("python:\n  - libvirt-python>=1\n"))
        self.assertIn("only the service's own extras", self.refused("python:\n  - oslo.db[x]\n"))
        self.assertIn("'nova virt' is not a module name",
                      self.refused("checks:\n  imports: ['nova virt']\n"))
        self.assertIn("service.yaml:3: is not a command",
                      self.refused("checks:\n  commands:\n    - qemu-img --version\n"))
        self.assertIn("is not a mapping", self.refused("- a\n"))

    def test_extras_come_from_the_tree(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            tree = Path(tmp)
            (tree / "setup.cfg").write_text("[extras]\nldap =\n  python-ldap>=3.0.0 # PSF\n"
                                            "  ldappool>=2.3.1 # MPL\n")
            spec = services.Service("keystone", python=("keystone[ldap]", "bar"))
            self.assertEqual(services.requirements(spec, tree),
                             ["python-ldap>=3.0.0", "ldappool>=2.3.1", "bar"])
            (tree / "setup.cfg").unlink()
            (tree / "pyproject.toml").write_text(
                '[project]\nname = "keystone"\n[project.optional-dependencies]\n'
                'ldap = ["python-ldap>=3.0.0"]\n')
            self.assertEqual(services.requirements(spec, tree), ["python-ldap>=3.0.0", "bar"])
