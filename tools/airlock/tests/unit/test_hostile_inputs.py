"""Bad input for every verb: one exact line, the right exit code, nothing written elsewhere.

Each row runs the real CLI in a fresh sandbox (:mod:`hostile`): a data
tree, real git repositories, a destination area ``out/`` and canaries in
``outside/``. ``{S}`` stands for the sandbox, ``{D}`` for its data tree
(also $AIRLOCK_ROOT). Besides its line and exit code, every row is held to:
nothing changed outside its destination, nothing left half-written, its
secret (if it has one) in no output and no file, and, for the verbs that
need the engine, a registry, an index or the network, that it is refused
before any of them is reached.

test_bad_inputs.py holds the rows about the release data itself
(validate, constraints, packages, patches); these are about what each
verb is given on its command line and in its environment.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import unittest
from pathlib import Path

from airlock import files
from airlock.ext import git
from airlock.tests.unit.hostile import HostileTestCase, Row, row

SECRET = "hostile-s3cret-7f3a"
G = ["--git-base", "{S}/git"]
SR = "data/releases/2025.2/source-refs.yaml"
RY = "data/releases/2025.2/release.yaml"
ZERO = "0" * 40
DIGEST = "sha256:" + "a" * 64
APT = {"AIRLOCK_APT_MIRROR": "http://deb.example/debian"}
BASE = f"127.0.0.1:5000/airlock/debian@{DIGEST}"
CANARY_FILE = "{S}/outside/canary.txt"
CANARY_DIR = "{S}/outside/canary-dir"


def help_of(prog: str) -> str:
    return f"see {prog} --help"


# --- messages the rows share ------------------------------------------------

WRITE_ELSEWHERE = "write somewhere else"
REPO_FIX = "write https://host/path, ssh://host/path, file:///path, host:path or a local path"
NOT_A_REPO = "is not a URL or path git can use"
GIT_BASE_FIX = ("pass the folder that holds openstack/<project> repositories, or the git "
                "mirror's URL")
CHECK_BASE = ("check --git-base / AIRLOCK_GIT_BASE (the repository is <git-base>/openstack/{}) "
              "or give the entry a repo:")
LOCK_FIX = "write it again with: airlock refs resolve --release REL -o FILE"
AUTH_FIX = "point it at a containers auth.json (skopeo login --authfile FILE writes one)"
AUTH = "$AIRLOCK_REGISTRY_AUTH_FILE ({S}/out/auth.json)"
RECORD = "out/work/2025.2/build-record.json"
RECORD_FIX = "run airlock build again (the build record is its output)"
PREFIX_FIX = "write host[:port]/path, e.g. 127.0.0.1:5000/airlock or nexus.site:8443/openstack"
PREPARED_FIX = "pass the folder that `airlock sources prepare` made"
MIRROR_FIX = "set AIRLOCK_APT_MIRROR to http://host/debian (https:// and file:// work too)"
REF_FIX = ("write host[:port]/repo:tag, e.g. 127.0.0.1:5000/airlock/x:tag")
QUALIFY = "set the variable to host[:port]/path:tag or host[:port]/path@sha256:<hex>"
EMPTY = "give it a value, or leave it out"
INDEX_CRED = ("holds '@' but no scheme (credentials without https://?); write the URL with "
              "its scheme (https://...), or a local folder")


def lock_text(release: str = "2025.2", component: str = "nova", sha: str = ZERO,
              ref: str = "32.2.1", repo: str = "{S}/git/openstack/nova") -> str:
    """A refs lock of one component, as refs resolve writes it (values quoted)."""
    return (f"release: '{release}'\ncomponents:\n  {component}:\n    sha: '{sha}'\n"
            f"    ref: '{ref}'\n    repo: '{repo}'\n    resolved-at: '2026-01-01T00:00:00Z'\n")


def prepared(name: str, release: str = "2025.2", requirements: str = "pbr\n",
             component: str | None = None) -> list[tuple]:
    """Edits making ``out/src/<name>`` a tree as sources prepare leaves it (its record)."""
    record = {"component": component or name, "release": release, "ref": "1.0.0",
              "sha": ZERO, "repo": "/x", "version": "1.0.0", "committed-at": 0,
              "patches": []}
    return [("write", f"out/src/{name}/.airlock/source.json", json.dumps(record)),
            ("write", f"out/src/{name}/requirements.txt", requirements)]


def kinds(label: str, rel: str, argv: list[str], fix: str, limit: int, *,
          within: str | None, content: str = "x\n", shown: str | None = None,
          **kwargs) -> list[Row]:
    """Rows putting what is no regular file where the file ``rel`` (under S) belongs.

    A FIFO (nothing ever writes to it: a read that waited would hang the
    table), a folder, a file over the limit, a dangling link, /dev/zero
    behind a link, and a link to a valid file out of ``within`` (the folder
    as messages name it; None: any path will do). ``shown``: the file as
    messages name it (default: its absolute path).
    """
    where = shown or f"{{S}}/{rel}"
    setup = list(kwargs.pop("setup", []))
    out = f"leads outside {within} (a symbolic link?); replace the link by the file itself"
    rows = [
        row(f"{label} is a FIFO", argv, f"{where}: is a FIFO, not a regular file; {fix}",
            setup=[*setup, ("fifo", rel)], **kwargs),
        row(f"{label} is a folder", argv,
            f"{where}: is a directory, not a regular file; {fix}",
            setup=[*setup, ("folder", rel)], **kwargs),
        row(f"{label} is over its size limit", argv,
            f"{where}: is larger than {limit // files.MiB} MiB, the limit for this file; {fix}",
            setup=[*setup, ("huge", rel, limit + 1)], **kwargs),
        row(f"{label} is a dangling link", argv, f"{where}: is a dangling symbolic link; {fix}",
            setup=[*setup, ("link", rel, "no-such-target")], **kwargs),
        row(f"{label} is /dev/zero behind a link", argv,
            f"{where}: {out}" if within else
            f"{where}: is a character device, not a regular file; {fix}",
            setup=[*setup, ("link", rel, "/dev/zero")], **kwargs),
    ]
    if within:
        rows.append(row(f"{label} is a link out of the tree", argv, f"{where}: {out}",
                        setup=[*setup, ("write", "outside/valid", content),
                               ("link", rel, "{S}/outside/valid")], **kwargs))
    return rows


def refusal(line: str) -> str:
    """``line`` with ``{E:create:/sys}`` or ``{E:mkdir:/proc}`` as the system says it.

    What /proc and /sys answer to a new file or folder depends on the
    kernel and on who asks (root in a container, a read-only /sys): the
    table asks the same question and expects airlock to pass the answer on.
    """
    def answer(match: re.Match[str]) -> str:
        path = f"{match[2]}/.airlock-hostile-probe"
        try:
            if match[1] == "mkdir":
                os.mkdir(path)
                os.rmdir(path)
            else:
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
                os.unlink(path)
        except OSError as error:
            return error.strerror or str(error)
        raise unittest.SkipTest(f"{match[2]} accepts new entries here")

    return re.sub(r"\{E:(create|mkdir):(/\w+)\}", answer, line)


def lock_is_complete(path: Path) -> None:
    """A lock that refs resolve wrote: every component, no credential."""
    text = path.read_text()
    for component in ("keystone", "nova", "oslo.messaging"):
        assert f"  {component}:\n" in text, text


def prepared_tree(path: Path) -> None:
    assert json.loads((path / ".airlock" / "source.json").read_text())["component"] == "nova"
    assert (path / "nova" / "x.py").read_text() == "a = 2\n"  # the fixture's patch applied


# --- usage: one line, exit 1, whatever the verb ----------------------------

USAGE = [
    row("no verb", [],
        f"airlock: the following arguments are required: VERB; {help_of('airlock')}"),
    row("unknown verb", ["frobnicate"],
        "airlock: argument VERB: invalid choice: 'frobnicate' (choose from 'release', 'refs', "
        "'sources', 'constraints', 'packages', 'mirror', 'base', 'build', 'publish', 'check', "
        f"'wheels', 'debs', 'bundle', 'audit', 'index', 'zuul'); {help_of('airlock')}"),
    row("unknown verb of refs", ["refs", "frob"],
        "airlock refs: argument VERB: invalid choice: 'frob' (choose from 'resolve'); "
        f"{help_of('airlock refs')}"),
    row("refs resolve without --release", ["refs", "resolve"],
        "airlock refs resolve: the following arguments are required: --release; "
        f"{help_of('airlock refs resolve')}"),
    row("sources prepare without --dest", ["sources", "prepare", "--release", "2025.2",
                                           "--component", "nova"],
        "airlock sources prepare: the following arguments are required: --dest; "
        f"{help_of('airlock sources prepare')}"),
    row("an unknown option", ["constraints", "--release", "2025.2", "--frob"],
        f"airlock: unrecognized arguments: --frob; {help_of('airlock')}"),
    row("an option without its value", ["refs", "resolve", "--release", "2025.2",
                                        "--git-base"],
        "airlock refs resolve: argument --git-base: expected one argument; "
        f"{help_of('airlock refs resolve')}"),
    row("a value that looks like an option", ["refs", "resolve", "--release", "2025.2",
                                             "--git-base", "-oops"],
        "airlock refs resolve: argument --git-base: expected one argument; "
        f"{help_of('airlock refs resolve')}"),
    row("--jobs that is no number", ["refs", "resolve", "--release", "2025.2", "--jobs", "x"],
        "airlock refs resolve: argument --jobs: invalid int value: 'x'; "
        f"{help_of('airlock refs resolve')}"),
    row("--jobs 0", ["refs", "resolve", "--release", "2025.2", "--jobs", "0", *G],
        "--jobs: must be at least 1, not 0; pass --jobs 1 or more"),
    row("wheels for an unknown platform", ["wheels", "--release", "2025.2", "--dest", "out/w",
                                           "--platform", "linux/s390x"],
        "airlock wheels: argument --platform: invalid choice: 'linux/s390x' (choose from "
        f"'linux/amd64', 'linux/arm64'); {help_of('airlock wheels')}"),
    row("debs for an unknown platform", ["debs", "--release", "2025.2", "--service", "nova",
                                         "--dest", "out/d", "--platform", "windows/amd64"],
        "airlock debs: argument --platform: invalid choice: 'windows/amd64' (choose from "
        f"'linux/amd64', 'linux/arm64'); {help_of('airlock debs')}"),
    row("packages of an unknown profile", ["packages", "--service", "nova", "--profile", "test"],
        "airlock packages: argument --profile: invalid choice: 'test' (choose from 'build', "
        f"'runtime'); {help_of('airlock packages')}"),
    row("an empty --release", ["constraints", "--release", ""], f"--release: is empty; {EMPTY}"),
    row("an empty release name to validate", ["release", "validate", "2025.2", ""],
        f"REL: is empty; {EMPTY}"),
    row("an empty -o", ["constraints", "--release", "2025.2", "-o", ""],
        f"--output: is empty; {EMPTY}"),
    row("an empty --component among others", ["refs", "resolve", "--release", "2025.2",
                                               "--component", "nova", "--component", ""],
        f"--component: is empty; {EMPTY}"),
]

# --- -o of constraints and packages (their data: test_bad_inputs.py) --------

CONSTRAINTS_TO = ["constraints", "--release", "2025.2", "-o"]
PACKAGES_TO = ["packages", "--release", "2025.2", "--service", "nova", "--profile", "build",
               "-o"]


def packages_written(path: Path) -> None:
    assert path.read_text() == "libffi-dev\n", path.read_text()


OUTPUTS = [
    row("constraints -o a FIFO", [*CONSTRAINTS_TO, "out/c.txt"],
        f"out/c.txt: is a FIFO, not a regular file; {WRITE_ELSEWHERE}",
        setup=[("fifo", "out/c.txt")]),
    row("constraints -o a link to a device", [*CONSTRAINTS_TO, "out/c.txt"],
        f"out/c.txt: is a symbolic link to a character device, not a regular file; "
        f"{WRITE_ELSEWHERE}", setup=[("link", "out/c.txt", "/dev/zero")]),
    row("packages -o a folder", [*PACKAGES_TO, "out"], f"out: is a directory; {WRITE_ELSEWHERE}"),
    row("packages -o under a file", [*PACKAGES_TO, f"{CANARY_FILE}/p.txt"],
        f"{CANARY_FILE}: is not a folder; {WRITE_ELSEWHERE}"),
    row("packages -o over a link to a file outside", [*PACKAGES_TO, "out/p.txt"], "",
        code=0, lines=0, dest="out/p.txt", complete=packages_written,
        setup=[("link", "out/p.txt", CANARY_FILE)]),
]

# --- refs resolve ------------------------------------------------------------

RESOLVE = ["refs", "resolve", "--release", "2025.2"]
RESOLVE_TO = [*RESOLVE, *G, "-o"]

REFS = [
    row("-o a new file", [*RESOLVE_TO, "out/lock.yaml"], "", code=0, lines=0,
        dest="out/lock.yaml", complete=lock_is_complete),
    row("-o a link to a file outside: the link is replaced, the file untouched",
        [*RESOLVE_TO, "out/lock.yaml"], "", code=0, lines=0, dest="out/lock.yaml",
        setup=[("link", "out/lock.yaml", CANARY_FILE)], complete=lock_is_complete),
    row("-o beside a planted temporary name that links outside",
        [*RESOLVE_TO, "out/lock.yaml"], "", code=0, lines=0, dest="out/lock.yaml",
        setup=[("link", "out/.lock.yaml.tmp", CANARY_FILE)], complete=lock_is_complete),
    row("-o into a missing folder", [*RESOLVE_TO, "out/nope/lock.yaml"],
        f"out/nope: no such folder; create it first, or {WRITE_ELSEWHERE}"),
    row("-o into a file's 'folder'", [*RESOLVE_TO, f"{CANARY_FILE}/lock.yaml"],
        f"{CANARY_FILE}: is not a folder; {WRITE_ELSEWHERE}"),
    row("-o a folder", [*RESOLVE_TO, "out/d"], f"out/d: is a directory; {WRITE_ELSEWHERE}",
        setup=[("folder", "out/d")]),
    row("-o a FIFO", [*RESOLVE_TO, "out/f"],
        f"out/f: is a FIFO, not a regular file; {WRITE_ELSEWHERE}", setup=[("fifo", "out/f")]),
    row("-o a device node", [*RESOLVE_TO, "out/null"],
        f"out/null: is a character device, not a regular file; {WRITE_ELSEWHERE}",
        setup=[("device", "out/null")]),
    row("-o a link to /dev/null", [*RESOLVE_TO, "out/null"],
        f"out/null: is a symbolic link to a character device, not a regular file; "
        f"{WRITE_ELSEWHERE}", setup=[("link", "out/null", "/dev/null")]),
    row("-o a link to a folder outside", [*RESOLVE_TO, "out/l"],
        f"out/l: is a symbolic link to a directory, not a regular file; {WRITE_ELSEWHERE}",
        setup=[("link", "out/l", CANARY_DIR)]),
    row("-o into /proc", [*RESOLVE_TO, "/proc/airlock.lock"],
        "/proc/airlock.lock: cannot create a file in /proc: {E:create:/proc}; "
        f"{WRITE_ELSEWHERE}, or fix the permissions"),
    row("-o into /sys", [*RESOLVE_TO, "/sys/airlock.lock"],
        "/sys/airlock.lock: cannot create a file in /sys: {E:create:/sys}; "
        f"{WRITE_ELSEWHERE}, or fix the permissions"),
    row("--git-base that does not exist", [*RESOLVE, "--git-base", "{S}/nope"],
        f"--git-base: {{S}}/nope: no such folder; {GIT_BASE_FIX}"),
    row("--git-base that is a file", [*RESOLVE, "--git-base", CANARY_FILE],
        f"--git-base: {CANARY_FILE}: is not a folder; {GIT_BASE_FIX}"),
    row("--git-base with shell text", [*RESOLVE, "--git-base", "{S}/$(id)"],
        f"--git-base: {{S}}/$(id) {NOT_A_REPO} (holds '$', which is shell text); {REPO_FIX}"),
    row("--git-base naming a remote helper that would hang", [*RESOLVE, "--git-base", "fd::17"],
        f"--git-base: fd::17 {NOT_A_REPO} (names a git remote helper (<helper>::)); {REPO_FIX}"),
    row("--git-base running a command", [*RESOLVE, "--git-base", "ext::sh -c touch% /tmp/x"],
        f"--git-base: ext::sh -c touch% /tmp/x {NOT_A_REPO} (holds whitespace or a control "
        f"character); {REPO_FIX}"),
    row("--git-base taken for an option", [*RESOLVE, "--git-base=--upload-pack=touch"],
        f"--git-base: --upload-pack=touch {NOT_A_REPO} (starts with '-', which git takes for "
        f"an option); {REPO_FIX}"),
    row("--git-base of a scheme git lacks, with credentials",
        [*RESOLVE, "--git-base", f"ftp://bob:{SECRET}@git.example"],
        f"--git-base: ftp://git.example {NOT_A_REPO} (has the scheme 'ftp', not one of https, "
        f"http, ssh, git, file, git+ssh, ssh+git); {REPO_FIX}", secret=SECRET),
    row("$AIRLOCK_GIT_BASE with credentials and shell text", RESOLVE,
        f"$AIRLOCK_GIT_BASE: https://git.example/$(id) {NOT_A_REPO} (holds '$', which is "
        f"shell text); {REPO_FIX}",
        env={"AIRLOCK_GIT_BASE": f"https://bob:{SECRET}@git.example/$(id)"}, secret=SECRET),
    row("no git base at all", RESOLVE,
        "component keystone: no repository: the entry has no repo: and no git base is set; "
        "pass --git-base URL or set AIRLOCK_GIT_BASE", lines=3),
    row("a ref the repository lacks", [*RESOLVE, *G],
        "{D}/releases/2025.2/source-refs.yaml:nova: ref \"99.0.0\" not found in "
        "{S}/git/openstack/nova; write an existing tag, branch or full SHA (git ls-remote "
        "{S}/git/openstack/nova lists them)",
        setup=[("replace", SR, 'nova: "32.2.1"', 'nova: "99.0.0"')]),
    row("a full SHA the repository lacks", [*RESOLVE, *G],
        f"{{D}}/releases/2025.2/source-refs.yaml:nova: commit {'b' * 40} not found in "
        f"{{S}}/git/openstack/nova; check the SHA, or update the mirror that serves this "
        f"repository", setup=[("replace", SR, 'nova: "32.2.1"', f'nova: "{"b" * 40}"')]),
    row("a component's repository missing", [*RESOLVE, *G],
        f"{{D}}/releases/2025.2/source-refs.yaml:nova: cannot read repository "
        f"{{S}}/git/openstack/nova: '{{S}}/git/openstack/nova' does not appear to be a git "
        f"repository; {CHECK_BASE.format('nova')}", code=2,
        setup=[("remove", "git/openstack/nova")]),
    row("a component's repository is a FIFO", [*RESOLVE, *G],
        f"{{D}}/releases/2025.2/source-refs.yaml:nova: cannot read repository "
        f"{{S}}/git/openstack/nova: '{{S}}/git/openstack/nova' does not appear to be a git "
        f"repository; {CHECK_BASE.format('nova')}", code=2,
        setup=[("fifo", "git/openstack/nova")]),
    row("--component unknown", [*RESOLVE, *G, "--component", "horizon"],
        "{D}/releases/2025.2/source-refs.yaml: no component horizon (known: keystone, nova, "
        "oslo.messaging); add it to source-refs.yaml or name a known component"),
    row("--component with '..'", [*RESOLVE, *G, "--component", "../nova"],
        "{D}/releases/2025.2/source-refs.yaml: no component ../nova (known: keystone, nova, "
        "oslo.messaging); add it to source-refs.yaml or name a known component"),
    row("an unknown release", ["refs", "resolve", "--release", "2099.1", *G],
        "{D}/releases/2099.1: no such release; known: 2025.1, 2025.2"),
    row("a release name with '..'", ["refs", "resolve", "--release", "../2025.2", *G],
        "{D}/releases/../2025.2: no such release; known: 2025.1, 2025.2"),
    row("a repo: with credentials in the release data", [*RESOLVE, *G],
        "{D}/releases/2025.2/source-refs.yaml:5: repo of 'oslo.messaging' holds credentials "
        "(the user:password@ or token@ part of the URL); release data is reviewed in public: "
        "remove them and let git read them from ~/.netrc at run time, or pass a --git-base "
        "that carries them", secret=SECRET,
        setup=[("append", SR, f'  repo: "https://bob:{SECRET}@git.example/oslo.messaging"\n')]),
]

# --- sources prepare ----------------------------------------------------------

PREPARE = ["sources", "prepare", "--release", "2025.2", "--component", "nova"]
PREPARE_LOCKED = [*PREPARE, "--dest", "out/nova", "--lock", "out/nova.lock"]
DEST_EXISTS = "exists; remove it or choose another --dest"

SOURCES = [
    row("a relative --dest", [*PREPARE, *G, "--dest", "out/nova"],
        "", code=0, lines=0, stdout=None, dest="out/nova", complete=prepared_tree),
    row("beside a planted staging name that links outside", [*PREPARE, *G, "--dest", "out/nova"],
        "", code=0, lines=0, stdout=None, dest="out/nova", complete=prepared_tree,
        setup=[("link", "out/.nova.airlock-planted", CANARY_DIR)]),
    row("--dest that holds a file", [*PREPARE, *G, "--dest", "out/nova"],
        f"out/nova: {DEST_EXISTS}", setup=[("write", "out/nova/keep", "mine\n")]),
    row("--dest that is a file", [*PREPARE, *G, "--dest", "out/nova"],
        f"out/nova: {DEST_EXISTS}", setup=[("write", "out/nova", "mine\n")]),
    row("--dest that links to a folder outside", [*PREPARE, *G, "--dest", "out/nova"],
        f"out/nova: {DEST_EXISTS}", setup=[("link", "out/nova", CANARY_DIR)]),
    row("--dest that is a dangling link", [*PREPARE, *G, "--dest", "out/nova"],
        f"out/nova: {DEST_EXISTS}", setup=[("link", "out/nova", "{S}/outside/nothing")]),
    row("--dest under a file", [*PREPARE, *G, "--dest", f"{CANARY_FILE}/nova"],
        f"{CANARY_FILE}: is not a folder; choose another --dest"),
    row("--dest in /proc", [*PREPARE, *G, "--dest", "/proc/airlock/nova"],
        "/proc/airlock: cannot create a folder here: {E:mkdir:/proc}; choose another "
        "--dest or fix the permissions"),
    row("--dest in /sys", [*PREPARE, *G, "--dest", "/sys/airlock/nova"],
        "/sys/airlock: cannot create a folder here: {E:mkdir:/sys}; choose another "
        "--dest or fix the permissions"),
    row("an unknown component", ["sources", "prepare", "--release", "2025.2", "--component",
                                 "horizon", "--dest", "out/h", *G],
        "{D}/releases/2025.2/source-refs.yaml: no component horizon (known: keystone, nova, "
        "oslo.messaging); add it to source-refs.yaml or name a known component"),
    row("a component with '..'", ["sources", "prepare", "--release", "2025.2", "--component",
                                  "../../outside", "--dest", "out/h", *G],
        "{D}/releases/2025.2/source-refs.yaml: no component ../../outside (known: keystone, "
        "nova, oslo.messaging); add it to source-refs.yaml or name a known component"),
    row("no lock and no git base", [*PREPARE, "--dest", "out/nova"],
        "component nova: no repository: the entry has no repo: and no git base is set; "
        "pass --git-base URL or set AIRLOCK_GIT_BASE"),
    row("a lock of another release", PREPARE_LOCKED,
        "refs lock: is for release 2025.1, not 2025.2; use the lock of 2025.2, or write one "
        "with: airlock refs resolve --release 2025.2 -o FILE",
        setup=[("write", "out/nova.lock", lock_text(release="2025.1"))]),
    row("a lock without the component", PREPARE_LOCKED,
        "refs lock: has no component nova (it has: keystone); add nova to "
        "releases/2025.2/source-refs.yaml and resolve the refs again",
        setup=[("write", "out/nova.lock", lock_text(component="keystone"))]),
    row("a lock whose commit the repository lacks", PREPARE_LOCKED,
        f"component nova: commit {ZERO} (32.2.1) not found in {{S}}/git/openstack/nova; the "
        "lock is stale or names the wrong repository; resolve the refs again",
        setup=[("write", "out/nova.lock", lock_text())]),
    row("a lock whose sha is no SHA", PREPARE_LOCKED,
        f"out/nova.lock:4: component nova: sha is not a 40-character hex SHA; {LOCK_FIX}",
        setup=[("write", "out/nova.lock", lock_text(sha="HEAD~1"))]),
    row("a lock whose ref is an option", PREPARE_LOCKED,
        f"out/nova.lock:5: component nova: ref --output=/etc/x starts with '-', which git "
        f"takes for an option; {LOCK_FIX}",
        setup=[("write", "out/nova.lock", lock_text(ref="--output=/etc/x"))]),
    row("a lock whose repo is a remote helper", PREPARE_LOCKED,
        f"out/nova.lock:6: component nova: repo fd::3 {NOT_A_REPO} (names a git remote helper "
        f"(<helper>::)); {LOCK_FIX}",
        setup=[("write", "out/nova.lock", lock_text(repo="fd::3"))]),
    row("a lock whose repo has credentials and shell text", PREPARE_LOCKED,
        f"out/nova.lock:6: component nova: repo https://git.example/$(id) {NOT_A_REPO} (holds "
        f"'$', which is shell text); {LOCK_FIX}", secret=SECRET,
        setup=[("write", "out/nova.lock",
                lock_text(repo=f"https://bob:{SECRET}@git.example/$(id)"))]),
    row("a lock that is a list", PREPARE_LOCKED,
        "out/nova.lock: not a refs lock (expected a mapping with release: and components:); "
        f"{LOCK_FIX}", setup=[("write", "out/nova.lock", "- nova\n")]),
    row("a lock without release:", PREPARE_LOCKED,
        f"out/nova.lock:release: release: missing; {LOCK_FIX}",
        setup=[("write", "out/nova.lock", "components: {}\n")]),
    row("a lock that is not YAML", PREPARE_LOCKED,
        "out/nova.lock:2: invalid YAML: expected ',' or '}', but got '<stream end>' (while "
        "parsing a flow mapping started on line 1); fix the syntax",
        setup=[("write", "out/nova.lock", "{release: 2025.2\n")]),
    row("a patch that does not apply", [*PREPARE, *G, "--dest", "out/nova"],
        "data/patches/nova/2025.2/0001-fix-something.patch: hunk @@ -1 +1 @@ does not apply to "
        "nova/x.py; rebase the patch onto 32.2.1 ({sha})",
        setup=[("replace", "data/patches/nova/2025.2/0001-fix-something.patch", "-a = 1",
                "-a = 5")]),
    row("a patch of a file the tree lacks", [*PREPARE, *G, "--dest", "out/nova"],
        "data/patches/nova/2025.2/0001-fix-something.patch: does not apply: nova/y.py: No such "
        "file or directory; rebase the patch onto 32.2.1 ({sha})",
        setup=[("write", "data/patches/nova/2025.2/0001-fix-something.patch",
                "--- a/nova/y.py\n+++ b/nova/y.py\n@@ -1 +1 @@\n-a = 1\n+a = 2\n")]),
]

# --- mirror create ------------------------------------------------------------

MIRROR = ["mirror", "create", "--release", "2025.2", "--dest", "out/git"]
NOT_RELEASED = ("is not a released version; the local mirror can only make released versions "
                "from their sdists; pin a version here, or use a real git mirror (--git-base) "
                "for branches and SHAs")

MIRRORS = [
    row("--dest that is a file", MIRROR,
        "out/git: is not a folder (given with --dest); choose another --dest",
        setup=[("write", "out/git", "mine\n")]),
    row("--dest under a file", ["mirror", "create", "--release", "2025.2", "--dest",
                                f"{CANARY_FILE}/git"],
        f"{CANARY_FILE}: is not a folder (given with --dest); choose another --dest"),
    row("--dest that is a dangling link", MIRROR,
        "out/git: is a dangling symbolic link (given with --dest); choose another --dest",
        setup=[("link", "out/git", "{S}/outside/nothing")]),
    row("openstack/ in --dest links outside", MIRROR,
        "out/git/openstack: is a symbolic link; choose another --dest, or put the folder itself "
        "there", setup=[("link", "out/git/openstack", CANARY_DIR)]),
    row("a repository in --dest links outside", MIRROR,
        "out/git/openstack/nova: is a symbolic link; choose another --dest, or put the folder "
        "itself there", setup=[("link", "out/git/openstack/nova", CANARY_DIR)]),
    row("a file where a repository belongs", MIRROR,
        "out/git/openstack/nova: exists and is not a bare git repository; choose another --dest, "
        "or remove it", setup=[("write", "out/git/openstack/nova", "mine\n")]),
    row("a foreign folder where a repository belongs", MIRROR,
        "out/git/openstack/keystone: exists and is not a bare git repository; choose another "
        "--dest, or remove it", setup=[("write", "out/git/openstack/keystone/notes", "mine\n")]),
    row("an unknown --component", [*MIRROR, "--component", "horizon"],
        "--component horizon: not a component of release 2025.2; use one of: keystone, nova, "
        "oslo.messaging"),
    row("a ref that is a branch", MIRROR,
        f"{{D}}/releases/2025.2/source-refs.yaml:nova: ref 'stable/2025.2' {NOT_RELEASED}",
        setup=[("replace", SR, 'nova: "32.2.1"', 'nova: "stable/2025.2"')]),
    row("a ref that is a SHA", MIRROR,
        f"{{D}}/releases/2025.2/source-refs.yaml:nova: ref '{'c' * 40}' {NOT_RELEASED}",
        setup=[("replace", SR, 'nova: "32.2.1"', f'nova: "{"c" * 40}"')]),
    row("a ref that is no canonical version", MIRROR,
        f"{{D}}/releases/2025.2/source-refs.yaml:nova: ref 'v32.2.1' {NOT_RELEASED}",
        setup=[("replace", SR, 'nova: "32.2.1"', 'nova: "v32.2.1"')]),
    row("a local --index-url that does not exist", [*MIRROR, "--index-url", "{S}/nope"],
        "{S}/nope: no such folder (a local index is a folder of sdists and wheels); pass an "
        "index URL or an existing folder"),
    row("a local --index-url that is a file", [*MIRROR, "--index-url", CANARY_FILE],
        f"{CANARY_FILE}: is not a folder (a local index is a folder of sdists and wheels); "
        "pass an index URL or an existing folder"),
    row("--index-url with credentials and no scheme",
        [*MIRROR, "--index-url", f"bob:{SECRET}@nexus.example/simple"],
        f"--index-url: {INDEX_CRED}", secret=SECRET),
    row("$AIRLOCK_INDEX_URL with credentials and no scheme", MIRROR,
        f"$AIRLOCK_INDEX_URL: {INDEX_CRED}", secret=SECRET,
        env={"AIRLOCK_INDEX_URL": f"bob:{SECRET}@nexus.example/simple"}),
]

# --- base create ----------------------------------------------------------------

BASE_CREATE = ["base", "create", "--release", "2025.2", "--work-dir", "out/work"]
DOCKERFILE = "data/images/debian-base/Dockerfile"
DOCKERFILE_FIX = "restore images/debian-base/Dockerfile"
BASE_SETUP = [("write", DOCKERFILE, "FROM scratch\nADD rootfs.tar /\n")]


def auth_rows(label: str, argv: list[str], **kwargs) -> list[Row]:
    """$AIRLOCK_REGISTRY_AUTH_FILE that is no auth file: refused before any request.

    The file's content is never quoted: each holds the secret.
    """
    env = {"AIRLOCK_REGISTRY_AUTH_FILE": "{S}/out/auth.json", **kwargs.pop("env", {})}
    setup = kwargs.pop("setup", [])
    auth = "out/auth.json"
    cases = [
        ("missing", [], "no such file"),
        ("a folder", [("folder", auth)], "is a directory, not a regular file"),
        ("a FIFO", [("fifo", auth)], "is a FIFO, not a regular file"),
        ("not JSON", [("write", auth, f"auths: {SECRET}\n")],
         "is not JSON (Expecting value at line 1 column 1)"),
        ("without auths", [("write", auth, json.dumps({"credHelpers": {"x": SECRET}}))],
         'has no "auths" object'),
        ("with an auth that is no user:password",
         [("write", auth, json.dumps({"auths": {"reg.example": {"auth": SECRET}}}))],
         '"auth" of "auths" entry 1 is not base64 of user:password'),
    ]
    return [row(f"{label}: the auth file is {name}", argv, f"{AUTH}: {what}; {AUTH_FIX}",
                setup=[*setup, *edits], env=env, secret=SECRET, **kwargs)
            for name, edits, what in cases]


BASES = [
    *kinds("base create: the Dockerfile", DOCKERFILE, BASE_CREATE, DOCKERFILE_FIX,
           files.DATA_LIMIT, within="{D}/images", content="FROM scratch\n", env=APT),
    row("base create: no Dockerfile", BASE_CREATE,
        f"{{S}}/{DOCKERFILE}: no such file; {DOCKERFILE_FIX}", env=APT),
    row("base create: $AIRLOCK_BASE_IMAGE unqualified", BASE_CREATE,
        f"{{D}}/releases/2025.2/release.yaml:base_image: expands to 'debian:bookworm', which is "
        f"not a fully qualified image reference; {QUALIFY}", setup=BASE_SETUP,
        env={**APT, "AIRLOCK_BASE_IMAGE": "debian:bookworm"}),
    row("base create: $AIRLOCK_BASE_IMAGE with a transport", BASE_CREATE,
        f"{{D}}/releases/2025.2/release.yaml:base_image: expands to "
        f"'docker://reg.example/debian:12', which is not a fully qualified image reference; "
        f"{QUALIFY}", setup=BASE_SETUP,
        env={**APT, "AIRLOCK_BASE_IMAGE": "docker://reg.example/debian:12"}),
    row("base create: $AIRLOCK_BASE_IMAGE with credentials", BASE_CREATE,
        f"{{D}}/releases/2025.2/release.yaml:base_image: expands to a value holding '@', which "
        f"is not a fully qualified image reference; {QUALIFY}", setup=BASE_SETUP, secret=SECRET,
        env={**APT, "AIRLOCK_BASE_IMAGE": f"bob:{SECRET}@reg.example/debian:12"}),
    row("base create: $AIRLOCK_APT_MIRROR taken for an option", BASE_CREATE,
        f"$AIRLOCK_APT_MIRROR: '--aptopt=Acquire::x' is not a Debian mirror URL; {MIRROR_FIX}",
        setup=BASE_SETUP, env={"AIRLOCK_APT_MIRROR": "--aptopt=Acquire::x"}),
    row("base create: $AIRLOCK_APT_MIRROR of another scheme, with credentials", BASE_CREATE,
        f"$AIRLOCK_APT_MIRROR: 'ftp://deb.example/debian' is not a Debian mirror URL; "
        f"{MIRROR_FIX}", setup=BASE_SETUP, secret=SECRET,
        env={"AIRLOCK_APT_MIRROR": f"ftp://bob:{SECRET}@deb.example/debian"}),
    row("base create: $AIRLOCK_APT_MIRROR with a space", BASE_CREATE,
        f"$AIRLOCK_APT_MIRROR: 'http://deb.example/debian bookworm' is not a Debian mirror URL; "
        f"{MIRROR_FIX}", setup=BASE_SETUP,
        env={"AIRLOCK_APT_MIRROR": "http://deb.example/debian bookworm"}),
    row("base create: --work-dir that is a file", BASE_CREATE,
        "out/work: is not a folder (given with --work-dir); choose another --work-dir",
        setup=[*BASE_SETUP, ("write", "out/work", "mine\n")], env=APT),
    row("base create: $AIRLOCK_WORK_DIR under a file", ["base", "create", "--release", "2025.2"],
        f"{CANARY_FILE}: is not a folder (given with $AIRLOCK_WORK_DIR); set "
        "AIRLOCK_WORK_DIR to a folder", setup=BASE_SETUP,
        env={**APT, "AIRLOCK_WORK_DIR": f"{CANARY_FILE}/work"}),
    row("base create: --work-dir in /proc", ["base", "create", "--release", "2025.2",
                                             "--work-dir", "/proc/airlock-work"],
        "airlock: /proc/airlock-work: {E:mkdir:/proc}", code=2, setup=BASE_SETUP,
        env=APT),
    *auth_rows("base create", BASE_CREATE, setup=BASE_SETUP, env=APT),
]

# --- build ------------------------------------------------------------------------

BUILD = ["build", "--release", "2025.2", "--work-dir", "out/work"]
BUILD_LOCK = [*BUILD, "--lock", "out/nova.lock"]

BUILDS = [
    row("build: an empty --registry", [*BUILD, "--registry", ""],
        f"--registry: is empty; {EMPTY}"),
    row("build: --registry with credentials", [*BUILD, "--registry",
                                               f"bob:{SECRET}@nexus.example/openstack"],
        f"--registry: contains '@' (credentials or a digest); {PREFIX_FIX}; credentials go in "
        "$AIRLOCK_REGISTRY_AUTH_FILE", secret=SECRET),
    row("build: --registry with a scheme", [*BUILD, "--registry", "https://nexus.example/x"],
        "--registry: 'https://nexus.example/x' is not a repository prefix (a registry is named "
        f"without a scheme); {PREFIX_FIX}"),
    row("build: --registry with upper case", [*BUILD, "--registry", "nexus.example/OpenStack"],
        "--registry: 'nexus.example/OpenStack' is not a repository prefix (path component "
        "'OpenStack' is not lowercase letters and digits joined by '.', '_' or '-'); "
        f"{PREFIX_FIX}"),
    row("build: $AIRLOCK_REGISTRY without a host", BUILD,
        "$AIRLOCK_REGISTRY: 'airlock/images' is not a repository prefix ('airlock' is not a "
        "registry host: a name with a '.', an address, a port, or localhost); "
        f"{PREFIX_FIX}", env={"AIRLOCK_REGISTRY": "airlock/images"}),
    row("build: a platform the release lacks", [*BUILD, "--platform", "linux/s390x"],
        "{D}/releases/2025.2/release.yaml: platform linux/s390x is not built for this release; "
        "choose from linux/amd64, linux/arm64"),
    row("build: a service the release lacks", [*BUILD, "--service", "glance"],
        "{D}/releases/2025.2/release.yaml: no service glance in this release; choose from "
        "keystone, nova"),
    row("build: --emulate-install for two platforms", [*BUILD, "--emulate-install"],
        "--emulate-install: assembles the venv on one target platform; pass exactly one "
        "--platform"),
    row("build: an unknown release", ["build", "--release", "2099.1", "--work-dir", "out/work"],
        "{D}/releases/2099.1: no such release; known: 2025.1, 2025.2"),
    row("build: a base image variable that is unset", BUILD,
        "{D}/releases/2025.2/release.yaml:base_image: ${SITE_BASE} is not set and has no "
        "default; export SITE_BASE=... or write ${SITE_BASE:-default}",
        setup=[("replace", RY, "${AIRLOCK_BASE_IMAGE:-127.0.0.1:5000/airlock/debian:bookworm}",
                "${SITE_BASE}")]),
    row("build: $AIRLOCK_BASE_IMAGE unqualified", BUILD,
        "{D}/releases/2025.2/release.yaml:base_image: expands to 'debian@sha256:" + "a" * 64 +
        f"', which is not a fully qualified image reference; {QUALIFY}",
        env={"AIRLOCK_BASE_IMAGE": f"debian@{DIGEST}"}),
    row("build: --lock that is missing", [*BUILD, "--lock", "out/nope.lock"],
        f"out/nope.lock: no such lock file; {LOCK_FIX}"),
    row("build: --lock that is a FIFO", BUILD_LOCK,
        f"out/nova.lock: is a FIFO, not a regular file; {LOCK_FIX}",
        setup=[("fifo", "out/nova.lock")]),
    row("build: --lock of another release", BUILD_LOCK,
        "out/nova.lock: is the lock of release 2025.1, not 2025.2; write one with: airlock refs "
        "resolve --release 2025.2 -o FILE",
        setup=[("write", "out/nova.lock", lock_text(release="2025.1"))]),
    row("build: --lock with a ref that is an option", BUILD_LOCK,
        f"out/nova.lock:5: component nova: ref -c starts with '-', which git takes for an "
        f"option; {LOCK_FIX}", setup=[("write", "out/nova.lock", lock_text(ref="-c"))]),
    row("build: --work-dir that is a file", BUILD,
        "out/work: is not a folder (given with --work-dir); choose another --work-dir",
        setup=[("write", "out/work", "mine\n")]),
    row("build: $AIRLOCK_WORK_DIR that is a file", ["build", "--release", "2025.2"],
        "out/work: is not a folder (given with $AIRLOCK_WORK_DIR); set AIRLOCK_WORK_DIR to a "
        "folder", env={"AIRLOCK_WORK_DIR": "out/work"}, setup=[("write", "out/work", "mine\n")]),
    row("build: $AIRLOCK_CACHE_DIR that is a file", BUILD,
        f"{CANARY_FILE}: is not a folder (given with $AIRLOCK_CACHE_DIR); set "
        "AIRLOCK_CACHE_DIR to a folder", env={"AIRLOCK_CACHE_DIR": CANARY_FILE}),
    row("build: --git-base with credentials and shell text",
        [*BUILD, "--git-base", f"https://bob:{SECRET}@git.example/`id`"],
        f"--git-base: https://git.example/`id` {NOT_A_REPO} (holds '`', which is shell text); "
        f"{REPO_FIX}", secret=SECRET),
    row("build: --index-url with credentials and no scheme",
        [*BUILD, "--index-url", f"bob:{SECRET}@nexus.example/simple"],
        f"--index-url: {INDEX_CRED}", secret=SECRET),
    *auth_rows("build", BUILD),
]

# --- publish --------------------------------------------------------------------

PUBLISH = ["publish", "--release", "2025.2", "--work-dir", "out/work"]
RECORD_PATH = "out/work/2025.2/build-record.json"
PUBLISH_LOCK = ("out/work/2025.2/.lock",)


def image(**changes) -> dict:
    """One service image of a build record, as airlock build writes it."""
    entry = {"image": "nova", "service": True, "status": "built", "tag": "32.2.1-2025.2-abc",
             "moving_tags": ["2025.2", "32.2.1"], "digest": DIGEST,
             "ref": f"127.0.0.1:5000/airlock/nova@{DIGEST}",
             "platforms": ["linux/amd64"], "archive": "out/work/2025.2/out/nova.oci.tar"}
    entry.update(changes)
    return {key: value for key, value in entry.items() if value is not None}


def record_row(label: str, record: object, where: str, what: str, **kwargs) -> Row:
    """A build record that publish refuses before asking the registry anything."""
    text = record if isinstance(record, str) else json.dumps(record)
    return row(f"publish: {label}", PUBLISH, f"{RECORD}{where}: {what}; {RECORD_FIX}",
               setup=[("write", RECORD_PATH, text)], locks=PUBLISH_LOCK, **kwargs)


def images_row(label: str, entry: dict, where: str, what: str) -> Row:
    return record_row(label, {"release": "2025.2", "images": [entry]}, where, what)


RECORD_READ_FIX = "run airlock build --release 2025.2 first"

PUBLISHES = [
    row("publish: no build yet", PUBLISH,
        f"{RECORD}: no build record (no such folder); {RECORD_READ_FIX}"),
    row("publish: a release name with '..'", ["publish", "--release", "..", "--work-dir",
                                              "out/work"],
        "--release ..: is not a release name; name a folder of releases/, e.g. 2025.2"),
    row("publish: a release name that is a path", ["publish", "--release", "../../outside",
                                                   "--work-dir", "out/work"],
        "--release ../../outside: is not a release name; name a folder of releases/, e.g. "
        "2025.2"),
    *kinds("publish: the build record", RECORD_PATH, PUBLISH, RECORD_READ_FIX,
           files.RECORD_LIMIT, within=None, shown=RECORD, locks=PUBLISH_LOCK,
           setup=[("folder", "out/work/2025.2")]),
    record_row("a record of no images", {"images": []}, ":release",
               "is missing, not '2025.2'"),
    row("publish: a record without service images", PUBLISH,
        f"{RECORD}:images: no service image to publish; run airlock build --release 2025.2 "
        "first", setup=[("write", RECORD_PATH, json.dumps({"release": "2025.2", "images": []}))],
        locks=PUBLISH_LOCK),
    record_row("a record of another release", {"release": "2025.1", "images": [image()]},
               ":release", "is '2025.1', not '2025.2'"),
    record_row("a record that is not JSON", "{images: [", "",
               "not a build record: not JSON (Expecting property name enclosed in double "
               "quotes: line 1 column 2 (char 1))"),
    record_row("a record that is a JSON list", "[]", "",
               "not a build record: a JSON list, not an object"),
    record_row("a record nested too deeply", "[" * 100000 + "]" * 100000, "",
               "not a build record: nested too deeply"),
    record_row("a record whose images are no list", {"release": "2025.2", "images": {}},
               ":images", "missing or not a list"),
    images_row("an image that is a string", "nova", ":images[0]",
               "a JSON string, not an object"),
    images_row("an image without a digest", image(digest=None), ":images[0].digest",
               "is missing, not an image digest"),
    images_row("an image whose digest is no digest", image(digest="sha256:xyz"),
               ":images[0].digest", "'sha256:xyz' is not sha256:<64 hex>"),
    images_row("an image whose service flag is a string", image(service="yes"),
               ":images[0].service", "is a string, not true or false"),
    images_row("an image of an unknown status", image(status="pushed"), ":images[0].status",
               "is 'pushed', not one of built, kept, skipped"),
    images_row("an image whose tag is a path", image(tag="../latest"), ":images[0].tag",
               "'../latest' is not a tag"),
    images_row("an image whose moving tag is a number", image(moving_tags=[2025]),
               ":images[0].moving_tags[0]", "2025 is not a tag"),
    images_row("an image whose reference has no host", image(ref=f"nova@{DIGEST}"),
               ":images[0].ref", "does not start with a registry host"),
    images_row("an image of no platforms", image(platforms=[]), ":images[0].platforms",
               "is not a list of platforms"),
    images_row("a built image without its archive", image(archive=None), ":images[0].archive",
               "is missing, not the path of the OCI archive"),
    row("publish: --work-dir that is a file", PUBLISH,
        "out/work: is not a folder (given with --work-dir); choose another --work-dir",
        setup=[("write", "out/work", "mine\n")]),
    *auth_rows("publish", PUBLISH, setup=[("write", RECORD_PATH, json.dumps(
        {"release": "2025.2", "images": [image()]}))]),
]

# --- check ----------------------------------------------------------------------

CHECK = ["check", "--release", "2025.2", "--work-dir", "out/work"]


def check_row(label: str, record: object, where: str, what: str, **kwargs) -> Row:
    """A build record that check refuses before asking the registry anything."""
    text = record if isinstance(record, str) else json.dumps(record)
    return row(f"check: {label}", kwargs.pop("argv", CHECK),
               f"{RECORD}{where}: {what}{'' if ';' in what else '; ' + RECORD_FIX}",
               setup=[("write", RECORD_PATH, text)], **kwargs)


def check_record(**changes) -> dict:
    return {"release": "2025.2", "images": [image(**changes)]}


# check read the record with read_json and trusted its fields: every verb
# ended in an internal error (check had no --root), a broken record said
# "no build record", a field of the wrong type was a KeyError or a
# TypeError, and a reference's credentials were printed.
CHECKS = [
    row("check: no build yet", CHECK, f"{RECORD}: no such file; {RECORD_READ_FIX}"),
    *kinds("check: the build record", RECORD_PATH, CHECK, RECORD_READ_FIX,
           files.RECORD_LIMIT, within=None, shown=RECORD,
           setup=[("folder", "out/work/2025.2")]),
    check_row("a record that is not JSON", "{images: [", "",
              "not a build record: not JSON (Expecting property name enclosed in double "
              "quotes: line 1 column 2 (char 1))"),
    check_row("a record that is a JSON list", "[]", "",
              "not a build record: a JSON list, not an object"),
    check_row("a record whose images are a string", {"release": "2025.2", "images": "nova"},
              ":images", "missing or not a list"),
    check_row("an image that is a string", {"release": "2025.2", "images": ["nova"]},
              ":images[0]", "a JSON string, not an object"),
    check_row("an image without a reference", check_record(ref=None), ":images[0].ref",
              "is missing, not an image reference"),
    check_row("an image without a digest", check_record(digest=None), ":images[0].digest",
              "is missing, not an image digest"),
    check_row("an image whose digest is no sha256", check_record(digest="md5:abc"),
              ":images[0].digest", "'md5:abc' is not sha256:<64 hex>"),
    check_row("an image without platforms", check_record(platforms=None),
              ":images[0].platforms", "is missing, not a list of platforms"),
    check_row("an image whose platforms are a string", check_record(platforms="linux/amd64"),
              ":images[0].platforms", "is a string, not a list of platforms"),
    check_row("an image name that is a number", check_record(image=3), ":images[0].image",
              "is a number, not an image name"),
    check_row("an image name that is a path", check_record(image="../../outside"),
              ":images[0].image", "'../../outside' is not a service of release 2025.2"),
    check_row("a reference with credentials", check_record(
        ref=f"bob:{SECRET}@127.0.0.1:5000/airlock/nova@{DIGEST}"), ":images[0].ref",
        "does not start with a registry host", secret=SECRET),
    check_row("a reference with a scheme and credentials", check_record(
        ref=f"https://bob:{SECRET}@127.0.0.1:5000/airlock/nova@{DIGEST}"), ":images[0].ref",
        "has a transport prefix", secret=SECRET),
    check_row("a record of another release", {"release": "2025.1", "images": [image()]},
              ":release", "is '2025.1', not '2025.2'"),
    check_row("--service that selects nothing", check_record(), "",
              "no service image of that selection in the record; check --service and "
              "--platform", argv=[*CHECK, "--service", "keystone"]),
    check_row("--platform that selects nothing", check_record(), "",
              "no service image of that selection in the record; check --service and "
              "--platform", argv=[*CHECK, "--platform", "linux/arm64"]),
    row("check: an unknown release", ["check", "--release", "1999.1", "--work-dir", "out/work"],
        "{D}/releases/1999.1: no such release; known: 2025.1, 2025.2"),
    row("check: --root that is no data tree", [*CHECK, "--root", "{S}/outside"],
        "{S}/outside/releases/2025.2: no such release; known: none"),
]

# --- wheels -----------------------------------------------------------------------

WHEELS = ["wheels", "--release", "2025.2", "--dest", "out/wh"]
WHEELS_NOVA = [*WHEELS, "--service", "nova", "--source", "out/src/nova"]
REQUIREMENTS = "out/src/nova/requirements.txt"

WHEELHOUSES = [
    row("wheels: without --source", [*WHEELS, "--service", "nova"],
        "airlock wheels: --service and --source are required; pass the service and its "
        "prepared tree (or --tools-only)"),
    row("wheels: a source that was never prepared", WHEELS_NOVA,
        f"out/src/nova: not a prepared source tree (no .airlock/source.json); {PREPARED_FIX}",
        setup=[("write", REQUIREMENTS, "pbr\n")]),
    row("wheels: a source that is a file", WHEELS_NOVA,
        f"out/src/nova: not a prepared source tree (no .airlock/source.json); {PREPARED_FIX}",
        setup=[("write", "out/src/nova", "mine\n")]),
    row("wheels: a source that links to a prepared tree", WHEELS_NOVA,
        f"out/src/nova: not a prepared source tree (no .airlock/source.json); {PREPARED_FIX}",
        setup=[*prepared("real"), ("link", "out/src/nova", "{S}/out/src/real")]),
    row("wheels: a source whose record links outside", WHEELS_NOVA,
        f"out/src/nova: not a prepared source tree (no .airlock/source.json); {PREPARED_FIX}",
        setup=[("write", "outside/source.json", json.dumps({"component": "nova",
                                                              "release": "2025.2"})),
               ("link", "out/src/nova/.airlock/source.json", "{S}/outside/source.json")]),
    row("wheels: a source of another release", WHEELS_NOVA,
        "out/src/nova/.airlock/source.json: prepared for release 2025.1, not 2025.2; prepare "
        "it again for this release", setup=prepared("nova", release="2025.1")),
    row("wheels: a source of an unknown component", WHEELS_NOVA,
        "out/src/nova/.airlock/source.json: component 'horizon' is not in release 2025.2; use "
        "one of: keystone, nova, oslo.messaging", setup=prepared("nova", component="horizon")),
    row("wheels: no tree of the service itself", [*WHEELS, "--service", "nova", "--source",
                                                  "out/src/keystone"],
        "--source: no prepared tree of nova among the sources; pass --source <tree of airlock "
        "sources prepare --component nova>", setup=prepared("keystone")),
    row("wheels: a library built from source left out", WHEELS_NOVA,
        "--source: nova needs oslo-messaging, which release 2025.2 builds from source; pass "
        "--source for each (airlock sources prepare --component ...)",
        setup=prepared("nova", requirements="pbr\noslo.messaging>=14\n")),
    row("wheels: a requirement that includes another file", WHEELS_NOVA,
        f"{REQUIREMENTS}:2: option '-r' in a requirements file; list package requirements only",
        setup=prepared("nova", requirements="pbr\n-r /etc/shadow\n")),
    row("wheels: a requirement naming an index with credentials", WHEELS_NOVA,
        f"{REQUIREMENTS}:1: option '--index-url' in a requirements file; list package "
        "requirements only", secret=SECRET,
        setup=prepared("nova", requirements=f"--index-url https://bob:{SECRET}@evil.example\n")),
    *kinds("wheels: requirements.txt", REQUIREMENTS, WHEELS_NOVA,
           "a prepared tree holds regular files here", files.DATA_LIMIT,
           within="out/src/nova", shown=REQUIREMENTS, setup=prepared("nova")),
    row("wheels: --dest that holds something else", WHEELS_NOVA,
        "out/wh: exists and is not a wheelhouse (no manifest.json); choose a new or empty folder "
        "for --dest", setup=[*prepared("nova"), ("write", "out/wh/keep", "mine\n")]),
    row("wheels: --dest that is a file", WHEELS_NOVA,
        "out/wh: is not a folder (given with --dest); choose another --dest",
        setup=[*prepared("nova"), ("write", "out/wh", "mine\n")]),
    row("wheels: --cache that is a file", [*WHEELS_NOVA, "--cache", CANARY_FILE],
        f"{CANARY_FILE}: is not a folder (given with --cache); choose another --cache",
        setup=prepared("nova")),
    row("wheels: a local --index-url that does not exist", [*WHEELS_NOVA, "--index-url",
                                                            "{S}/nope"],
        "{S}/nope: no such folder (a local index is a folder of sdists and wheels); pass an "
        "index URL or an existing folder", setup=prepared("nova")),
    row("wheels: $AIRLOCK_INDEX_URL with credentials and no scheme", WHEELS_NOVA,
        f"$AIRLOCK_INDEX_URL: {INDEX_CRED}", secret=SECRET, setup=prepared("nova"),
        env={"AIRLOCK_INDEX_URL": f"{SECRET}@nexus.example/simple"}),
    row("wheels --tools-only: --dest that holds something else", [*WHEELS, "--tools-only"],
        "out/wh: exists and is not a tool wheel folder; choose a new or empty folder",
        setup=[("write", "out/wh/keep", "mine\n")]),
    row("wheels --tools-only: --dest under a file", ["wheels", "--release", "2025.2",
                                                     "--tools-only", "--dest",
                                                     f"{CANARY_FILE}/wh"],
        f"{CANARY_FILE}: is not a folder (given with --dest); choose another --dest"),
]

# --- debs ---------------------------------------------------------------------------

DEBS = ["debs", "--release", "2025.2", "--dest", "out/debs", "--profile", "build"]
DEBS_NOVA = [*DEBS, "--service", "nova", "--base-image", BASE]
NOT_AN_IMAGE = ("not an image of release 2025.2; use one of: keystone, nova, python-base, "
                "venv-builder")
NOT_A_REPOSITORY = ("exists and is not an airlock apt repository (no manifest.json); choose a "
                    "new or empty folder for --dest")

DEBSES = [
    row("debs: a digest base image without a registry host",
        [*DEBS, "--service", "nova", "--base-image", f"debian@{DIGEST}"],
        f"image reference 'debian@{DIGEST}': does not start with a registry host; {REF_FIX}",
        env=APT),
    row("debs: a base image of a malformed digest",
        [*DEBS, "--service", "nova", "--base-image", "reg.example/debian@sha256:zz"],
        "image reference 'reg.example/debian@sha256:zz': has a malformed digest; write "
        "host[:port]/repo@sha256:<64 hex digits>", env=APT),
    row("debs: a base image with a transport",
        [*DEBS, "--service", "nova", "--base-image", "docker://reg.example/debian:12"],
        "image reference 'docker://reg.example/debian:12': has a transport prefix; write "
        "host[:port]/repo:tag", env=APT),
    row("debs: a base image tag without a registry host",
        [*DEBS, "--service", "nova", "--base-image", "debian:12"],
        f"image reference 'debian:12': does not start with a registry host; {REF_FIX}",
        env=APT),
    row("debs: an unknown service", [*DEBS, "--service", "horizon", "--base-image", BASE],
        f"service horizon: {NOT_AN_IMAGE}", env=APT),
    row("debs: a service that is a path", [*DEBS, "--service", "../../outside",
                                           "--base-image", BASE],
        f"service ../../outside: {NOT_AN_IMAGE}", env=APT),
    row("debs: a source whose bindep.txt is no bindep", [*DEBS_NOVA, "--source", "out/src"],
        "out/src/bindep.txt:1: not a bindep entry: 'gcc [build'; write 'package [profile ...]', "
        "e.g. 'qemu-utils [platform:dpkg runtime]'", env=APT,
        setup=[("write", "out/src/bindep.txt", "gcc [build\n")]),
    row("debs: a source whose bindep.txt links outside", [*DEBS_NOVA, "--source", "out/src"],
        "out/src/bindep.txt: leads outside out/src (a symbolic link?); replace the link by the "
        "file itself", env=APT,
        setup=[("write", "outside/bindep.txt", "gcc [build]\n"),
               ("link", "out/src/bindep.txt", "{S}/outside/bindep.txt")]),
    row("debs: the second platform's folder holds something else", DEBS_NOVA,
        f"out/debs/arm64: {NOT_A_REPOSITORY}", env=APT,
        setup=[("write", "out/debs/arm64/keep", "mine\n")]),
    row("debs: --dest that is a file", DEBS_NOVA,
        "out/debs: is not a folder (given with --dest); choose another --dest", env=APT,
        setup=[("write", "out/debs", "mine\n")]),
    row("debs: --cache that is a file", [*DEBS_NOVA, "--cache", CANARY_FILE],
        f"{CANARY_FILE}: is not a folder (given with --cache); choose another --cache", env=APT),
    row("debs: $AIRLOCK_CACHE_DIR that is a dangling link", DEBS_NOVA,
        "out/cache: is a dangling symbolic link (given with $AIRLOCK_CACHE_DIR); set "
        "AIRLOCK_CACHE_DIR to a folder", env={**APT, "AIRLOCK_CACHE_DIR": "out/cache"},
        setup=[("link", "out/cache", "{S}/outside/nothing")]),
    row("debs: $AIRLOCK_APT_MIRROR without a host", DEBS_NOVA,
        f"$AIRLOCK_APT_MIRROR: 'http:///debian' is not a Debian mirror URL; {MIRROR_FIX}",
        env={"AIRLOCK_APT_MIRROR": "http:///debian"}),
    row("debs: $AIRLOCK_APT_MIRROR with credentials and a bad port", DEBS_NOVA,
        f"$AIRLOCK_APT_MIRROR: 'http://deb.example:http/debian' is not a Debian mirror URL; "
        f"{MIRROR_FIX}", secret=SECRET,
        env={"AIRLOCK_APT_MIRROR": f"http://bob:{SECRET}@deb.example:http/debian"}),
    *auth_rows("debs of a base image by tag", [*DEBS, "--service", "nova", "--base-image",
                                               "127.0.0.1:5000/airlock/debian:bookworm"],
               env=APT)[:2],
]


class HostileInputTest(HostileTestCase):
    """Every verb, every class of bad input: see the module docstring."""

    def test_usage(self) -> None:
        self.run_rows(USAGE)

    def test_constraints_and_packages_output(self) -> None:
        self.run_rows(OUTPUTS)

    def test_refs_resolve(self) -> None:
        self.run_rows([dataclasses.replace(r, line=refusal(r.line)) for r in REFS])

    def test_sources_prepare(self) -> None:
        # The template's nova commit: patch errors name it.
        sha = git.run(["rev-parse", "HEAD"], cwd=self.template / "git" / "openstack" / "nova"
                      ).stdout.strip()[:12]
        self.run_rows([dataclasses.replace(r, line=refusal(r.line.replace("{sha}", sha)))
                       for r in SOURCES])

    def test_mirror_create(self) -> None:
        self.run_rows(MIRRORS)

    def test_base_create(self) -> None:
        self.run_rows([dataclasses.replace(r, line=refusal(r.line)) for r in BASES])

    def test_build(self) -> None:
        self.run_rows(BUILDS)

    def test_publish(self) -> None:
        self.run_rows(PUBLISHES)

    def test_check(self) -> None:
        self.run_rows(CHECKS)

    def test_wheels(self) -> None:
        self.run_rows(WHEELHOUSES)

    def test_debs(self) -> None:
        self.run_rows(DEBSES)

