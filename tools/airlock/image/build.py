"""Run a release's build: prepare every input, plan, build what is missing.

The steps, each skipped when its result is already there:

1. the base image must be in the registry (``airlock base create`` makes the
   local default); its digest pins everything built on it;
2. refs are resolved to a lock (or read from ``--lock``);
3. each component's source is exported and patched (reused when the
   prepared tree's record matches the lock and the patch series);
4. python-base and venv-builder are built and pushed under an immutable
   tag derived from their input digest;
5. per service: wheelhouse and offline apt repository (``wheels``/``debs``),
   then the input digest; a service image whose immutable tag is in the
   registry is skipped, others are built to an OCI archive, with no network.

Publishing the service archives is :mod:`airlock.image.publish`. The result is a
build record (plain JSON) that publish, the summary table and the audit
trail read.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from airlock import files, memo
from airlock.data import constraints, patches, refs
from airlock.data import platforms as platforms_mod
from airlock.data.layout import Layout
from airlock.data.release import Release
from airlock.errors import AirlockError, ToolError
from airlock.ext import buildx, git, registry
from airlock.image import annotations, assemble, plan
from airlock.inputs import baseimage, debs, sharedlibs, sources, wheels

Progress = Callable[[str], None]


@dataclass(frozen=True)
class BuildOptions:
    """What one ``airlock build`` was asked to do, as plain data."""

    release: Release
    layout: Layout
    registry: str  # repository prefix, e.g. 127.0.0.1:5000/airlock
    work_dir: Path
    cache_dir: Path
    services: tuple[str, ...] = ()
    platforms: tuple[str, ...] = ()
    git_base: str | None = None
    index_url: str | None = None
    lock: Path | None = None
    no_cache: bool = False
    # Assemble the venv on the target platform (under emulation) instead of
    # the build platform: for proving both give the same image.
    emulate_install: bool = False
    # The site side: {arch: URL} of the flat apt repositories imported from
    # a bundle, apt's only source (None: the release's Debian mirror).
    apt_repos: dict[str, str] | None = None
    # The site side: the base image in the site's registry, instead of the
    # release's own reference.
    base_image: str | None = None
    # The site side: per wheel, the packages of the libraries it needs, as
    # the connected side found them (the site builds no sdist).
    known_libraries: Callable[[str], dict[str, str]] | None = None
    # The run, not the inputs (annotations.run): the bundle the site's
    # stores got the inputs from, and the Zuul build (load_zuul_context).
    bundle: str | None = None
    zuul: dict[str, str] | None = None
    # Only python-base and venv-builder (pushed by digest): the first job of
    # a Zuul buildset, whose service jobs then find them by input digest.
    bases_only: bool = False
    # A site with native nodes per platform (airlock.image.assemble): build
    # the one platform of ``platforms`` as a part of the release's whole
    # image (the whole's inputs, tags and annotations; pushed by publish
    # under <immutable tag>-<arch>), or assemble the whole from the parts
    # the registry holds instead of building it.
    per_platform: bool = False
    assemble: bool = False
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))

    def base_image_ref(self) -> str:
        """The base image to build on: the site's, else the release's (checked)."""
        return self.base_image or self.release.base_image_ref(self.env)


def release_dir(opts: BuildOptions) -> Path:
    return opts.work_dir / opts.release.name


def _noop(_: str) -> None:
    pass


def run(opts: BuildOptions, progress: Progress = _noop, *, images: bool = True) -> dict:
    """Build what is missing for the release; return the build record.

    With ``images=False`` the service images are not built: every input a
    service build reads is prepared (lock, sources, wheelhouse, apt
    repository, and python-base and venv-builder, which the wheelhouse and
    apt steps run in), and the record names them under ``"services"``.
    That is what the Mirror Factory gathers into a bundle: the very inputs a
    build would read, made by the same code.
    """
    release = opts.release
    services = () if opts.bases_only else opts.services or release.services
    unknown = [s for s in services if s not in release.services]
    if unknown:
        raise AirlockError(str(release.release_yaml_path), f"no service {', '.join(unknown)} "
                           f"in this release", f"choose from {', '.join(release.services)}")
    platforms = opts.platforms or release.platforms
    if opts.per_platform and (len(opts.platforms) != 1 or opts.assemble or opts.bases_only
                              or opts.emulate_install):
        raise AirlockError("--per-platform", "builds one platform of the release's image",
                           "pass exactly one --platform, without --assemble, --bases-only "
                           "or --emulate-install")
    if opts.assemble and (opts.platforms or opts.bases_only or opts.emulate_install):
        raise AirlockError("--assemble", "joins every platform of the release's image",
                           "leave out --platform, --bases-only and --emulate-install")
    bad = [p for p in platforms if p not in release.platforms]
    if bad:
        raise AirlockError(str(release.release_yaml_path), f"platform {', '.join(bad)} is not "
                           f"built for this release",
                           f"choose from {', '.join(release.platforms)}")
    if opts.emulate_install and len(platforms) != 1:
        raise AirlockError("--emulate-install", "assembles the venv on one target platform",
                           "pass exactly one --platform")
    opts.base_image_ref()  # checked before the engine is asked anything
    # One run per release work folder at a time (see locked_release); input
    # digests and wheelhouse checks hash every context file, most of which
    # did not change since the last run (see files.remembered_digests), and
    # bindep results and tree digests are remembered by their inputs (memo).
    part = None
    if opts.per_platform:  # the whole's inputs, its one platform built
        part, platforms = platforms[0], release.platforms
    with locked_release(release_dir(opts), progress), memo.remembering(opts.cache_dir):
        return _run_checked(opts, services, platforms, progress, images, part)


LOCK = ".lock"


@contextlib.contextmanager
def locked_release(work: Path, progress: Progress = _noop) -> Iterator[None]:
    """Hold a release's work folder: one build or publish of it at a time.

    A second ``airlock build`` or ``airlock publish`` of the same release on
    this host (two Zuul jobs on one node) says once that it waits, naming
    the holder's pid, and continues when the first is done: it then finds
    the images the first built (kept, or skipped once pushed) instead of
    writing the same sources, wheelhouses and archives at the same time.
    Other releases have their own folder and build side by side; what they
    share (the caches) has its own locks.
    """
    work.mkdir(parents=True, exist_ok=True)
    with files.locked(work / LOCK, str(work), waiting=progress):
        yield


def _run_checked(opts: BuildOptions, services: Sequence[str], platforms: Sequence[str],
                 progress: Progress, images: bool = True, part: str | None = None) -> dict:
    release = opts.release
    started = time.monotonic()
    buildx.check((part,) if part else tuple(platforms))
    work = release_dir(opts)
    work.mkdir(parents=True, exist_ok=True)

    base_ref = opts.base_image_ref()
    base_digest = registry.digest(base_ref)
    if base_digest is None:
        raise AirlockError(base_ref, "the base image is not in the registry",
                           f"run airlock base create --release {release.name} "
                           "(local default) or import the site's base image")
    base_pinned = f"{_repo_of(base_ref)}@{base_digest}"
    base_epoch = _base_epoch(base_pinned)
    progress(f"base image {base_pinned} (SOURCE_DATE_EPOCH {base_epoch})")

    components = _components(release, services)
    lock = _lock(opts, components)
    record: dict = {"release": release.name, "registry": opts.registry,
                    "platforms": list(platforms), "base_image": base_pinned,
                    "lock": lock, "sources": {}, "tools": _tools(opts),
                    "zuul": dict(opts.zuul or {}), "bundle": opts.bundle, "images": []}

    cache = opts.cache_dir
    # The images below the services also hold the build platform: every
    # service's build stage runs on it (FROM --platform=$BUILDPLATFORM), and
    # so do the sdist builds whose result serves every platform.
    native = platforms_mod.native()
    base_platforms = tuple(sorted({*platforms, *([native.platform] if native else [])}))
    dep_digests: dict[str, str] = {}
    refs_by_job: dict[str, str] = {}

    def base_job(job: plan.ImageJob) -> None:
        row = _build_one(opts, job, dep_digests, base_digest, work, progress, push=True,
                         dep_refs=refs_by_job)
        dep_digests[job.name] = row["input_digest"]
        refs_by_job[job.name] = row["ref"]
        record["images"].append(row)

    base_notes = annotations.base(base_epoch)
    base_job(plan.ImageJob("python-base", opts.layout.images_dir / "python-base",
                           base_platforms, build_args={"BASE_IMAGE": base_pinned},
                           source_date_epoch=base_epoch, annotations=base_notes))
    # venv-builder's compilers come from an apt repository computed in
    # python-base (what it lacks is exactly what must be installed).
    tools = wheels.tool_wheels(release, base_platforms, work / "tool-wheels",
                               index_url=opts.index_url, cache=cache)
    progress(f"venv-builder: OS packages for {', '.join(base_platforms)}")
    builder_debs = work / "debs" / "venv-builder"
    debs.prepare(release, opts.layout.images_dir, "venv-builder", base_platforms, builder_debs,
                 base_image=refs_by_job["python-base"], profile="build", cache=cache,
                 flat=opts.apt_repos, apt_image=base_pinned)
    _ignore_records(builder_debs)
    base_job(plan.ImageJob("venv-builder", opts.layout.images_dir / "venv-builder",
                           base_platforms, contexts={"wheels": tools, "debs": builder_debs},
                           depends={"python-base": "PYTHON_BASE"},
                           source_date_epoch=base_epoch, annotations=base_notes))

    for service in services:
        srcs = [_source(opts, lock, name, work, progress) for name in components[service]]
        ctx = _service_contexts(opts, service, platforms, srcs, work, refs_by_job, cache,
                                progress)
        records = [sources.read_record(s) for s in srcs]
        version = records[-1]["version"]
        for name, source in zip(components[service], records, strict=True):
            record["sources"][name] = {key: source.get(key) for key in
                                       ("sha", "ref", "repo", "version", "patches")}
        if not images:
            record.setdefault("services", {})[service] = {
                "version": version, "sources": [str(s) for s in srcs],
                **{name: str(path) for name, path in ctx.items() if name != "sources"}}
            continue
        # Never older than the base: the exporter would rewrite (and so
        # duplicate) every base layer with older time stamps.
        epoch = max([base_epoch, *(r["committed-at"] for r in records)])
        job = plan.ImageJob(
            service, opts.layout.images_dir / service, tuple(platforms), contexts=ctx,
            depends={"python-base": "PYTHON_BASE", "venv-builder": "VENV_BUILDER"},
            version=version, source_date_epoch=epoch, service=True,
            annotations=annotations.service(release.name, lock, components[service],
                                            version, epoch))
        row = _build_one(opts, job, dep_digests, base_digest, work, progress, push=False,
                         dep_refs=refs_by_job, part=part)
        row["components"] = list(components[service])  # the lock entries it was built from
        record["images"].append(row)
    record["seconds"] = round(time.monotonic() - started, 1)
    record["tool_wheels"] = str(tools)
    record["builder_debs"] = str(builder_debs)
    if images:  # publish and check read the record of the last build, not of a gathering
        files.write_json(work / "build-record.json", record)
    return record


def _tools(opts: BuildOptions) -> dict:
    """What made the images: airlock's version and commit, the engine (for the record)."""
    from importlib import metadata

    try:
        version = metadata.version("airlock")
    except metadata.PackageNotFoundError:
        version = None
    work = git.checkout(opts.layout.releases_dir.parent)
    return {"airlock": {"version": version, "commit": work.head if work else None},
            "engine": dict(buildx.engine_identity())}


def _repo_of(ref: str) -> str:
    """``host/repo:tag`` or ``host/repo@digest`` -> ``host/repo``."""
    host, repo, _ = registry.split_ref(ref)
    return f"{host}/{repo}"


def _base_epoch(base_ref: str) -> int:
    """The SOURCE_DATE_EPOCH the base image was made with (its annotation).

    A site's own base image without it gets 0: still reproducible, but its
    layers are rewritten by the exporter instead of shared.
    """
    notes = registry.annotations(base_ref) or {}
    try:
        return int(notes.get(baseimage.EPOCH_KEY, 0))
    except ValueError:
        return 0


def _components(release: Release, services) -> dict[str, list[str]]:
    """Per service: the components installed from source into its image.

    Every library built from source goes into every image (that is why the
    constraints drop its pin), then the service itself, last.
    """
    libraries = [ref.name for ref in release.libraries()]
    return {service: [*libraries, service] for service in services}


def _lock(opts: BuildOptions, components: dict[str, list[str]]) -> dict:
    if opts.lock:
        return refs.load_lock(opts.lock)
    needed = sorted({name for names in components.values() for name in names})
    return refs.resolve_release(opts.release, opts.git_base, only=needed)


def _source(opts: BuildOptions, lock: dict, component: str, work: Path,
            progress: Progress) -> Path:
    """The prepared tree of ``component``, reused when it still matches.

    A link at its place is never current (a build would take a folder from
    anywhere on the host) and is replaced, the folder it points to left alone.
    """
    dest = work / "src" / component
    series = patches.series(opts.layout.patches_dir, component, opts.release.name)
    if sources.is_current(dest, lock["components"][component], series):
        return dest
    _remove(dest)
    progress(f"{component}: preparing source at {lock['components'][component]['sha'][:12]}")
    sources.prepare(opts.release, component, lock, opts.layout.patches_dir, dest,
                    git_base=opts.git_base)
    return dest


def _remove(path: Path) -> None:
    """Remove what is at ``path``: a folder with all it holds, or a file or link itself.

    ``lstat``, then ``rmtree`` (which never follows a link inside): a link
    is unlinked, never the folder it points to emptied.
    """
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISDIR(mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def _service_contexts(opts: BuildOptions, service: str, platforms, srcs: list[Path],
                      work: Path, refs_by_job: dict[str, str], cache: Path,
                      progress: Progress) -> dict[str, Path]:
    """Named build contexts of a service image: source, wheels, constraints, debs."""
    release = opts.release
    wheelhouse = work / "wheels" / service
    progress(f"{service}: wheelhouse for {', '.join(platforms)}")
    wheels.prepare(release, service, platforms, srcs, wheelhouse, index_url=opts.index_url,
                   venv_builder=refs_by_job["venv-builder"], cache=cache,
                   images_dir=opts.layout.images_dir, known_libraries=opts.known_libraries,
                   progress=progress)
    cons = work / "constraints" / service
    cons.mkdir(parents=True, exist_ok=True)
    _write_if_changed(cons / "constraints.txt",
                      constraints.render(constraints.merged(release, component=service)))
    _write_if_changed(cons / "build-constraints.txt",
                      (wheelhouse / "build-constraints.txt").read_text())
    _write_if_changed(cons / wheels.INSTALL, (wheelhouse / wheels.INSTALL).read_text())
    apt = work / "debs" / service
    progress(f"{service}: OS packages for {', '.join(platforms)}")
    # Computed in python-base, the image the packages are installed into.
    # bindep's runtime entries, plus the packages of the shared libraries
    # the wheelhouse's compiled modules link against (read from the wheels).
    # Those python-base already holds (libc6, zlib1g) need no install step.
    libraries = wheels.runtime_packages(files.read_json(wheelhouse / wheels.MANIFEST) or {})
    for platform in platforms:
        arch = platforms_mod.get(platform).arch
        if libraries.get(arch):
            present = set(sharedlibs.owners(refs_by_job["python-base"], platform,
                                            cache=cache).values())
            libraries[arch] = [p for p in libraries[arch] if p not in present]
    debs.prepare(release, opts.layout.images_dir, service, platforms, apt,
                 base_image=refs_by_job["python-base"], source=srcs[-1], cache=cache,
                 extra=libraries, flat=opts.apt_repos, apt_image=opts.base_image_ref())
    return {"sources": _sources_context(srcs, work / "ctx" / service / "sources"),
            "wheels": _ignore_records(wheelhouse), "constraints": cons,
            "debs": _ignore_records(apt)}


# Written into the wheelhouse and apt contexts: their manifest.json records
# how the inputs were made (the mirror or store they came from, the base
# image by name), which no build step reads. Sent along, a site's store
# address would be part of BuildKit's cache key of every step that mounts
# the context: the same wheels and .debs from another store, or the
# connected side's cache, would never be reused.
CONTEXT_IGNORE = ("# airlock: the records of how these inputs were made; the build reads\n"
                  "# only the inputs.\nmanifest.json\n*/manifest.json\n")


def _ignore_records(context: Path) -> Path:
    """``context`` with a .dockerignore leaving out its manifests (written before hashing)."""
    _write_if_changed(context / ".dockerignore", CONTEXT_IGNORE)
    return context


def _sources_context(srcs: list[Path], dest: Path) -> Path:
    """One folder holding every prepared tree as ``NN-<component>``.

    A named build context is one folder; hard links make it without copying
    (the build mounts it copy-on-write, so nothing writes through). Links in
    a tree are copied as links, never followed: a tree that is itself a link
    is refused, and whatever was at ``dest`` (a link too) is removed, not
    followed.
    """
    for src in srcs:
        if stat.S_ISLNK(os.lstat(src).st_mode):
            raise AirlockError(str(src), "is a symbolic link, not a prepared tree",
                               "remove it; airlock prepares the tree again")
    if sources.links_match(srcs, dest):
        return dest  # linking again moves every file's ctime: all would be hashed again
    _remove(dest)
    dest.mkdir(parents=True)
    for number, src in enumerate(srcs):
        shutil.copytree(src, dest / f"{number:02d}-{src.name}", symlinks=True,
                        copy_function=os.link)
    return dest


def _write_if_changed(path: Path, text: str) -> None:
    """Replace ``path`` atomically, only when its text changes (its inode is remembered)."""
    if not path.is_file() or path.read_text() != text:
        files.write_atomic(path, text)


def _build_one(opts: BuildOptions, job: plan.ImageJob, dep_digests: dict[str, str],
               base_digest: str, work: Path, progress: Progress, *, push: bool,
               dep_refs: dict[str, str] | None = None, part: str | None = None) -> dict:
    """Build one image unless its input digest is already in the registry.

    With ``part`` (a platform), only that platform of it, as a part
    (:func:`_build_part`); with ``opts.assemble``, the whole from the
    parts in the registry instead of a build.
    """
    inputs = plan.job_inputs(job, dep_digests, base_digest, buildx.engine_identity())
    digest = files.json_digest(inputs)
    tag = plan.immutable_tag(job, opts.release.name, digest)
    ref = f"{opts.registry}/{job.name}:{tag}"
    notes = {**job.annotations, annotations.INPUT_DIGEST: digest}
    run_notes = annotations.run(opts.bundle, opts.zuul)
    row = {"image": job.name, "service": job.service, "version": job.version,
           "platforms": list(job.platforms), "input_digest": digest, "inputs": inputs,
           "tag": tag, "moving_tags": plan.moving_tags(job, opts.release.name) if job.service
           else [], "ref": ref, "annotations": notes}
    started = time.monotonic()
    existing = None if opts.no_cache else registry.digest(ref)
    if existing:
        progress(f"{job.name}: {tag} is in the registry, skipped")
        row.update(status="skipped", digest=existing, seconds=0.0,
                   ref=f"{_repo_of(ref)}@{existing}")
        row["size"] = _registry_size(row["ref"])
        return row
    if part:
        return _build_part(opts, job, row, part, work, progress, dep_refs or {})
    archive = work / "out" / f"{job.name}.oci.tar"
    kept = None if opts.no_cache or opts.emulate_install else _kept_archive(archive, digest, ref)
    if kept:
        return _kept_row(row, archive, kept, _repo_of(ref), f"{job.name}: {tag}", progress)
    args = dict(job.build_args)
    for dep, arg in job.depends.items():
        args[arg] = (dep_refs or {})[dep]
    if opts.emulate_install and job.service:
        # One value for the whole build: hence one platform at a time.
        args["INSTALL_PLATFORM"] = job.platforms[0]
    _archive_note(archive).unlink(missing_ok=True)  # a failed build leaves nothing to keep
    if opts.assemble and job.service:
        result = _assemble(job, row, archive, {**notes, **run_notes}, progress)
    else:
        progress(f"{job.name}: building {tag} for {', '.join(job.platforms)}")
        result = buildx.build(buildx.BuildSpec(
            dockerfile=job.image_dir / "Dockerfile", context=job.image_dir, output=archive,
            platforms=job.platforms, contexts=dict(job.contexts), build_args=args,
            annotations=notes, index_annotations=run_notes,
            source_date_epoch=job.source_date_epoch, no_cache=opts.no_cache))
    row.update(status="built", digest=result.digest, archive=str(result.archive),
               contexts={k: str(v) for k, v in job.contexts.items()}, build_args=args,
               log=str(result.log), seconds=round(time.monotonic() - started, 1),
               size=archive.stat().st_size, index_annotations=run_notes)
    # The run's annotations are in the archive: a later run that keeps it
    # records those, not its own.
    files.write_json(_archive_note(archive), {"input_digest": digest, "ref": ref,
                                              "digest": result.digest,
                                              "index_annotations": run_notes})
    if push:
        row["digest"] = _push_immutable(result.archive, ref, result.digest)
        row["ref"] = f"{_repo_of(ref)}@{row['digest']}"
    else:
        row["ref"] = f"{_repo_of(ref)}@{result.digest}"
    return row


def part_tag(tag: str, platform: str) -> str:
    """``<immutable tag>-<arch>``: where the per-platform build of ``platform`` is pushed.

    Never moves either: the same inputs make the same part.
    """
    return f"{tag}-{platforms_mod.get(platform).arch}"


def _build_part(opts: BuildOptions, job: plan.ImageJob, row: dict, part: str, work: Path,
                progress: Progress, dep_refs: dict[str, str]) -> dict:
    """Build ``part``, one platform of the whole image ``row`` describes.

    The whole's input digest, annotations and immutable tag: a one-platform
    index whose manifest is the whole's for that platform, pushed by
    publish under :func:`part_tag` (no moving tag), and joined with the
    others by ``build --assemble``. Skipped when the registry has the part
    (the caller skipped it when it has the whole: ``--assemble`` does too).
    """
    repo = _repo_of(row["ref"])
    tag = part_tag(row["tag"], part)
    ref = f"{repo}:{tag}"
    row.update(part_of={"tag": row["tag"], "platforms": list(job.platforms)})
    row.update(tag=tag, moving_tags=[], platforms=[part], ref=ref)
    held = None if opts.no_cache else registry.digest(ref)
    if held:  # (the whole in the registry was skipped before)
        progress(f"{job.name}: the part {tag} is in the registry, skipped")
        row.update(status="skipped", digest=held, seconds=0.0, ref=f"{repo}@{held}")
        row["size"] = _registry_size(row["ref"])
        return row
    archive = work / "out" / f"{job.name}.{platforms_mod.get(part).arch}.oci.tar"
    kept = None if opts.no_cache else _kept_archive(archive, row["input_digest"], ref)
    if kept:
        return _kept_row(row, archive, kept, repo, f"{job.name}: {tag}", progress)
    args = dict(job.build_args)
    for dep, arg in job.depends.items():
        args[arg] = dep_refs[dep]
    run_notes = annotations.run(opts.bundle, opts.zuul)
    _archive_note(archive).unlink(missing_ok=True)
    progress(f"{job.name}: building {tag}, {part} of {row['part_of']['tag']}")
    started = time.monotonic()
    result = buildx.build(buildx.BuildSpec(
        dockerfile=job.image_dir / "Dockerfile", context=job.image_dir, output=archive,
        platforms=(part,), contexts=dict(job.contexts), build_args=args,
        annotations=row["annotations"], index_annotations=run_notes, index=True,
        source_date_epoch=job.source_date_epoch, no_cache=opts.no_cache))
    row.update(status="built", digest=result.digest, archive=str(result.archive),
               contexts={k: str(v) for k, v in job.contexts.items()}, build_args=args,
               log=str(result.log), seconds=round(time.monotonic() - started, 1),
               size=archive.stat().st_size, index_annotations=run_notes,
               ref=f"{repo}@{result.digest}")
    files.write_json(_archive_note(archive), {"input_digest": row["input_digest"], "ref": ref,
                                              "digest": result.digest,
                                              "index_annotations": run_notes})
    return row


def _assemble(job: plan.ImageJob, row: dict, archive: Path, notes: dict[str, str],
              progress: Progress) -> buildx.BuildResult:
    """The whole image of ``row`` from its parts in the registry (``build --assemble``).

    Each platform's part is pulled (:func:`part_tag`) and checked to be of
    this very image (its annotations but the run's are this build's, so
    its input digest too); the index is the one a build of every platform
    would write, carrying this run's annotations.
    """
    repo = _repo_of(row["ref"])
    parts, pulled = {}, []
    for platform in job.platforms:
        ref = f"{repo}:{part_tag(row['tag'], platform)}"
        if registry.digest(ref) is None:
            raise AirlockError(ref, f"is not in the registry: {platform} of {job.name} has not "
                               "been built and published as a part",
                               f"run airlock build --per-platform --platform {platform} and "
                               "airlock publish --no-tags for it first")
        dest = archive.with_name(f"{job.name}.{platforms_mod.get(platform).arch}.part.oci.tar")
        progress(f"{job.name}: pulling the part {ref.rsplit(':', 1)[1]}")
        parts[platform] = f"{repo}@{registry.save_archive(ref, dest)}"
        pulled.append(dest)
    log = archive.with_name(archive.name + ".log")
    digest = assemble.write(pulled, archive, platforms=job.platforms, annotations=notes)
    files.write_atomic(log, "".join(f"assembled {archive.name} ({digest}) from {ref}\n"
                                    for ref in parts.values()))
    for path in pulled:
        path.unlink(missing_ok=True)
    progress(f"{job.name}: assembled {digest} from {len(parts)} parts")
    row["assembled_from"] = parts
    return buildx.BuildResult(archive=archive, digest=digest, log=log)


def _push_immutable(archive: Path, ref: str, digest: str) -> str:
    """Push ``archive`` to the immutable tag ``ref``, which must never move.

    Reached when the registry lacked the tag at the start of this image's
    build, or with ``--no-cache``: a tag that now holds another image (a
    build that is not reproducible, another engine) is left as it is and
    the build stops; one that holds this very image needs no push, nor one
    holding the same platform images under another run's index
    (:func:`airlock.image.annotations.same_but_run`): its digest is returned.
    """
    held = registry.digest(ref)
    if held == digest:
        return digest
    if held is not None and annotations.same_but_run(registry.manifest(ref),
                                                     buildx.archive_manifest(archive)):
        return held  # the same platform images, another run's index: the first stays
    if held is not None:
        raise AirlockError(ref, f"this immutable tag holds {held}, the build made {digest} "
                           "from the same inputs", "an immutable tag never moves: find out "
                           "why the build differs (engine version? a build that is not "
                           "reproducible?) before removing the tag from the registry")
    pushed = registry.push_archive(archive, ref)
    if pushed != digest:
        raise ToolError(ref, f"the registry stored {pushed}, the build made {digest}",
                        "use a registry that keeps OCI indexes as pushed")
    return pushed


def _kept_row(row: dict, archive: Path, kept: str, repo: str, what: str,
              progress: Progress) -> dict:
    """``row`` as a kept image: built by an earlier run (``archive``), not published yet.

    One place for the whole image and a per-platform part: both keep their
    archive's digest, size and the index annotations noted beside it.
    """
    progress(f"{what} was built before and is not published yet, kept")
    note = files.read_json(_archive_note(archive)) or {}
    row.update(status="kept", digest=kept, archive=str(archive), seconds=0.0,
               size=archive.stat().st_size, ref=f"{repo}@{kept}",
               index_annotations=dict(note.get("index_annotations") or {}))
    return row


def _archive_note(archive: Path) -> Path:
    """What an archive was built from: written once the build has succeeded."""
    return archive.with_name(archive.name.removesuffix(".tar") + ".json")


def _kept_archive(archive: Path, digest: str, ref: str) -> str | None:
    """The image digest of an earlier build of these exact inputs, still on disk.

    A build that was not published (yet) is not in the registry, but its
    archive is the image these inputs make: building again would give the
    same digest, only slower. Kept when its note names the same input
    digest and destination and the archive still holds the noted image.
    """
    note = files.read_json(_archive_note(archive))
    if not note or note.get("input_digest") != digest or note.get("ref") != ref:
        return None
    try:
        found = buildx.archive_digest(archive)
    except ToolError:
        return None
    return found if found == note.get("digest") else None


def _registry_size(ref: str) -> int:
    """Compressed size of every platform's layers and config at ``ref``."""
    doc = registry.manifest(ref) or {}
    total = 0
    for entry in doc.get("manifests", []) or [doc]:
        child = doc if entry is doc else registry.manifest(f"{_repo_of(ref)}@{entry['digest']}")
        if child:
            total += sum(layer.get("size", 0) for layer in child.get("layers", []))
            total += (child.get("config") or {}).get("size", 0)
    return total
