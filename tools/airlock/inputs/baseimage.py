"""The local default base image: Debian minbase + python3, for every platform.

No public registry is reachable here, so the base image every airlock image
starts ``FROM`` is made locally: one ``mmdebstrap`` root filesystem per
platform (arm64 under QEMU), turned into one multi-platform image by
``images/debian-base/Dockerfile`` (``FROM scratch`` + ``ADD rootfs.tar``),
exported as an OCI archive and pushed to the release's base image reference.
A real site mirrors its base image into the bundle instead; the reference is
a variable either way (``release.yaml: base_image``).

Skip-existing: the inputs that decide the result (codename, variant,
packages, platforms, mirror URL, this recipe and the Dockerfile) are hashed
into an *input digest* (:func:`input_digest`) that the image carries as the
index annotation :data:`INPUT_DIGEST_KEY`. ``create`` reads the index at the
reference (one registry request, no network beyond the registry) and does
nothing when the annotation matches. To follow a new mirror state, point the
mirror at a snapshot URL (a new input) or pass ``force``.

Reproducible: ``SOURCE_DATE_EPOCH`` is the ``Date:`` of the mirror's Release
file (the same mirror state gives the same epoch on any machine), mmdebstrap
clamps every time stamp to it and drops the host's resolv.conf and hostname,
and the image build uses buildx.py's reproducible settings. The epoch is
recorded as the annotation :data:`EPOCH_KEY`: images built on this base
should use an epoch no earlier, or rewrite-timestamp rewrites (and
re-uploads) the base layers. The root
filesystems are cached under ``<work>/base/<codename>-<input digest>/`` so a
re-run never bootstraps twice.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from airlock import files, progress
from airlock.data import platforms as platforms_mod
from airlock.errors import ToolError
from airlock.ext import buildx, registry
from airlock.ext import exec as ext_exec
from airlock.inputs import aptmirror
from airlock.urls import strip_userinfo

if TYPE_CHECKING:  # the model only; importing it here would tie us to its loader
    from airlock.data.release import Release

DEFAULT_PACKAGES = ("ca-certificates", "python3", "usr-is-merged")
VARIANT = "minbase"
IMAGE_DIR = "debian-base"  # under images/
# Changing how the root filesystem or the image is made must change the
# input digest: bump this with any change to the commands below.
RECIPE = "airlock-debian-base/1"
INPUT_DIGEST_KEY = "io.airlock.base.input-digest"
INPUTS_KEY = "io.airlock.base.inputs"
# The SOURCE_DATE_EPOCH the base was made with. Images built on it should use
# an epoch at least as late: rewrite-timestamp then leaves the base layers
# as they are (same digests, shared, not uploaded again).
EPOCH_KEY = "io.airlock.base.source-date-epoch"
# Seconds one mmdebstrap may take: minutes natively or under QEMU, more
# from a slow mirror.
BOOTSTRAP_TIMEOUT = 3600

@dataclass(frozen=True)
class BaseSpec:
    """Everything that decides a base image, as plain data."""

    ref: str  # where it is pushed, e.g. 127.0.0.1:5000/airlock/debian:bookworm
    codename: str
    platforms: tuple[str, ...]
    mirror: str
    packages: tuple[str, ...] = DEFAULT_PACKAGES
    variant: str = VARIANT


@dataclass(frozen=True)
class BaseResult:
    """What :func:`create` did: the image, its digest, and whether it was built."""

    ref: str
    digest: str
    input_digest: str
    built: bool
    source_date_epoch: int | None = None
    archive: Path | None = None
    rootfs: dict[str, Path] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


# --- inputs -------------------------------------------------------------------


def inputs(spec: BaseSpec, dockerfile_text: str) -> dict[str, object]:
    """The recorded inputs of a base image (what decides its content)."""
    return {
        "recipe": RECIPE,
        "codename": spec.codename,
        "variant": spec.variant,
        "packages": sorted(set(spec.packages)),
        "platforms": sorted(set(spec.platforms)),
        "mirror": strip_userinfo(spec.mirror),  # a credential is no input and never recorded
        "dockerfile": "sha256:" + hashlib.sha256(dockerfile_text.encode()).hexdigest(),
    }


def spec_for_release(release: Release, env: dict[str, str] | None = None,
                     sources: tuple[Path, ...] = (aptmirror.DEBIAN_SOURCES,
                                                  aptmirror.SOURCES_LIST)) -> BaseSpec:
    """The base image a release asks for (reference, codename, platforms)."""
    return BaseSpec(ref=release.base_image_ref(env), codename=release.distro.codename,
                    platforms=tuple(release.platforms),
                    mirror=aptmirror.apt_mirror(release.distro.codename, env, sources))


# --- bootstrap ----------------------------------------------------------------


def mmdebstrap_command(spec: BaseSpec, platform: str, dest: Path) -> list[str]:
    """The argv of the mmdebstrap run for one platform (pure, for the tests).

    ``--skip=output/dev``: the engine provides /dev, device nodes in a layer
    serve nothing. resolv.conf and hostname are the host's: removed, so
    that the tarball does not depend on the machine (the engine provides
    both at run time).
    """
    debian_arch = platforms_mod.get(platform).debian
    return ["mmdebstrap", f"--variant={spec.variant}",
            f"--include={','.join(sorted(set(spec.packages)))}",
            f"--architectures={debian_arch}", "--format=tar", "--skip=output/dev",
            '--customize-hook=rm -f "$1/etc/resolv.conf" "$1/etc/hostname"',
            spec.codename, str(dest), spec.mirror]


def check_prerequisites(platforms, which=shutil.which, runs=None) -> None:
    """Fail in a second, naming the package, rather than minutes into mmdebstrap.

    mmdebstrap only *recommends* arch-test, yet refuses a foreign
    architecture without it; and a foreign root filesystem needs the
    kernel to run that architecture's binaries (QEMU through binfmt_misc).
    """
    if which("mmdebstrap") is None:
        raise ToolError("mmdebstrap", "is not installed",
                        "install the Debian package mmdebstrap (tools/setup-host build-host)")
    foreign = platforms_mod.foreign(platforms)
    if not foreign:
        return
    if which("arch-test") is None:
        raise ToolError("arch-test", f"is not installed; mmdebstrap needs it to bootstrap "
                        f"{', '.join(p.platform for p in foreign)}",
                        "install the Debian package arch-test (tools/setup-host build-host)")
    runs = runs or _arch_runs
    for platform in foreign:
        if not runs(platform.debian):
            raise ToolError(f"platform {platform.platform}", "this machine cannot run its binaries "
                            "(arch-test fails: no QEMU registered in binfmt_misc)",
                            "install qemu-user-static and binfmt-support "
                            "(tools/setup-host build-host)")


def _arch_runs(debian_arch: str) -> bool:
    proc = ext_exec.run(["arch-test", debian_arch], where=f"arch-test {debian_arch}",
                        timeout=60, check=False)
    return proc.returncode == 0


def sha256_file(path: Path) -> str:
    """``sha256:<hex>`` of a file (the form the base image's inputs record)."""
    return "sha256:" + files.sha256_file(path)


def _last_info(log: Path) -> str:
    """mmdebstrap's latest ``I: ...`` line (what it does now), for the progress line."""
    with open(log, "rb") as handle:
        handle.seek(max(handle.seek(0, os.SEEK_END) - 4096, 0))
        lines = handle.read().decode("utf-8", "replace").splitlines()
    return next((line[3:] for line in reversed(lines) if line.startswith("I: ")), "")


def bootstrap(spec: BaseSpec, platform: str, dest: Path, epoch: int, log: Path) -> Path:
    """Make the root filesystem tarball of one platform at ``dest`` (atomically)."""
    # mmdebstrap picks the output format from the name: keep ".tar" last.
    tmp = dest.with_name(f".{dest.stem}.tmp-{os.getpid()}.tar")
    argv = mmdebstrap_command(spec, platform, tmp)
    env = ext_exec.environ(SOURCE_DATE_EPOCH=str(epoch), LC_ALL="C.UTF-8")
    where = f"mmdebstrap {spec.codename} {platform}"
    done = False
    try:
        with progress.step(where, unit="bytes") as step, \
                step.follow(lambda: tmp.stat().st_size, detail=lambda: _last_info(log)):
            proc = ext_exec.run(argv, where=where, timeout=BOOTSTRAP_TIMEOUT, env=env, log=log,
                                check=False)
        if proc.returncode != 0:
            lines = [line for line in log.read_text(errors="replace").splitlines()
                     if line.strip()]
            errors = [line for line in lines if line.startswith(("E:", "mmdebstrap: E:"))]
            raise ToolError(where, (errors or lines or ["failed"])[-1].strip(), f"log: {log}")
        tmp.replace(dest)
        done = True
    finally:
        if not done:
            tmp.unlink(missing_ok=True)
    return dest


# --- the image ----------------------------------------------------------------


def _noop(_: str) -> None:
    pass


def recorded(ref: str) -> tuple[str | None, dict[str, str]]:
    """(image digest, index annotations) of what the registry holds at ``ref``."""
    raw = registry.manifest_raw(ref)
    if raw is None:
        return None, {}
    notes = json.loads(raw).get("annotations") or {}
    return "sha256:" + hashlib.sha256(raw).hexdigest(), notes


def dockerfile_text(images_dir: Path) -> str:
    """``images/debian-base/Dockerfile``: a regular file inside the images folder, bounded."""
    return files.read_text(images_dir / IMAGE_DIR / "Dockerfile", within=images_dir,
                           fix="restore images/debian-base/Dockerfile")


def create(spec: BaseSpec, images_dir: Path, work_dir: Path, *, force: bool = False,
           check_reproducible: bool = False,
           progress: Callable[[str], None] = _noop) -> BaseResult:
    """:func:`_create`, one run at a time per distribution release on this host.

    Two runs (two jobs on one node) would bootstrap into the same cache
    folder and push the same tag: the second waits (saying so, with the
    holder's pid), then finds the image in the registry.
    """
    # The inputs first: a bad one costs no lock file and no registry question.
    for platform in spec.platforms:
        platforms_mod.get(platform)
    dockerfile_text(images_dir)
    lock = work_dir / "base" / f".{spec.codename}.lock"
    with files.locked(lock, f"base image {spec.ref}", waiting=progress):
        return _create(spec, images_dir, work_dir, force=force,
                       check_reproducible=check_reproducible, progress=progress)


def _create(spec: BaseSpec, images_dir: Path, work_dir: Path, *, force: bool = False,
            check_reproducible: bool = False,
            progress: Callable[[str], None] = _noop) -> BaseResult:
    """Make the base image of ``spec`` and push it, unless the registry has it.

    ``force`` bootstraps and builds again regardless of the registry and the
    cache. ``check_reproducible`` bootstraps every platform twice and fails
    unless both tarballs are identical (doubles the bootstrap time).
    """
    dockerfile = images_dir / IMAGE_DIR / "Dockerfile"
    inputs_doc = inputs(spec, dockerfile_text(images_dir))
    wanted = files.json_digest(inputs_doc)
    seconds: dict[str, float] = {}

    if not force:
        have, notes = recorded(spec.ref)
        have_inputs = notes.get(INPUT_DIGEST_KEY)
        if have and have_inputs == wanted:
            progress(f"{spec.ref}: present ({have}), inputs {wanted} unchanged")
            epoch_note = notes.get(EPOCH_KEY, "")
            return BaseResult(spec.ref, have, wanted, built=False,
                              source_date_epoch=int(epoch_note) if epoch_note.isdigit()
                              else None)
        if have:
            progress(f"{spec.ref}: holds {have} with other inputs ({have_inputs}); rebuilding")

    buildx.check(spec.platforms)
    check_prerequisites(spec.platforms)
    cache = work_dir / "base" / f"{spec.codename}-{wanted.split(':')[1][:16]}"
    rootfs_dir = cache / "rootfs"  # the build context: the tarballs only
    rootfs_dir.mkdir(parents=True, exist_ok=True)
    (cache / "inputs.json").write_text(json.dumps(inputs_doc, indent=2, sort_keys=True) + "\n")
    epoch_file = cache / "source-date-epoch"
    if force or not epoch_file.is_file():
        epoch_file.write_text(f"{aptmirror.release_epoch(spec.mirror, spec.codename)}\n")
    epoch = int(epoch_file.read_text())

    rootfs: dict[str, Path] = {}
    for platform in spec.platforms:
        target_arch = platforms_mod.get(platform).arch
        tar = rootfs_dir / f"rootfs-{target_arch}.tar"
        rootfs[platform] = tar
        if tar.is_file() and not force:
            progress(f"{platform}: root filesystem cached at {tar}")
            continue
        progress(f"{platform}: mmdebstrap {spec.codename} (SOURCE_DATE_EPOCH={epoch})")
        start = time.monotonic()
        bootstrap(spec, platform, tar, epoch, cache / f"mmdebstrap-{target_arch}.log")
        seconds[f"mmdebstrap {platform}"] = round(time.monotonic() - start, 1)
        progress(f"{platform}: {tar.stat().st_size // 2**20} MiB in "
                 f"{seconds[f'mmdebstrap {platform}']} s")
        if check_reproducible:
            again = cache / f"check-{target_arch}.tar"
            start = time.monotonic()
            bootstrap(spec, platform, again, epoch, cache / f"mmdebstrap-{target_arch}-2.log")
            seconds[f"mmdebstrap {platform} (again)"] = round(time.monotonic() - start, 1)
            first, second = sha256_file(tar), sha256_file(again)
            again.unlink()
            if first != second:
                raise ToolError(f"mmdebstrap {spec.codename} {platform}",
                                f"two runs gave different tarballs ({first} != {second})",
                                "compare them with diffoscope")
            progress(f"{platform}: reproducible ({first})")

    start = time.monotonic()
    result = buildx.build(buildx.BuildSpec(
        dockerfile=dockerfile, context=rootfs_dir, output=cache / "image.oci.tar",
        platforms=tuple(spec.platforms), source_date_epoch=epoch, network="none",
        annotations={INPUT_DIGEST_KEY: wanted, EPOCH_KEY: str(epoch), INPUTS_KEY: json.dumps(
            inputs_doc, sort_keys=True, separators=(",", ":"))}))
    seconds["build"] = round(time.monotonic() - start, 1)
    start = time.monotonic()
    pushed = registry.push_archive(result.archive, spec.ref)
    seconds["push"] = round(time.monotonic() - start, 1)
    if pushed != result.digest:
        raise ToolError(spec.ref, f"the registry reports {pushed}, the archive holds "
                        f"{result.digest}", "the registry rewrote the image; use one that "
                        "keeps OCI indexes as pushed")
    progress(f"{spec.ref}: pushed {pushed} (build {seconds['build']} s, "
             f"push {seconds['push']} s)")
    return BaseResult(spec.ref, pushed, wanted, built=True, source_date_epoch=epoch,
                      archive=result.archive, rootfs=rootfs, seconds=seconds)
