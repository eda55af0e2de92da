"""Completeness: everything the site will build resolves from the bundle alone.

The repoclosure of this world, run before a bundle leaves (at the end of
``bundle create``) and on demand (``bundle check DIR``). For every release
of the manifest, and every service and platform of it:

- **python**: the service's requirements (the very requirements.in and
  constraints its wheelhouse resolved) resolve with uv against the bundle's
  wheels alone (``--no-index --find-links``, wheels only), and every pin of
  that resolution, of the build constraints and venv-builder's uv has a
  wheel for that platform;
- **sources**: every component's git bundle holds its locked commit, and
  airlock's own git bundle its commit (the site's airlock checkout);
- **debs**: a simulated ``apt-get install`` of every image's package list
  (venv-builder's and each service's) succeeds against python-base's dpkg
  database, the image they are installed into (apt runs in the release's
  base image: python-base has none), with no network and the bundle's apt
  repository as the only source.

Every missing thing is one :class:`AirlockError` naming the release, the
service or image, the platform and the package: the result is a list, so
one run names them all.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement

from airlock import files
from airlock.data import platforms as platforms_mod
from airlock.data.release import canonical_name
from airlock.errors import AirlockError, ToolError
from airlock.ext import containers, git, index, uv
from airlock.inputs import debs, wheeltags
from airlock.progress import step as progress_step

Progress = Callable[[str], None]
Resolver = Callable[[str], "Path | None"]


def _noop(_: str) -> None:
    pass


def check(manifest: dict, where: Resolver, name: str, progress: Progress = _noop
          ) -> list[AirlockError]:
    """Every problem of the bundle described by ``manifest``; empty when it is complete.

    ``where(path)`` gives the file of a bundle path (in this bundle or, for
    a delta, in an earlier one), or None when no bundle given has it;
    ``name`` is how messages name the bundle.
    """
    problems: list[AirlockError] = []
    artifacts = manifest.get("artifacts") or []
    missing = [a["path"] for a in artifacts if where(a["path"]) is None]
    for path in missing:
        problems.append(AirlockError(f"{name}: {path}", "is not in this bundle nor in an "
                                     "earlier one given",
                                     "pass the bundles it builds on with --with DIR"))
    # And what that costs: the closure below names the package, version and
    # platform each missing file leaves without a way to install.
    with tempfile.TemporaryDirectory(prefix="airlock-check-") as tmp:
        pool = _pool(artifacts, where, Path(tmp) / "wheels", "wheel")
        for release, entry in sorted((manifest.get("releases") or {}).items()):
            problems += _python(release, entry, pool, where, name, progress)
            problems += _sources(release, entry, where, name, Path(tmp), progress)
            problems += _debs(release, entry, artifacts, where, name, Path(tmp), progress)
        problems += _airlock(manifest.get("airlock") or {}, where, name, Path(tmp), progress)
    return problems


def _pool(artifacts: list[dict], where: Resolver, dest: Path, kind: str,
          prefix: str | None = None) -> Path:
    """One folder linking every artifact of ``kind`` (under ``prefix``), wherever it is."""
    dest.mkdir(parents=True, exist_ok=True)
    for art in artifacts:
        if art["kind"] != kind or (prefix and not art["path"].startswith(prefix + "/")):
            continue
        source = where(art["path"])
        target = dest / Path(art["path"]).name
        if source is not None and not os.path.lexists(target):
            os.symlink(source.resolve(), target)
    return dest


# --- python -------------------------------------------------------------------


def _python(release: str, entry: dict, pool: Path, where: Resolver, name: str,
            progress: Progress) -> list[AirlockError]:
    problems: list[AirlockError] = []
    python = entry.get("python_version") or "3"
    names = sorted(os.listdir(pool))
    offline = index.Locations(find_links=(str(pool),), no_index=True)
    for service, svc in sorted((entry.get("python") or {}).items()):
        reqs = {key: where(path) for key, path in svc["requirements"].items()}
        if None in reqs.values():
            problems.append(AirlockError(f"{name}: release {release}, {service}",
                                         "its requirements files are not in the bundle",
                                         "create the bundle again"))
            continue
        for platform in entry.get("platforms") or []:
            tgt = platforms_mod.get(platform)
            label = f"{name}: release {release}, {service}, {platform}"
            progress(f"check: {release} {service} {platform}: python")
            try:
                pins = uv.resolve(reqs["requirements.in"], [reqs["constraints.txt"]],
                                  python_version=python, python_platform=tgt.python_platform,
                                  where=offline, only_binary=True,
                                  label=f"{service}'s requirements")
            except AirlockError as error:
                problems.append(AirlockError(label, f"does not resolve from the bundle's "
                                             f"wheels alone: {error.what}",
                                             "create the bundle again"))
                continue
            build = _build_pins(reqs["build-constraints.txt"], tgt)
            wanted = [*pins, *build]
            if entry.get("uv"):
                wanted.append(("uv", entry["uv"]))
            supported = wheeltags.supported_tags(python, tgt.machine)
            for pin_name, version in wanted:
                found = wheeltags.choose(names, pin_name, version, supported)
                if found is None or not found.endswith(".whl"):
                    problems.append(AirlockError(label, f"no wheel of {pin_name}=={version} "
                                                 f"for {platform} in python/wheels",
                                                 "create the bundle again"))
    return problems


def _build_pins(path: Path, tgt: platforms_mod.Platform) -> list[tuple[str, str]]:
    """The exact pins of build-constraints.txt that hold on ``tgt`` (markers evaluated)."""
    pins = []
    env = {"platform_machine": tgt.machine, "sys_platform": "linux",
           "platform_system": "Linux", "os_name": "posix"}
    for line in files.read_text(path, limit=files.RECORD_LIMIT).splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        req = Requirement(line)
        if req.marker and not Marker(str(req.marker)).evaluate(env):
            continue
        spec = next(iter(req.specifier), None)
        if spec is not None and spec.operator == "==":
            pins.append((canonical_name(req.name), spec.version))
    return pins


# --- sources ------------------------------------------------------------------


def _sources(release: str, entry: dict, where: Resolver, name: str, tmp: Path,
             progress: Progress) -> list[AirlockError]:
    problems = []
    for component, comp in sorted((entry.get("components") or {}).items()):
        progress(f"check: {release} {component}: git bundle")
        problems += _holds_commit(comp["bundle"], comp["sha"], where, name,
                                  f"{name}: release {release}, {component}",
                                  tmp / "git" / f"{release}-{component}.git")
    return problems


def _airlock(entry: dict, where: Resolver, name: str, tmp: Path,
             progress: Progress) -> list[AirlockError]:
    """airlock's own commit is in its git bundle (a bundle made before it crossed has none)."""
    if not entry.get("commit"):
        return []
    progress("check: airlock: git bundle of its repository")
    return _holds_commit(entry["bundle"], entry["commit"], where, name, f"{name}: airlock",
                         tmp / "git" / "airlock.git")


def _holds_commit(path: str, sha: str, where: Resolver, name: str, label: str,
                  git_dir: Path) -> list[AirlockError]:
    """No problem when the git bundle at ``path`` reads and holds commit ``sha``."""
    bundle = where(path)
    if bundle is None:
        return [AirlockError(label, f"no git bundle ({path}) holds commit {sha}",
                             "create the bundle again")]
    try:
        git.init_bare(git_dir)
        git.unbundle(git_dir, bundle)
        held = git.has_object(git_dir, sha)
    except ToolError as error:
        return [AirlockError(f"{name}: {path}", f"cannot be read: {error.what}",
                             "create the bundle again")]
    if not held:
        return [AirlockError(label, f"commit {sha} is not in {path}", "create the bundle again")]
    return []


# --- debs ---------------------------------------------------------------------

# Runs in the release's base image with no network, given python-base's
# dpkg database (python-base has no apt): the bundle's repository is the
# only source; the simulation's output (and apt's complaint) go to the log.
SIMULATE = r"""set -u
work=$(mktemp -d)
echo "deb [trusted=yes] file:/bundle-repo ./" > "$work/sources.list"
mkdir -p "$work/lists/partial"
set -- -q -o "Dir::Etc::SourceList=$work/sources.list" -o Dir::Etc::SourceParts=/dev/null \
    -o "Dir::State::Lists=$work/lists" -o APT::Sandbox::User=root \
    -o Dir::State::status=/bundle-status
apt-get "$@" update >/dev/null 2>&1 || echo "E: apt-get update failed"
if apt-get "$@" -s install --no-install-recommends $(cat /bundle-list) 2>&1; then
    echo "AIRLOCK: simulation ok"
fi
"""
_PROBLEM = (
    re.compile(r"^E: Unable to locate package (?P<name>\S+)", re.MULTILINE),
    re.compile(r"^E: Package '(?P<name>[^']+)' has no installation candidate", re.MULTILINE),
    re.compile(r"Depends: (?P<name>[a-z0-9][a-z0-9+.-]*)[^\n]* but it is not "
               r"(?:installable|going to be installed)"),
)


def simulation_ok(log: str) -> bool:
    """Whether apt's simulation succeeded: :data:`SIMULATE`'s marker, a line of its own.

    Not on the log's first line: that one is the command, and the script it
    carries names the marker too (which once made every simulation pass).
    """
    return "AIRLOCK: simulation ok" in log.splitlines()[1:]


def missing_package(log: str) -> str | None:
    """The first package apt could not find in the simulation's output, if any."""
    for pattern in _PROBLEM:
        match = pattern.search(log)
        if match:
            return match["name"]
    return None


def _debs(release: str, entry: dict, artifacts: list[dict], where: Resolver, name: str,
          tmp: Path, progress: Progress) -> list[AirlockError]:
    problems: list[AirlockError] = []
    image = entry.get("python_base")
    base = entry.get("base_image") or {}
    apt_image = f"{base.get('ref')}@{base.get('digest')}" if isinstance(base, dict) else ""
    for arch, repo in sorted((entry.get("apt") or {}).items()):
        platform = platforms_mod.by_arch(arch).platform
        status: bytes | None = None  # python-base's, read once per platform
        folder = tmp / "debs" / release / arch
        _pool(artifacts, where, folder, "deb", prefix=repo)
        _pool(artifacts, where, folder, "apt-index", prefix=repo)
        for owner, lists in sorted((entry.get("packages") or {}).items()):
            wanted = lists.get(arch) or []
            if not wanted:
                continue
            label = f"{name}: release {release}, {owner}, {platform}"
            if not all(isinstance(ref, str) and re.fullmatch(r"[^\s@]+@sha256:[0-9a-f]{64}", ref)
                       for ref in (image, apt_image)):
                # Content-addressed only: the manifest is not trusted to name
                # any image it likes for the engine to pull and run.
                problems.append(AirlockError(label, "the manifest names no python-base and "
                                             "base image by digest to simulate the install "
                                             "with", "create the bundle again"))
                continue
            progress(f"check: {release} {owner} {platform}: apt ({len(wanted)} packages)")
            with progress_step(f"check: apt simulation, {release} {owner} {platform}"):
                if status is None:
                    status = debs.dpkg_status(image, platform)
                problems += _simulate(apt_image, status, platform, folder, wanted, label,
                                      repo, tmp / f"apt-{release}-{owner}-{arch}")
    return problems


def _simulate(image: str, status: bytes, platform: str, repo: Path, wanted: list[str],
              label: str, repo_path: str, work: Path) -> list[AirlockError]:
    """apt in ``image`` plans the install of ``wanted`` into the image whose dpkg
    database ``status`` is (python-base's)."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "list").write_text(" ".join(wanted) + "\n")
    (work / "status").write_bytes(status)
    # Real files for the container: it cannot follow the pool's host links.
    real = work / "repo"
    real.mkdir()
    for entry in os.scandir(repo):
        files.link_or_copy(Path(os.path.realpath(entry.path)), real / entry.name)
    log = work / "apt.log"
    spec = containers.RunSpec(
        image=image, platform=platform, network="none", log=log,
        command=("sh", "-c", SIMULATE), user="0",
        mounts=(containers.Mount(real, "/bundle-repo"),
                containers.Mount(work / "list", "/bundle-list"),
                containers.Mount(work / "status", "/bundle-status")))
    containers.run_logged(spec)
    text = files.read_text(log, limit=16 * files.MiB)
    if not simulation_ok(text):
        package = missing_package(text) or "a package"
        return [AirlockError(label, f"apt cannot install {package} from {repo_path} alone",
                             "create the bundle again")]
    # apt simulates from the index: each package it would unpack must be there too.
    index = _index(real / "Packages")
    problems = []
    for deb in debs.parse_simulation(text):
        filename = index.get((deb.name, deb.version, deb.arch))
        if filename is None or not (real / filename).is_file():
            problems.append(AirlockError(label, f"apt would install {deb.name} {deb.version} "
                                         f"({deb.arch}), whose .deb is not in {repo_path}",
                                         "create the bundle again"))
    return problems


def _index(packages: Path) -> dict[tuple[str, str, str], str]:
    """``{(package, version, arch): file name}`` of a flat repository's Packages."""
    result = {}
    if not packages.is_file():
        return result
    for stanza in files.read_text(packages, limit=256 * files.MiB).split("\n\n"):
        fields = dict(re.findall(r"^([A-Za-z0-9-]+): (.*)$", stanza, re.MULTILINE))
        if {"Package", "Version", "Architecture", "Filename"} <= fields.keys():
            result[(fields["Package"], fields["Version"], fields["Architecture"])] = \
                fields["Filename"].removeprefix("./")
    return result
