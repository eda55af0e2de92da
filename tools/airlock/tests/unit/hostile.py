"""A sandbox that runs one bad input through the real CLI and checks what it left behind.

Every row of the bad-input tables (``test_bad_inputs``, ``test_hostile_inputs``)
runs ``airlock.cli.main`` in-process, in a fresh sandbox folder::

    S/data/     the data tree (treefixture: releases/, patches/, images/)
    S/git/      real git repositories: <git-base>/openstack/<project>, tagged
    S/out/      the destination area rows write to
    S/outside/  canary files: what hostile links point at
    S/home/     $HOME (no ~/.netrc, no auth file of the machine leaks in)
    S/tmp/      $TMPDIR and tempfile.tempdir: must be empty afterwards

and checks, for every row: the exact first line of stderr (and how many
lines), the exit code, stdout, that the row's secret is in no output and in
no file the run wrote, that nothing changed outside the row's declared
destination (paths, kinds, modes, sizes, content hashes and link targets,
links not followed, the whole sandbox), that no temporary or staging name
was left anywhere, and that a failed run left its destination as it was.

A row must fail *before* airlock reaches the Docker engine, a registry, a
package index or the network: that is the point of checking input first.
While a row runs, :func:`airlock.ext.exec.run` lets only git (on local
repositories) and ``pip config list`` through, and opening a socket from
this process fails the row. This is no fake of the engine: nothing
answers in its place, the row just fails, naming what was reached.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
import socket
import stat
import tempfile
import unittest
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

from airlock import cli
from airlock.ext import exec as ext_exec
from airlock.tests.unit.gitrepo import GitRepo
from airlock.tests.unit.treefixture import Tree, make_tree

# The tags source-refs.yaml of the fixture's 2025.2 names, one repository each.
REPOS = {
    "keystone": ("28.1.0", {"setup.py": "# pbr\n", "requirements.txt": "pbr\n"}),
    "nova": ("32.2.1", {"setup.py": "# pbr\n", "nova/x.py": "a = 1\n",
                        "requirements.txt": "pbr\n"}),
    "oslo.messaging": ("17.1.0", {"setup.py": "# pbr\n", "requirements.txt": "pbr\n"}),
}
CANARY = "canary: airlock must never write here\n"
# Names airlock gives what it writes before renaming it into place.
_STAGING_MARKS = (".tmp", ".airlock-", ".old-", ".new-")


class Reached(BaseException):
    """A row reached the engine, a registry, an index or the network.

    A BaseException, so no ``except Exception`` of airlock swallows it.
    """


def is_staging_name(name: str) -> bool:
    """Whether ``name`` looks like something airlock writes first and renames later."""
    return name.startswith(".") and any(mark in name for mark in _STAGING_MARKS)


@dataclass(frozen=True)
class Row:
    """One bad input: how to set it up, how to run it, what must come out.

    ``{S}`` in any string is the sandbox, ``{D}`` (or ``{R}``) its data tree. ``setup``
    edits are ``(method, path relative to S, args...)`` (see
    :meth:`Sandbox.edit`). ``dest`` is the one path (relative to S) the run
    may change; a run that fails must leave it as it was, a run that
    succeeds must pass ``complete``. ``stdout`` None: not compared (only
    checked for the secret). ``locks`` are lock files the run may leave,
    even when it fails (empty regular files: the kernel's lock is gone
    with the process, the file stays on purpose, see files.locked).
    ``cwd``: the working folder, relative to S (messages name files below
    it relative to it).
    """

    label: str
    argv: tuple[str, ...]
    line: str
    code: int = 1
    setup: tuple[tuple, ...] = ()
    dest: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    secret: str | None = None
    stdout: str | None = ""
    lines: int | None = 1
    complete: Callable[[Path], None] | None = None
    locks: tuple[str, ...] = ()
    cwd: str = "."


def row(label: str, argv: list[str] | tuple[str, ...], line: str, **kwargs) -> Row:
    """A :class:`Row`, with ``setup`` given as a list for readability."""
    setup = tuple(tuple(edit) for edit in kwargs.pop("setup", ()))
    return Row(label, tuple(argv), line, setup=setup, **kwargs)


def snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under ``root``, links never followed: kind, mode, size, sha256, target.

    Folders count by kind and mode only (their size is the file system's
    business); FIFOs and devices are never opened.
    """
    entries: dict[str, tuple] = {}
    for top, dirs, names in os.walk(root):
        for name in dirs + names:
            path = os.path.join(top, name)
            st = os.lstat(path)
            mode = st.st_mode
            if stat.S_ISREG(mode):
                with open(path, "rb") as handle:
                    digest = hashlib.file_digest(handle, "sha256").hexdigest()
                entry: tuple = ("file", stat.S_IMODE(mode), st.st_size, digest)
            elif stat.S_ISLNK(mode):
                entry = ("link", os.readlink(path))
            elif stat.S_ISDIR(mode):
                entry = ("dir", stat.S_IMODE(mode))
            else:
                entry = ("special", stat.S_IFMT(mode), stat.S_IMODE(mode))
            entries[os.path.relpath(path, root)] = entry
    return entries


def _under(rel: str, dest: str | None) -> bool:
    return dest is not None and (rel == dest or rel.startswith(dest.rstrip("/") + "/"))


def make_template(root: Path, git: bool = True) -> Path:
    """The sandbox every row starts from (copied per row): see the module docstring."""
    make_tree(root / "data")
    if git:
        for project, (tag, files) in REPOS.items():
            repo = GitRepo(root / "git" / "openstack" / project)
            repo.commit(files, "base")
            repo.tag(tag)
            # Few files make a fast copy per row: objects packed, no sample hooks.
            repo.git("gc", "--quiet")
            shutil.rmtree(repo.path / ".git" / "hooks")
    for folder in ("out", "home", "tmp", "outside/canary-dir"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    (root / "outside" / "canary.txt").write_text(CANARY)
    (root / "outside" / "canary-dir" / "canary.txt").write_text(CANARY)
    return root


class Sandbox:
    """One row's fresh copy of the template."""

    def __init__(self, template: Path, where: Path) -> None:
        self.root = where / "s"
        shutil.copytree(template, self.root, symlinks=True)

    def fill(self, text: str) -> str:
        data = str(self.root / "data")
        return text.replace("{S}", str(self.root)).replace("{D}", data).replace("{R}", data)

    def edit(self, method: str, rel: str, *args) -> None:
        """One setup edit at ``rel`` (relative to S): a :class:`Tree` method or one of these.

        fifo, folder, link TARGET, huge SIZE (a comment that large), device
        (a character device node like /dev/null, made here: no row ever points
        at the host's /dev); ``tree`` methods: write, append, replace, remove.
        """
        args = tuple(self.fill(a) if isinstance(a, str) else a for a in args)
        tree = Tree(self.root)
        path = tree.path(self.fill(rel))
        if method in ("fifo", "folder", "link", "huge", "device"):
            clear(path)
        if method == "fifo":
            os.mkfifo(path)
        elif method == "folder":
            path.mkdir()
        elif method == "link":
            path.symlink_to(args[0])
        elif method == "huge":
            path.write_bytes(b"#" * args[0])
        elif method == "device":
            try:
                os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
            except PermissionError:
                raise unittest.SkipTest("making a device node needs root") from None
        else:
            getattr(tree, method)(self.fill(rel), *args)


def clear(path: Path) -> None:
    """Remove whatever is at ``path`` (a folder with all it holds); make its parent."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)


@contextlib.contextmanager
def guarded(reached: list[str]) -> Iterator[None]:
    """Let airlock run git and ``pip config list`` only, and open no socket (see module doc)."""
    real_run = ext_exec.run

    def run(argv, **kwargs):
        words = [str(a) for a in argv]
        if Path(words[0]).name == "git" or words[1:5] == ["-m", "pip", "config", "list"]:
            return real_run(argv, **kwargs)
        reached.append(" ".join(words[:6]))
        raise Reached(reached[-1])

    def no_socket(*args, **kwargs):
        reached.append(f"a network connection {args[1:]!r}")
        raise Reached(reached[-1])

    with mock.patch.object(ext_exec, "run", run), \
            mock.patch.object(socket.socket, "connect", no_socket), \
            mock.patch.object(socket, "create_connection", no_socket), \
            mock.patch.object(socket, "getaddrinfo", no_socket):
        yield


@contextlib.contextmanager
def inside(sandbox: Sandbox, env: Mapping[str, str], cwd: str = ".") -> Iterator[None]:
    """cwd, $HOME, $TMPDIR and tempfile.tempdir in the sandbox; AIRLOCK_* only as given.

    $AIRLOCK_ROOT is the sandbox's data tree unless the row says otherwise.
    """
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith("AIRLOCK_") and k not in ("REGISTRY_AUTH_FILE", "TMPDIR")}
    clean.update(HOME=str(sandbox.root / "home"), TMPDIR=str(sandbox.root / "tmp"),
                 XDG_CONFIG_HOME=str(sandbox.root / "home" / ".config"),
                 XDG_RUNTIME_DIR=str(sandbox.root / "home" / "run"),
                 AIRLOCK_ROOT=str(sandbox.root / "data"))
    clean.update({k: sandbox.fill(v) for k, v in env.items()})
    here, tmp = os.getcwd(), tempfile.tempdir
    with mock.patch.dict(os.environ, clean, clear=True):
        os.chdir(sandbox.root / cwd)
        # Relative paths (-o out/x, ./work) must land in the sandbox, or the
        # snapshots would not see them.
        assert Path.cwd().resolve().is_relative_to(sandbox.root.resolve()), Path.cwd()
        tempfile.tempdir = str(sandbox.root / "tmp")
        try:
            yield
        finally:
            tempfile.tempdir = tmp
            os.chdir(here)


def run_cli(argv: list[str]) -> tuple[int, str, str, list[str]]:
    """``airlock.cli.main(argv)`` under :func:`guarded`: (code, stdout, stderr, reached)."""
    out, err, reached = io.StringIO(), io.StringIO(), []
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), guarded(reached):
        try:
            code = cli.main(argv)
        except Reached:
            code = -1
        except SystemExit as exit_:  # --help and friends: a row must never get here
            code = -2 if exit_.code is None else exit_.code
    return code, out.getvalue(), err.getvalue(), reached


class HostileTestCase(unittest.TestCase):
    """Runs :class:`Row` tables; the template is made once per class."""

    GIT = True  # whether the template holds the git repositories
    maxDiff = 4000

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        cls._template_dir = tempfile.TemporaryDirectory(prefix="airlock-hostile-template-")
        cls.template = make_template(Path(cls._template_dir.name), git=cls.GIT)

    @classmethod
    def tearDownClass(cls) -> None:
        cls._template_dir.cleanup()
        super().tearDownClass()

    def new_sandbox(self) -> Sandbox:
        tmp = tempfile.TemporaryDirectory(prefix="airlock-hostile-")
        self.addCleanup(tmp.cleanup)
        return Sandbox(self.template, Path(tmp.name))

    def run_rows(self, rows: list[Row]) -> None:
        labels = [r.label for r in rows]
        self.assertEqual(len(labels), len(set(labels)), "two rows share a label")
        for one in rows:
            with self.subTest(one.label):
                self.check_row(one)

    def check_row(self, one: Row) -> None:
        box = self.new_sandbox()
        for method, rel, *args in one.setup:
            box.edit(method, rel, *args)
        before = snapshot(box.root)
        with inside(box, one.env, one.cwd):
            code, out, err, reached = run_cli([box.fill(a) for a in one.argv])
        after = snapshot(box.root)
        self.assertEqual(reached, [], "the row reached the engine, a registry, an index or "
                         "the network before refusing its input")
        lines = err.splitlines()
        self.assertEqual((lines[0] if lines else "", code), (box.fill(one.line), one.code),
                         f"all of stderr: {err!r}")
        if one.lines is not None:
            self.assertEqual(len(lines), one.lines, f"all of stderr: {err!r}")
        if one.stdout is not None:
            self.assertEqual(out, box.fill(one.stdout))
        self.assertNotIn("Traceback", err)
        dest = one.dest
        changed = sorted(rel for rel in set(before) | set(after)
                         if before.get(rel) != after.get(rel))
        locks = [rel for rel in changed if rel in one.locks]
        for rel in locks:
            self.assertEqual((before.get(rel), after[rel][:3]), (None, ("file", 0o644, 0)),
                             f"{rel} is no lock file airlock made")
        changed = [rel for rel in changed if rel not in locks
                   and not any(lock.startswith(rel + "/") and rel not in before
                               for lock in locks)]
        self.assertEqual([rel for rel in changed if not _under(rel, dest)], [],
                         "written outside the destination")
        self.assertEqual(os.listdir(box.root / "tmp"), [], "left in the temporary folder")
        left = [rel for rel in after if rel not in before
                and is_staging_name(os.path.basename(rel))]
        self.assertEqual(left, [], "half-written files left behind")
        if one.code != 0:
            self.assertEqual(changed, [], "a failed run changed its destination")
        elif one.complete is not None:
            one.complete(box.root / dest if dest else box.root)
        if one.secret:
            self.assertNotIn(one.secret, out + err, "the secret was printed")
            for rel in changed:
                path = box.root / rel
                if after.get(rel, ("",))[0] == "file":
                    self.assertNotIn(one.secret.encode(), path.read_bytes(),
                                     f"the secret was recorded in {rel}")
