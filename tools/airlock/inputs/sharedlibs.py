"""Which Debian package provides each shared library, asked of the image itself.

:mod:`airlock.inputs.elf` says which sonames a wheelhouse's compiled
modules need from the system (libssl.so.3, libldap-2.5.so.0, libvirt.so.0);
an image must hold the Debian packages that provide them, or it starts with
``ImportError`` at the site. Only the image's own dpkg database knows
which package ships a name on that distro release and architecture
(libssl3 on bookworm, libssl3t64 on trixie), so the question is asked
inside a container of the image: one ``dpkg-query`` call
(:data:`OWNERS_SCRIPT`), cheap under QEMU, with no network, a read-only
root and no mounts. The answer depends only on the image's bytes: it is
cached under ``<cache>/sharedlibs/`` by image digest and platform.

The same command can end a build in another container (an sdist built
against -dev packages): :func:`parse_owners` reads its output wherever it
was run, and :func:`resolve` turns a wheelhouse's needs into packages,
listing every library no package provides.
"""

from __future__ import annotations

import re
from pathlib import Path

from airlock.data import platforms
from airlock.errors import AirlockError, ToolError
from airlock.ext import containers, registry
from airlock.files import read_json, write_json

# Bump with any change to how the answer is computed: cached answers go stale.
RECIPE = "airlock-sharedlibs/1"
# dpkg's glob '*' crosses '/': every path of the database with ".so" in it,
# one "pkg[:arch][, pkg[:arch]...]: /path" line each, plus diversion lines.
OWNERS_SCRIPT = "dpkg-query -S '*.so*'"

_PACKAGE = r"[a-z0-9][a-z0-9+.-]+(?::[a-z0-9-]+)?"
_OWNED = re.compile(rf"({_PACKAGE}(?:, {_PACKAGE})*): (/.*)")
_DIVERSION = re.compile(r"(?:diversion by (\S+)|local diversion) (from|to): (/.*)")
# A file name with ".so" as a suffix or followed by a version: libz.so,
# libz.so.1, libz.so.1.2.13, ld-linux-x86-64.so.2.
_LIBRARY = re.compile(r"[^/\s]+\.so(?:\.[0-9][0-9A-Za-z_+.-]*)?")
_MULTIARCH = r"[a-z0-9_]+-linux-gnu[a-z0-9_]*"


def parse_owners(text: str, triplet: str | None = None,
                 where: str = OWNERS_SCRIPT) -> dict[str, str]:
    """{library file name: Debian package} from :data:`OWNERS_SCRIPT`'s output.

    Only files directly in the library folders count: /lib/<triplet>,
    /usr/lib/<triplet>, /lib, /usr/lib (not Python modules under
    /usr/lib/python3; with ``triplet``, not another architecture's folder).
    The architecture qualifier is dropped (``libc6:amd64`` is ``libc6``).
    When two packages ship one name, the one in the folder the loader
    searches first wins; within a line, the package that diverted the path,
    else the first by name. Diversion lines are otherwise ignored; any
    other line is a ToolError (the output is not what this parser knows).
    """
    folder = rf"/(?:usr/)?lib(?:/({_MULTIARCH}))?"
    path_re = re.compile(rf"({folder})/({_LIBRARY.pattern})")
    diverted: dict[str, str] = {}  # path -> the package whose file is at that path
    owned: list[tuple[str, str]] = []  # (packages, path)
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        if diversion := _DIVERSION.fullmatch(line):
            if diversion[1] and diversion[2] == "from":
                diverted[diversion[3]] = diversion[1].split(":", 1)[0]
        elif match := _OWNED.fullmatch(line):
            owned.append((match[1], match[2]))
        else:
            shown = line[:120].encode("ascii", "backslashreplace").decode()
            raise ToolError(f"{where}: line {number}", f"unexpected output {shown!r}",
                            "the image's dpkg-query answers in a form airlock does not know")
    found: dict[str, tuple[int, str]] = {}  # name -> (folder rank, package)
    for names, path in owned:
        library = path_re.fullmatch(path)
        if not library or (triplet and library[2] and library[2] != triplet):
            continue
        packages = sorted({name.split(":", 1)[0] for name in names.split(", ")})
        package = diverted[path] if diverted.get(path) in packages else packages[0]
        # The loader's order: /lib/<triplet>, /usr/lib/<triplet>, /lib, /usr/lib.
        rank = (0 if library[2] else 2) + library[1].startswith("/usr/")
        name = library[3]
        if name not in found or (rank, package) < found[name]:
            found[name] = (rank, package)
    return {name: package for name, (_, package) in sorted(found.items())}


def owners(image: str, platform: str, *, cache: Path) -> dict[str, str]:
    """:func:`parse_owners` of ``image`` on ``platform``, asked once per image digest.

    ``image`` is ``host/repo@sha256:...`` or a tag, which the registry pins
    to its digest first (the container runs that digest, so the answer and
    its cache key name the same bytes).
    """
    target = platforms.get(platform)
    pinned = _pinned(image)
    digest = pinned.rsplit("@", 1)[1]
    path = cache / "sharedlibs" / f"{digest.replace(':', '-')}-{target.arch}.json"
    key = {"recipe": RECIPE, "script": OWNERS_SCRIPT, "image_digest": digest,
           "platform": platform}
    cached = read_json(path)
    if cached and {k: cached.get(k) for k in key} == key and isinstance(
            cached.get("owners"), dict):
        return dict(cached["owners"])
    try:
        output = containers.run(pinned, ["sh", "-c", OWNERS_SCRIPT], platform=platform,
                                entrypoint="", network="none", read_only=True)
    except ToolError as error:
        raise ToolError(error.where, error.what, "owners of shared libraries are asked of a "
                        "Debian image's dpkg-query: is the image Debian-based?") from None
    found = parse_owners(output, target.multiarch, where=f"{pinned} ({platform})")
    write_json(path, {**key, "image": pinned, "owners": found})
    return found


def resolve(needed: dict[str, dict[str, list[str]]], owners: dict[str, str],
            ) -> tuple[dict[str, str], list[tuple[str, str, str]]]:
    """({soname: package} for every needed soname an owner has, [(wheel, member, soname)]).

    ``needed`` is :func:`airlock.inputs.elf.needs_of`; the second list
    names, sorted, every needed soname no package of the image provides.
    """
    packages: dict[str, str] = {}
    unresolved: list[tuple[str, str, str]] = []
    for wheel in sorted(needed):
        for member in sorted(needed[wheel]):
            for soname in sorted(needed[wheel][member]):
                if soname in owners:
                    packages[soname] = owners[soname]
                else:
                    unresolved.append((wheel, member, soname))
    return dict(sorted(packages.items())), unresolved


def _pinned(image: str) -> str:
    """``host/repo@sha256:...`` of ``image`` (:func:`airlock.ext.registry.pinned`)."""
    found = registry.pinned(image)
    if found is None:
        raise AirlockError(image, "the image is not in the registry",
                           "build or push it first, or give its digest reference")
    return found
