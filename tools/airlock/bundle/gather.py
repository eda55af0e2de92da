"""What one release contributes to a bundle, read from the inputs a build prepared.

Nothing here downloads a wheel, computes a closure or builds an image: the
release's inputs are prepared by :func:`airlock.image.build.run` with
``images=False`` (the same code a build runs), and this module only reads
what it left (wheelhouses, apt repositories, the lock) and adds what a
build does not keep: a git bundle per component, the patch series, the base
image as an OCI archive. The result is plain data: a list of
:class:`Artifact` (where it goes in the bundle, where its bytes are) and
the release's entry of the manifest.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from airlock import files
from airlock.bundle import layout
from airlock.data import patches, refs
from airlock.data import platforms as platforms_mod
from airlock.data.layout import Layout
from airlock.data.release import Release
from airlock.errors import AirlockError, ToolError
from airlock.ext import git, registry
from airlock.inputs import debs, sources, wheels, wheeltags
from airlock.urls import strip_userinfo, with_credentials

Progress = Callable[[str], None]


@dataclass
class Artifact:
    """One file of the bundle: its path there, its bytes (a file or data), what it is."""

    path: str
    kind: str
    origin: str
    source: Path | None = None
    data: bytes | None = None
    releases: set[str] = field(default_factory=set)
    platforms: set[str] = field(default_factory=set)


def _noop(_: str) -> None:
    pass


def shown_index(index_url: str | None) -> str:
    """The package index a run downloads from, as an origin names it (no credentials)."""
    from airlock.ext import index
    from airlock.inputs import sdistcheck

    return sdistcheck.shown_locations(index.locations(index_url)) or "the package index"


def release_artifacts(release: Release, record: dict, data: Layout, cache: Path,
                      git_base: str | None, index_shown: str, progress: Progress = _noop
                      ) -> tuple[list[Artifact], dict]:
    """Every artifact of ``release`` and its manifest entry, from a gathering's ``record``."""
    arts: list[Artifact] = []
    entry: dict = {"platforms": record["platforms"],
                   "services": sorted(record.get("services") or {})}
    arts += _sources(release, record["lock"], data, cache, git_base, entry, progress)
    arts += _python(release, record, data, entry, index_shown)
    arts += _debs(release, record, cache, entry)
    arts += _images(release, record, cache, entry, progress)
    for art in arts:
        art.releases.add(release.name)
    return arts, entry


# --- sources ------------------------------------------------------------------


def _sources(release: Release, lock: dict, data: Layout, cache: Path, git_base: str | None,
             entry: dict, progress: Progress) -> list[Artifact]:
    lock_text = refs.dump_lock(lock).encode()
    arts = [Artifact(layout.lock(release.name), "lock", "airlock refs resolve", data=lock_text)]
    entry["lock"] = {"path": arts[0].path, "components": lock["components"]}
    given = sources.given_urls(release, git_base)
    components = {}
    for name, locked in sorted(lock["components"].items()):
        progress(f"{release.name}: {name}: git bundle of {locked['sha'][:12]}")
        bundle_file, heads = git_bundle(name, locked, given, cache)
        path = layout.git_bundle(name, locked["sha"])
        arts.append(Artifact(path, "git", strip_userinfo(locked["repo"]), source=bundle_file))
        series = []
        for patch in patches.series(data.patches_dir, name, release.name):
            where = layout.patch(release.name, name, patch.name)
            body = files.read_bytes(patch, limit=files.PATCH_LIMIT, fix="remove it or fix it")
            arts.append(Artifact(where, "patch", sources.display_path(patch), data=body))
            series.append({"path": where, "sha256": _sha256(body)})
        components[name] = {"sha": locked["sha"], "ref": locked["ref"],
                            "repo": strip_userinfo(locked["repo"]), "bundle": path,
                            "heads": heads, "patches": series}
    entry["components"] = components
    return arts


_SHA = re.compile(r"^[0-9a-f]{40}$")


def git_bundle(name: str, locked: dict, given: list[str], cache: Path
               ) -> tuple[Path, dict[str, str]]:
    """A git bundle of ``name`` at its locked commit, kept in the cache; and its heads.

    It holds the commit with its whole history, every tag on it, every
    branch whose tip it is, and the branch the lock names when it names
    one (pointing at the locked commit: the site builds exactly that).
    Kept per repository, commit and refs: the same lock gives the same
    file, so a delta bundle does not carry it again.
    """
    sha, shown = locked["sha"], strip_userinfo(locked["repo"])
    repo = with_credentials(shown, given)
    try:
        # Branches and tags only: a Gerrit's refs/changes/ is huge.
        listed = {**git.peeled(git.ls_remote(repo, [], heads=True)),
                  **git.peeled(git.ls_remote(repo, [], tags=True))}
    except ToolError as error:
        raise ToolError(f"component {name}", f"cannot read repository {shown}: {error.what}",
                        "check the lock's repo: (or resolve the refs again)") from None
    wanted = sorted(ref for ref, commit in listed.items() if commit == sha
                    and ref.startswith(("refs/tags/", "refs/heads/")))
    named = locked["ref"]
    extra = None
    if not _SHA.match(named) and f"refs/tags/{named}" not in listed and \
            not named.startswith("refs/"):
        extra = f"refs/heads/{named}"
    elif _SHA.match(named) and not wanted:
        extra = f"refs/airlock/locked/{sha}"
    refs_in = sorted({*wanted, *([extra] if extra else [])})
    key = files.json_digest({"repo": shown, "sha": sha, "refs": refs_in}).split(":")[1][:16]
    out = cache / "bundle" / "git" / f"{name}-{sha[:12]}-{key}.bundle"
    if out.is_file() and not out.is_symlink():
        return out, git.bundle_heads(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".airlock-git-", dir=out.parent) as tmp:
        git_dir = Path(tmp) / "repo.git"
        git.init_bare(git_dir)
        if not git.fetch_commit(git_dir, repo, sha):
            raise AirlockError(f"component {name}", f"commit {sha} not found in {shown}",
                               "the lock is stale; resolve the refs again")
        fetched = [ref for ref in refs_in if ref in listed]
        if fetched:
            git.fetch_refs(git_dir, repo, [f"+{ref}:{ref}" for ref in fetched])
        for ref in refs_in:
            if ref not in listed:
                git.set_ref(git_dir, ref, sha)
        part = Path(tmp) / "out.bundle"
        git.bundle_create(git_dir, part, refs_in)
        os.replace(part, out)
    return out, git.bundle_heads(out)


# --- python -------------------------------------------------------------------


def _python(release: Release, record: dict, data: Layout, entry: dict,
            index_shown: str) -> list[Artifact]:
    arts: list[Artifact] = []
    python: dict = {}
    for service, svc in sorted((record.get("services") or {}).items()):
        house = Path(svc["wheels"])
        manifest = files.read_json(house / wheels.MANIFEST) or {}
        built = {b["wheel"]: b for b in manifest.get("built") or []}
        for rel in sorted(manifest.get("files") or {}):
            sub = rel.split("/", 1)[0]
            plats = set(record["platforms"]) if sub == wheeltags.PURE else \
                {platforms_mod.by_arch(sub).platform}
            made = built.get(rel)
            origin = f"built from {made['sdist']} (sha256 {made['sdist_sha256']})" if made \
                else f"downloaded from {index_shown}"
            arts.append(Artifact(layout.wheel(Path(rel).name), "wheel", origin,
                                 source=house / rel, platforms=plats))
        text = wheels.requirements_text(release, service, svc["sources"], data.images_dir)
        cons = Path(svc["constraints"])
        given = {"requirements.in": text.encode(),
                 **{name: files.read_bytes(cons / name, limit=files.RECORD_LIMIT)
                    for name in layout.REQUIREMENTS_FILES[1:]}}
        for name, body in given.items():
            arts.append(Artifact(layout.requirements(release.name, service, name),
                                 "requirements", "airlock wheels", data=body))
        python[service] = {
            "version": svc["version"],
            "requirements": {name: layout.requirements(release.name, service, name)
                             for name in layout.REQUIREMENTS_FILES},
            "pins": {arch: p.get("requirements", []) for arch, p in
                     (manifest.get("platforms") or {}).items()},
            "build": {arch: p.get("build", []) for arch, p in
                      (manifest.get("platforms") or {}).items()},
            # Which package provides each library a wheel needs beyond
            # venv-builder: the site, which builds no sdist, reads it back.
            "libraries": wheel_libraries(manifest)}
    tools = Path(record["tool_wheels"])
    tool_manifest = files.read_json(tools / wheels.MANIFEST) or {}
    for name in sorted(tool_manifest.get("files") or {}):
        arts.append(Artifact(layout.wheel(name), "wheel", f"downloaded from {index_shown}",
                             source=tools / name,
                             platforms=_wheel_platforms(name)))
    entry["python"] = python
    entry["python_version"] = release.python
    entry["uv"] = tool_manifest.get("uv")
    return arts


def wheel_libraries(manifest: dict) -> dict[str, dict[str, str]]:
    """``{wheel file name: {soname: Debian package}}`` from a wheelhouse manifest."""
    result: dict[str, dict[str, str]] = {}
    for entry in (manifest.get("platforms") or {}).values():
        for soname, lib in (entry.get("libraries") or {}).items():
            for wheel in lib.get("wheels") or []:
                result.setdefault(Path(wheel).name, {})[soname] = lib["package"]
    return result


def _wheel_platforms(filename: str) -> set[str]:
    """The platforms a wheel's file name is for (none named: every platform)."""
    found = {p.platform for p in platforms_mod.PLATFORMS.values() if p.machine in filename}
    return found


# --- debs ---------------------------------------------------------------------


def _debs(release: Release, record: dict, cache: Path, entry: dict) -> list[Artifact]:
    """The .debs of every apt repository of the release, one pool per distro and arch."""
    arts: list[Artifact] = []
    lists: dict[str, dict[str, list[str]]] = {}
    repos = {"venv-builder": Path(record["builder_debs"]),
             **{service: Path(svc["debs"])
                for service, svc in (record.get("services") or {}).items()}}
    apt: dict[str, str] = {}
    for image, folder in sorted(repos.items()):
        for arch_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
            arch = arch_dir.name
            manifest = files.read_json(arch_dir / debs.MANIFEST) or {}
            inputs = manifest.get("inputs") or {}
            origin = f"{inputs.get('mirror', 'the apt mirror')} {release.distro.codename}"
            repo = layout.apt_repo(release.distro.name, release.distro.codename, arch)
            apt[arch] = repo
            platform = platforms_mod.by_arch(arch).platform
            for deb in manifest.get("closure") or []:
                arts.append(Artifact(f"{repo}/{deb['file']}", "deb", origin,
                                     source=arch_dir / deb["file"], platforms={platform}))
            lists.setdefault(image, {})[arch] = list(inputs.get("packages") or [])
    entry["apt"] = apt
    entry["packages"] = lists
    return arts


def packages_index(stanzas_by_file: dict[str, str]) -> bytes:
    """One flat repository's Packages from the stanzas of its per-image repositories."""
    return "\n".join(stanzas_by_file[name] for name in sorted(stanzas_by_file)).encode()


def stanzas(packages_file: Path) -> dict[str, str]:
    """``{file name: stanza}`` of an airlock apt repository's Packages (see :mod:`debs`)."""
    text = files.read_text(packages_file, limit=files.RECORD_LIMIT)
    result = {}
    for stanza in text.split("\n\n"):
        match = re.search(r"^Filename: \./(\S+)$", stanza, re.MULTILINE)
        if match:
            result[match[1]] = stanza.strip("\n") + "\n"
    return result


def apt_indexes(release_records: list[tuple[Release, dict]]) -> list[Artifact]:
    """The Packages file of each distro/arch pool, merged from every image's repository."""
    merged: dict[str, dict[str, str]] = {}
    owners: dict[str, set[str]] = {}
    for release, record in release_records:
        repos = [Path(record["builder_debs"]),
                 *(Path(svc["debs"]) for svc in (record.get("services") or {}).values())]
        for folder in repos:
            for arch_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
                repo = layout.apt_repo(release.distro.name, release.distro.codename,
                                       arch_dir.name)
                merged.setdefault(repo, {}).update(stanzas(arch_dir / debs.PACKAGES))
                owners.setdefault(repo, set()).add(release.name)
    return [Artifact(f"{repo}/Packages", "apt-index", "airlock (from each image's repository)",
                     data=packages_index(merged[repo]), releases=owners[repo],
                     platforms={platforms_mod.by_arch(repo.rsplit("/", 1)[1]).platform})
            for repo in sorted(merged)]


# --- images -------------------------------------------------------------------


def _images(release: Release, record: dict, cache: Path, entry: dict,
            progress: Progress) -> list[Artifact]:
    """The base image of the release as one OCI archive (every platform), by digest."""
    ref = record["base_image"]
    host_repo, digest = ref.rsplit("@", 1)
    name = host_repo.rsplit("/", 1)[-1]
    path = layout.image(name, digest)
    kept = cache / "bundle" / path
    if not (kept.is_file() and not kept.is_symlink()
            and (kept.with_suffix(".digest").is_file()
                 and kept.with_suffix(".digest").read_text().strip() == digest)):
        progress(f"{release.name}: base image {digest[:19]} as an OCI archive")
        saved = registry.save_archive(ref, kept)
        if saved != digest:
            kept.unlink(missing_ok=True)
            raise ToolError(ref, f"the archive holds {saved}, not {digest}",
                            "use a registry that keeps image indexes as pushed")
        files.write_atomic(kept.with_suffix(".digest"), digest + "\n")
    built = {row["image"]: row["ref"] for row in record.get("images") or []}
    entry["base_image"] = {"ref": strip_userinfo(host_repo), "digest": digest, "path": path,
                           "tag": origin_tag(release.base_image_ref())}
    # Where the closures were computed and sdists built: the check simulates
    # apt installs in python-base; a site rebuilds both from the base image.
    entry["python_base"] = built.get("python-base")
    entry["venv_builder"] = built.get("venv-builder")
    return [Artifact(path, "image", strip_userinfo(host_repo), source=kept,
                     platforms=set(record["platforms"]))]


def origin_tag(ref: str) -> str | None:
    """The tag of the release's base image reference ("bookworm"); None for a digest-only one.

    A site tags the imported image after it, so that a person finds it by
    the name the release gives it.
    """
    name = ref.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else None


def _sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def dumps(data: object) -> bytes:
    """JSON as the bundle writes it: sorted, indented, one trailing newline."""
    return (json.dumps(data, indent=1, sort_keys=True) + "\n").encode()


# --- airlock itself -----------------------------------------------------------


def airlock_artifacts(platforms: list[str], cache: Path, index_url: str | None,
                      progress: Progress = _noop) -> tuple[list[Artifact], dict]:
    """airlock's own wheel and its dependencies' for this Python, on each platform; its repository.

    The site installs the tool from the bundle with ``pip install --no-index
    --find-links python/airlock airlock``, and checks out its data from the
    git bundle of airlock's repository (:func:`airlock_repository`). The
    project is the checkout this airlock runs from (``setup.cfg`` two
    folders above the package).
    """
    import sys

    import airlock
    from airlock.ext import index, uv
    from airlock.inputs import wheelcache

    project = Path(airlock.__file__).resolve().parents[2]
    if not (project / "setup.cfg").is_file():
        raise AirlockError(str(project), "airlock does not run from a checkout (no setup.cfg)",
                           "run bundle create from an airlock checkout (pip install -e .)")
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    where = index.locations(index_url)
    store = wheelcache.Cache(cache / "pypi")
    arts: list[Artifact] = []
    shown = shown_index(index_url)
    progress(f"airlock: its wheel and its dependencies for Python {python}")
    with tempfile.TemporaryDirectory(prefix="airlock-self-") as tmp:
        own = uv.build_wheel(project, Path(tmp), where=where)
        kept = cache / "bundle" / "airlock" / build_tagged(own, project)
        kept.parent.mkdir(parents=True, exist_ok=True)
        os.replace(own, kept)
    arts.append(Artifact(layout.airlock_wheel(kept.name), "airlock", "built from this checkout",
                         source=kept, platforms=set(platforms)))
    for platform in platforms:
        tgt = platforms_mod.get(platform)
        pins = uv.resolve(project / "setup.cfg", [], python_version=python,
                          python_platform=tgt.python_platform, where=where,
                          cache_dir=store.root / "uv", label="airlock's own requirements")
        chosen = wheelcache.fetch(store, pins, tgt, python, index_url, where)
        for pin, filename in sorted(chosen.items()):
            if not filename.endswith(".whl"):
                raise ToolError(pin, f"the index has no wheel for {platform}",
                                "put a wheel of it on the package index")
            arts.append(Artifact(layout.airlock_wheel(filename), "airlock",
                                 f"downloaded from {shown}", source=store.files /
                                 filename, platforms={platform}))
    bundle_file, repository = airlock_repository(project, cache, progress)
    origin = "airlock's checkout" + (", with uncommitted changes (a snapshot commit)"
                                     if repository["uncommitted"] else "")
    arts.append(Artifact(repository["bundle"], "git", origin, source=bundle_file))
    return arts, {"version": airlock_version(project), "python": python, **repository}


# Who makes a snapshot commit, and under which refs airlock's commits cross.
SNAPSHOT_IDENT = "airlock bundle create <snapshot@airlock.invalid>"
SNAPSHOTS = "refs/airlock/snapshots/"
COMMITS = "refs/airlock/commits/"


def airlock_repository(project: Path, cache: Path, progress: Progress = _noop
                       ) -> tuple[Path, dict]:
    """A git bundle of airlock's own repository as ``project`` has it; its manifest entry.

    The site builds from an airlock checkout (releases/, images/ and
    patches/ are data the build reads): the bundle carries it, so that the
    site's git mirror has it (``<git base>/airlock``).

    A clean tree crosses as its HEAD commit with its history, under its
    branch (when on one) and the tags on HEAD (else under
    ``refs/airlock/commits/<sha>``). A tree with uncommitted changes to
    tracked files crosses as a snapshot commit of the working tree on top
    of HEAD, under ``refs/airlock/snapshots/<sha>`` only: never a branch,
    so snapshots imported one after another never fight over one. The
    snapshot is made without touching the checkout (no ref, index or
    object of it is written: :func:`airlock.ext.git.working_tree`); its
    identity and dates are fixed (HEAD's commit time), so the same content
    on the same HEAD is the same commit, and a rerun of create the same
    bundle id. Kept in ``<cache>/bundle/git`` by commit and refs.

    Returns the bundle file and ``{"commit", "bundle", "heads", "uncommitted"}``.
    """
    work = git.checkout(project)
    if work is None:
        raise AirlockError(str(project), "is not the top of a git checkout with a commit; the "
                           "bundle carries airlock's repository", "run bundle create from a "
                           "git clone of airlock (pip install -e .)")
    folder = cache / "bundle" / "git"
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".airlock-self-", dir=folder) as tmp:
        scratch = Path(tmp) / "repo.git"
        git.init_bare(scratch)
        tree = git.working_tree(work, scratch)
        uncommitted = tree != git.tree_of(scratch, work.head)
        if uncommitted:
            commit = git.commit_tree(
                scratch, tree, [work.head], ident=SNAPSHOT_IDENT,
                when=git.commit_time(scratch, work.head),
                message=f"Snapshot of an airlock checkout with uncommitted changes\n\n"
                        f"The working tree's tracked files on top of {work.head}, made by\n"
                        "airlock bundle create; untracked files are not part of it.\n")
            refs = {SNAPSHOTS + commit: commit}
        else:
            commit = work.head
            refs = {**({f"refs/heads/{work.branch}": commit} if work.branch else {}),
                    **work.tags} or {COMMITS + commit: commit}
        key = files.json_digest({"repo": "airlock", "sha": commit, "refs": refs}
                                ).split(":")[1][:16]
        out = folder / f"airlock-{commit[:12]}-{key}.bundle"
        if not (out.is_file() and not out.is_symlink()):
            progress(f"airlock: git bundle of its repository at {commit[:12]}"
                     + (" (a snapshot of uncommitted changes)" if uncommitted else ""))
            for ref, sha in sorted(refs.items()):
                git.set_ref(scratch, ref, sha)
            part = Path(tmp) / "out.bundle"
            git.bundle_create(scratch, part, sorted(refs))
            os.replace(part, out)
    return out, {"commit": commit, "bundle": layout.airlock_git_bundle(commit),
                 "heads": git.bundle_heads(out), "uncommitted": uncommitted}


def build_tagged(wheel: Path, project: Path) -> str:
    """airlock's wheel name with a build tag: ``airlock-0.1.0-<time>.<sha8>-py3-none-any.whl``.

    Every checkout builds version 0.1.0, and a site's index keeps one file
    per name, never overwritten: the build tag tells two builds apart. It
    starts with the commit time (or, for a tree with changes, the newest
    changed file's), so pip takes the newest of several; the content's
    sha256 ends it.
    """
    import hashlib

    name, version, rest = wheel.name.split("-", 2)
    proc = git.run(["-C", str(project), "log", "-1", "--format=%ct"], check=False)
    when = proc.stdout.strip() if proc.returncode == 0 else ""
    # A tree with changes not committed: the newest of the changed files,
    # which moves only when one is edited (a rerun makes the same name).
    changed = git.run(["-C", str(project), "diff", "--name-only", "HEAD"], check=False)
    times = [int((project / name).stat().st_mtime) for name in changed.stdout.split()
             if changed.returncode == 0 and (project / name).is_file()]
    when = str(max([int(when), *times])) if when.isdigit() else str(max(times, default=0))
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()[:8]
    return f"{name}-{version}-{when}.{digest}-{rest}"


def airlock_version(project: Path) -> str:
    """airlock's version (setup.cfg) and, in a git checkout, its commit."""
    from importlib import metadata

    try:
        version = metadata.version("airlock")
    except metadata.PackageNotFoundError:
        version = "unknown"
    proc = git.run(["-C", str(project), "describe", "--always", "--dirty", "--abbrev=12",
                    "--match=NO-TAG"], check=False)
    commit = proc.stdout.strip() if proc.returncode == 0 else ""
    return f"{version}+g{commit.replace('-dirty', '.dirty')}" if commit else version
