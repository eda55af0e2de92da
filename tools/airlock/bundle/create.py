"""``airlock bundle create``: the Mirror Factory's one artifact for the air gap.

For each selected release, the inputs a build reads are prepared by the
build's own code (:func:`airlock.image.build.run` with ``images=False``:
base image, lock, sources, wheelhouses, apt repositories), then gathered
(:mod:`airlock.bundle.gather`) into one folder with a manifest, SHA256SUMS
and a signature, and checked for completeness (:mod:`airlock.bundle.check`)
before it is called done.

Resumable by construction: every step below keeps its result (caches,
registry, the output folder), so a second run after an interrupt downloads
and builds nothing it already has; files already in the folder with the
right sha256 are kept. While it runs the folder holds a hidden marker, so
a half-made bundle never verifies. A folder that is neither empty nor a
bundle is never written into.
"""

from __future__ import annotations

import contextlib
import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from airlock import files
from airlock.bundle import check as check_mod
from airlock.bundle import gather, layout
from airlock.bundle import manifest as manifest_mod
from airlock.data import refs
from airlock.data.layout import Layout
from airlock.data.release import load_release
from airlock.errors import AirlockError, ErrorList
from airlock.image import build
from airlock.inputs import baseimage
from airlock.progress import step as progress_step
from airlock.urls import strip_userinfo

Progress = Callable[[str], None]


@dataclass(frozen=True)
class CreateOptions:
    """What one ``bundle create`` was asked for, as plain data."""

    releases: tuple[str, ...]
    layout: Layout
    out: Path
    work_dir: Path
    cache_dir: Path
    registry: str
    services: tuple[str, ...] = ()
    platforms: tuple[str, ...] = ()
    git_base: str | None = None
    index_url: str | None = None
    key: Path | None = None
    version: str | None = None
    since: Path | None = None
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))


@dataclass
class Created:
    """The result: the manifest, how much was reused, and any completeness problems."""

    out: Path
    manifest: dict
    reused: dict[str, int]
    problems: list[AirlockError]
    seconds: float


def _noop(_: str) -> None:
    pass


def check_out(out: Path) -> None:
    """The output folder must be new, empty, or a bundle (finished or interrupted)."""
    if not os.path.lexists(out):
        return
    if out.is_symlink() or not out.is_dir():
        raise AirlockError(str(out), "is not a folder", "choose a new folder for --out")
    names = set(os.listdir(out))
    if names and not names & {layout.PARTIAL, layout.MANIFEST}:
        raise AirlockError(str(out), "is neither empty nor an airlock bundle",
                           "choose a new or empty folder for --out")
    if names and layout.PARTIAL not in names:
        # Any project may hold a manifest.json: only an airlock bundle's makes
        # this folder one that create updates (and removes stale files from).
        try:
            manifest_mod.read(out)
        except AirlockError as error:
            raise AirlockError(str(out), f"is neither empty nor an airlock bundle (its "
                               f"manifest.json: {error.what})",
                               "choose a new or empty folder for --out") from None
    _only_files_and_folders(out)


def create(opts: CreateOptions, progress: Progress = _noop) -> Created:
    """Gather, write, sign and check the bundle; see the module docstring."""
    started = time.time()
    check_out(opts.out)
    if opts.key is not None:
        files.read_bytes(opts.key, limit=files.MiB, fix="pass a private key file (ssh-keygen "
                         "-t ed25519) or the .pub of a key in ssh-agent")
        from airlock.ext import sshkeygen

        sshkeygen.check_key(opts.key)
    since = manifest_mod.read(opts.since) if opts.since else None
    releases = [load_release(opts.layout, name) for name in opts.releases]
    selection = _selection(opts, releases)
    opts.out.mkdir(parents=True, exist_ok=True)
    files.write_atomic(opts.out / layout.PARTIAL, "airlock bundle create is filling this "
                       "folder\n")
    for name in (layout.SUMS, layout.SIGNATURE, layout.MANIFEST):
        (opts.out / name).unlink(missing_ok=True)

    index_shown = gather.shown_index(opts.index_url)
    arts: list[gather.Artifact] = []
    entries: dict[str, dict] = {}
    records = []
    for release in releases:
        services = [s for s in selection["services"] if s in release.services]
        platforms = [p for p in selection["platforms"] if p in release.platforms]
        if not services or not platforms:
            progress(f"{release.name}: no selected service or platform, skipped")
            continue
        progress(f"{release.name}: preparing the inputs of {', '.join(services)} for "
                 f"{', '.join(platforms)}")
        base = baseimage.create(baseimage.spec_for_release(release, opts.env),
                                opts.layout.images_dir, opts.work_dir, progress=progress)
        progress(f"{release.name}: base image {base.ref}@{base.digest}")
        lock = _lock(opts, release, services, since)
        record = build.run(build.BuildOptions(
            release=release, layout=opts.layout, registry=opts.registry,
            work_dir=opts.work_dir, cache_dir=opts.cache_dir, services=tuple(services),
            platforms=tuple(platforms), git_base=opts.git_base, index_url=opts.index_url,
            lock=lock, env=opts.env), progress, images=False)
        got, entry = gather.release_artifacts(release, record, opts.layout, opts.cache_dir,
                                              opts.git_base, index_shown, progress)
        arts += got
        entries[release.name] = entry
        records.append((release, record))
    if not entries:
        raise AirlockError("airlock bundle create", "the selection holds no release with "
                           "those services and platforms", "check --release, --service and "
                           "--platform")
    arts += gather.apt_indexes(records)
    tool, tool_info = gather.airlock_artifacts(selection["platforms"], opts.cache_dir,
                                               opts.index_url, progress)
    arts += tool

    table, notes = _merge(arts, started)
    rows, reused = _write(opts.out, table, progress)
    # Completeness is checked on the whole set, before a delta leaves out
    # what the bundles it builds on already carry.
    doc = {"schema": layout.SCHEMA, "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                time.gmtime(started)),
           "selection": selection, "releases": entries, "airlock": tool_info,
           "inputs": _inputs(opts, entries, tool_info), "notes": notes}
    problems = check_mod.check({"artifacts": rows, "releases": entries, "airlock": tool_info},
                               lambda path: opts.out / path, str(opts.out), progress)
    old = {a["sha256"]: a["bundle"] for a in since["artifacts"]} if since else {}
    for row in rows:
        row["bundle"] = old.get(row["sha256"], "")
    doc["requires"] = sorted({row["bundle"] for row in rows if row["bundle"]})
    doc["id"] = manifest_mod.bundle_id(selection, rows)
    doc["version"] = opts.version or time.strftime("%Y%m%d.%H%M%S", time.gmtime(started))
    doc["complete"] = not problems
    for row in rows:
        row["bundle"] = row["bundle"] or doc["id"]
    doc["artifacts"] = rows
    for row in rows:
        if row["bundle"] != doc["id"]:
            (opts.out / row["path"]).unlink(missing_ok=True)
    _prune(opts.out)
    files.write_json(opts.out / layout.MANIFEST, doc)
    _seal(opts.out, [r for r in rows if r["bundle"] == doc["id"]], opts.key)
    (opts.out / layout.PARTIAL).unlink(missing_ok=True)
    return Created(opts.out, doc, reused, problems, round(time.time() - started, 1))


def _lock(opts: CreateOptions, release, services: list[str], since: dict | None) -> Path:
    """The refs lock to gather: resolved now, with an earlier bundle's entries where they hold.

    A component whose repository, ref and commit are those of the earlier
    bundle in ``--out`` or of ``--since`` keeps that entry as it was (its
    resolved-at too): the same commits make the same lock file, so a rerun
    makes the same bundle and a delta does not carry an unchanged lock.
    """
    needed = sorted({ref.name for ref in release.libraries()} | set(services))
    fresh = refs.resolve_release(release, opts.git_base, only=needed)
    earlier: dict[str, dict] = {}
    if since is not None:
        earlier.update(((since["releases"].get(release.name) or {}).get("lock") or {})
                       .get("components") or {})
    previous = opts.out / layout.lock(release.name)
    if previous.is_file() and not previous.is_symlink():
        with contextlib.suppress(AirlockError):
            earlier.update(refs.load_lock(previous)["components"])
    for name, entry in fresh["components"].items():
        old = earlier.get(name)
        if isinstance(old, dict) and all(old.get(k) == entry[k] for k in ("sha", "ref", "repo")) \
                and isinstance(old.get("resolved-at"), str):
            entry["resolved-at"] = old["resolved-at"]
    path = opts.work_dir / release.name / "bundle-lock.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    files.write_atomic(path, refs.dump_lock(fresh))
    return path


def _selection(opts: CreateOptions, releases) -> dict:
    """The releases, services and platforms asked for (defaults: every one of the releases)."""
    known_services = sorted({s for r in releases for s in r.services})
    known_platforms = sorted({p for r in releases for p in r.platforms})
    for given, known, what in ((opts.services, known_services, "--service"),
                               (opts.platforms, known_platforms, "--platform")):
        bad = [g for g in given if g not in known]
        if bad:
            raise AirlockError(what, f"{', '.join(bad)} is in none of the releases "
                               f"{', '.join(opts.releases)}", f"choose from "
                               f"{', '.join(known)}")
    return {"releases": list(opts.releases),
            "services": list(opts.services) or known_services,
            "platforms": list(opts.platforms) or known_platforms}


def _inputs(opts: CreateOptions, entries: dict, tool_info: dict) -> dict:
    """What the bundle was made from, without a credential."""
    return {"airlock": tool_info["version"],
            "index": gather.shown_index(opts.index_url),
            "git_base": strip_userinfo(opts.git_base) if opts.git_base else None,
            "locks": {name: entry["lock"]["path"] for name, entry in entries.items()},
            "base_images": {name: entry["base_image"]["digest"]
                            for name, entry in entries.items()}}


def _merge(arts: list[gather.Artifact], started: float) -> tuple[dict[str, dict], list[str]]:
    """One row per bundle path; the same path twice must be the same bytes.

    Two releases may build the same sdist into wheels of one name that
    differ by their bytes (a compiler is not always reproducible): the
    first, in release order, is kept, and the note says which was dropped.
    """
    table: dict[str, dict] = {}
    notes: list[str] = []
    for art in arts:
        data, source = art.data, art.source
        if source is not None:
            sha, size = files.sha256_file(source), source.stat().st_size
        else:
            import hashlib

            sha, size = hashlib.sha256(data).hexdigest(), len(data)
        row = table.get(art.path)
        if row is None:
            row = table[art.path] = {"path": art.path, "kind": art.kind, "origin": art.origin,
                                     "sha256": sha, "size": size, "release": set(),
                                     "platform": set(), "_source": source, "_data": data,
                                     "_old": source is not None and
                                     source.stat().st_mtime < started}
        elif row["sha256"] != sha:
            if art.kind in ("wheel", "apt-index"):
                notes.append(f"{art.path}: releases {', '.join(sorted(art.releases))} built "
                             f"other bytes ({sha[:12]}) than {row['sha256'][:12]}; the "
                             "first is carried")
            else:
                raise AirlockError(art.path, f"two inputs of this name differ ({sha[:12]} "
                                   f"and {row['sha256'][:12]})", "report it: a bundle path "
                                   "must name one file")
        row["release"] |= art.releases
        row["platform"] |= art.platforms
    return table, list(dict.fromkeys(notes))


def _write(out: Path, table: dict[str, dict], progress: Progress
           ) -> tuple[list[dict], dict[str, int]]:
    """Put every artifact into ``out`` (hard links into the caches where it can).

    Returns the manifest rows, and per group how many artifacts were reused:
    already in ``out`` (an earlier or interrupted create), or taken from a
    cache that held them before this run began.
    """
    total = sum(row["size"] for row in table.values())
    done = 0
    rows = []
    reused: dict[str, int] = {}
    last = 0.0
    with progress_step("bundle: writing the artifacts", total=total, unit="bytes") as step:
        for number, path in enumerate(sorted(table), 1):
            row = table[path]
            target = out / path
            source, data, old = row.pop("_source"), row.pop("_data"), row.pop("_old")
            held = _holds(target, row["sha256"])
            if held or old:
                reused[layout.group(row["kind"])] = reused.get(layout.group(row["kind"]), 0) + 1
            if not held:
                _remove(target)
                target.parent.mkdir(parents=True, exist_ok=True)
                if source is not None:
                    files.link_or_copy(source, target)
                else:
                    files.write_atomic(target, data)
            done += row["size"]
            step.update(done=done, detail=f"{number} of {len(table)} artifacts")
            if time.monotonic() - last > 2 or number == len(table):
                last = time.monotonic()
                progress(f"writing: {number} of {len(table)} artifacts, {done // files.MiB} of "
                         f"{total // files.MiB} MiB")
            rows.append({**row, "release": sorted(row["release"]),
                         "platform": sorted(row["platform"])})
    _remove_stale(out, {row["path"] for row in rows})
    return rows, reused


def _holds(target: Path, sha256: str) -> bool:
    try:
        return stat.S_ISREG(os.lstat(target).st_mode) and files.sha256_file(target) == sha256
    except OSError:
        return False


def _remove(path: Path) -> None:
    if os.path.lexists(path):
        if path.is_dir() and not path.is_symlink():
            files.remove_tree(path)
        else:
            os.unlink(path)


def _remove_stale(out: Path, wanted: set[str]) -> None:
    """Remove what an earlier bundle in this folder held and this one does not."""
    for group in layout.GROUP_ORDER:
        top = out / group
        if not top.is_dir() or top.is_symlink():
            continue
        for dirpath, dirnames, filenames in os.walk(top):
            for filename in [*filenames, *(d for d in dirnames
                                           if os.path.islink(os.path.join(dirpath, d)))]:
                rel = os.path.relpath(os.path.join(dirpath, filename), out)
                if rel not in wanted:
                    os.unlink(os.path.join(dirpath, filename))
    _prune(out)


def _prune(out: Path) -> None:
    """Remove empty folders (a delta leaves out whole folders)."""
    for dirpath, _dirnames, _filenames in sorted(os.walk(out), key=lambda w: -len(w[0])):
        if dirpath != str(out) and not os.listdir(dirpath):
            os.rmdir(dirpath)


def _seal(out: Path, rows: list[dict], key: Path | None) -> None:
    """SHA256SUMS over every file (the manifest too), then its signature."""
    from airlock.bundle import sums

    entries = {row["path"]: row["sha256"] for row in rows}
    entries[layout.MANIFEST] = files.sha256_file(out / layout.MANIFEST)
    files.write_atomic(out / layout.SUMS, sums.render(entries))
    if key is not None:
        from airlock.ext import sshkeygen

        files.write_atomic(out / layout.SIGNATURE, sshkeygen.sign(key, out / layout.SUMS))


def raise_problems(created: Created) -> None:
    """An incomplete bundle is the create's failure: every problem, one line each."""
    if created.problems:
        raise ErrorList(created.problems)


def _only_files_and_folders(out: Path) -> None:
    """An earlier bundle folder holds regular files and folders only.

    create writes below it: a link planted there (``python`` -> ``/etc``)
    would have it write, or remove, outside the folder it was given.
    """
    for dirpath, dirnames, filenames in os.walk(out):
        for name in [*dirnames, *filenames]:
            path = os.path.join(dirpath, name)
            mode = os.lstat(path).st_mode
            if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
                raise AirlockError(path, f"is {files.kind_of(mode)} inside the bundle folder",
                                   "remove it (a bundle holds regular files and folders only)")
