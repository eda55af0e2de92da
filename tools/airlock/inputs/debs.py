"""The OS packages of one image, as a flat apt repository a ``--network none`` build installs.

``airlock debs`` asks apt itself what installing the image's packages
(:func:`airlock.data.packages.resolve`, profile ``runtime`` by default) would add
to *the base image of the build* (the same digest, for each platform). apt
is given that image's own dpkg database (``/var/lib/dpkg/status``, read
from it), so it knows what the base already holds; a closure computed
against anything else would miss or duplicate packages. apt itself runs
in the release's Debian image (``apt_image``): python-base, which every
service is installed into, carries no apt (images/python-base/Dockerfile).
The run has the host's
network and the release's apt mirror (``$AIRLOCK_APT_MIRROR`` or the
machine's own apt sources, :func:`airlock.inputs.aptmirror.apt_mirror`), written
into the container, never the image's own sources. It leaves::

    DEST/<arch>/*.deb          the missing closure, exactly as apt verified it
    DEST/<arch>/Packages       the index of a flat repository ("deb file:DIR ./")
    DEST/<arch>/packages.txt   the packages to install, one a line
    DEST/<arch>/order.txt      how: apt's plan as dpkg steps, one a line
                               ("unpack FILE", "configure PKG", "remove PKG"),
                               which images/python-base/airlock-apt-install
                               replays with dpkg alone
    DEST/<arch>/manifest.json  sha256 of every file, the base image digest,
                               the mirror, the packages and their closure

An empty package list gives an empty packages.txt and Packages: a valid,
empty repository, made without running anything.

The Packages stanzas are generated here from each .deb's control fields
(``dpkg-deb -f`` in the container: the target distro's own dpkg reads its
own compression) plus Filename, Size, MD5sum and SHA256, as apt-ftparchive
writes them.

Nothing changed, nothing done: the inputs (packages, base image digest,
mirror, codename, platform, this recipe) are hashed into ``input_digest``; a
repository whose manifest has that digest and whose files all match their
sha256 is left alone, without running a container. Downloaded .debs are
kept in a cache shared by every service (``<cache>/<distro>-<codename>/<arch>/``),
so another service's repository fetches only what is new; two airlock runs
on one host take turns at it (a lock beside it, held while apt fills it and
while a repository is assembled from it).

The container runs as root and fills the cache and its output folder: on
the host, only regular files are read or linked from them (a link, to a
host file or anywhere else, is an error, never followed), and the
container's log is written outside what it sees. The mirror is recorded
without credentials (a new token is no new input); a mirror URL with
``user:password@`` reaches apt as an ``auth.conf`` entry through the
container's environment, never on a command line or in a sources list.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import stat
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from airlock import progress, settings
from airlock.data import packages
from airlock.data import platforms as platforms_mod
from airlock.data.release import Release
from airlock.errors import AirlockError, ToolError
from airlock.ext import containers, registry
from airlock.files import MiB, check_replaceable, json_digest, staged
from airlock.files import link_or_copy as _link_or_copy
from airlock.files import locked as files_locked
from airlock.files import read_json as _read_json
from airlock.files import sha256_file as _sha256_file
from airlock.files import write_json as _write_json
from airlock.inputs import aptmirror
from airlock.urls import strip_userinfo

RECIPE = "airlock-debs/2"
FORMAT = 1
COMPONENTS = ("main",)
MANIFEST = "manifest.json"
PACKAGES = "Packages"
PACKAGES_TXT = "packages.txt"
ORDER = "order.txt"
# Where the host leaves the build's base image's dpkg database for apt.
STATUS = "status"

# Runs in the apt image as root, in the folder TOP (/airlock): apt sources
# of the release's mirror only ($AIRLOCK_MIRROR, with its credentials, if
# any, in an auth.conf from $AIRLOCK_APT_AUTH), the shared cache as apt's
# archive folder, the build's base image's dpkg database as what is
# installed (out/status, when the host put one there), the closure and
# its order printed by a simulated install, then the download, then each
# new .deb's control fields (regular files only).
SCRIPT = r"""set -eu
top=$1 codename=$2 components=$3 owner=$4
work=$(mktemp -d)
printf 'deb %s%s %s %s\n' "${AIRLOCK_APT_OPTIONS:-}" "$AIRLOCK_MIRROR" "$codename" \
    "$components" > "$work/sources.list"
set -- -q -o "Dir::Etc::SourceList=$work/sources.list" -o Dir::Etc::SourceParts=/dev/null \
    -o "Dir::Cache::Archives=$top/cache/" -o APT::Sandbox::User=root
if [ -n "${AIRLOCK_APT_AUTH:-}" ]; then
    (umask 077 && printf '%s\n' "$AIRLOCK_APT_AUTH" > "$work/auth.conf")
    set -- "$@" -o "Dir::Etc::netrc=$work/auth.conf"
fi
if [ -f "$top/out/status" ]; then
    set -- "$@" -o "Dir::State::status=$top/out/status"
fi
mkdir -p "$top/cache/partial"
pkgs=$(cat "$top/out/request.txt")
apt-get "$@" update
apt-get "$@" -s install --no-install-recommends $pkgs > "$top/out/simulate.txt"
DEBIAN_FRONTEND=noninteractive apt-get "$@" -y -d install --no-install-recommends $pkgs
cd "$top/cache"
for deb in *.deb; do
    if [ -L "$deb" ] || [ ! -f "$deb" ]; then continue; fi
    if [ -s "$deb.control" ] && [ ! -L "$deb.control" ]; then continue; fi
    rm -f "$deb.control" "$deb.control.tmp"
    dpkg-deb -f "$deb" > "$deb.control.tmp"
    mv "$deb.control.tmp" "$deb.control"
done
rm -rf "$work" "$top/cache/partial" "$top/cache/lock"
chown -R "$owner" "$top/out" "$top/cache"
"""
TOP = "/airlock"
# What the host reads from the container's files, at most.
CONTROL_LIMIT = 1 * MiB
SIMULATION_LIMIT = 16 * MiB

# Debian's own rules for names, versions and architectures: whatever apt's
# output says, a file name made of them stays inside the cache folder.
_INST = re.compile(r"^Inst (?P<name>[a-z0-9][a-z0-9+.-]*(?::[a-z0-9-]+)?) (?:\[[^\]]*\] )?"
                   r"\((?P<version>[A-Za-z0-9.+~:-]+) .*\[(?P<arch>[a-z0-9-]+)\]\)")
# apt's plan, in order: each package's configuration, and what it removes.
_CONF = re.compile(r"^Conf (?P<name>[a-z0-9][a-z0-9+.-]*)(?::[a-z0-9-]+)? \(")
_REMV = re.compile(r"^Remv (?P<name>[a-z0-9][a-z0-9+.-]*)(?::[a-z0-9-]+)? ")
_UNKNOWN = re.compile(r"^E: (?:Unable to locate package |Package '?)(?P<name>[^\s']+)",
                      re.MULTILINE)


@dataclass(frozen=True)
class Deb:
    """One package of the closure, as apt named it."""

    name: str
    version: str
    arch: str

    @property
    def filename(self) -> str:
        """The file name apt gives the download (``:`` of an epoch quoted as ``%3a``)."""
        return f"{self.name}_{self.version.replace(':', '%3a')}_{self.arch}.deb"


@dataclass
class Result:
    """What :func:`prepare` did for one platform."""

    platform: str
    dest: Path
    changed: bool
    manifest: dict
    seconds: float = 0.0
    downloaded: int = 0
    extra: dict = field(default_factory=dict)


def _noop(_: str) -> None:
    pass


def parse_simulation(text: str) -> list[Deb]:
    """The packages a simulated ``apt-get install`` would unpack (its ``Inst`` lines)."""
    found = []
    for line in text.splitlines():
        match = _INST.match(line)
        if match:
            found.append(Deb(match["name"].split(":")[0], match["version"], match["arch"]))
    return found


def parse_order(text: str) -> list[tuple[str, str]]:
    """apt's simulated plan as dpkg steps: ``("unpack", file)``, ``("configure", name)``,
    ``("remove", name)``, in apt's order (pure).

    apt orders them so that each Pre-Depends is configured before its
    dependant is unpacked; replayed by dpkg alone, that order installs
    what apt would, in an image that has no apt.
    """
    steps = []
    for line in text.splitlines():
        if (match := _INST.match(line)):
            deb = Deb(match["name"].split(":")[0], match["version"], match["arch"])
            steps.append(("unpack", deb.filename))
        elif (match := _CONF.match(line)):
            steps.append(("configure", match["name"]))
        elif (match := _REMV.match(line)):
            steps.append(("remove", match["name"]))
    return steps


def order_text(steps: list[tuple[str, str]]) -> str:
    """``order.txt``: one ``verb argument`` a line (pure)."""
    return "".join(f"{verb} {arg}\n" for verb, arg in steps)


def unknown_package(log: str) -> str | None:
    """The package apt could not find, from its output; None if that was not the failure."""
    match = _UNKNOWN.search(log)
    return match["name"] if match else None


def packages_index(entries: list[tuple[str, str, int, str, str]]) -> str:
    """A flat repository's ``Packages`` text (pure).

    ``entries`` are ``(filename, control, size, md5, sha256)``, ``control``
    the .deb's control fields as ``dpkg-deb -f`` prints them. Stanzas are
    sorted by package, then file name, and end with the fields
    apt-ftparchive adds; apt reads fields in any order.
    """
    stanzas = []
    for filename, control, size, md5, sha256 in entries:
        fields = control.rstrip("\n")
        if not fields or not re.search(r"^Package: ", fields, re.MULTILINE):
            raise ToolError(filename, "its control fields have no Package:",
                            "the .deb is damaged; remove it from the cache")
        name = re.search(r"^Package: (\S+)", fields, re.MULTILINE)[1]
        fields = "\n".join(line for line in fields.splitlines()
                           if not line.startswith(("Filename:", "Size:", "MD5sum:", "SHA256:")))
        stanza = (f"{fields}\nFilename: ./{filename}\nSize: {size}\nMD5sum: {md5}\n"
                  f"SHA256: {sha256}\n")
        stanzas.append((name, filename, stanza))
    return "\n".join(s for _, _, s in sorted(stanzas))


def pinned_base(ref: str) -> str:
    """``repo@sha256:...`` of the base image: a digest reference as is, a tag looked up."""
    found = registry.pinned(ref)
    if found is None:
        raise AirlockError(ref, "the base image is not in the registry",
                           "run airlock base create (local default) or import the site's "
                           "base image")
    return found


def inputs(release: Release, service: str, profile: str, platform: str, names: list[str],
           base: str, mirror: str, apt_image: str | None = None) -> dict:
    """What decides one platform's repository.

    The base image counts by digest only: the manifest is part of the
    image's inputs, and the registry it was pushed to must not change them.
    The mirror counts without its credentials, for the same reason. The
    release's name is no input either (only its distro is): venv-builder's
    repository is the same for every release on one Debian suite, and so
    then is venv-builder itself (:func:`airlock.image.plan.immutable_tag`).
    The image apt runs in counts by digest too (its apt makes the plan).
    """
    return {"recipe": RECIPE, "service": service, "profile": profile,
            "platform": platform, "packages": sorted(names),
            "base_image": base.rsplit("@", 1)[1],
            "apt_image": (apt_image or base).rsplit("@", 1)[1],
            "distro": release.distro.name, "codename": release.distro.codename,
            "components": list(COMPONENTS), "mirror": strip_userinfo(mirror)}


def prepare(release: Release, images_dir: Path, service: str, platforms, dest: Path, *,
            base_image: str | None = None, profile: str = "runtime",
            source: Path | None = None, cache: Path | None = None, force: bool = False,
            env: dict[str, str] | None = None, names: list[str] | None = None,
            origin: str | None = None, extra: dict[str, list[str]] | None = None,
            flat: dict[str, str] | None = None, apt_image: str | None = None,
            progress: Callable[[str], None] = _noop) -> list[Result]:
    """Make (or keep) ``dest/<arch>/`` for each platform: see the module docstring.

    ``base_image`` defaults to the release's (``release.base_image_ref()``); a
    tag is pinned to its digest through the registry. ``source`` is the
    service's prepared tree, whose own bindep.txt is merged as
    :mod:`airlock.data.packages` explains. ``cache`` is the cache root (default:
    :func:`airlock.settings.cache_dir`); .debs are kept under ``<cache>/debs``.
    ``apt_image`` is the Debian image apt runs in (default: ``base_image``
    itself), given ``base_image``'s dpkg database when the two differ: the
    release's base image, for a base that has no apt (python-base).

    ``names`` replaces the bindep files with an explicit package list (what
    one sdist build declares), blamed on ``origin`` when apt does not know one.
    ``extra`` adds packages per architecture (``amd64``): those providing the
    shared libraries the wheelhouse's compiled modules need.

    ``flat`` (the site side): ``{arch: URL}`` of a flat repository per
    architecture, the only source apt is given (``deb [trusted=yes] URL
    ./``), instead of the release's Debian mirror: at an air-gapped site,
    the bundle's repository as imported into the site's raw store.
    """
    if names is None:
        names = packages.resolve(release, images_dir, service, profile, source_dir=source)
        origin = str(images_dir / service / "bindep.txt")
        if source is not None:
            origin += f" or {source / 'bindep.txt'}"
    names = sorted(set(names))
    mirror = None if flat else aptmirror.apt_mirror(release.distro.codename, env)
    base = pinned_base(base_image or release.base_image_ref(env))
    apt_base = pinned_base(apt_image) if apt_image else base
    store = (cache or settings.cache_dir(env=env)) / "debs"
    wanted = list(dict.fromkeys(platforms or release.platforms))
    for platform in wanted:  # every one before the first container (minutes each)
        check_replaceable(dest / platforms_mod.get(platform).arch, MANIFEST,
                          "an airlock apt repository")
    results = []
    for platform in wanted:
        arch, debian_arch = platforms_mod.get(platform).arch, platforms_mod.get(platform).debian
        started = time.monotonic()
        wanted_names = sorted({*names, *((extra or {}).get(arch) or [])})
        source = _flat_repo(flat, arch) if flat else mirror
        recorded = inputs(release, service, profile, platform, wanted_names, base, source,
                          apt_base)
        if flat:
            recorded["flat"] = True
        digest = json_digest(recorded)
        out = dest / arch
        if not force and is_current(out, digest):
            progress(f"{out}: unchanged (inputs {digest[:19]})")
            results.append(Result(platform, out, False, _read_json(out / MANIFEST) or {},
                                  round(time.monotonic() - started, 1)))
            continue
        check_replaceable(out, MANIFEST, "an airlock apt repository")
        folder = store / f"{release.distro.name}-{release.distro.codename}" / debian_arch
        plan, downloaded = Plan([], []), 0
        status = dpkg_status(base, platform) if wanted_names and base != apt_base else None
        # Shared by every release and run on the host: one apt at a time.
        with cache_locked(folder, waiting=progress):
            if wanted_names:
                plan, downloaded = download(apt_base, platform, wanted_names, source,
                                            release.distro.codename, folder,
                                            origin or "the package list", flat=bool(flat),
                                            status=status)
            manifest = _assemble(out, recorded, digest, wanted_names, plan, folder)
        closure = plan.closure
        seconds = round(time.monotonic() - started, 1)
        progress(f"{out}: {len(wanted_names)} package(s), {len(closure)} .deb(s) "
                 f"({downloaded} downloaded) in {seconds} s")
        results.append(Result(platform, out, True, manifest, seconds, downloaded))
    return results


def _flat_repo(flat: dict[str, str], arch: str) -> str:
    if arch not in flat:
        raise AirlockError("the site's apt repositories", f"none for {arch}",
                           "import a bundle that holds that architecture")
    return aptmirror.check_mirror(flat[arch], f"the apt repository for {arch}")


def run_spec(base: str, platform: str, mirror: str, codename: str, cache_dir: Path,
             out_dir: Path, log: Path, flat: bool = False) -> containers.RunSpec:
    """The container that computes and downloads the closure (pure, for the tests).

    It sees ``cache_dir`` and ``out_dir``; ``log`` lies outside both, out of
    its reach. The mirror (and its credentials) travel in the environment.
    """
    owner = f"{os.getuid()}:{os.getgid()}"
    bare, auth = aptmirror.apt_auth(mirror)
    env = {"AIRLOCK_MIRROR": bare, **({"AIRLOCK_APT_AUTH": auth} if auth else {}),
           # A flat repository: "deb [trusted=yes] URL ./", no suite, no components.
           **({"AIRLOCK_APT_OPTIONS": "[trusted=yes] "} if flat else {})}
    return containers.RunSpec(
        image=base, platform=platform, network="host", log=log, env=env,
        command=("sh", "-c", SCRIPT, "airlock-debs", TOP, "./" if flat else codename,
                 "" if flat else " ".join(COMPONENTS), owner),
        mounts=(containers.Mount(cache_dir, f"{TOP}/cache", read_only=False),
                containers.Mount(out_dir, f"{TOP}/out", read_only=False)))


def cache_locked(cache_dir: Path,
                 waiting: Callable[[str], None] | None = None) -> contextlib.AbstractContextManager:
    """Hold the .deb cache ``cache_dir`` for this process: two airlock runs may share it.

    The lock file lies beside the cache, outside what the container sees.
    """
    return files_locked(cache_dir.parent / f".{cache_dir.name}.lock", str(cache_dir),
                        waiting=waiting)


@dataclass
class Plan:
    """What apt planned: the .debs to unpack, and the dpkg steps in order."""

    closure: list[Deb]
    steps: list[tuple[str, str]]


def dpkg_status(image: str, platform: str) -> bytes:
    """``image``'s dpkg database (``/var/lib/dpkg/status``), read in a container of it.

    No network, a read-only root; at most :data:`SIMULATION_LIMIT` bytes.
    """
    try:
        text = containers.run(image, ["cat", "/var/lib/dpkg/status"], platform=platform,
                              entrypoint="", network="none", read_only=True)
    except ToolError as error:
        raise ToolError(error.where, error.what,
                        "the build's base image must be Debian-based (a dpkg database)"
                        ) from None
    data = text.encode()
    if len(data) > SIMULATION_LIMIT or not data.strip():
        raise ToolError(f"{image} ({platform}): /var/lib/dpkg/status",
                        "is empty or larger than "
                        f"{SIMULATION_LIMIT // MiB} MiB", "rebuild python-base")
    return data


def download(base: str, platform: str, names: list[str], mirror: str, codename: str,
             cache_dir: Path, origin: str = "bindep.txt", flat: bool = False,
             status: bytes | None = None) -> tuple[Plan, int]:
    """Run apt in ``base``: the closure of ``names``, its order and its .debs in ``cache_dir``.

    ``status`` is the dpkg database apt plans against (default: ``base``'s
    own). Returns apt's plan and how many .debs were new to the cache. A package
    the mirror does not have is the user's error, blamed on ``origin`` (the
    bindep file that names it). The caller holds :func:`cache_locked`.
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    before = {p.name for p in cache_dir.glob("*.deb")}
    shown = strip_userinfo(mirror)
    with tempfile.TemporaryDirectory(prefix="airlock-debs-") as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "out").mkdir()
        (tmp / "out" / "request.txt").write_text("".join(f"{n}\n" for n in names))
        if status is not None:
            (tmp / "out" / STATUS).write_bytes(status)
        spec = run_spec(base, platform, mirror, codename, cache_dir, tmp / "out",
                        tmp / "apt.log", flat=flat)
        try:
            with progress.step(f"apt closure of {len(names)} packages, {platform}",
                               unit=".debs fetched") as step, \
                    step.follow(lambda: len({p.name for p in cache_dir.glob("*.deb")} - before)):
                containers.run_logged(spec)
        except ToolError as error:
            log = spec.log.read_text(errors="replace") if spec.log.is_file() else ""
            unknown = unknown_package(log)
            if unknown:
                raise AirlockError(origin,
                                   f"package {unknown!r} is not in {codename} "
                                   f"({platform}) at {shown}",
                                   "fix the package name for this distro release") from None
            raise ToolError(error.where, error.what,
                            "check the apt mirror ($AIRLOCK_APT_MIRROR) and the network"
                            ) from None
        simulation = read_regular(tmp / "out" / "simulate.txt", SIMULATION_LIMIT)
        text = simulation.decode("utf-8", "replace")
        closure, steps = parse_simulation(text), parse_order(text)
    missing = [d.filename for d in closure if not _is_regular(cache_dir / d.filename)]
    if missing:
        raise ToolError(f"apt-get in {base} ({platform})",
                        f"reported {len(missing)} package(s) it did not download, e.g. "
                        f"{missing[0]}")
    return Plan(closure, steps), len({p.name for p in cache_dir.glob("*.deb")} - before)


def _is_regular(path: Path) -> bool:
    """Whether ``path`` itself (not what a link there points to) is a regular file."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def read_regular(path: Path, limit: int) -> bytes:
    """The bytes of ``path``, a regular file itself, at most ``limit``: a container wrote it.

    A link (to a host file: a root container may plant one) is an error,
    never followed; so are FIFOs, devices and files over the limit.
    """
    fix = "remove it; the cache and the output of apt hold regular files only"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as error:
        what = ("is a symbolic link, not a regular file" if error.errno == errno.ELOOP
                else f"cannot open: {error.strerror}")
        raise ToolError(str(path), what, fix) from None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ToolError(str(path), "is not a regular file", fix)
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise ToolError(str(path), f"is larger than {limit // MiB} MiB", fix)
    return data


def _assemble(out: Path, recorded: dict, digest: str, names: list[str], plan: Plan,
              cache_dir: Path) -> dict:
    """Write the repository next to ``out`` and swap it into place; return its manifest."""
    closure = plan.closure
    with staged(out) as stage:
        entries = []
        for deb in sorted(closure, key=lambda d: d.filename):
            # Regular files only, and the sums of the very file linked.
            _link_or_copy(cache_dir / deb.filename, stage / deb.filename)
            control = read_regular(cache_dir / f"{deb.filename}.control", CONTROL_LIMIT)
            size, md5, sha256 = _sums(stage / deb.filename)
            entries.append((deb.filename, control.decode("utf-8", "replace"), size, md5,
                            sha256))
        (stage / PACKAGES).write_text(packages_index(entries))
        (stage / PACKAGES_TXT).write_text("".join(f"{n}\n" for n in names))
        (stage / ORDER).write_text(order_text(plan.steps))
        files = {p.name: {"sha256": _sha256_file(p), "size": p.stat().st_size}
                 for p in sorted(stage.iterdir())}
        manifest = {"format": FORMAT, "input_digest": digest, "inputs": recorded,
                    "closure": [{"package": d.name, "version": d.version, "arch": d.arch,
                                 "file": d.filename} for d in closure],
                    "files": files}
        _write_json(stage / MANIFEST, manifest)
    return manifest


def _sums(path: Path) -> tuple[int, str, str]:
    """Size, MD5 and SHA256 of a file, read in blocks (a .deb may be large)."""
    md5, sha256, size = hashlib.md5(), hashlib.sha256(), 0
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            md5.update(block)
            sha256.update(block)
            size += len(block)
    return size, md5.hexdigest(), sha256.hexdigest()


def is_current(out: Path, digest: str) -> bool:
    """Whether ``out`` holds the repository of these inputs, every file intact."""
    manifest = _read_json(out / MANIFEST)
    if not manifest or manifest.get("input_digest") != digest:
        return False
    listed = manifest.get("files") or {}
    present = {p.name for p in out.iterdir()} - {MANIFEST}
    return present == set(listed) and all(
        _sha256_file(out / name) == entry.get("sha256") for name, entry in listed.items())
