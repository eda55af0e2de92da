"""The release matrix: every release x service x platform, or a slice, built in one run.

``airlock build --all`` builds each selected service of each selected
release with its own :func:`airlock.image.build.run`, so that one image
that fails does not stop the others, and ends with one table: one row per
release, service and platform, with its status (built, kept, skipped =
already in the registry, or failed with its one-line reason), the image's
compressed size on that platform and the time its build took.

Plain data in and out: :func:`plan` turns the slice options into
:class:`ReleasePlan` entries, :func:`run` builds them and returns
:class:`Row` objects, :func:`table`, :func:`markdown` and :func:`document`
render them, :func:`write_report` keeps them under the work folder (with
the date and the commit of the checkout, for the README to quote). The CLI
only parses options and prints.

What a failure concerns decides what it marks. A failure before the
service's own steps (the base image is missing, the refs cannot be
resolved, python-base or venv-builder does not build, the engine is
absent) concerns the whole release: every row of the release not built
yet is failed with that reason, once, and the release's other services
are not tried (each would fail the same way, after the same wait). A
failure in the service's own steps (its sources, wheelhouse, OS packages
or image) fails that service's rows only, and the run goes on.
"""

from __future__ import annotations

import datetime
import json
import tarfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from airlock import files
from airlock.data.layout import Layout
from airlock.data.release import Release, load_release, release_names
from airlock.errors import AirlockError, ToolError
from airlock.ext import git, registry
from airlock.image import build as build_mod

Progress = Callable[[str], None]
# The seam :func:`run` builds through: ``build.run`` itself, or a test's stand-in.
BuildFn = Callable[[build_mod.BuildOptions, Progress], dict]

STATUSES = ("built", "kept", "skipped", "failed")
REPORT_MD = "matrix.md"
REPORT_JSON = "matrix.json"
# A manifest or index in an OCI archive is a few KB; nothing near this.
_MANIFEST_LIMIT = 4 * 1024 * 1024


@dataclass(frozen=True)
class ReleasePlan:
    """One release of the matrix: the services and platforms built for it."""

    release: Release
    services: tuple[str, ...]
    platforms: tuple[str, ...]


@dataclass(frozen=True)
class Options:
    """What every release's build shares (see :class:`airlock.image.build.BuildOptions`).

    ``lock`` is a refs lock for a matrix of one release only (the CLI
    refuses it otherwise); ``env`` is the environment the base image
    reference is expanded from.
    """

    layout: Layout
    registry: str
    work_dir: Path
    cache_dir: Path
    git_base: str | None = None
    index_url: str | None = None
    lock: Path | None = None
    no_cache: bool = False
    emulate_install: bool = False
    env: dict[str, str] | None = None
    zuul: dict[str, str] | None = None  # --zuul-context: on every image index built


@dataclass(frozen=True)
class Row:
    """One cell of the matrix. ``size`` in bytes (compressed: layers and config).

    ``seconds`` is the time of the service's build (shared by the rows of
    its platforms); None for a row never tried. ``reason`` is the one-line
    error of a failed row, else "".
    """

    release: str
    service: str
    platform: str
    status: str
    reason: str = ""
    size: int | None = None
    seconds: float | None = None


@dataclass(frozen=True)
class Shared:
    """An image a release found already made by an earlier release of the same run.

    python-base and venv-builder do not depend on the release
    (:func:`airlock.image.plan.immutable_tag`): a release train on one
    Debian base builds them once, and every later release finds them by
    input digest. ``seconds`` is what their first build took in this run,
    so what the later release did not spend; None when the first release
    found them in the registry too (built by an earlier run: not known).
    """

    image: str
    input_digest: str
    release: str  # the release that reused it
    first: str  # the release of this run that built (or found) it first
    seconds: float | None = None


@dataclass
class Report:
    """A finished run: the rows, and what names it (date, commit, the slice asked for)."""

    rows: list[Row]
    date: str
    commit: str
    selection: dict[str, list[str]] = field(default_factory=dict)
    shared: list[Shared] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {status: sum(1 for row in self.rows if row.status == status)
                for status in STATUSES}

    @property
    def failed(self) -> bool:
        return any(row.status == "failed" for row in self.rows)


# --- selection ----------------------------------------------------------------


def plan(layout: Layout, releases: Sequence[str] = (), services: Sequence[str] = (),
         platforms: Sequence[str] = ()) -> list[ReleasePlan]:
    """The slice of the matrix to build, every release loaded and checked first.

    ``releases`` default to every folder of releases/; per release, the
    ``services`` and ``platforms`` it lists (all of them when none is
    given). A service or platform a release does not list is left out for
    that release; one that no selected release lists is a user error (a
    typo must not end in an empty table), as is an unknown release.
    """
    names = list(dict.fromkeys(releases)) or release_names(layout)
    if not names:
        raise AirlockError(str(layout.releases_dir), "holds no release",
                           "add one (see README.md, Add a release)")
    loaded = [load_release(layout, name) for name in names]
    return select(loaded, services, platforms)


def select(releases: Sequence[Release], services: Sequence[str] = (),
           platforms: Sequence[str] = ()) -> list[ReleasePlan]:
    """:func:`plan` for releases already loaded (pure: no file is read)."""
    services = list(dict.fromkeys(services))
    platforms = list(dict.fromkeys(platforms))
    for kind, wanted, listed in (
            ("service", services, lambda r: r.services),
            ("platform", platforms, lambda r: r.platforms)):
        nowhere = [w for w in wanted if not any(w in listed(r) for r in releases)]
        if nowhere:
            known = sorted({x for r in releases for x in listed(r)})
            names = ", ".join(r.name for r in releases)
            raise AirlockError(f"--{kind} {', '.join(nowhere)}",
                               f"no selected release builds it ({names})",
                               f"choose from {', '.join(known)}")
    plans = []
    for release in releases:
        svcs = tuple(s for s in release.services if not services or s in services)
        plats = tuple(p for p in release.platforms if not platforms or p in platforms)
        if svcs and plats:
            plans.append(ReleasePlan(release, svcs, plats))
    if not plans:
        raise AirlockError("airlock build --all", "the slice selects no image: no selected "
                           "release builds those services for those platforms",
                           "widen the slice (--release, --service, --platform)")
    return plans


# --- the run ---------------------------------------------------------------------


def _noop(_: str) -> None:
    pass


class _ServiceStarted:
    """Watches a build's progress for the first line of the service's own steps.

    ``build.run`` prepares what the whole release shares (base image, refs,
    python-base, venv-builder) before anything of the service; the first
    progress line naming one of the service's components (``<component>:
    preparing source``, ``<service>: wheelhouse for``) marks the service's
    steps. A failure before it concerns the whole release.
    """

    def __init__(self, components: Sequence[str], progress: Progress) -> None:
        self.components = set(components)
        self.progress = progress
        self.started = False

    def __call__(self, line: str) -> None:
        if line.split(":", 1)[0] in self.components:
            self.started = True
        self.progress(line)


def run(plans: Sequence[ReleasePlan], opts: Options, progress: Progress = _noop,
        build: BuildFn = build_mod.run, shared: list[Shared] | None = None) -> list[Row]:
    """Build every service of every plan; return one Row per release, service, platform.

    ``build`` is :func:`airlock.image.build.run` (the seam the unit tests
    pass their own function through). Only :class:`AirlockError` (and so
    ToolError) fails a row: an internal error, Ctrl-C or SIGTERM stops the
    whole run, as for any other verb. ``shared``, when given, receives one
    :class:`Shared` per image a release reused from an earlier release of
    this run.
    """
    rows: list[Row] = []
    reuse = _Reuse(shared if shared is not None else [])
    total = sum(len(p.services) for p in plans)
    done = 0
    for entry in plans:
        release = entry.release
        libraries = [ref.name for ref in release.libraries()]
        records: list[dict] = []
        for position, service in enumerate(entry.services):
            done += 1
            progress(f"== {release.name} {service} ({', '.join(entry.platforms)}): "
                     f"{done}/{total}")
            watch = _ServiceStarted([*libraries, service], progress)
            started = time.monotonic()
            try:
                record = build(_build_options(opts, entry, service), watch)
            except AirlockError as error:
                seconds = round(time.monotonic() - started, 1)
                reason = str(error)
                if watch.started:
                    progress(f"{release.name} {service}: failed: {reason}")
                    rows += _failed(release.name, [service], entry.platforms, reason, seconds)
                    continue
                rest = entry.services[position:]
                progress(f"{release.name}: failed for {', '.join(rest)}: {reason}")
                rows += _failed(release.name, [service], entry.platforms, reason, seconds)
                rows += _failed(release.name, rest[1:], entry.platforms, reason, None)
                done += len(rest) - 1
                break
            rows += _service_rows(release.name, service, entry.platforms, record, progress)
            reuse.saw(release.name, record)
            records.append(record)
        if len(records) > 1:
            # Each service was its own build, each record naming one service:
            # publish and check read the release's record, so it names them all.
            files.write_json(opts.work_dir / release.name / "build-record.json",
                             merge_records(records))
    return rows


class _Reuse:
    """Which images of a build record an earlier release of the run already had.

    Keyed by input digest: the same digest is the same image. Only the
    images below the services count (a service image is its release's
    own); one a later release built again (``--no-cache``) was not reused.
    """

    def __init__(self, found: list[Shared]) -> None:
        self.found = found
        self.first: dict[str, tuple[str, dict]] = {}

    def saw(self, release: str, record: dict) -> None:
        for image in record.get("images") or []:
            digest = image.get("input_digest")
            if image.get("service") or not isinstance(digest, str):
                continue
            if digest not in self.first:
                self.first[digest] = (release, image)
                continue
            first, row = self.first[digest]
            if first == release or image.get("status") not in ("skipped", "kept") or any(
                    s.release == release and s.input_digest == digest for s in self.found):
                continue
            seconds = row.get("seconds") if row.get("status") == "built" else None
            self.found.append(Shared(str(image.get("image")), digest, release, first,
                                     seconds))


def merge_records(records: Sequence[dict]) -> dict:
    """One build record of a release from the records of its one-service builds.

    The last record's fields, every image once (the base images as the last
    build found them, each service's row from its own build), and the
    union of the locks' components and of the prepared sources.
    """
    merged = dict(records[-1])
    images: dict[str, dict] = {}
    for record in records:
        for image in record.get("images", []):
            if image.get("service") or image.get("image") not in images:
                images[image.get("image")] = image
    for image in records[-1].get("images", []):
        if not image.get("service"):
            images[image.get("image")] = image
    merged["images"] = list(images.values())
    lock = dict(merged.get("lock") or {})
    components: dict = {}
    for record in records:
        components.update((record.get("lock") or {}).get("components") or {})
    if lock:
        lock["components"] = dict(sorted(components.items()))
        merged["lock"] = lock
    sources: dict = {}
    for record in records:  # each service's components and patch series (the audit's)
        sources.update(record.get("sources") or {})
    if sources:
        merged["sources"] = dict(sorted(sources.items()))
    merged["seconds"] = round(sum(r.get("seconds") or 0 for r in records), 1)
    return merged


def _build_options(opts: Options, entry: ReleasePlan, service: str) -> build_mod.BuildOptions:
    extra = {} if opts.env is None else {"env": dict(opts.env)}
    return build_mod.BuildOptions(
        release=entry.release, layout=opts.layout, registry=opts.registry,
        work_dir=opts.work_dir, cache_dir=opts.cache_dir, services=(service,),
        platforms=entry.platforms, git_base=opts.git_base, index_url=opts.index_url,
        lock=opts.lock, no_cache=opts.no_cache, emulate_install=opts.emulate_install,
        zuul=opts.zuul, **extra)


def _failed(release: str, services: Sequence[str], platforms: Sequence[str], reason: str,
            seconds: float | None) -> list[Row]:
    return [Row(release, service, platform, "failed", reason=reason, seconds=seconds)
            for service in services for platform in platforms]


def _service_rows(release: str, service: str, platforms: Sequence[str], record: dict,
                  progress: Progress) -> list[Row]:
    """The rows of one service's build record: one per platform, sizes read per platform."""
    image = next((row for row in record.get("images", [])
                  if row.get("image") == service and row.get("service")), None)
    if image is None:
        # build.run returns a record for the service it was given, or raises.
        return _failed(release, [service], platforms, f"{release} {service}: the build "
                       "record holds no row for this image; please report it", None)
    status = image["status"]
    try:
        sizes = image_sizes(image)
    except AirlockError as error:
        progress(f"{release} {service}: size unknown: {error}")
        sizes = {}
    return [Row(release, service, platform, status, size=sizes.get(platform),
                seconds=image.get("seconds"))
            for platform in platforms]


# --- sizes -----------------------------------------------------------------------


def image_sizes(image: dict) -> dict[str, int]:
    """Compressed size per platform of a build record's image row.

    From its OCI archive when built or kept (the archive is what publish
    pushes), from the registry when skipped (it is there already).
    """
    platforms = list(image.get("platforms") or [])
    if image.get("status") in ("built", "kept") and image.get("archive"):
        return archive_sizes(Path(image["archive"]), platforms)
    if image.get("status") == "skipped" and image.get("ref"):
        return registry_sizes(image["ref"], platforms)
    return {}


def manifest_sizes(doc: dict, manifest_of: Callable[[str], dict | None],
                   platforms: Sequence[str]) -> dict[str, int]:
    """Per platform: the sizes of its manifest's layers and config, summed.

    ``doc`` is an image index (each entry names its platform) or the one
    manifest of a single-platform build, which belongs to the one platform
    built; ``manifest_of(digest)`` reads a manifest the index names.
    Entries with no real platform (attestations: ``unknown/unknown``) are
    not images and are left out.
    """
    if "manifests" not in doc:
        return {platforms[0]: _one_size(doc)} if len(platforms) == 1 else {}
    sizes: dict[str, int] = {}
    for entry in doc.get("manifests") or []:
        plat = entry.get("platform") or {}
        if not plat.get("os") or plat.get("os") == "unknown" or not plat.get("architecture"):
            continue
        name = "/".join(filter(None, (plat["os"], plat["architecture"], plat.get("variant"))))
        child = manifest_of(entry["digest"])
        if child is not None:
            sizes[name] = _one_size(child)
    return sizes


def _one_size(manifest: dict) -> int:
    layers = sum(int(layer.get("size", 0)) for layer in manifest.get("layers") or [])
    return layers + int((manifest.get("config") or {}).get("size", 0))


def archive_sizes(archive: Path, platforms: Sequence[str]) -> dict[str, int]:
    """:func:`manifest_sizes` of the image an OCI archive (``docker buildx`` output) holds.

    Reads index.json, then the index and manifests among its blobs; the
    layers themselves are never read (their sizes are in the manifests).
    """
    try:
        with tarfile.open(archive) as tar:
            def blob(digest: str) -> dict:
                return _tar_json(tar, f"blobs/{digest.replace(':', '/', 1)}")

            entries = _tar_json(tar, "index.json").get("manifests") or []
            if len(entries) != 1:
                raise ToolError(str(archive), f"index.json lists {len(entries)} images, "
                                "expected 1")
            return manifest_sizes(blob(entries[0]["digest"]), blob, platforms)
    except (OSError, KeyError, TypeError, tarfile.TarError, ValueError) as error:
        raise ToolError(str(archive), f"not a readable OCI archive: {error}") from error


def _tar_json(tar: tarfile.TarFile, name: str) -> dict:
    member = tar.getmember(name)
    if not member.isfile() or member.size > _MANIFEST_LIMIT:
        raise ValueError(f"{name} is not a manifest")
    handle = tar.extractfile(member)
    if handle is None:
        raise KeyError(name)
    doc = json.load(handle)
    if not isinstance(doc, dict):
        raise ValueError(f"{name} is not a JSON object")
    return doc


def registry_sizes(ref: str, platforms: Sequence[str]) -> dict[str, int]:
    """:func:`manifest_sizes` of the image at ``ref`` (``repo@digest``) in its registry."""
    doc = registry.manifest(ref)
    if doc is None:
        raise ToolError(ref, "no such image in the registry")
    repo = ref.split("@", 1)[0] if "@" in ref else ref.rsplit(":", 1)[0]
    return manifest_sizes(doc, lambda digest: registry.manifest(f"{repo}@{digest}"), platforms)


# --- the report ------------------------------------------------------------------


def report(rows: list[Row], layout: Layout, selection: dict[str, list[str]] | None = None,
           now: datetime.datetime | None = None,
           shared: Sequence[Shared] = ()) -> Report:
    """Rows with the date (UTC) and the commit of the checkout that built them."""
    when = now or datetime.datetime.now(datetime.UTC)
    date = when.astimezone(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return Report(rows=list(rows), date=date, commit=checkout_commit(layout.releases_dir),
                  selection=dict(selection or {}), shared=list(shared))


def checkout_commit(folder: Path) -> str:
    """The commit the checkout holding ``folder`` is at; "unknown" outside a git checkout."""
    try:
        proc = git.run(["rev-parse", "--verify", "--quiet", "HEAD"], cwd=folder,
                       where=f"git rev-parse HEAD in {folder}", check=False)
    except (AirlockError, OSError):
        return "unknown"
    sha = proc.stdout.strip()
    return sha if proc.returncode == 0 and len(sha) == 40 else "unknown"


def size_text(n: int | None) -> str:
    """Bytes as people read them: 1000-based, like the build summary."""
    if not n:
        return "-"
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return str(n)


def _cells(row: Row) -> tuple[str, ...]:
    seconds = "-" if row.seconds is None else f"{row.seconds:.1f}s"
    return (row.release, row.service, row.platform, row.status, size_text(row.size), seconds,
            row.reason)


HEADER = ("release", "service", "platform", "status", "size", "time", "reason")


def totals(rep: Report) -> str:
    """The last line: ``N built, N kept, N skipped, N failed``."""
    counts = rep.counts()
    return ", ".join(f"{counts[status]} {status}" for status in STATUSES)


def shared_line(rep: Report) -> str | None:
    """What building shared images once saved, one line; None when nothing was shared.

    ``shared: 2 images built once, reused by 2024.1 (python-base abcdef012345
    and venv-builder 0123456789ab of 2025.2), 312.4 s not spent``. The
    seconds count the reuses whose first build ran in this run; the others
    are named as not known.
    """
    if not rep.shared:
        return None
    releases = ", ".join(dict.fromkeys(s.release for s in rep.shared))
    images = ", ".join(dict.fromkeys(
        f"{s.image} {s.input_digest.split(':', 1)[-1][:12]} of {s.first}" for s in rep.shared))
    known = [s.seconds for s in rep.shared if s.seconds is not None]
    unknown = len(rep.shared) - len(known)
    saved = f"{sum(known):.1f} s not spent" if known else ""
    if unknown:
        saved += ("; " if saved else "") + (f"{unknown} of them built before this run "
                                            "(time not known)")
    return (f"shared: {len(rep.shared)} image(s) reused by {releases} instead of built "
            f"again ({images}), {saved}")


def table(rep: Report) -> str:
    """The text table: fixed-width columns, one header line, the totals line last."""
    rows = [HEADER, *(_cells(row) for row in rep.rows)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
             for row in rows]
    shared = shared_line(rep)
    return "\n".join([*lines, totals(rep), *([shared] if shared else [])]) + "\n"


def markdown(rep: Report) -> str:
    """The table as Markdown, under the date and commit (what the README quotes)."""
    sliced = "; ".join(f"{key}: {', '.join(values)}" for key, values in
                       sorted(rep.selection.items()) if values)
    lines = [f"Built {rep.date} at commit {rep.commit}" + (f" ({sliced})" if sliced else ""),
             "", "| " + " | ".join(HEADER) + " |",
             "|" + "|".join("---" for _ in HEADER) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in _cells(row)) + " |"
              for row in rep.rows]
    shared = shared_line(rep)
    return "\n".join([*lines, "", totals(rep), *(["", shared] if shared else [])]) + "\n"


def document(rep: Report) -> dict:
    """The JSON document: date, commit, the slice, every row, the counts, ``changed``.

    ``shared`` lists the images a release reused from an earlier one of the
    run, ``saved_seconds`` the time their first builds took (known ones).
    """
    return {"date": rep.date, "commit": rep.commit, "selection": rep.selection,
            "rows": [asdict(row) for row in rep.rows], "counts": rep.counts(),
            "shared": [asdict(item) for item in rep.shared],
            "saved_seconds": round(sum(s.seconds or 0 for s in rep.shared), 1),
            "changed": any(row.status == "built" for row in rep.rows)}


def write_report(rep: Report, work_dir: Path) -> tuple[Path, Path]:
    """Keep the run's table (Markdown) and document (JSON) under the work folder, atomically."""
    work_dir.mkdir(parents=True, exist_ok=True)
    md, js = work_dir / REPORT_MD, work_dir / REPORT_JSON
    files.write_atomic(md, markdown(rep))
    files.write_atomic(js, json.dumps(document(rep), indent=1, sort_keys=True) + "\n")
    return md, js

