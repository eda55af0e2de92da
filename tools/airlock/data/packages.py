"""Distro packages of an image, from bindep files: ``airlock packages``.

Two files may speak for an image:

- ``images/<service>/bindep.txt``: ours, reviewed, release-independent. Its
  entries carry the profile they belong to, ``build`` or ``runtime``; an
  entry with no profile belongs to both (bindep's own rule).
- ``bindep.txt`` at the top of the service's prepared source tree
  (``--source``): the service's own, upstream file.

Profiles:

- ``build``: what the stage that assembles the venv needs beyond the base
  image. Every Python dependency arrives as a wheel built ahead of time, so
  this is usually empty.
- ``runtime``: what the service's image needs at run time.

The target platform comes from the release (``release.yaml`` ``distro:``),
never from the machine running airlock: the profiles are the ones bindep
would compute on that distro (``platform:dpkg``, ``platform:debian``,
``platform:debian-bookworm``, ``platform:debian-12``, ``platform:base-py3``).

Which entries of the service's own bindep.txt apply (the decision)
------------------------------------------------------------------

OpenStack projects write bindep.txt for a devstack or CI host that builds
every dependency from source and runs the unit and functional tests there:
its untagged entries are C headers and compilers (``libffi-dev``,
``build-essential``), database *servers* (``mariadb-server``,
``postgresql``) and the odd run-time tool side by side; ``test``, ``doc``,
``pdf-docs``, ``devstack`` and similar tags mark other contexts still. None
of that is what an image holds, and nothing in the file tells the run-time
tool from the test server. So an upstream entry applies to profile P only
when it names P itself:

=====================================================  =========  =========
upstream entry (on the target platform)                build      runtime
=====================================================  =========  =========
``foo [runtime]``, ``foo [platform:dpkg runtime]``      no         yes
``foo [build]``                                         yes        no
``foo [test]``, ``foo [doc test]``, ``[devstack]`` ...  no         no
``foo``, ``foo [platform:dpkg]`` (untagged)             no         no
=====================================================  =========  =========

In bindep's terms: the entries bindep selects for ``<platform> + P`` but
not for ``<platform>`` alone. Untagged upstream entries that an image does
need are adopted in ``images/<service>/bindep.txt`` with a comment saying
why (that is where they were reviewed); a site that wants an upstream entry
as-is tags it ``[runtime]`` with a patch under ``patches/``. Test-only
packages therefore never reach a runtime image, and a new upstream entry
never slips into one unreviewed.

Version constraints of entries (``foo [runtime] >=1.2``) are not checked:
the image gets the target distro's version, from the recorded package set.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from packaging.version import InvalidVersion, Version

from airlock import files, memo
from airlock.data.layout import Layout
from airlock.data.release import Distro, Release
from airlock.errors import AirlockError

if TYPE_CHECKING:  # bindep (and parsley) load only when a file must be parsed
    from bindep.depends import Depends

PROFILES = ("build", "runtime")
# The version of what :func:`resolve` computes from the two files: part of
# the key a result is remembered by (airlock.memo). Bump it when the rules
# of the module docstring change.
RESOLVE_VERSION = 1
# Images every service image is built on: they have a bindep.txt too.
BASE_IMAGES = ("python-base", "venv-builder")
_DPKG_DISTROS = ("debian", "ubuntu")


def resolve(release: Release, images_dir: Path, service: str, profile: str,
            source_dir: Path | None = None) -> list[str]:
    """The sorted Debian package names image ``service`` needs for ``profile``.

    ``source_dir`` is the service's prepared source tree; its bindep.txt,
    when present, is merged as the module docstring explains.
    """
    if profile not in PROFILES:
        raise AirlockError(f"profile {profile}", "unknown profile",
                           f"use one of: {', '.join(PROFILES)}")
    ours = image_bindep(release, images_dir, service)
    platform = platform_profiles(release.distro, where=f"{release.path / 'release.yaml'}:distro")
    ours_text = files.read_text(ours, fix=_FILE_FIX, within=images_dir)
    upstream = _upstream_file(source_dir) if source_dir is not None else None
    upstream_text = None if upstream is None else files.read_text(
        upstream, fix=_UPSTREAM_FIX, within=source_dir)
    # The result depends on the two texts, the profiles and the parser
    # only: the same inputs are not parsed again (bindep's parser is most of
    # a no-op build's time otherwise). A file that failed to parse was
    # never remembered, so its error is raised again.
    key = {"version": RESOLVE_VERSION, "bindep": _bindep_version(), "profile": profile,
           "platform": platform, "ours": memo.text_digest(ours_text),
           "upstream": None if upstream_text is None else memo.text_digest(upstream_text)}
    known = memo.recall("bindep", key)
    if isinstance(known, list) and all(isinstance(name, str) for name in known):
        return known
    names = {rule[0] for rule in _active(_load_text(ours, ours_text), [*platform, profile])}
    if upstream is not None and upstream_text is not None:
        names.update(_upstream_selected(_load_text(upstream, upstream_text), platform,
                                        profile))
    result = sorted(names)
    memo.remember("bindep", key, result)
    return result


@functools.lru_cache(maxsize=1)
def _bindep_version() -> str:
    """The installed bindep's version: another parser may read a file otherwise."""
    from importlib import metadata

    try:
        return metadata.version("bindep")
    except metadata.PackageNotFoundError:
        return "unknown"


def image_bindep(release: Release, images_dir: Path, service: str) -> Path:
    """``images/<service>/bindep.txt`` of an image of ``release``, or a clear error."""
    known = (*release.services, *BASE_IMAGES)
    if service not in known:
        raise AirlockError(f"service {service}", f"not an image of release {release.name}",
                           f"use one of: {', '.join(known)}")
    path = images_dir / service / "bindep.txt"
    if not os.path.lexists(path):  # a FIFO or a folder is reported by the read, as what it is
        raise AirlockError(str(path), "missing",
                           "every image folder needs a bindep.txt (comments only is fine: "
                           "then the image needs no distro package)")
    return path


def upstream_names(source_dir: Path, platform: list[str], profile: str) -> set[str]:
    """Packages the service's own bindep.txt asks for ``profile`` by naming it.

    The entries selected for ``platform + [profile]`` minus those selected
    for ``platform`` alone: see the table in the module docstring.
    """
    path = _upstream_file(source_dir)
    if path is None:
        return set()
    # The tree is upstream's: its bindep.txt may be a link, but not one out of it.
    return _upstream_selected(load(path, source_dir, fix=_UPSTREAM_FIX), platform, profile)


_UPSTREAM_FIX = "fix the service's bindep.txt with a patch"


def _upstream_file(source_dir: Path) -> Path | None:
    """The service's own bindep.txt in its prepared tree; None when it has none."""
    if not source_dir.is_dir():
        raise AirlockError(str(source_dir), "no such folder",
                           "pass the tree that `airlock sources prepare` made")
    path = source_dir / "bindep.txt"
    return path if os.path.lexists(path) else None


def _upstream_selected(depends: tuple[Depends, ...], platform: list[str],
                       profile: str) -> set[str]:
    """The entries selected for ``platform + [profile]`` and not for ``platform`` alone."""
    untagged = {id(rule) for rule in _active(depends, platform)}
    return {rule[0] for rule in _active(depends, [*platform, profile])
            if id(rule) not in untagged}


def platform_profiles(distro: Distro, where: str = "distro") -> list[str]:
    """The ``platform:`` profiles bindep computes on ``distro``, without being there.

    Mirrors ``Depends.platform_profiles`` for the Debian family (the only one
    ``images/*/bindep.txt`` speaks: package names are Debian's); a unit test
    holds the two equal on the machine that runs it. A distro of another
    family is refused rather than given Debian names.
    """
    distro_id = "".join(distro.name.split()).lower()
    if distro_id not in _DPKG_DISTROS:
        raise AirlockError(where, f"distro {distro.name!r} is not of the Debian family",
                           "images/*/bindep.txt name Debian packages: use "
                           f"{' or '.join(_DPKG_DISTROS)}")
    atoms = {distro_id, "dpkg", "base-py3"}
    atoms.update(_prefixes(distro_id, distro.codename.lower().split(), "-"))
    atoms.update(_prefixes(distro_id, distro.version.lower().split("."), "."))
    if _is_old_python2_release(distro_id, distro.version):
        atoms.discard("base-py3")
        atoms.add("base-py2")
    return [f"platform:{atom}" for atom in sorted(atoms)]


def _prefixes(distro_id: str, bits: list[str], join: str) -> set[str]:
    """bindep's codename/release atoms: ``debian-12``, ``debian-12.4``, ``debian-bookworm``.

    As ``Depends.codenamebits``/``releasebits``: every leading run of the
    parts, joined with "-" for codenames and "." for versions.
    """
    return {f"{distro_id}-{join.join(bits[:i + 1])}" for i in range(len(bits))}


def _is_old_python2_release(distro_id: str, version: str) -> bool:
    """bindep's rule: python 3 is the base from Debian 10 and Ubuntu 16.04 on."""
    try:
        parsed = Version(version)
    except InvalidVersion:
        return False  # testing/unstable: newer than any numbered release
    return parsed < Version("10" if distro_id == "debian" else "16.04")


def default_release_name(layout: Layout, env: dict[str, str] | None = None) -> str:
    """The release a command uses when ``--release`` is not given.

    ``$AIRLOCK_RELEASE`` if set, else the newest release folder (highest
    version number among ``releases/*/release.yaml``).
    """
    env = os.environ if env is None else env
    names = _release_names(layout.releases_dir)
    chosen = env.get("AIRLOCK_RELEASE")
    if chosen:
        if chosen not in names:
            raise AirlockError("$AIRLOCK_RELEASE", f"no release {chosen} in "
                               f"{layout.releases_dir}",
                               f"set it to one of: {', '.join(names) or 'none'}")
        return chosen
    if not names:
        raise AirlockError(str(layout.releases_dir), "holds no release folder",
                           "pass --release, or add releases/<name>/release.yaml")
    return names[-1]


def _release_names(releases_dir: Path) -> list[str]:
    """Release folders, oldest first (by version; names that are not versions first)."""
    if not releases_dir.is_dir():
        return []
    names = [p.name for p in releases_dir.iterdir() if (p / "release.yaml").is_file()]

    def key(name: str) -> tuple[int, Version, str]:
        try:
            return (1, Version(name), name)
        except InvalidVersion:
            return (0, Version("0"), name)

    return sorted(names, key=key)


# bindep's parser (parsley) is slow: about 0.1 ms a character of an entry,
# and seconds for a few KiB of blank lines in one text, growing faster than
# the text. So each entry line is parsed on its own (comments and blank
# lines need no parse: they hold no rule), and the entry lines of one file
# may hold at most this many characters, six times the largest real file;
# a hostile file then costs a second or two, not minutes.
ENTRY_LIMIT = 16 * 1024
_FILE_FIX = "replace it with the image's real bindep.txt (see images/README.md)"


class _BadLine(Exception):
    """An entry line bindep cannot parse (1-based ``number``)."""

    def __init__(self, number: int, text: str) -> None:
        super().__init__(number, text)
        self.number, self.text = number, text


class _TooLong(Exception):
    """The entry lines of a file hold more than ENTRY_LIMIT characters."""


def load(path: Path, tree: Path | None = None, fix: str = _FILE_FIX) -> tuple[Depends, ...]:
    """Parse one bindep file; a syntax error names the file and line.

    The file is read as every data file is (:func:`airlock.files.read_text`:
    a regular file, bounded in size, not a link out of ``tree``). The result
    is one Depends per entry line, in order: what :func:`_active` takes.
    """
    return _load_text(path, files.read_text(path, fix=fix, within=tree))


def _load_text(path: Path, text: str) -> tuple[Depends, ...]:
    """:func:`load` of a text already read from ``path`` (named in its errors)."""
    try:
        return _parse(text)
    except _BadLine as bad:
        raise AirlockError(f"{path}:{bad.number}", f"not a bindep entry: {bad.text.strip()!r}",
                           _SYNTAX) from None
    except _TooLong:
        raise AirlockError(str(path), f"its entries hold more than {ENTRY_LIMIT // 1024} KiB",
                           "a bindep file lists a few dozen packages: keep only what the image "
                           "needs") from None


def _active(parsed: Iterable[Depends], profiles: list[str]) -> list:
    """The rules of every entry active for ``profiles``, in file order.

    ``Depends.active_rules`` judges each rule on its own, so the rules of
    one Depends per line are the rules of the whole file.
    """
    return [rule for depends in parsed for rule in depends.active_rules(profiles)]


_SYNTAX = "write 'package [profile ...]', e.g. 'qemu-utils [platform:dpkg runtime]'"


@functools.lru_cache(maxsize=64)
def _parse(text: str) -> tuple[Depends, ...]:
    """bindep's parse of each entry line of ``text``, once per distinct text and process.

    A line is an entry unless it is blank or a comment, as bindep's grammar
    says (``ws = ' '+``). Depends objects are not changed by active_rules,
    so sharing is safe.
    """
    entries = []
    for number, line in enumerate(text.split("\n"), start=1):
        bare = line.lstrip(" ")
        if bare and not bare.startswith("#"):
            entries.append((number, line))
    if sum(len(line) for _, line in entries) > ENTRY_LIMIT:
        raise _TooLong()
    from bindep.depends import Depends, DependsException

    _compile_grammar_once()
    parsed = []
    for number, line in entries:
        try:
            parsed.append(Depends(line + "\n"))
        except DependsException:
            raise _BadLine(number, line) from None
    return tuple(parsed)


def _compile_grammar_once() -> None:
    """Make bindep compile its (constant) grammar once per process, not per file.

    ``Depends()`` calls ``makeGrammar(grammar, {})`` on every parse: most of
    a second on a loaded machine, against milliseconds for the parse itself.
    The compiled grammar is a parser factory that holds no state between
    parses, so the same one serves every file. Only that exact call (no
    bindings) is remembered; everything else goes to parsley unchanged, and
    if bindep stops calling ``makeGrammar`` this way, it is merely slower.
    """
    from bindep import depends as bindep_depends

    original = bindep_depends.makeGrammar
    if getattr(original, "airlock_once", False):
        return

    @functools.lru_cache(maxsize=4)
    def compiled(source: str):
        return original(source, {})

    def make_grammar(source, bindings, *args, **kwargs):
        if isinstance(source, str) and bindings == {} and not args and not kwargs:
            return compiled(source)
        return original(source, bindings, *args, **kwargs)

    make_grammar.airlock_once = True  # type: ignore[attr-defined]
    bindep_depends.makeGrammar = make_grammar
