"""The wheelhouse of one service: every Python file its offline build installs.

``airlock wheels`` runs on the connected side (or against the bundle's
index) and leaves a folder that a ``--network none`` build can install from::

    WHEELHOUSE/any/        pure wheels (py3-none-any): one copy for every platform
    WHEELHOUSE/amd64/      wheels for linux/amd64 only
    WHEELHOUSE/arm64/      wheels for linux/arm64 only
    WHEELHOUSE/constraints.txt        the merged constraints (what was resolved)
    WHEELHOUSE/build-constraints.txt  exact pins of every build requirement
    WHEELHOUSE/manifest.json          every file with its sha256, the pins per
                                      platform, what was built from an sdist

How, per platform:

1. **resolve**: the sources' requirements.txt under the release's merged
   constraints, with uv for that platform (:mod:`airlock.ext.uv`);
2. **download**: pip fetches each pin's best file for the platform
   (:mod:`airlock.ext.index`) into a download cache shared by every service and
   release, so no file is fetched twice;
3. **build requirements**: pbr, setuptools and wheel (exact pins: setuptools
   81 dropped pkg_resources, which pbr needs) and whatever the sources' and
   sdists' pyproject.toml ask for, resolved and downloaded the same way;
   they land in the wheelhouse and in build-constraints.txt;
4. **sdists**: a pin with no wheel for the platform is built into one inside
   the venv-builder image *of that platform* (``docker run --network none``;
   arm64 under QEMU, for these few only). It is built first on the build
   platform: a pure result serves every platform and is not built again.

Nothing changed, nothing done: every input that decides the wheelhouse
(requirements, constraints, build pins, platforms, Python, the uv version,
the index) is hashed into ``input_digest``; a wheelhouse whose manifest has
that digest, whose files all have their recorded sha256, and whose wheels
built from sdists came from the same venv-builder image is left as it is,
without asking the index or the engine anything (the engine is asked for the
image's digest only when the reference is a tag).

The wheelhouse appears whole or not at all: it is assembled next to DEST
(hard links into the cache) and renamed into place.

This module decides and assembles; its parts live apart: platforms and
wheel tags in :mod:`airlock.inputs.wheeltags`, what a source tree asks for in
:mod:`airlock.inputs.pysource`, the shared cache and sdist builds in
:mod:`airlock.inputs.wheelcache`.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement

from airlock import settings
from airlock.data import constraints, sdists, services
from airlock.data import platforms as platforms_mod
from airlock.data.layout import resolve_layout
from airlock.data.platforms import Platform
from airlock.data.release import Release, canonical_name
from airlock.errors import AirlockError, ToolError
from airlock.ext import containers, index, uv
from airlock.files import (
    check_replaceable,
    json_digest,
    link_or_copy,
    sha256_file,
    staged,
)
from airlock.files import (
    locked as files_locked,
)
from airlock.files import read_json as _read_json
from airlock.files import write_json as _write_json
from airlock.inputs import debs, elf, sharedlibs
from airlock.inputs.pysource import check_sources, read_source, requirements_in, sdist_requires
from airlock.inputs.wheelcache import (
    BUILD_CONSTRAINTS,
    RECIPE,
    Cache,
    SdistBuildError,
    build_sdist,
    built_owners,
    fetch,
)
from airlock.inputs.wheeltags import PURE, is_pure, place
from airlock.urls import strip_userinfo

FORMAT = 1
# Build requirements every wheelhouse carries: pbr builds every OpenStack
# source, setuptools and wheel every legacy sdist. setuptools >= 81 has no
# pkg_resources (pbr needs it); exact pins make builds repeatable. A pin of
# the same name in the merged constraints wins over these.
BUILD_BASE = {"setuptools": "80.9.0", "wheel": "0.45.1", "pbr": None}
MANIFEST = "manifest.json"
CONSTRAINTS = "constraints.txt"
# What the image installs beyond the sources' requirements (service.yaml's
# python entries, extras expanded): the venv stage installs it too.
INSTALL = "install.txt"


@dataclass
class Result:
    """What :func:`prepare` did, for the CLI and the build record."""

    dest: Path
    changed: bool
    manifest: dict
    seconds: dict[str, float] = field(default_factory=dict)
    downloaded: int = 0  # files that were not in the cache before


def _noop(_: str) -> None:
    pass


def build_pins(merged: constraints.Merged, python_version: str) -> dict[str, str]:
    """Exact versions of the build base (setuptools, wheel, pbr): constraints first."""
    pinned = pins_of(merged, python_version)
    result = {}
    for name, default in BUILD_BASE.items():
        version = pinned.get(name, default)
        if version:
            result[name] = version
    return result


def pins_of(merged: constraints.Merged, python_version: str) -> dict[str, str]:
    """``{canonical name: version}`` of the constraints that hold for ``python_version``."""
    env = {"python_version": python_version, "python_full_version": f"{python_version}.0",
           "sys_platform": "linux", "platform_system": "Linux", "os_name": "posix",
           "implementation_name": "cpython", "platform_python_implementation": "CPython"}
    result = {}
    for pin in merged:
        if pin.marker and not Marker(pin.marker).evaluate(env):
            continue
        result[pin.key] = pin.version
    return result


def uv_pin(merged: constraints.Merged, python_version: str) -> str:
    """The uv version of the venv-builder: a pin in the constraints, else :data:`uv.UV_VERSION`."""
    return pins_of(merged, python_version).get("uv", uv.UV_VERSION)


def inputs(release: Release, service: str, targets: list[Platform], requirements: str,
           constraints_text: str, build_requirements: list[str], base_pins: dict[str, str],
           uv_version: str, index_url: str | None) -> dict:
    """What decides the wheelhouse (besides the index's files and the builder image).

    The index counts without its credentials: they are no input (a new
    token must not make a new wheelhouse), and this lands in the manifest.
    """
    return {
        "recipe": RECIPE,
        "release": release.name,
        "service": service,
        "python": release.python,
        "platforms": sorted(t.platform for t in targets),
        "requirements": _sha256_text(requirements),
        "constraints": _sha256_text(constraints_text),
        "build_requirements": sorted(build_requirements),
        "build_base": dict(sorted(base_pins.items())),
        "uv": uv_version,
        "index": strip_userinfo(index_url) if index_url else "pip configuration",
    }


def render_build_constraints(per_arch: dict[str, list[tuple[str, str]]],
                             machines: dict[str, str]) -> str:
    """build-constraints.txt: one exact pin a line; per-platform markers only where they differ."""
    versions: dict[str, dict[str, str]] = {}
    names: dict[str, str] = {}
    for arch, pins in per_arch.items():
        for name, version in pins:
            key = canonical_name(name)
            names.setdefault(key, name)
            versions.setdefault(key, {})[arch] = version
    lines = ["# Build requirements of this wheelhouse; generated by airlock wheels.\n"]
    for key in sorted(versions):
        by_arch = versions[key]
        if len(set(by_arch.values())) == 1 and len(by_arch) == len(per_arch):
            lines.append(f"{names[key]}=={next(iter(by_arch.values()))}\n")
            continue
        for arch in sorted(by_arch):
            lines.append(f"{names[key]}=={by_arch[arch]} ; platform_machine == "
                         f"'{machines[arch]}'\n")
    return "".join(lines)


def runtime_base(base_pins: dict[str, str]) -> list[str]:
    """setuptools in every venv, at the build pin: older OpenStack code imports it at run time.

    keystonemiddleware of 2024.1 (in every API service) imports pkg_resources
    without requiring setuptools, because every venv pip or virtualenv makes
    holds it; uv's venvs do not. The images hold it as upstream's test
    venvs do; which code still imports it is for the size budget to decide.
    """
    version = base_pins.get("setuptools")
    return [f"setuptools=={version}"] if version else []


def service_requirements(release: Release, service: str, srcs, merged: constraints.Merged,
                         images_dir: Path) -> list[str]:
    """What ``images/<service>/service.yaml`` installs beyond the requirements, checked.

    Each must be pinned by the release's constraints: an unpinned package
    would be whatever the index holds on the day of the build.
    """
    spec = services.load(images_dir, service)
    tree = next((s.path for s in srcs if s.component == service), None)
    lines = services.requirements(spec, tree)
    pinned = {pin.key for pin in merged}
    loose = [line for line in lines
             if canonical_name(Requirement(line).name) not in pinned]
    if loose:
        raise AirlockError(str(images_dir / service / services.FILE),
                           f"{', '.join(loose)} is not pinned for release {release.name}",
                           f"pin it in releases/{release.name}/constraint-overrides.txt "
                           "(+name===version)")
    return lines


def _requirements(release: Release, service: str, srcs, merged: constraints.Merged,
                  images_dir: Path) -> tuple[str, list[str]]:
    """What the wheelhouse resolves (requirements.in), and its lines beyond the sources'."""
    extra = [*service_requirements(release, service, srcs, merged, images_dir),
             *runtime_base(build_pins(merged, release.python))]
    return (requirements_in(srcs, {s.package for s in srcs})
            + "".join(f"{line}\n" for line in extra)), extra


def requirements_text(release: Release, service: str, sources, images_dir: Path) -> str:
    """The requirements.in a wheelhouse of ``service`` resolves from these prepared trees.

    A bundle carries it, so that its completeness check resolves exactly
    what the site's wheelhouse step will, against the bundle's wheels alone.
    """
    srcs = [read_source(release, Path(p)) for p in sources]
    check_sources(release, service, srcs)
    merged = constraints.merged(release, component=service)
    return _requirements(release, service, srcs, merged, images_dir)[0]


def prepare(release: Release, service: str, platforms, sources, dest: Path, *,
            index_url: str | None = None, venv_builder: str | None = None,
            cache: Path | None = None, force: bool = False,
            images_dir: Path | None = None,
            known_libraries: Callable[[str], dict[str, str]] | None = None,
            progress: Callable[[str], None] = _noop) -> Result:
    """Make (or keep) the wheelhouse of ``service`` for ``platforms`` at ``dest``.

    ``sources`` are prepared trees: the service's and those of the libraries
    the release builds from source. ``venv_builder`` is the image that builds
    sdists (needed only when a pin has no wheel for a platform), with the OS
    packages each needs as ``images_dir``'s sdists.txt declares
    them (default: the images folder of the data root,
    :func:`airlock.data.layout.resolve_layout`). ``cache`` is the cache root
    (default: :func:`airlock.settings.cache_dir`). ``known_libraries`` (the
    site side) gives, per wheel file name, the packages of the libraries it
    needs as the connected side found them: wheels built from sdists there.
    """
    started = time.monotonic()
    images_dir = images_dir or resolve_layout().images_dir
    targets = [platforms_mod.get(p) for p in dict.fromkeys(platforms or release.platforms)]
    srcs = [read_source(release, Path(p)) for p in sources]
    check_sources(release, service, srcs)
    merged = constraints.merged(release, component=service)
    constraints_text = constraints.render(merged)
    base_pins = build_pins(merged, release.python)
    requirements, extra = _requirements(release, service, srcs, merged, images_dir)
    build_requirements = sorted({*BUILD_BASE, *(r for s in srcs for r in s.build_requires)})
    uv_version = uv_pin(merged, release.python)
    recorded = inputs(release, service, targets, requirements, constraints_text,
                      build_requirements, base_pins, uv_version, index_url)
    digest = json_digest(recorded)
    if not force and is_current(dest, digest, venv_builder):
        progress(f"{dest}: unchanged (inputs {digest[:19]})")
        return Result(dest, False, _read_json(dest / MANIFEST) or {},
                      {"total": round(time.monotonic() - started, 1)})
    check_replaceable(dest, MANIFEST, "a wheelhouse")
    store = Cache((cache or settings.cache_dir()) / "pypi")
    before = set(_listdir(store.files))
    where = index.locations(index_url)
    seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="airlock-wheels-") as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "requirements.in").write_text(requirements)
        (tmp / CONSTRAINTS).write_text(constraints_text)
        (tmp / "build-base.txt").write_text(
            "".join(f"{n}=={v}\n" for n, v in sorted(base_pins.items())))
        pins: dict[str, list[tuple[str, str]]] = {}
        files: dict[str, dict[str, str]] = {}
        for tgt in targets:
            clock = time.monotonic()
            pins[tgt.arch] = uv.resolve(tmp / "requirements.in", [tmp / CONSTRAINTS],
                                        python_version=release.python,
                                        python_platform=tgt.python_platform, where=where,
                                        cache_dir=store.root / "uv",
                                        label=f"requirements of {service}")
            seconds[f"resolve {tgt.arch}"] = round(time.monotonic() - clock, 1)
            clock = time.monotonic()
            files[tgt.arch] = fetch(store, [*pins[tgt.arch], ("uv", uv_version)], tgt,
                                    release.python, index_url, where)
            seconds[f"download {tgt.arch}"] = round(time.monotonic() - clock, 1)
            progress(f"{tgt.arch}: {len(pins[tgt.arch])} pins resolved and fetched")
        declared = _check_declared(release, files, images_dir)
        # Build requirements: the base, the sources', and every sdist's to build.
        sdists = {store.files / f for arch in files for f in files[arch].values()
                  if not f.endswith(".whl")}
        wanted = sorted({*build_requirements,
                         *(r for sdist in sorted(sdists) for r in sdist_requires(sdist))})
        (tmp / "build.in").write_text("".join(f"{r}\n" for r in wanted))
        build: dict[str, list[tuple[str, str]]] = {}
        build_files: dict[str, dict[str, str]] = {}
        for tgt in targets:
            clock = time.monotonic()
            build[tgt.arch] = uv.resolve(tmp / "build.in", [tmp / CONSTRAINTS,
                                                             tmp / "build-base.txt"],
                                         python_version=release.python,
                                         python_platform=tgt.python_platform, where=where,
                                         cache_dir=store.root / "uv",
                                         label=f"build requirements of {service}")
            build_files[tgt.arch] = fetch(store, build[tgt.arch], tgt, release.python,
                                          index_url, where)
            seconds[f"build requirements {tgt.arch}"] = round(time.monotonic() - clock, 1)
            bad = sorted(p for p, f in build_files[tgt.arch].items() if not f.endswith(".whl"))
            if bad:
                raise ToolError(f"build requirements for {tgt.platform}",
                                f"{', '.join(bad)} come only as sdists",
                                "put a wheel of each on the package index")
        build_text = render_build_constraints(build, {t.arch: t.machine for t in targets})
        clock = time.monotonic()
        built = _build_all(store, targets, files, build_files, build_text, venv_builder,
                           progress, _SdistBuild(release, declared,
                                                 (cache or settings.cache_dir()), images_dir))
        if built:
            seconds["build sdists"] = round(time.monotonic() - clock, 1)
    layout = _layout(store, targets, files, build_files, built)
    clock = time.monotonic()
    libraries = _libraries(layout, targets, built, venv_builder,
                           cache or settings.cache_dir(), known_libraries
                           ) if venv_builder else None
    seconds["libraries"] = round(time.monotonic() - clock, 1)
    manifest = _manifest(recorded, digest, targets, pins, build, uv_version, layout, built,
                         venv_builder, libraries)
    _install(dest, layout, manifest, constraints_text, build_text,
             "".join(f"{line}\n" for line in extra))
    downloaded = len(set(_listdir(store.files)) - before)
    seconds["total"] = round(time.monotonic() - started, 1)
    progress(f"{dest}: {len(manifest['files'])} files ({downloaded} downloaded, "
             f"{len(built)} built) in {seconds['total']} s")
    return Result(dest, True, manifest, seconds, downloaded)


@dataclass(frozen=True)
class Built:
    """One wheel built from an sdist: which pin, for which platforms, where."""

    pin: str
    sdist: str
    sdist_sha256: str
    wheel: Path  # in the cache
    built_on: str  # the platform whose venv-builder built it
    serves: tuple[str, ...]  # the arches whose pin it is
    builder: str
    builder_digest: str


@dataclass(frozen=True)
class _SdistBuild:
    """What building one release's sdists needs besides the cache: whose, and which packages."""

    release: Release
    declared: sdists.Declarations | None
    cache_root: Path
    images_dir: Path

    def packages(self, pin: str) -> tuple[str, ...]:
        found = self.declared.of(pin.partition("==")[0]) if self.declared else None
        return found or ()

    def repository(self, pin: str, builder: str, tgt: Platform) -> tuple[Path | None, str]:
        """The offline apt repository of ``pin``'s declared packages for ``tgt``, and its key.

        Computed against the builder image's own dpkg database (what it
        lacks is what gets installed; apt runs in the release's base
        image), kept in the cache per package set and builder, and
        keyed by the sha256 of its Packages index: new header versions
        from the mirror make a new wheel.
        """
        names = self.packages(pin)
        if not names:
            return None, ""
        key = hashlib.sha256(json.dumps([sorted(names), builder]).encode()).hexdigest()[:16]
        dest = self.cache_root / "sdist-debs" / key
        dest.parent.mkdir(parents=True, exist_ok=True)
        with files_locked(dest.parent / f".{key}.lock", str(dest)):
            debs.prepare(self.release, self.images_dir, "venv-builder", [tgt.platform], dest,
                         base_image=builder, names=list(names),
                         apt_image=self.release.base_image_ref(),
                         origin=str(self.declared.path) if self.declared else "sdists.txt",
                         cache=self.cache_root)
        out = dest / tgt.arch
        return out, sha256_file(out / debs.PACKAGES)


def _check_declared(release: Release, files: dict[str, dict[str, str]],
                    images_dir: Path) -> sdists.Declarations | None:
    """Every sdist-only pin must say what building it needs, before anything is built."""
    wanted: dict[str, list[str]] = {}
    for arch, chosen in files.items():
        for pin, filename in chosen.items():
            if not filename.endswith(".whl"):
                wanted.setdefault(pin, []).append(arch)
    if not wanted:
        return None
    declared = sdists.load(images_dir)
    missing = declared.undeclared(pin.partition("==")[0] for pin in wanted)
    if missing:
        bad = sorted(p for p in wanted if canonical_name(p.partition("==")[0]) in missing)
        listed = ", ".join(f"{p} ({'/'.join(sorted(wanted[p]))})" for p in bad)
        raise AirlockError(f"release {release.name}", f"{listed} come only as sdists and "
                           f"{declared.path} does not say what building them needs",
                           declared.fix(missing))
    return declared


def _build_all(store: Cache, targets: list[Platform], files: dict[str, dict[str, str]],
               build_files: dict[str, dict[str, str]], build_text: str,
               venv_builder: str | None, progress: Callable[[str], None],
               how: _SdistBuild | None = None) -> list[Built]:
    """Build every sdist pin into a wheel: natively first, per platform only if not pure."""
    needs: dict[tuple[str, str], list[Platform]] = {}
    for tgt in targets:
        for pin, filename in files[tgt.arch].items():
            if not filename.endswith(".whl"):
                needs.setdefault((pin, filename), []).append(tgt)
    if not needs:
        return []
    if not venv_builder:
        names = ", ".join(sorted(f"{pin} ({'/'.join(t.arch for t in ts)})"
                                 for (pin, _), ts in needs.items()))
        raise AirlockError("--venv-builder", f"no wheel on the index for {names}",
                           "build the venv-builder image (images/venv-builder) and pass "
                           "--venv-builder IMAGE to build them from their sdists")
    builder_digest = containers.image_digest(venv_builder)
    if builder_digest is None:
        raise AirlockError(venv_builder, "no such image in the engine or its registry",
                           "build images/venv-builder first and pass its reference")
    native = platforms_mod.native()
    result: list[Built] = []
    for (pin, filename), wanting in sorted(needs.items()):
        sdist = store.files / filename
        order = list(wanting)
        # A platform wheel of this pin on the index means the sdist compiles:
        # building it natively first would only give a wheel nobody here needs.
        compiles = any(not is_pure(files[t.arch][pin]) for t in targets
                       if files[t.arch].get(pin, "").endswith(".whl"))
        if (native and native not in wanting and not compiles
                and _can_build_on(native, targets, build_files)):
            order.insert(0, native)  # may give a pure wheel, sparing the emulated builds
        elif native in wanting:
            order.sort(key=lambda t: t != native)
        remaining = list(wanting)
        for tgt in order:
            if not remaining:
                break
            clock = time.monotonic()
            arch = tgt.arch if tgt.arch in build_files else targets[0].arch
            deps = [store.files / f for f in build_files[arch].values()]
            repo, repo_key = how.repository(pin, venv_builder, tgt) if how else (None, "")
            try:
                wheel, fresh = build_sdist(store, sdist, deps, build_text, venv_builder,
                                           builder_digest, tgt, debs=repo, debs_key=repo_key)
            except SdistBuildError as error:
                raise _sdist_failure(error, pin, tgt, how) from None
            progress(f"{pin}: built {wheel.name} on {tgt.platform} "
                     f"({round(time.monotonic() - clock, 1)} s)" if fresh else
                     f"{pin}: {wheel.name} for {tgt.platform} from the cache")
            if is_pure(wheel.name):
                serves = tuple(t.arch for t in remaining)
                remaining = []
            elif tgt in remaining:
                serves = (tgt.arch,)
                remaining.remove(tgt)
            else:
                continue  # a native build that is not pure serves no one here
            result.append(Built(pin, filename, sha256_file(sdist), wheel, tgt.platform, serves,
                                venv_builder, builder_digest))
    return result


def _sdist_failure(error: SdistBuildError, pin: str, tgt: Platform,
                   how: _SdistBuild | None) -> ToolError:
    """One line: the release, the pin, the platform, what the build missed, where to declare it."""
    name = pin.partition("==")[0]
    where = f"release {how.release.name}: " if how else ""
    where += f"{pin} for {tgt.platform}"
    if error.missing and how and how.declared:
        now = " ".join(how.packages(pin))
        return ToolError(where, f"its sdist build missed {error.missing}",
                         f"add the Debian package that provides it to the line "
                         f"'{name}: {now}' of {how.declared.path}; log: {error.log}")
    return ToolError(where, error.what, error.fix)


def _can_build_on(native: Platform, targets: list[Platform],
                  build_files: dict[str, dict[str, str]]) -> bool:
    """Whether the build platform can build for a wheelhouse that does not serve it.

    It can when it is a target (its build requirements are fetched) or when
    the build requirements of the first target are all pure wheels.
    """
    if native in targets:
        return True
    return all(is_pure(f) for f in build_files[targets[0].arch].values())


def _layout(store: Cache, targets: list[Platform], files: dict[str, dict[str, str]],
            build_files: dict[str, dict[str, str]], built: list[Built]) -> dict[str, dict]:
    """Every wheelhouse file: ``{relative path: {"source": cache path, "pins": {arch: pin}}}``."""
    replaced = {(arch, b.pin): b.wheel for b in built for arch in b.serves}
    layout: dict[str, dict] = {}
    for tgt in targets:
        chosen = {**build_files[tgt.arch], **files[tgt.arch]}
        for pin, filename in chosen.items():
            path = replaced.get((tgt.arch, pin), store.files / filename)
            rel = place(path.name, tgt.arch)
            entry = layout.setdefault(rel, {"source": path, "pins": {}})
            entry["pins"][tgt.arch] = pin
    return layout


def _libraries(layout: dict[str, dict], targets: list[Platform], built: list[Built],
               venv_builder: str, cache_root: Path,
               known: Callable[[str], dict[str, str]] | None = None
               ) -> dict[str, dict[str, dict]]:
    """Per platform, every shared library the wheels need and do not carry, with its package.

    Read from the wheels' ELF files (:mod:`airlock.inputs.elf`); a library
    is found in venv-builder (python-base and a compiler: what manylinux
    wheels may assume) or, for a wheel built with declared packages, in the
    container that built it. One no package provides stops the wheelhouse,
    naming the module and the library: the image would fail to import it.
    """
    result: dict[str, dict[str, dict]] = {}
    for tgt in targets:
        wheels_here = [entry["source"] for entry in layout.values() if tgt.arch in entry["pins"]]
        needed = elf.needs_of(wheels_here)
        if not needed:
            result[tgt.arch] = {}
            continue
        owners = dict(sharedlibs.owners(venv_builder, tgt.platform, cache=cache_root))
        for b in built:
            if tgt.arch in b.serves:
                owners.update(built_owners(b.wheel, tgt))
        found, unresolved = sharedlibs.resolve(needed, owners)
        if unresolved and known is not None:
            # The site: what the connected side found for these wheels.
            for name in sorted({wheel for wheel, _member, _soname in unresolved}):
                owners.update(known(Path(name).name))
            found, unresolved = sharedlibs.resolve(needed, owners)
        if unresolved:
            wheel, member, soname = unresolved[0]
            more = f" (and {len(unresolved) - 1} more)" if len(unresolved) > 1 else ""
            raise AirlockError(f"{wheel}: {member}", f"needs {soname} on {tgt.platform}, "
                               f"which no Debian package of venv-builder or of the sdist's "
                               f"build provides{more}",
                               "declare the package that builds it in images/"
                               "sdists.txt (its -dev package pulls in the library), or use a "
                               "wheel that carries it")
        users: dict[str, set[str]] = {}
        for wheel, members in needed.items():
            for sonames in members.values():
                for soname in sonames:
                    users.setdefault(soname, set()).add(wheel)
        result[tgt.arch] = {soname: {"package": package, "wheels": sorted(users[soname])}
                            for soname, package in found.items()}
    return result


def runtime_packages(manifest: dict) -> dict[str, list[str]]:
    """``{arch: Debian packages}`` the wheelhouse's libraries need at run time."""
    return {arch: sorted({lib["package"] for lib in (entry.get("libraries") or {}).values()})
            for arch, entry in (manifest.get("platforms") or {}).items()}


def _manifest(recorded: dict, digest: str, targets: list[Platform],
              pins: dict[str, list[tuple[str, str]]], build: dict[str, list[tuple[str, str]]],
              uv_version: str, layout: dict[str, dict], built: list[Built],
              venv_builder: str | None, libraries: dict[str, dict] | None = None) -> dict:
    """The manifest: plain, sorted JSON; the same inputs give the same bytes."""
    wheel_of: dict[str, dict[str, str]] = {t.arch: {} for t in targets}
    for rel, entry in layout.items():
        for arch, pin in entry["pins"].items():
            wheel_of[arch][pin] = rel
    return {
        "format": FORMAT,
        "input_digest": digest,
        "inputs": recorded,
        "platforms": {t.arch: {
            "platform": t.platform,
            "requirements": sorted(f"{canonical_name(n)}=={v}" for n, v in pins[t.arch]),
            "build": sorted(f"{canonical_name(n)}=={v}" for n, v in build[t.arch]),
            "tools": [f"uv=={uv_version}"],
            "files": dict(sorted(wheel_of[t.arch].items())),
            **({"libraries": libraries.get(t.arch, {})} if libraries is not None else {}),
        } for t in targets},
        "built": [{"pin": b.pin, "sdist": b.sdist, "sdist_sha256": b.sdist_sha256,
                   "wheel": place(b.wheel.name, b.serves[0]), "built_on": b.built_on,
                   "serves": sorted(b.serves)} for b in built],
        # By digest only: the manifest is part of the image's inputs, and
        # where venv-builder was pushed to must not change them.
        "builder": {"digest": built[0].builder_digest} if built else None,
        "files": {rel: {"sha256": sha256_file(entry["source"]),
                        "size": entry["source"].stat().st_size}
                  for rel, entry in sorted(layout.items())},
    }



def _install(dest: Path, layout: dict[str, dict], manifest: dict, constraints_text: str,
             build_text: str, install_text: str) -> None:
    """Assemble the wheelhouse next to ``dest`` (hard links) and swap it into place."""
    with staged(dest) as stage:
        for sub in {PURE, *manifest["platforms"]}:
            (stage / sub).mkdir()
        for rel, entry in layout.items():
            link_or_copy(entry["source"], stage / rel)
        (stage / CONSTRAINTS).write_text(constraints_text)
        (stage / BUILD_CONSTRAINTS).write_text(build_text)
        (stage / INSTALL).write_text(install_text)
        _write_json(stage / MANIFEST, manifest)



def is_current(dest: Path, digest: str, venv_builder: str | None) -> bool:
    """Whether ``dest`` is the wheelhouse of these inputs, intact (see the module docstring)."""
    manifest = _read_json(dest / MANIFEST)
    if not manifest or manifest.get("input_digest") != digest:
        return False
    if not verify(dest, manifest) or not (dest / INSTALL).is_file():
        return False
    if venv_builder and any("libraries" not in entry
                            for entry in (manifest.get("platforms") or {}).values()):
        return False  # made before libraries were read from the wheels
    builder = manifest.get("builder")
    if builder and "image" in builder:
        return False  # made when the builder's reference was an input: make it again
    if builder and venv_builder:
        # A digest reference (what a build passes) is read, never looked up.
        return containers.image_digest(venv_builder) == builder.get("digest")
    return True


def verify(dest: Path, manifest: dict) -> bool:
    """Every file of the manifest is there with its sha256, and no other wheel is."""
    listed = manifest.get("files") or {}
    subs = {PURE, *(manifest.get("platforms") or {})}
    present = {f"{sub}/{p.name}" for sub in subs if (dest / sub).is_dir()
               for p in (dest / sub).iterdir()}
    if present != set(listed):
        return False
    return all(sha256_file(dest / rel) == entry.get("sha256") for rel, entry in listed.items())


# --- tools for the venv-builder image -----------------------------------------


def tool_wheels(release: Release, platforms, dest: Path, *, index_url: str | None = None,
                cache: Path | None = None) -> Path:
    """A flat folder with uv's wheel for each platform: the venv-builder's ``wheels`` context.

    Its manifest.json records the files' sha256, so the folder's content
    (and an input digest computed over it) only changes with uv's version.
    """
    targets = [platforms_mod.get(p) for p in dict.fromkeys(platforms or release.platforms)]
    if os.path.lexists(dest) and (not dest.is_dir() or (any(dest.iterdir())
                                                        and not (dest / MANIFEST).is_file())):
        raise AirlockError(str(dest), "exists and is not a tool wheel folder",
                           "choose a new or empty folder")  # before any download
    version = uv_pin(constraints.merged(release), release.python)
    store = Cache((cache or settings.cache_dir()) / "pypi")
    where = index.locations(index_url)
    layout: dict[str, dict] = {}
    for tgt in targets:
        pin = f"uv=={version}"
        filename = fetch(store, [("uv", version)], tgt, release.python, index_url, where)[pin]
        if not filename.endswith(".whl"):
            raise ToolError(pin, f"the index has no wheel of uv for {tgt.platform}",
                            "put uv's wheels on the package index")
        layout[filename] = {"source": store.files / filename, "pins": {tgt.arch: pin}}
    manifest = {"format": FORMAT, "uv": version,
                "files": {name: {"sha256": sha256_file(entry["source"]),
                                 "size": entry["source"].stat().st_size}
                          for name, entry in sorted(layout.items())}}
    if _read_json(dest / MANIFEST) == manifest and all(
            sha256_file(dest / n) == e["sha256"] for n, e in manifest["files"].items()) and \
            sorted(p.name for p in dest.iterdir()) == sorted([*manifest["files"], MANIFEST]):
        return dest
    if dest.exists() and any(dest.iterdir()) and not (dest / MANIFEST).is_file():
        raise AirlockError(str(dest), "exists and is not a tool wheel folder",
                           "choose a new or empty folder")
    with staged(dest) as stage:
        for name, entry in layout.items():
            link_or_copy(entry["source"], stage / name)
        _write_json(stage / MANIFEST, manifest)
    return dest


# --- small file helpers -------------------------------------------------------


def _sha256_text(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def _listdir(path: Path) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []
