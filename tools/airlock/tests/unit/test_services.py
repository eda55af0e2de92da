"""images/<service>/service.yaml: what a service's processes need, and its checks."""

from __future__ import annotations

import os
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


class HostileServiceYamlTest(unittest.TestCase):
    """What a hostile or careless service.yaml or source tree did before it was refused."""

    load = ServiceYamlTest.load
    refused = ServiceYamlTest.refused

    def test_a_link_out_of_the_images_is_not_followed(self) -> None:
        # It was followed: another file decided what the image installs.
        with tempfile.TemporaryDirectory() as tmp:
            images = Path(tmp) / "images"
            (images / "nova").mkdir(parents=True)
            (Path(tmp) / "elsewhere.yaml").write_text("python: [evil]\n")
            (images / "nova" / "service.yaml").symlink_to(Path(tmp) / "elsewhere.yaml")
            with self.assertRaises(AirlockError) as caught:
                services.load(images, "nova")
            self.assertIn("service.yaml: leads outside", str(caught.exception))

    def test_a_false_value_is_no_empty_list(self) -> None:
        # Each of these was accepted as "nothing", without a word.
        for text in ("python: false\n", "python: 0\n", "python: ''\n",
                     "checks: {imports: 0}\n"):
            self.assertIn("service.yaml:1: is not a list of strings", self.refused(text), text)
        self.assertIn("service.yaml:1: is not a mapping", self.refused("checks: false\n"))
        self.assertIn("service.yaml:1: is not a list",
                      self.refused("checks: {commands: 0}\n"))
        self.assertEqual(self.load("python:\nchecks:\n"), services.Service("nova"))

    def test_the_service_itself_without_an_extra(self) -> None:
        # 'nova[]' was kept as a requirement line and failed later as "not pinned".
        for text in ("python: ['nova[]']\n", "python: [Nova]\n"):
            self.assertIn("names the service itself; name one of its extras (nova[extra])",
                          self.refused(text))

    def requirements(self, name: str, text: str) -> list[str]:
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / name).write_text(text)
            return services.requirements(services.Service("keystone", ("keystone[ldap]",)),
                                         Path(tmp))

    def refused_tree(self, name: str, text: str) -> str:
        with self.assertRaises(AirlockError) as caught:
            self.requirements(name, text)
        return str(caught.exception)

    def test_a_hostile_pyproject(self) -> None:
        # AttributeError (exit 3) for the first three, RecursionError for the last two,
        # and a string value was skipped: "keystone declares no extra 'ldap'".
        toml = "pyproject.toml"
        self.assertIn("pyproject.toml:[project]: is not a table; fix it with a patch",
                      self.refused_tree(toml, "project = 'x'\n"))
        for text in ("[project]\noptional-dependencies = ['a']\n",
                     "[project]\noptional-dependencies = 'a'\n"):
            self.assertIn("pyproject.toml:[project.optional-dependencies]: is not a table",
                          self.refused_tree(toml, text))
        self.assertIn("pyproject.toml:project.optional-dependencies.ldap: is not a list of "
                      "strings", self.refused_tree(
                          toml, "[project.optional-dependencies]\nldap = 'python-ldap'\n"))
        for text in ("a = " + "[" * 100000 + "]" * 100000 + "\n",
                     "a = " + "{b=" * 5000 + "1" + "}" * 5000 + "\n"):
            self.assertIn("pyproject.toml: not valid TOML: nested too deeply",
                          self.refused_tree(toml, text))

    def test_a_url_in_an_extra_is_refused_and_not_shown(self) -> None:
        # It was returned as a requirement line, credentials and all.
        line = self.refused_tree("setup.cfg", "[extras]\nldap = foo @ https://bob:s3cret@"
                                 "x.example/f.whl\n")
        self.assertIn("setup.cfg: extras: 'foo @ https://***@x.example/f.whl' is a URL", line)
        self.assertNotIn("s3cret", line)

    def test_pbr_markers(self) -> None:
        # pbr's 'name:marker' form was "not a requirement".
        self.assertEqual(self.requirements("setup.cfg", "[extras]\nldap =\n  python-ldap\n"
                                           "  foo:python_version<'3.12'\n"),
                         ["python-ldap", "foo; python_version<'3.12'"])

    def test_a_fifo_in_the_tree_says_what_to_do(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            os.mkfifo(Path(tmp) / "setup.cfg")
            with self.assertRaises(AirlockError) as caught:
                services.requirements(services.Service("keystone", ("keystone[ldap]",)),
                                      Path(tmp))
            self.assertIn("setup.cfg: is a FIFO, not a regular file; fix it with a patch",
                          str(caught.exception))
