"""Every variable a role or playbook reads is documented (``.. zuul:rolevar::``).

The roles and playbooks are read as YAML; every template (``{{ ... }}``)
and every condition (``when``, ``changed_when``, ``failed_when``,
``until``) is scanned for the variables it reads. Left out: Zuul's and
Ansible's own (``zuul*``, ``ansible_*``), loop variables (``zj_*``),
results a task registers, filter and test names, attributes (after a dot)
and Jinja's keywords and globals.

- A variable a role reads, or one its defaults define, must be documented
  in that role's README.rst.
- A variable a playbook reads (other than those its own ``vars:`` define)
  must be documented in playbooks/README.rst or a role's README.rst (a job
  variable, ``zuul:jobvar``, or a role variable).
- A variable a playbook hands to a role (``include_role``'s ``vars:``) must
  be one that role documents: a misspelt one would be silently unused.

The scanner is checked on its own first: it must find what it claims to.
"""

from __future__ import annotations

import re
import unittest
from collections.abc import Iterator
from pathlib import Path

import yaml

from airlock.tests.unit.treefixture import REPO_ROOT

CONDITIONS = ("when", "changed_when", "failed_when", "until")
KEYWORDS = {"and", "or", "not", "if", "else", "in", "is", "true", "false", "none", "True",
            "False", "None", "dict", "range", "lookup", "query", "omit"}
IGNORED = re.compile(r"^(zuul|ansible_|zj_)")
_STRING = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TEMPLATE = re.compile(r"\{\{(.*?)\}\}|\{%(.*?)%\}", re.S)
_DOC = re.compile(r"^\.\. zuul:(?:rolevar|jobvar):: *([A-Za-z_][A-Za-z0-9_.]*)", re.M)


def expression_names(expr: str) -> set[str]:
    """The variables a Jinja expression reads (see the module docstring)."""
    text = _STRING.sub("''", expr)
    names = set()
    for match in _NAME.finditer(text):
        name, start = match.group(), match.start()
        before = text[:start].rstrip()
        if before.endswith((".", "|")) or re.search(r"\bis(\s+not)?$", before):
            continue  # an attribute, a filter, a test
        if text[match.end():].lstrip().startswith("=") and \
                not text[match.end():].lstrip().startswith("=="):
            continue  # a keyword argument
        if name in KEYWORDS or name.isdigit():
            continue
        names.add(name)
    return names


def template_names(text: str) -> set[str]:
    names: set[str] = set()
    for match in _TEMPLATE.finditer(text):
        names |= expression_names(match.group(1) or match.group(2))
    return names


def walk(node: object, key: str | None = None) -> Iterator[tuple[str | None, str]]:
    """Every string of a YAML document, with the mapping key it is the value of."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield from walk(v, str(k))
    elif isinstance(node, list):
        for item in node:
            yield from walk(item, key)
    elif isinstance(node, str):
        yield key, node
    elif isinstance(node, bool) and key in CONDITIONS:
        return


def read_names(doc: object) -> set[str]:
    """The variables a task file, defaults file or playbook reads."""
    names: set[str] = set()
    for key, text in walk(doc):
        if key in CONDITIONS and "{{" not in text:
            names |= expression_names(text)
        else:
            names |= template_names(text)
    return names


def registered(doc: object) -> set[str]:
    found: set[str] = set()
    if isinstance(doc, dict):
        if isinstance(doc.get("register"), str):
            found.add(doc["register"])
        for value in doc.values():
            found |= registered(value)
    elif isinstance(doc, list):
        for item in doc:
            found |= registered(item)
    return found


def local_vars(doc: object) -> set[str]:
    """Names a play or task defines for itself (``vars:``), and loop variables."""
    found: set[str] = set()
    if isinstance(doc, dict):
        if isinstance(doc.get("vars"), dict) and "include_role" not in doc and \
                "ansible.builtin.include_role" not in doc:
            found |= set(doc["vars"])
        for value in doc.values():
            found |= local_vars(value)
    elif isinstance(doc, list):
        for item in doc:
            found |= local_vars(item)
    return found


def role_vars_passed(doc: object) -> Iterator[tuple[str, str]]:
    """(role, variable) for every ``include_role`` with ``vars:``, and ``roles:`` entries."""
    if isinstance(doc, dict):
        include = doc.get("ansible.builtin.include_role") or doc.get("include_role")
        if isinstance(include, dict) and isinstance(doc.get("vars"), dict):
            for name in doc["vars"]:
                yield include["name"], name
        for value in doc.values():
            yield from role_vars_passed(value)
    elif isinstance(doc, list):
        for item in doc:
            yield from role_vars_passed(item)


def load(path: Path) -> object:
    return yaml.safe_load(path.read_text())


def documented(readme: Path) -> set[str]:
    return set(_DOC.findall(readme.read_text())) if readme.is_file() else set()


def relevant(names: set[str], skip: set[str]) -> set[str]:
    return {n for n in names if not IGNORED.match(n) and n not in skip}


ROLES = sorted(p for p in (REPO_ROOT / "roles").iterdir() if (p / "tasks").is_dir())
PLAYBOOKS = sorted((REPO_ROOT / "playbooks").rglob("*.yaml"))
ALL_REGISTERED = {name for role in ROLES for path in (role / "tasks").glob("*.yaml")
                  for name in registered(load(path))}


class ScannerTest(unittest.TestCase):
    """The scanner finds variables and only variables."""

    def test_expressions(self) -> None:
        cases = {
            "a | default('b') | bool": {"a"},
            "x.y.z and not w is defined": {"x", "w"},
            "v is not succeeded or u in ['a', \"b\"]": {"v", "u"},
            "(r.stdout | from_json).changed": {"r"},
            "{'k': m, n: 1} | to_json": {"m", "n"},
            "l | map('regex_replace', '^', '--service=') | list": {"l"},
            "dict(i | map(attribute='name') | zip(j))": {"i", "j"},
            "p + ':' + q if s else 't'": {"p", "q", "s"},
            "a == b": {"a", "b"},
        }
        for expr, names in cases.items():
            with self.subTest(expr=expr):
                self.assertEqual(expression_names(expr), names)

    def test_documents(self) -> None:
        doc = yaml.safe_load("""
- name: t
  when: c1 | bool
  changed_when: false
  ansible.builtin.command:
    argv: "{{ [e1, 'x'] + e2 }}"
  register: r1
  loop: "{{ items_var }}"
  loop_control: {loop_var: zj_item}
""")
        self.assertEqual(read_names(doc), {"c1", "e1", "e2", "items_var"})
        self.assertEqual(registered(doc), {"r1"})


class RoleVariablesTest(unittest.TestCase):
    def test_the_roles_and_playbooks_are_there(self) -> None:
        self.assertIn("airlock-build", [role.name for role in ROLES])
        self.assertIn(REPO_ROOT / "playbooks" / "site" / "bases.yaml", PLAYBOOKS)

    def test_every_variable_a_role_reads_or_defines_is_documented(self) -> None:
        for role in ROLES:
            with self.subTest(role=role.name):
                docs = documented(role / "README.rst")
                names: set[str] = set()
                skip: set[str] = set()
                for path in sorted((role / "tasks").glob("*.yaml")):
                    doc = load(path)
                    names |= read_names(doc)
                    skip |= registered(doc) | local_vars(doc)
                defaults = role / "defaults" / "main.yaml"
                if defaults.is_file():
                    doc = load(defaults) or {}
                    names |= read_names(doc) | set(doc)
                missing = sorted(relevant(names, skip) - docs)
                self.assertEqual(missing, [], f"not documented in roles/{role.name}/README.rst "
                                 "(.. zuul:rolevar:: NAME)")

    def test_every_variable_a_playbook_reads_is_documented(self) -> None:
        docs = documented(REPO_ROOT / "playbooks" / "README.rst")
        for role in ROLES:
            docs |= documented(role / "README.rst")
        for path in PLAYBOOKS:
            with self.subTest(playbook=str(path.relative_to(REPO_ROOT))):
                doc = load(path)
                skip = registered(doc) | local_vars(doc) | ALL_REGISTERED
                missing = sorted(relevant(read_names(doc), skip) - docs)
                self.assertEqual(missing, [], "not documented in playbooks/README.rst "
                                 "(.. zuul:jobvar:: NAME) or a role's README.rst")

    def test_a_playbook_passes_a_role_only_what_it_documents(self) -> None:
        for path in PLAYBOOKS:
            for role, name in role_vars_passed(load(path)):
                with self.subTest(playbook=path.name, role=role, var=name):
                    self.assertIn(name, documented(REPO_ROOT / "roles" / role / "README.rst"))


if __name__ == "__main__":
    unittest.main()
