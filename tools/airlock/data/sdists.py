"""What building each sdist-only pin needs: ``images/sdists.txt``.

Most pins of a release come as wheels. The few that exist only as sdists
(for every platform, or for arm64 alone) are built into wheels by the
wheelhouse step, inside venv-builder, with no network. Whether that works
must not depend on what venv-builder happens to hold: the OS packages each
such build needs (the headers of the C library it binds, ``pkg-config``)
are data, declared once per Python package in one file::

    # <python package>: <Debian package> ...
    scrypt: libssl-dev
    python-ldap: libldap2-dev libsasl2-dev
    netifaces:

An empty right-hand side declares that the sdist needs nothing beyond
venv-builder's compiler (pure Python, or a C extension that links against
no other library). A pin that is sdist-only and not declared at all is an
error in the wheelhouse step (before anything is built) and in
``airlock release validate --sdists``: a refresh of upper-constraints that
brings in a new one fails on the connected side, not at the site.

The names are Debian's (as in every ``images/*/bindep.txt``); each sdist
build installs exactly the packages its own entry names, from an offline
apt repository computed in venv-builder, so no release's build carries
another release's headers and venv-builder stays release-independent.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from airlock import files
from airlock.data.release import canonical_name
from airlock.errors import AirlockError

# Under the images folder, not in venv-builder's own folder: that folder is
# the image's build context, and a new declaration must not make a new
# venv-builder (and so rebuild every sdist of every release).
FILE = Path("sdists.txt")
# Debian policy's package name rule.
_DEBIAN_NAME = re.compile(r"[a-z0-9][a-z0-9+.-]+")
_PYTHON_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?")


@dataclass(frozen=True)
class Declarations:
    """``{canonical Python name: Debian packages}`` as declared, and where."""

    path: Path
    packages: dict[str, tuple[str, ...]]

    def of(self, name: str) -> tuple[str, ...] | None:
        """The Debian packages building ``name`` needs; None when it is not declared."""
        return self.packages.get(canonical_name(name))

    def undeclared(self, names) -> list[str]:
        """The canonical names among ``names`` that have no entry, sorted."""
        return sorted({canonical_name(n) for n in names} - set(self.packages))

    def fix(self, names) -> str:
        """What to do about undeclared names: the lines to add, and where."""
        listed = ", ".join(f"'{n}: <Debian packages>'" for n in names)
        return (f"add {listed} to {self.path} (nothing after the colon when building it "
                "needs no package beyond venv-builder's compiler)")


def path_of(images_dir: Path) -> Path:
    return images_dir / FILE


def load(images_dir: Path) -> Declarations:
    """Read the declarations; a bad line is one error naming the file and line."""
    path = path_of(images_dir)
    if not os.path.lexists(path):
        raise AirlockError(str(path), "missing", "restore it from airlock's repository: it "
                           "declares what building each sdist-only pin needs")
    # within: a link out of images/ would let another file decide which
    # packages every sdist build installs.
    text = files.read_text(path, fix="replace it with airlock's sdists.txt", within=images_dir)
    declared: dict[str, tuple[str, ...]] = {}
    # split("\n"), not splitlines(): a form feed or U+2028 in a comment is
    # no line break to an editor, and would shift every line number after it.
    for number, line in enumerate(text.split("\n"), start=1):
        bare = line.split("#", 1)[0].strip()
        if not bare:
            continue
        name, colon, rest = bare.partition(":")
        name = name.strip()
        where = f"{path}:{number}"
        if not colon or not _PYTHON_NAME.fullmatch(name):
            raise AirlockError(where, f"not a declaration: {bare[:80]!r}",
                               "write '<python package>: <Debian package> ...'")
        debs = tuple(rest.split())
        bad = [d for d in debs if not _DEBIAN_NAME.fullmatch(d)]
        if bad:
            raise AirlockError(where, f"{bad[0][:80]!r} is not a Debian package name",
                               "list Debian package names separated by spaces")
        key = canonical_name(name)
        if key in declared:
            raise AirlockError(where, f"{name} is declared twice", "keep one line for it")
        declared[key] = debs
    return Declarations(path, declared)
