"""Table of bad inputs: each breaks one thing in a fresh valid tree and expects one exact line.

The contract with users is that a mistake ends in ONE line naming the file
(with its line number when known), what is wrong and what to do, exit code
1, and no traceback. Each row runs the real CLI on a real tree, so a row
checks parsing, the check itself and the rendering of the message at once.
``{R}`` in an expected message or in the command line stands for the
tree's root.

The rows run in the sandbox of :mod:`hostile` (see :func:`as_row`), which
also holds each of them to: nothing changed anywhere in the sandbox (the
data tree, canaries outside it, the temporary folder), nothing left
half-written, and no engine, registry or network reached.
test_hostile_inputs.py holds the rows of every other verb.

Every file airlock reads from the data tree is also tried as what it must
not be (:func:`file_kinds`): a FIFO (nothing ever writes to it: a read
that waited would hang the test), ``/dev/zero`` behind a link, a folder, a
file over its size limit, a dangling link and a link out of the tree.
"""

from __future__ import annotations

import dataclasses

from airlock import files
from airlock.data import yamlfile
from airlock.tests.unit.hostile import HostileTestCase, Row, inside, row, run_cli
from airlock.tests.unit.treefixture import RELEASE_YAML, SOURCE_REFS, UPPER_CONSTRAINTS

R1 = "releases/2025.1"
R2 = "releases/2025.2"
RY = f"{R2}/release.yaml"
SR = f"{R2}/source-refs.yaml"
UC = f"{R2}/upper-constraints.txt"
OV = f"{R2}/constraint-overrides.txt"
VALIDATE = ["release", "validate"]
CONSTRAINTS = ["constraints", "--release", "2025.2"]
BASE_IMAGE = '"${AIRLOCK_BASE_IMAGE:-127.0.0.1:5000/airlock/debian:bookworm}"'
REF_FIX = "write a tag, a branch or a full 40-character SHA"
OVERRIDE_FIX = ("write 'pkg===ver' to replace a pin, '+pkg===ver' to add one "
                "or '-pkg' to remove one")
NEEDS = "every release folder needs release.yaml, source-refs.yaml, upper-constraints.txt"
RELEASE_FIX = "replace it with the release's real file (see releases/README.md)"
UC_FIX = "copy upper-constraints.txt of this release from openstack/requirements"
OV_FIX = "make it a regular file of overrides, or remove it (it is optional)"
REPO_FIX = 'write https://host/path, ssh://host/path, file:///path, host:path or a local path'
CRED_FIX = ('release data is reviewed in public: remove them and let git read them '
            'from ~/.netrc at run time, or pass a --git-base that carries them')
LOCK_FIX = "write it again with: airlock refs resolve --release REL -o FILE"
OUT_FIX = "replace the link by the file itself"
PACKAGES = ["packages", "--release", "2025.2", "--service", "nova", "--profile", "runtime"]
SYNTAX = "write 'package [profile ...]', e.g. 'qemu-utils [platform:dpkg runtime]'"
BINDEP_FIX = "replace it with the image's real bindep.txt (see images/README.md)"
DEBIAN_FIX = "images/*/bindep.txt name Debian packages: use debian or ubuntu"
FLATTEN = "airlock's files need a few levels at most; flatten it"
LOCK = "{R}/nova.lock"
LOCK_TEXT = ('release: "2025.2"\ncomponents:\n  nova: {sha: "' + "0" * 40 + '", ref: "32.2.1", '
             'repo: /nonexistent, resolved-at: "2026-01-01T00:00:00Z"}\n')
BAD_PATCH = "patches/nova/2025.2/0002-bad.patch"
PATCH_READ_FIX = ("a patch folder holds regular *.patch files: replace it by the patch, "
                  "or remove it")
REGENERATE = "regenerate it with git format-patch"
EMPTY_FIX = "write the change into it (git format-patch), or remove it"
BINARY_FIX = f"{REGENERATE} (binary files go in as 'GIT binary patch' text)"
RECORD_FIX = "drop that part of the patch"
DOTDOT = "a path with '..' or an empty part, which git refuses"
RECORD = "the patch touches '{}': .airlock is the name airlock keeps for its own record"
INSIDE_FIX = "make the patch change files inside the tree only"
PATCHES_FIX = "pass the folder that holds <component>/<release>/*.patch"
NOT_FOLDER_FIX = ("the patches folder holds <component>/<release>/*.patch: pass "
                  "--patches-dir a folder, or remove what is there")


def new_file_patch(path: str) -> str:
    """A patch creating ``path`` with one line: git reads it; where it writes is the point."""
    return (f"diff --git a/{path} b/{path}\nnew file mode 100644\n--- /dev/null\n"
            f"+++ b/{path}\n@@ -0,0 +1 @@\n+x\n")
PREPARE = ["sources", "prepare", "--release", "2025.2", "--component", "nova",
           "--dest", "{R}/out", "--lock", LOCK]


DASH = "starts with '-', which git takes for an option"
SPACE = "holds whitespace or a control character"
NOT_A_REPO = "is not a URL or path git can use"
CREDENTIALS = "holds credentials (the user:password@ or token@ part of the URL)"


def bad_ref(label: str, written: str, shown: str, problem: str) -> tuple:
    """A row: nova's ref in 2025.2 is ``written`` (YAML), which git (or airlock) refuses."""
    return (f"ref {label}", [("replace", SR, 'nova: "32.2.1"', f"nova: {written}")], VALIDATE,
            f"{{R}}/{SR}:2: ref '{shown}' of 'nova' is not a ref name git accepts: it "
            f"{problem}; {REF_FIX}")


QUALIFY = ("write host[:port]/path:tag or host[:port]/path@sha256:<hex>, "
           "e.g. 127.0.0.1:5000/airlock/debian:bookworm")
ONLY_A_REF = ('write "${AIRLOCK_BASE_IMAGE:-<registry>/<image>:<tag>}": an image reference, '
              "nothing else")


def bad_base(label: str, value: str, what: str, fix: str) -> tuple:
    """A row: release.yaml of 2025.2 gets ``base_image: "<value>"``."""
    return (f"base_image {label}", [("replace", RY, BASE_IMAGE, f'"{value}"')], VALIDATE,
            f"{{R}}/{RY}:9: base_image {what}; {fix}")


def bad_repo(label: str, repo: str, what: str, fix: str) -> tuple:
    """A row: oslo.messaging's long form in 2025.2 gets ``repo: <repo>``."""
    return (f"repo {label}", [("append", SR, f'  repo: "{repo}"\n')], VALIDATE,
            f"{{R}}/{SR}:5: repo of 'oslo.messaging' {what}; {fix}")


def file_kinds(label: str, rel: str, argv: list[str], fix: str, tree: str | None,
               limit: int, content: str = "", setup: tuple = ()) -> list[tuple]:
    """Rows putting what is no regular file where ``rel`` belongs.

    ``tree`` is the folder the file must not lead out of (None: any path
    will do, e.g. a lock given on the command line); ``limit`` its size
    limit; ``content`` what the file out of the tree holds (valid, so only
    the link is wrong); ``setup`` edits every row starts with.
    """
    shown = f"{{R}}/{rel}" if not rel.startswith("{R}") else rel
    rel = rel.removeprefix("{R}/")
    out = f"leads outside {{R}}/{tree} (a symbolic link?); {OUT_FIX}" if tree else None
    mib = limit // files.MiB
    rows = [
        (f"{label} is a FIFO", [("fifo", rel)], argv,
         f"{shown}: is a FIFO, not a regular file; {fix}"),
        (f"{label} is a folder", [("folder", rel)], argv,
         f"{shown}: is a directory, not a regular file; {fix}"),
        (f"{label} is larger than its limit", [("huge", rel, limit + 1)], argv,
         f"{shown}: is larger than {mib} MiB, the limit for this file; {fix}"),
        (f"{label} is a dangling link", [("link", rel, "no-such-target")], argv,
         f"{shown}: is a dangling symbolic link; {fix}"),
        (f"{label} is /dev/zero behind a link", [("link", rel, "/dev/zero")], argv,
         f"{shown}: {out}" if out else
         f"{shown}: is a character device, not a regular file; {fix}"),
    ]
    if tree:
        rows.append((f"{label} is a link out of the tree",
                     [("write", "elsewhere/file", content), ("link", rel, "{R}/elsewhere/file")],
                     argv, f"{shown}: {out}"))
    return [(name, [*setup, *edits], command, line) for name, edits, command, line in rows]


def bad_patch(label: str, text: str, what: str, fix: str, argv: list[str] = VALIDATE,
              ) -> tuple:
    """A row: nova's 2025.2 series gets 0002-bad.patch holding ``text``."""
    setup = [("write", LOCK, LOCK_TEXT)] if argv is PREPARE else []
    return (f"patch {label}" + (" (sources prepare)" if argv is PREPARE else ""),
            [*setup, ("write", BAD_PATCH, text)], argv, f"{{R}}/{BAD_PATCH}: {what}; {fix}")


# (label, edits to the tree, command line, the one expected line of stderr)
# An edit is (Tree method, path, arguments...): write, append, replace, remove.
CASES: list[tuple[str, list[tuple[str, ...]], list[str], str]] = [
    ("malformed YAML in release.yaml",
     [("replace", RY, "codename: flamingo", "codename: [flamingo")], VALIDATE,
     "{R}/releases/2025.2/release.yaml:4: invalid YAML: expected ',' or ']', but got ':' "
     "(while parsing a flow sequence started on line 3); fix the syntax"),
    ("malformed YAML in source-refs.yaml",
     [("append", SR, "nova: 1: 2\n")], VALIDATE,
     "{R}/releases/2025.2/source-refs.yaml:5: invalid YAML: mapping values are not allowed "
     "here; fix the syntax"),
    ("duplicate key in release.yaml",
     [("append", RY, "codename: other\n")], VALIDATE,
     "{R}/releases/2025.2/release.yaml:16: duplicate key 'codename'; keep one"),
    ("duplicate key in source-refs.yaml",
     [("append", SR, 'nova: "32.2.0"\n')], VALIDATE,
     "{R}/releases/2025.2/source-refs.yaml:5: duplicate key 'nova'; keep one"),
    ("duplicate nested key",
     [("replace", RY, '  version: "12"', '  version: "12"\n  name: ubuntu')], VALIDATE,
     "{R}/releases/2025.2/release.yaml:9: duplicate key 'name'; keep one"),
    ("unknown component",
     [("append", SR, 'novaa: "1.0.0"\n')], VALIDATE,
     "{R}/releases/2025.2/source-refs.yaml:5: unknown component 'novaa'; use a service "
     "(keystone, glance, placement, nova, neutron, cinder) or a package pinned in "
     "upper-constraints.txt"),
    ("missing ref",
     [("replace", SR, 'keystone: "28.1.0"\n', "")], VALIDATE,
     "{R}/releases/2025.2/source-refs.yaml: missing ref for service 'keystone'; "
     'add keystone: "<tag, branch or full SHA>"'),
    ("empty ref",
     [("replace", SR, 'keystone: "28.1.0"', 'keystone: ""')], VALIDATE,
     f"{{R}}/releases/2025.2/source-refs.yaml:1: empty ref for 'keystone'; {REF_FIX}"),
    ("null ref",
     [("replace", SR, 'keystone: "28.1.0"', "keystone:")], VALIDATE,
     f"{{R}}/releases/2025.2/source-refs.yaml:1: 'keystone' has no ref; {REF_FIX}"),
    ("abbreviated SHA",
     [("replace", SR, 'nova: "32.2.1"', 'nova: "0e88245f"')], VALIDATE,
     "{R}/releases/2025.2/source-refs.yaml:2: ref '0e88245f' of 'nova' looks like an "
     "abbreviated SHA; write the full 40-character SHA, a tag or a branch"),
    ("float ref",
     [("replace", SR, 'nova: "32.2.1"', "nova: 32.10")], VALIDATE,
     "{R}/releases/2025.2/source-refs.yaml:2: ref of 'nova' must be a string, not the "
     'number 32.1; quote it: nova: "32.10"'),
    ("float ref in long form",
     [("replace", SR, 'ref: "17.1.0"', "ref: 17.1")], VALIDATE,
     "{R}/releases/2025.2/source-refs.yaml:4: ref of 'oslo.messaging' must be a string, "
     'not the number 17.1; quote it: ref: "17.1"'),
    ("long form with unknown key",
     [("append", SR, "  branch: master\n")], VALIDATE,
     "{R}/releases/2025.2/source-refs.yaml:5: unknown key 'branch' in 'oslo.messaging'; "
     "remove it (allowed: ref, repo)"),
    ("long form without ref",
     [("replace", SR, '  ref: "17.1.0"', "  repo: /srv/git/oslo.messaging")], VALIDATE,
     "{R}/releases/2025.2/source-refs.yaml:3: 'oslo.messaging' has no ref; "
     'add ref: "<tag, branch or full SHA>"'),
    ("services not a list",
     [("replace", RY, "services:\n  - keystone\n  - nova", "services: keystone")], VALIDATE,
     "{R}/releases/2025.2/release.yaml:13: services must be a list, not a string; "
     "write services: [keystone, glance, placement, nova, neutron, cinder]"),
    ("unknown service",
     [("append", RY, "  - horizon\n")], VALIDATE,
     "{R}/releases/2025.2/release.yaml:16: unknown service 'horizon'; use one of: "
     "keystone, glance, placement, nova, neutron, cinder"),
    ("service listed twice",
     [("append", RY, "  - nova\n")], VALIDATE,
     "{R}/releases/2025.2/release.yaml:16: service 'nova' is listed twice; keep one"),
    ("platform not allowed",
     [("replace", RY, "linux/arm64", "linux/s390x")], VALIDATE,
     "{R}/releases/2025.2/release.yaml:12: unknown platform 'linux/s390x'; use one of: "
     "linux/amd64, linux/arm64"),
    ("platforms empty",
     [("replace", RY, "platforms:\n  - linux/amd64\n  - linux/arm64", "platforms: []")],
     VALIDATE,
     "{R}/releases/2025.2/release.yaml:10: platforms is empty; list at least one of "
     "linux/amd64, linux/arm64"),
    ("python as float",
     [("replace", RY, 'python: "3.11"', "python: 3.10")], VALIDATE,
     "{R}/releases/2025.2/release.yaml:4: python must be a string, not the number 3.1; "
     'quote it: python: "3.10"'),
    ("python not a version",
     [("replace", RY, 'python: "3.11"', 'python: "python3"')], VALIDATE,
     "{R}/releases/2025.2/release.yaml:4: python 'python3' is not a version like \"3.11\"; "
     'write python: "3.N"'),
    ("distro version as number",
     [("replace", RY, 'version: "12"', "version: 12")], VALIDATE,
     "{R}/releases/2025.2/release.yaml:8: distro.version must be a string, not the number "
     '12; quote it: version: "12"'),
    ("distro key missing",
     [("replace", RY, "  codename: bookworm\n", "")], VALIDATE,
     "{R}/releases/2025.2/release.yaml:5: missing key 'distro.codename'; "
     "add codename: bookworm"),
    ("name mismatch",
     [("replace", RY, 'name: "2025.2"', 'name: "2025.1"')], VALIDATE,
     "{R}/releases/2025.2/release.yaml:2: name '2025.1' does not match the folder name "
     "'2025.2'; write name: \"2025.2\" or rename the folder"),
    ("name as float",
     [("replace", RY, 'name: "2025.2"', "name: 2025.2")], VALIDATE,
     "{R}/releases/2025.2/release.yaml:2: name must be a string, not the number 2025.2; "
     'quote it: name: "2025.2"'),
    ("codename missing",
     [("replace", RY, "codename: flamingo\n", "")], VALIDATE,
     "{R}/releases/2025.2/release.yaml:codename: missing key 'codename'; "
     "add codename: <release codename, e.g. flamingo>"),
    ("unknown top-level key",
     [("append", RY, "service: [glance]\n")], VALIDATE,
     "{R}/releases/2025.2/release.yaml:16: unknown key 'service'; did you mean 'services'?"),
    ("release.yaml not a mapping",
     [("write", RY, "- name\n")], VALIDATE,
     "{R}/releases/2025.2/release.yaml:1: expected a mapping of release settings, "
     "not a list; see releases/README.md"),
    ("missing release.yaml",
     [("remove", RY)], VALIDATE,
     f"{{R}}/releases/2025.2/release.yaml: no such file; {NEEDS}"),
    ("missing source-refs.yaml",
     [("remove", SR)], VALIDATE,
     f"{{R}}/releases/2025.2/source-refs.yaml: no such file; {NEEDS}"),
    ("missing upper-constraints.txt",
     [("remove", UC)], VALIDATE,
     f"{{R}}/releases/2025.2/upper-constraints.txt: no such file; {NEEDS}"),
    ("unknown release on the command line",
     [], [*VALIDATE, "2099.1"],
     "{R}/releases/2099.1: no such release; known: 2025.1, 2025.2"),
    ("a release named after a folder of the work folder",
     [("write", "releases/cache/release.yaml",
       RELEASE_YAML.format(name="cache", codename="epoxy")),
      ("write", "releases/cache/source-refs.yaml", SOURCE_REFS["2025.1"]),
      ("write", "releases/cache/upper-constraints.txt", UPPER_CONSTRAINTS)],
     [*VALIDATE, "cache"],
     "{R}/releases/cache: a release may not be named 'cache': the work folder uses that name "
     "for cache, base, git; name the folder after the release, e.g. 2025.2"),
    ("base_image without a variable",
     [("replace", RY, BASE_IMAGE, "registry.example/debian:bookworm")], VALIDATE,
     "{R}/releases/2025.2/release.yaml:9: base_image 'registry.example/debian:bookworm' "
     'holds no ${VAR}; write it as "${AIRLOCK_BASE_IMAGE:-<registry>/<image>:<tag>}" '
     "so a site can point it at its own registry"),
    ("base_image with a malformed variable",
     [("replace", RY, "${AIRLOCK_BASE_IMAGE:-", "${AIRLOCK BASE:-")], VALIDATE,
     "{R}/releases/2025.2/release.yaml:9: base_image "
     "'${AIRLOCK BASE:-127.0.0.1:5000/airlock/debian:bookworm}' has a malformed variable; "
     "write ${VAR} or ${VAR:-default}"),
    bad_base("with an unqualified default", "${AIRLOCK_BASE_IMAGE:-debian:bookworm}",
             "default 'debian:bookworm' is not a fully qualified image reference", QUALIFY),
    bad_base("with a default without a tag", "${AIRLOCK_BASE_IMAGE:-registry.example/debian}",
             "default 'registry.example/debian' is not a fully qualified image reference",
             QUALIFY),
    bad_base("with a default of a transport", "${AIRLOCK_BASE_IMAGE:-docker://reg.example/x:1}",
             "default 'docker://reg.example/x:1' is not a fully qualified image reference",
             QUALIFY),
    bad_base("with command substitution", "${AIRLOCK_BASE_IMAGE:-$(id)}",
             "'${AIRLOCK_BASE_IMAGE:-$(id)}' holds '$', which is shell text", ONLY_A_REF),
    bad_base("with a command after it", "${AIRLOCK_BASE_IMAGE:-reg.example/x:1; rm -rf /}",
             "'${AIRLOCK_BASE_IMAGE:-reg.example/x:1; rm -rf /}' holds ';', which is shell text",
             ONLY_A_REF),
    bad_base("with a space", "${AIRLOCK_BASE_IMAGE:-reg.example/x:1 --privileged}",
             f"'${{AIRLOCK_BASE_IMAGE:-reg.example/x:1 --privileged}}' {SPACE}", ONLY_A_REF),
    bad_base("with backticks", "${AIRLOCK_BASE_IMAGE:-reg.example/`id`:1}",
             "'${AIRLOCK_BASE_IMAGE:-reg.example/`id`:1}' holds '`', which is shell text",
             ONLY_A_REF),
    bad_base("with a quote", "${AIRLOCK_BASE_IMAGE}'x",
             "'${AIRLOCK_BASE_IMAGE}'x' holds ''', which is shell text", ONLY_A_REF),
    ("bad override line",
     [("append", OV, "oslo.log==7.3.0\n")], VALIDATE,
     "{R}/releases/2025.2/constraint-overrides.txt:2: 'oslo.log==7.3.0' is not an "
     f"override; {OVERRIDE_FIX}"),
    ("override of an unpinned package",
     [("append", OV, "\nfoo===1.0\n")], VALIDATE,
     "{R}/releases/2025.2/constraint-overrides.txt:3: 'foo===1.0' replaces a pin that "
     "upper-constraints does not have; write '+foo===1.0' to add it"),
    ("removal of an unpinned package",
     [("append", OV, "-foo\n")], VALIDATE,
     "{R}/releases/2025.2/constraint-overrides.txt:2: '-foo' removes a pin that "
     "upper-constraints does not have; delete this line"),
    ("removal with a version",
     [("append", OV, "-oslo.log===7.2.1\n")], VALIDATE,
     "{R}/releases/2025.2/constraint-overrides.txt:2: '-oslo.log===7.2.1' removes a pin "
     "by name only; write '-oslo.log'"),
    ("add of an already pinned package",
     [("append", OV, "+Oslo_Log===7.3.0\n")], VALIDATE,
     "{R}/releases/2025.2/constraint-overrides.txt:2: '+Oslo_Log===7.3.0' adds a pin that "
     "upper-constraints already has; write 'Oslo_Log===7.3.0' to replace it"),
    ("package changed twice",
     [("append", OV, "-oslo.log\noslo.log===7.3.0\n")], VALIDATE,
     "{R}/releases/2025.2/constraint-overrides.txt:3: 'oslo.log===7.3.0' changes "
     "'oslo.log' again (line 2); keep one line per package (several only for different "
     "markers)"),
    ("override with a bad marker",
     [("append", OV, "oslo.log===7.3.0;python_version>>'3'\n")], VALIDATE,
     "{R}/releases/2025.2/constraint-overrides.txt:2: invalid marker in "
     "'oslo.log===7.3.0;python_version>>'3''; write a PEP 508 marker, "
     "e.g. python_version>='3.10'"),
    ("malformed upper-constraints line",
     [("append", UC, "oslo.config>=9.0\n")], VALIDATE,
     "{R}/releases/2025.2/upper-constraints.txt:8: malformed pin 'oslo.config>=9.0'; "
     "write name===version[;marker]"),
    ("package pinned twice upstream",
     [("append", UC, "oslo_log===7.0.0\n")], VALIDATE,
     "{R}/releases/2025.2/upper-constraints.txt:8: 'oslo_log' is pinned twice "
     "(also on line 3); keep one"),
    ("patch folder for an unknown component",
     [("write", "patches/horizon/2025.2/0001-x.patch", "")], VALIDATE,
     "{R}/patches/horizon: no release builds a component 'horizon'; name the folder after "
     "a component of some source-refs.yaml, or remove it"),
    ("patch for an unknown release",
     [("write", "patches/nova/2099.1/0001-x.patch", "")], VALIDATE,
     "{R}/patches/nova/2099.1: no such release '2099.1'; known: 2025.1, 2025.2"),
    ("patch for a component the release lacks",
     [("write", "patches/oslo.messaging/2025.1/0001-x.patch", "")], VALIDATE,
     "{R}/patches/oslo.messaging/2025.1: 'oslo.messaging' is not in "
     "releases/2025.1/source-refs.yaml; add its ref there or remove the folder"),
    ("non-.patch file in a patch folder",
     [("write", "patches/nova/2025.2/notes.txt", "")], VALIDATE,
     "{R}/patches/nova/2025.2/notes.txt: not a .patch file; only *.patch files may be in "
     "a patch folder; rename or remove it"),
    ("file where a release folder belongs",
     [("write", "patches/nova/0001-x.patch", "")], VALIDATE,
     "{R}/patches/nova/0001-x.patch: not a release folder; "
     "move it into patches/nova/<release>/"),
    ("service without image folder",
     [("remove", "images/nova")], VALIDATE,
     "{R}/images/nova: no image folder for service 'nova' of releases 2025.1, 2025.2; "
     "create it with Dockerfile, bindep.txt"),
    ("image folder without bindep.txt",
     [("remove", "images/nova/bindep.txt")], VALIDATE,
     "{R}/images/nova/bindep.txt: no such file; every image folder needs Dockerfile, "
     "bindep.txt"),
    ("image folder without Dockerfile",
     [("remove", "images/nova/Dockerfile")], VALIDATE,
     "{R}/images/nova/Dockerfile: no such file; every image folder needs Dockerfile, "
     "bindep.txt"),
    ("constraints --component with an unknown component",
     [], [*CONSTRAINTS, "--component", "horizon"],
     "{R}/releases/2025.2/source-refs.yaml: unknown component 'horizon'; "
     "use one of: keystone, nova, oslo.messaging"),
    ("constraints of an unknown release",
     [], ["constraints", "--release", "2099.1"],
     "{R}/releases/2099.1: no such release; known: 2025.1, 2025.2"),
    ("constraints with a bad override",
     [("append", OV, "+oslo.log===7.3.0\n")], CONSTRAINTS,
     "{R}/releases/2025.2/constraint-overrides.txt:2: '+oslo.log===7.3.0' adds a pin that "
     "upper-constraints already has; write 'oslo.log===7.3.0' to replace it"),
    ("override version that is not a version",
     [("append", OV, "oslo.log===7.x.y\n")], VALIDATE,
     "{R}/releases/2025.2/constraint-overrides.txt:2: '7.x.y' in 'oslo.log===7.x.y' is not a "
     "PEP 440 version; write a version such as 1.2.3"),
    ("added override version that is not a version",
     [("append", OV, "+foo===$(id)\n")], CONSTRAINTS,
     "{R}/releases/2025.2/constraint-overrides.txt:2: '$(id)' in 'foo===$(id)' is not a "
     "PEP 440 version; write a version such as 1.2.3"),
    ("upper-constraints version that is not a version",
     [("append", UC, "foo===1.0-final!\n")], VALIDATE,
     "{R}/releases/2025.2/upper-constraints.txt:8: '1.0-final!' in 'foo===1.0-final!' is not a "
     "PEP 440 version; write a version such as 1.2.3"),
    ("upper-constraints without pins",
     [("write", f"{R1}/upper-constraints.txt", "# emptied\n\n")], VALIDATE,
     f"{{R}}/releases/2025.1/upper-constraints.txt: holds no pins; {UC_FIX}"),
    ("upper-constraints without pins (constraints)",
     [("write", f"{R1}/upper-constraints.txt", "")], ["constraints", "--release", "2025.1"],
     f"{{R}}/releases/2025.1/upper-constraints.txt: holds no pins; {UC_FIX}"),
    bad_ref("with a leading dash", '"-c"', "-c", DASH),
    bad_ref("with a space", '"32.2.1 --upload-pack=x"', "32.2.1 --upload-pack=x", SPACE),
    bad_ref("with a tab", r'"32.2\t1"', r"32.2\t1", SPACE),
    bad_ref("with a control character", r'"32.2\x071"', r"32.2\x071", SPACE),
    bad_ref("with command substitution", '"$(touch /tmp/x)"', "$(touch /tmp/x)",
            "holds '$', which is shell text"),
    bad_ref("with a semicolon", '"32.2.1;id"', "32.2.1;id", "holds ';', which is shell text"),
    bad_ref("with backticks", '"`id`"', "`id`", "holds '`', which is shell text"),
    bad_ref("with '..'", '"stable/../master"', "stable/../master", "holds '..'"),
    bad_ref("with '@{'", '"master@{1}"', "master@{1}", "holds '@{'"),
    bad_ref("ending in .lock", '"stable/2025.2.lock"', "stable/2025.2.lock",
            "has a part ending with '.lock'"),
    bad_ref("ending in '/'", '"stable/"', "stable/", "has an empty part between '/'"),
    bad_ref("with a colon", '"a:b"', "a:b", "holds ':'"),
    bad_ref("that is HEAD", '"HEAD"', "HEAD", "is HEAD, which is neither a tag nor a branch"),
    bad_ref("with a part starting with '.'", '"stable/.hidden"', "stable/.hidden",
            "has a part starting with '.'"),
    bad_repo("with user and password", "https://bob:s3cret@git.example/openstack/oslo.messaging",
             CREDENTIALS, CRED_FIX),
    bad_repo("with a token", "https://ghp_t0ken@git.example/openstack/oslo.messaging",
             CREDENTIALS, CRED_FIX),
    bad_repo("with a password over ssh", "ssh://bob:s3cret@git.example/oslo.messaging",
             CREDENTIALS, CRED_FIX),
    bad_repo("naming a remote helper", "fd::17",
             f"{NOT_A_REPO} (names a git remote helper (<helper>::))", REPO_FIX),
    bad_repo("running a command", "ext::sh -c touch% /tmp/x", f"{NOT_A_REPO} ({SPACE})",
             REPO_FIX),
    bad_repo("with a scheme git lacks", "ftp://git.example/oslo.messaging",
             f"{NOT_A_REPO} (has the scheme 'ftp', not one of https, http, ssh, git, file, "
             "git+ssh, ssh+git)", REPO_FIX),
    bad_repo("without a path", "https://git.example", f"{NOT_A_REPO} (has no host or no path)",
             REPO_FIX),
    bad_repo("taken for an option", "--upload-pack=touch /tmp/x", f"{NOT_A_REPO} ({DASH})",
             REPO_FIX),
    bad_repo("with shell text", "/srv/git/$(id)",
             f"{NOT_A_REPO} (holds '$', which is shell text)", REPO_FIX),
    bad_repo("with a bad port", "https://git.example:http/oslo.messaging",
             f"{NOT_A_REPO} (malformed URL)", REPO_FIX),
    bad_patch("that is empty", "", "is empty", EMPTY_FIX),
    bad_patch("that is empty", "", "is empty", EMPTY_FIX, PREPARE),
    bad_patch("of blank lines", "\n \n\n", "is empty", EMPTY_FIX),
    bad_patch("that is binary", "diff --git a/x b/x\n\0\1\2\n",
              "is binary (it holds NUL bytes), not a patch", BINARY_FIX),
    bad_patch("that is binary", "\0" * 64, "is binary (it holds NUL bytes), not a patch",
              BINARY_FIX, PREPARE),
    bad_patch("that is prose", "Fix the thing.\n", "not a valid patch: No valid patches in input",
              REGENERATE),
    bad_patch("that is prose", "Fix the thing.\n", "not a valid patch: No valid patches in input",
              REGENERATE, PREPARE),
    bad_patch("without hunks", "--- a/x\n+++ b/x\n", "not a valid patch: No valid patches in input",
              REGENERATE),
    bad_patch("with a short hunk", "--- a/x\n+++ b/x\n@@ -1,3 +1 @@\n-a\n+b\n",
              "not a valid patch: corrupt patch at line 6", REGENERATE),
    bad_patch("writing airlock's record", new_file_patch(".airlock/source.json"),
              RECORD.format(".airlock/source.json"), RECORD_FIX),
    bad_patch("writing airlock's record", new_file_patch(".airlock/source.json"),
              RECORD.format(".airlock/source.json"), RECORD_FIX, PREPARE),
    bad_patch("renaming a file to .airlock",
              "diff --git a/setup.cfg b/.airlock\nsimilarity index 100%\nrename from setup.cfg\n"
              "rename to .airlock\n",
              RECORD.format(".airlock"), RECORD_FIX),
    bad_patch("deleting airlock's record",
              "--- a/.airlock/source.json\n+++ /dev/null\n@@ -1 +0,0 @@\n-{}\n",
              RECORD.format(".airlock/source.json"), RECORD_FIX),
    bad_patch("leaving the tree", new_file_patch("../../etc/cron.d/x"),
              f"the patch touches '../../etc/cron.d/x': {DOTDOT}", INSIDE_FIX),
    bad_patch("leaving the tree", new_file_patch("../../etc/cron.d/x"),
              f"the patch touches '../../etc/cron.d/x': {DOTDOT}", INSIDE_FIX, PREPARE),
    bad_patch("with '..' inside a path", new_file_patch("nova/../../x"),
              f"the patch touches 'nova/../../x': {DOTDOT}", INSIDE_FIX),
    bad_patch("writing into .git", new_file_patch(".git/hooks/post-checkout"),
              "the patch touches '.git/hooks/post-checkout': a path inside .git, which git refuses",
              "make the patch change the tree's files only"),
    *file_kinds("a *.patch", BAD_PATCH, VALIDATE, PATCH_READ_FIX, "patches", files.PATCH_LIMIT,
                new_file_patch("x")),
    *file_kinds("a *.patch (sources prepare)", BAD_PATCH, PREPARE, PATCH_READ_FIX, "patches",
                files.PATCH_LIMIT, new_file_patch("x"), setup=(("write", LOCK, LOCK_TEXT),)),
    ("--patches-dir that does not exist",
     [], [*VALIDATE, "--patches-dir", "{R}/nope"],
     f"{{R}}/nope: no such folder (given with --patches-dir); {PATCHES_FIX}"),
    ("--patches-dir that does not exist (sources prepare)",
     [("write", LOCK, LOCK_TEXT)], [*PREPARE, "--patches-dir", "{R}/nope"],
     f"{{R}}/nope: no such folder (given with --patches-dir); {PATCHES_FIX}"),
    ("--patches-dir that is a file",
     [], [*VALIDATE, "--patches-dir", "{R}/releases/README.md"],
     f"{{R}}/releases/README.md: is not a folder (given with --patches-dir); {PATCHES_FIX}"),
    ("--patches-dir that is a file (sources prepare)",
     [("write", LOCK, LOCK_TEXT)], [*PREPARE, "--patches-dir", "{R}/releases/README.md"],
     f"{{R}}/releases/README.md: is not a folder (given with --patches-dir); {PATCHES_FIX}"),
    ("patches/ that is a file",
     [("remove", "patches"), ("write", "patches", "")], VALIDATE,
     f"{{R}}/patches: is not a folder; {NOT_FOLDER_FIX}"),
    ("patches/ that is a file (sources prepare)",
     [("remove", "patches"), ("write", "patches", ""), ("write", LOCK, LOCK_TEXT)], PREPARE,
     f"{{R}}/patches: is not a folder; {NOT_FOLDER_FIX}"),
    ("a release's patch folder that is a file (sources prepare)",
     [("remove", "patches/nova/2025.2"), ("write", "patches/nova/2025.2", ""),
      ("write", LOCK, LOCK_TEXT)], PREPARE,
     "{R}/patches/nova/2025.2: is not a folder; make it the folder of nova's patches for "
     "2025.2, or remove it"),
    ("a component's patch folder that leads out of the tree",
     [("write", "elsewhere/2025.2/0001-x.patch", new_file_patch("x")),
      ("remove", "patches/nova"), ("link", "patches/nova", "{R}/elsewhere")], VALIDATE,
     "{R}/patches/nova: leads outside {R}/patches (a symbolic link?); "
     "replace the link by the folder itself"),
    ("a component's patch folder that leads out of the tree (sources prepare)",
     [("write", "elsewhere/2025.2/0001-x.patch", new_file_patch("x")),
      ("remove", "patches/nova"), ("link", "patches/nova", "{R}/elsewhere"),
      ("write", LOCK, LOCK_TEXT)], PREPARE,
     f"{{R}}/patches/nova/2025.2/0001-x.patch: leads outside {{R}}/patches "
     f"(a symbolic link?); {OUT_FIX}"),
    ("bindep syntax error in a service image",
     [("append", "images/nova/bindep.txt", "qemu-utils [runtime\n")], VALIDATE,
     f"{{R}}/images/nova/bindep.txt:2: not a bindep entry: 'qemu-utils [runtime'; {SYNTAX}"),
    ("bindep syntax error in a service image (packages)",
     [("append", "images/nova/bindep.txt", "qemu-utils [runtime\n")], PACKAGES,
     f"{{R}}/images/nova/bindep.txt:2: not a bindep entry: 'qemu-utils [runtime'; {SYNTAX}"),
    ("bindep syntax error in python-base",
     [("append", "images/python-base/bindep.txt", "[runtime] libffi8\n")], VALIDATE,
     f"{{R}}/images/python-base/bindep.txt:2: not a bindep entry: '[runtime] libffi8'; "
     f"{SYNTAX}"),
    ("bindep syntax error in venv-builder",
     [("append", "images/venv-builder/bindep.txt", "gcc [build] >=\n")], VALIDATE,
     f"{{R}}/images/venv-builder/bindep.txt:2: not a bindep entry: 'gcc [build] >='; {SYNTAX}"),
    ("bindep with too many entries",
     [("write", "images/nova/bindep.txt", "pkg [platform:dpkg runtime]\n" * 700)], VALIDATE,
     "{R}/images/nova/bindep.txt: its entries hold more than 16 KiB; a bindep file lists a few "
     "dozen packages: keep only what the image needs"),
    ("base image folder missing",
     [("remove", "images/python-base")], VALIDATE,
     "{R}/images/python-base: no image folder for base image 'python-base'; create it with "
     "Dockerfile, bindep.txt"),
    ("base image without bindep.txt",
     [("remove", "images/venv-builder/bindep.txt")], VALIDATE,
     "{R}/images/venv-builder/bindep.txt: no such file; every image folder needs Dockerfile, "
     "bindep.txt"),
    ("a FIFO in an image folder",
     [("fifo", "images/nova/helper")], VALIDATE,
     "{R}/images/nova/helper: is not a regular file, a folder or a link; a build hashes and "
     "sends every file of the image folder: remove it"),
    ("distro not of the Debian family",
     [("replace", RY, "name: debian", "name: fedora")], VALIDATE,
     f"{{R}}/{RY}:distro: distro 'fedora' is not of the Debian family; {DEBIAN_FIX}"),
    ("distro not of the Debian family (packages)",
     [("replace", RY, "name: debian", "name: fedora")], PACKAGES,
     f"{{R}}/{RY}:distro: distro 'fedora' is not of the Debian family; {DEBIAN_FIX}"),
    *file_kinds("images/nova/bindep.txt", "images/nova/bindep.txt", VALIDATE, BINDEP_FIX,
                "images", files.DATA_LIMIT, "libffi-dev [build]\n"),
    *file_kinds("images/nova/bindep.txt (packages)", "images/nova/bindep.txt", PACKAGES,
                BINDEP_FIX, "images", files.DATA_LIMIT, "libffi-dev [build]\n"),
    *file_kinds("images/python-base/bindep.txt", "images/python-base/bindep.txt", VALIDATE,
                BINDEP_FIX, "images", files.DATA_LIMIT, "libffi-dev [build]\n"),
    *file_kinds("images/nova/Dockerfile", "images/nova/Dockerfile", VALIDATE,
                "replace it with the image's real Dockerfile", "images", files.DATA_LIMIT,
                "FROM scratch\n"),
    # service.yaml was read through a link out of images/, and
    # service.yaml was not read by validate at all: its mistakes showed first at the site.
    *file_kinds("images/nova/service.yaml", "images/nova/service.yaml", VALIDATE,
                "replace it with a service.yaml (images/README.md)", "images", yamlfile.LIMIT,
                "python: [libvirt-python]\n"),
    ("images/nova/service.yaml: python is false",
     [("write", "images/nova/service.yaml", "python: false\n")], VALIDATE,
     "{R}/images/nova/service.yaml:1: is not a list of strings; write one name per item"),
    ("images/nova/service.yaml: an empty command",
     [("write", "images/nova/service.yaml", "checks:\n  commands: [[]]\n")], VALIDATE,
     "{R}/images/nova/service.yaml:2: is not a command; write a list of words, e.g. "
     "[qemu-img, --version]"),
    ("images/nova/service.yaml: an alias bomb",
     [("write", "images/nova/service.yaml", "a: &a [x, x, x, x, x, x, x, x]\n"
       + "".join(f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 8)}]\n"
                 for i in range(8)))], VALIDATE,
     "{R}/images/nova/service.yaml:1: unknown key 'a'; use checks or python"),
    *file_kinds("the prepared source's bindep.txt", "src/bindep.txt",
                [*PACKAGES, "--source", "{R}/src"], "fix the service's bindep.txt with a patch",
                "src", files.DATA_LIMIT, "libffi-dev [build]\n"),
    ("source-refs.yaml nested 5000 deep",
     [("append", SR, "x: " + "[" * 5000 + "]" * 5000 + "\n")], VALIDATE,
     f"{{R}}/{SR}:5: nested more than 32 levels deep; {FLATTEN}"),
    ("release.yaml nested 500 deep in block style",
     [("append", RY, "".join("  " * i + f"k{i}:\n" for i in range(500)))], CONSTRAINTS,
     f"{{R}}/{RY}:48: nested more than 32 levels deep; {FLATTEN}"),
    ("refs lock nested 5000 deep",
     [("write", LOCK, "components: " + "{a: " * 5000 + "1" + "}" * 5000 + "\n")], PREPARE,
     f"{LOCK}:1: nested more than 32 levels deep; {FLATTEN}"),
    ("source-refs.yaml of 300k keys (4.8 MB)",
     [("write", SR, "".join(f"p{i:06d}: r{i:05d}\n" for i in range(300_000)))], VALIDATE,
     f"{{R}}/{SR}: is larger than 1 MiB, the limit for this file; {RELEASE_FIX}"),
    ("missing lock",
     [], PREPARE, f"{LOCK}: no such lock file; {LOCK_FIX}"),
    *file_kinds("release.yaml", RY, VALIDATE, RELEASE_FIX, "releases", yamlfile.LIMIT),
    *file_kinds("release.yaml (constraints)", RY, CONSTRAINTS, RELEASE_FIX, "releases",
                yamlfile.LIMIT),
    *file_kinds("source-refs.yaml", SR, VALIDATE, RELEASE_FIX, "releases", yamlfile.LIMIT),
    *file_kinds("source-refs.yaml (constraints)", SR, CONSTRAINTS, RELEASE_FIX, "releases",
                yamlfile.LIMIT),
    *file_kinds("upper-constraints.txt", UC, VALIDATE, UC_FIX, "releases", files.DATA_LIMIT,
                "oslo.log===7.2.1\n"),
    *file_kinds("upper-constraints.txt (constraints)", UC, CONSTRAINTS, UC_FIX, "releases",
                files.DATA_LIMIT, "oslo.log===7.2.1\n"),
    *file_kinds("constraint-overrides.txt", OV, VALIDATE, OV_FIX, "releases",
                files.DATA_LIMIT),
    *file_kinds("constraint-overrides.txt (constraints)", OV, CONSTRAINTS, OV_FIX, "releases",
                files.DATA_LIMIT),
    *file_kinds("refs lock", LOCK, PREPARE, LOCK_FIX, None, yamlfile.LIMIT),
]


# validate --sdists checks the release data first (and says so on stdout),
# then reads images/sdists.txt, which was read through a link out of images/.
SDISTS = [
    *file_kinds("images/sdists.txt", "images/sdists.txt",
                [*VALIDATE, "--sdists", "--index-url", "{R}/index"],
                "replace it with airlock's sdists.txt", "images", files.DATA_LIMIT,
                "scrypt: libssl-dev\n", setup=(("folder", "index"),)),
    ("images/sdists.txt missing", [("folder", "index")],
     [*VALIDATE, "--sdists", "--index-url", "{R}/index"],
     "{R}/images/sdists.txt: missing; restore it from airlock's repository: it declares "
     "what building each sdist-only pin needs"),
    ("images/sdists.txt: a form feed in a comment does not shift line numbers",
     [("folder", "index"), ("write", "images/sdists.txt", "# a\x0cb\u2028c\nscrypt: libSSL\n")],
     [*VALIDATE, "--sdists", "--index-url", "{R}/index"],
     "{R}/images/sdists.txt:2: 'libSSL' is not a Debian package name; list Debian package "
     "names separated by spaces"),
]


def as_row(case: tuple) -> Row:
    """A CASES entry as a row of the sandbox harness (:mod:`hostile`).

    Paths of edits are relative to the data tree (``{R}``), which the
    sandbox keeps in ``data/``. Rows run from an empty folder of the
    sandbox, so that files are named by their full path, as written here.
    Nothing may change anywhere in the sandbox: these verbs write nothing
    when they refuse their input.
    """
    label, edits, argv, expected = case
    setup = [(method, path if path.startswith("{R}") else f"data/{path}", *args)
             for method, path, *args in edits]
    return row(label, [*argv, "--root", "{R}"], expected, setup=setup, cwd="home")


class BadInputTest(HostileTestCase):
    GIT = False  # the data tree is all these verbs read

    def test_fixture_is_valid(self) -> None:
        # Every row below must fail because of its own edit, not the fixture.
        for argv in (VALIDATE, CONSTRAINTS):
            box = self.new_sandbox()
            with inside(box, {}):
                code, _, err, _ = run_cli([*argv, "--root", str(box.root / "data")])
            self.assertEqual((code, err), (0, ""))

    def test_bad_inputs(self) -> None:
        self.run_rows([as_row(case) for case in CASES])

    def test_sdists_txt(self) -> None:
        self.run_rows([dataclasses.replace(as_row(case),
                                           stdout="2 release(s) valid: 2025.1, 2025.2\n")
                       for case in SDISTS])
