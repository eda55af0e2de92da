"""``bundle import``: a verified bundle into the site's four stores, idempotent and resumable.

The bundle is verified first (signature, then every byte): nothing of a
bundle that does not verify reaches a store. Then each store gets its
part, asked before it is written (:func:`airlock.site.stores.decide`):

- pypi: every ``python/wheels/*.whl`` and ``python/airlock/*.whl``;
- raw: each apt repository ``debs/<distro>-<codename>/<arch>/``, its
  .debs first and its index (Packages) last, so that a half-imported
  repository never advertises a file it lacks;
- registry: each base image by digest, tagged as the release's reference tags it;
- git: each component's git bundle into ``<push>/openstack/<project>``, and
  airlock's own repository into ``<push>/airlock`` (the site's builds run
  from a checkout of it: ``git clone <git base>/airlock``).

A store that fails (unreachable, credentials refused) stops that store
only, with one line; a conflict (the store holds other bytes under the
same name) fails that artifact only. The others go on, so one run shows
every problem; a rerun uploads only what is missing. When every store
succeeded the import record (bundle id, version, manifest sha256,
requires, what went where) is written to the raw store at
``airlock/imports/<id>.json`` (and kept in the work folder): a delta is
imported only on top of the records of the bundles it requires.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from airlock import files
from airlock.bundle import manifest as manifest_mod
from airlock.bundle import sums, verify
from airlock.errors import AirlockError, ToolError
from airlock.progress import step as progress_step
from airlock.site import access, stores
from airlock.site.config import Site
from airlock.urls import strip_userinfo

Progress = Callable[[str], None]
STORE_ORDER = ("pypi", "raw", "registry", "git")
RECORDS = "airlock/imports"
WHEEL_KINDS = ("wheel", "airlock")
APT_INDEXES = ("Packages", "Packages.gz", "Packages.xz", "Release", "Release.gpg", "InRelease")


def record_path(bundle_id: str) -> str:
    return f"{RECORDS}/{bundle_id}.json"


@dataclass
class StoreReport:
    """What one store got: names uploaded, skipped, and one line per failure."""

    uploaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    where: dict = field(default_factory=dict)  # for the record: what went where
    seconds: float = 0.0  # how long the store took: what to look at when an import is slow


@dataclass
class Report:
    bundle_id: str
    version: str
    stores: dict[str, StoreReport]
    record: dict | None = None

    @property
    def failures(self) -> list[str]:
        return [line for name in STORE_ORDER for line in self.stores[name].failed]

    def as_json(self) -> dict:
        return {"bundle": self.bundle_id, "version": self.version,
                "ok": not self.failures,
                "stores": {name: {"uploaded": r.uploaded, "skipped": r.skipped,
                                  "failed": r.failed, "seconds": round(r.seconds, 2)}
                           for name, r in self.stores.items()}}

    def table(self) -> str:
        rows = [("store", "uploaded", "skipped", "failed", "seconds")]
        rows += [(name, str(len(r.uploaded)), str(len(r.skipped)), str(len(r.failed)),
                  f"{r.seconds:.1f}") for name, r in self.stores.items()]
        widths = [max(len(row[i]) for row in rows) for i in range(5)]
        return "".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True))
                       .rstrip() + "\n" for row in rows)


def _noop(_: str) -> None:
    pass


def own_artifacts(manifest: dict) -> list[dict]:
    """The artifacts that arrive in this bundle (a delta's others are already at the site)."""
    return [a for a in manifest["artifacts"] if a["bundle"] == manifest["id"]]


def wheels(manifest: dict) -> list[dict]:
    return sorted((a for a in own_artifacts(manifest) if a["kind"] in WHEEL_KINDS
                   and a["path"].endswith(".whl")), key=lambda a: a["path"])


def apt_repos(manifest: dict) -> dict[str, list[dict]]:
    """``{debs/<distro>-<codename>/<arch>: artifacts}``, the index files last."""
    repos: dict[str, list[dict]] = {}
    for art in own_artifacts(manifest):
        if not art["path"].startswith("debs/"):
            continue
        repo, _, name = art["path"].rpartition("/")
        repos.setdefault(repo, []).append(art)
    return {repo: sorted(arts, key=lambda a: (a["path"].rsplit("/", 1)[1] in APT_INDEXES,
                                              a["path"]))
            for repo, arts in sorted(repos.items())}


def images(manifest: dict) -> list[dict]:
    """Each base image this bundle carries: ``{"path", "digest", "tag"}``, once per path."""
    own = {a["path"] for a in own_artifacts(manifest)}
    found: dict[str, dict] = {}
    for release in sorted(manifest.get("releases") or {}):
        base = (manifest["releases"][release] or {}).get("base_image") or {}
        if base.get("path") in own and base["path"] not in found:
            found[base["path"]] = {"path": base["path"], "digest": base["digest"],
                                   "tag": base.get("tag")}
    return list(found.values())


def git_bundles(manifest: dict) -> list[dict]:
    """Each git bundle this bundle carries: path, component, repository, heads, branch.

    ``repository`` is the mirror's path: ``openstack/<project>`` for a
    component, :data:`stores.AIRLOCK_REPOSITORY` for airlock's own.
    """
    own = {a["path"] for a in own_artifacts(manifest)}
    found: dict[str, dict] = {}

    def add(path: str | None, component: str, project: str, repository: str,
            heads: dict) -> None:
        if path not in own or path in found:
            return
        heads = dict(heads or {})
        branches = sorted(r[len("refs/heads/"):] for r in heads if r.startswith("refs/heads/"))
        found[path] = {"path": path, "component": component, "project": project,
                       "repository": repository, "heads": heads,
                       "branch": branches[0] if branches else None}

    for release in sorted(manifest.get("releases") or {}):
        for name, comp in sorted(((manifest["releases"][release] or {}).get("components")
                                  or {}).items()):
            project = stores.project_of(comp.get("repo") or "", name)
            add(comp.get("bundle"), name, project, f"{stores.OPENSTACK}/{project}",
                comp.get("heads"))
    tool = manifest.get("airlock") or {}
    if tool.get("commit"):
        add(tool.get("bundle"), "airlock", stores.AIRLOCK_REPOSITORY,
            stores.AIRLOCK_REPOSITORY, tool.get("heads"))
    return list(found.values())


def _manifest_sha256(folder: Path) -> str:
    listed = sums.parse(files.read_bytes(folder / sums.SUMS, limit=verify.SUMS_LIMIT),
                        str(folder / sums.SUMS))
    return listed[sums.MANIFEST]


def make_record(manifest: dict, manifest_sha256: str, reports: dict[str, StoreReport],
                now: datetime.datetime | None = None) -> dict:
    """The import record: which bundle, when, and per store where its artifacts went."""
    when = (now or datetime.datetime.now(datetime.UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"schema": 1, "bundle": manifest["id"], "version": manifest["version"],
            "manifest_sha256": manifest_sha256, "imported_at": when,
            "requires": list(manifest.get("requires") or []),
            "stores": {name: reports[name].where for name in STORE_ORDER}}


# --- the stores ---------------------------------------------------------------


def _pypi(folder: Path, manifest: dict, store: stores.PypiStore, report: StoreReport,
          progress: Progress) -> None:
    report.where = {"index": strip_userinfo(store.simple_url), "files": []}
    for art in wheels(manifest):
        name = art["path"].rsplit("/", 1)[1]
        report.where["files"].append(name)
        there = store.remote_sha256(name)
        if not _to_upload(report, "pypi", name, art["sha256"], there):
            continue
        progress(f"pypi: uploading {name}")
        try:
            store.upload(folder / art["path"])
        except AirlockError as error:
            if isinstance(error, ToolError):
                raise
            report.failed.append(str(error))
            continue
        store.forget(name)
        report.uploaded.append(name)


def _to_upload(report: StoreReport, store: str, name: str, local: str,
               there: str | None) -> bool:
    """Whether ``name`` goes up; already there (skipped) or other bytes there (failed) noted."""
    action = stores.decide(local, there)
    if action == stores.SKIP:
        report.skipped.append(name)
    elif action == stores.CONFLICT:
        report.failed.append(str(stores.conflict(store, name, there)))
    return action not in (stores.SKIP, stores.CONFLICT)


def _raw(folder: Path, manifest: dict, store: stores.RawStore, report: StoreReport,
         progress: Progress) -> None:
    report.where = {"url": strip_userinfo(store.base), "repositories": {}}
    for repo, arts in apt_repos(manifest).items():
        report.where["repositories"][repo] = f"deb [trusted=yes] {store.url(repo + '/')} ./"
        failed_before = len(report.failed)
        for art in arts:
            path, name = art["path"], art["path"].rsplit("/", 1)[1]
            if name in APT_INDEXES:
                if len(report.failed) > failed_before:
                    report.failed.append(str(AirlockError(
                        f"raw: {path}", "not written: a file it lists is missing",
                        "resolve the failures above; import again")))
                    continue
                _raw_index(folder, art, store, report, progress)
                continue
            there = store.remote_sha256(path, art["size"])
            if _to_upload(report, "raw", path, art["sha256"], there):
                progress(f"raw: uploading {path}")
                store.put(path, folder / path)
                report.uploaded.append(path)


def _raw_index(folder: Path, art: dict, store: stores.RawStore, report: StoreReport,
               progress: Progress) -> None:
    """An apt index: merged with the store's (a delta adds to the repository), never lost."""
    path = art["path"]
    local = files.read_bytes(folder / path, limit=files.RECORD_LIMIT)
    remote = store.get(path)
    if remote is not None and not path.endswith("/Packages"):
        if hashlib.sha256(remote).hexdigest() == art["sha256"]:
            report.skipped.append(path)
        else:
            report.failed.append(str(stores.conflict(
                "raw", path, hashlib.sha256(remote).hexdigest())))
        return
    data = local if remote is None else stores.merge_packages(remote, local)
    if remote is not None and hashlib.sha256(remote).digest() == hashlib.sha256(data).digest():
        report.skipped.append(path)
        return
    progress(f"raw: writing {path}")
    store.put(path, data)
    report.uploaded.append(path)


def _registry(folder: Path, manifest: dict, store: stores.RegistryStore, report: StoreReport,
              progress: Progress) -> None:
    report.where = {"prefix": store.prefix, "images": {}}
    for image in images(manifest):
        repo = stores.image_repo(store.prefix, image["path"])
        tag = stores.image_tag(image.get("tag"), image["digest"])
        report.where["images"][image["path"]] = {"ref": f"{repo}@{image['digest']}",
                                                 "tag": f"{repo}:{tag}" if tag else None}
        progress(f"registry: {repo}@{image['digest'][:19]}")
        try:
            action, ref = store.push(folder / image["path"], repo, image["digest"], tag)
        except AirlockError as error:
            if isinstance(error, ToolError):
                # Its fix names the auth file; at a site the credentials are site.yaml's.
                fix = ("check registry.credentials_file/credentials_env in site.yaml"
                       if "credentials" in error.what else error.fix)
                raise ToolError(error.where, error.what, fix) from None
            report.failed.append(str(error))
            continue
        (report.uploaded if action == stores.UPLOAD else report.skipped).append(ref)


def _git(folder: Path, manifest: dict, store: stores.GitStore, report: StoreReport,
         progress: Progress) -> None:
    report.where = {"base": strip_userinfo(store.read_base), "repositories": {}}
    for item in git_bundles(manifest):
        shown = item["repository"]
        report.where["repositories"][shown] = {"url": store.read_url(shown),
                                               "refs": item["heads"]}
        progress(f"git: {shown} <- {item['path']}")
        plan = store.load(folder / item["path"], shown, item["heads"], item["branch"])
        for line in plan.refused:
            report.failed.append(str(AirlockError(f"git {store.target(shown)}", line,
                                                  "nothing of it was pushed; find out "
                                                  "which commit is right")))
        if plan.refused:
            continue
        report.uploaded += [f"{shown} {ref}" for ref in sorted(plan.set)]
        report.skipped += [f"{shown} {ref}" for ref in plan.same]


# --- the run ------------------------------------------------------------------


def check_requires(raw: stores.RawStore, requires: list[str]) -> None:
    """A delta needs the import record of every bundle it requires: one line naming the missing."""
    missing = [bundle_id for bundle_id in requires if raw.get(record_path(bundle_id)) is None]
    if missing:
        raise AirlockError("bundle import", f"a delta on top of {', '.join(missing)}, which "
                           f"{'was' if len(missing) == 1 else 'were'} not imported into this "
                           f"site (no {raw.url(record_path(missing[0]))})",
                           "import the bundles it requires first")


def run(bundle: Path, site: Site, allowed_signers: Path, work_dir: Path | None = None,
        progress: Progress = _noop) -> Report:
    """Verify ``bundle`` (a folder), load it into ``site``'s stores, record the import."""
    bundle = Path(bundle)
    if not bundle.is_dir() or bundle.is_symlink():
        raise AirlockError(str(bundle), "is not a bundle folder",
                           "import a folder; a tar is verified and extracted first: "
                           "airlock bundle verify FILE.tar --allowed-signers F --extract DIR")
    progress(f"{bundle}: verifying")
    verified = verify.verify_dir(bundle, allowed_signers)
    # A signature says who made it, not that it is well made: every field
    # the stores are given (a ref pushed to the mirror, a git bundle's
    # path) has its shape checked before any store, as inspect checks it.
    manifest = manifest_mod.checked(verified.manifest, str(bundle / sums.MANIFEST),
                                    verify.GET_AGAIN)
    manifest_sha256 = _manifest_sha256(bundle)
    # Every credential is read before any work: a missing file is one line, exit 1.
    raw = stores.RawStore(site.raw)
    clients = {"pypi": stores.PypiStore(site.pypi), "raw": raw,
               "registry": stores.RegistryStore(site.registry), "git": stores.GitStore(site.git)}
    site.registry.credentials()
    check_requires(raw, verified.requires)
    reports = {name: StoreReport() for name in STORE_ORDER}
    loaders = {"pypi": _pypi, "raw": _raw, "registry": _registry, "git": _git}
    for name in STORE_ORDER:
        started = time.monotonic()
        try:
            with progress_step(f"bundle import: {name}"):
                if name == "registry":
                    with access.registry_auth(site):
                        loaders[name](bundle, manifest, clients[name], reports[name], progress)
                else:
                    loaders[name](bundle, manifest, clients[name], reports[name], progress)
        except AirlockError as error:
            reports[name].failed.append(str(error) if str(error).startswith(name)
                                        else f"{name}: {error}")
        reports[name].seconds = time.monotonic() - started
    if not reports["raw"].failed:
        _libraries(manifest, raw, reports["raw"])
    report = Report(verified.id, verified.version, reports)
    if report.failures:
        return report
    record = make_record(manifest, manifest_sha256, reports)
    _write_record(raw, record, reports["raw"], work_dir)
    report.record = record
    return report


def _libraries(manifest: dict, raw: stores.RawStore, report: StoreReport) -> None:
    """Per wheel, the packages of the libraries it needs: the site's wheelhouse reads them.

    A wheel built from an sdist on the connected side was asked, there, which
    package provides each library it links; the site builds no sdist and
    has no such container, so it reads the answer from its raw store. The
    same wheel name in two services or releases names the same packages:
    what is there is merged with what arrives.
    """
    merged: dict[str, dict[str, str]] = {}
    for entry in (manifest.get("releases") or {}).values():
        for svc in (entry.get("python") or {}).values():
            for wheel, owners in (svc.get("libraries") or {}).items():
                merged.setdefault(wheel, {}).update(owners)
    for wheel, owners in sorted(merged.items()):
        path = access.libraries_path(wheel)
        try:
            there = raw.get(path)
            known = json.loads(there) if there else {}
            if not isinstance(known, dict):
                known = {}
            if {**known, **owners} == known:
                report.skipped.append(path)
                continue
            raw.put(path, (json.dumps({**known, **owners}, indent=1, sort_keys=True) + "\n")
                    .encode())
            report.uploaded.append(path)
        except (AirlockError, ValueError) as error:
            report.failed.append(f"raw: {path}: {error}")


def _write_record(raw: stores.RawStore, record: dict, report: StoreReport,
                  work_dir: Path | None) -> None:
    """PUT the record unless one for the same manifest is there (then the first one stays)."""
    path = record_path(record["bundle"])
    data = (json.dumps(record, indent=1, sort_keys=True) + "\n").encode()
    try:
        there = raw.get(path)
        if there is not None:
            try:
                same = json.loads(there).get("manifest_sha256") == record["manifest_sha256"]
            except (ValueError, AttributeError):
                same = False
            if not same:
                report.failed.append(str(stores.conflict("raw", path, "")))
                return
            report.skipped.append(path)
            data = there
        else:
            raw.put(path, data)
            report.uploaded.append(path)
    except AirlockError as error:
        report.failed.append(f"raw: {error}")
        return
    if work_dir is not None:
        dest = Path(work_dir) / "site" / "imports" / f"{record['bundle']}.json"
        dest.parent.mkdir(parents=True, exist_ok=True)
        files.write_atomic(dest, data)

