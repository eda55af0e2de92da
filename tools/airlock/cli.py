"""``airlock <verb>``: parse arguments, call one module, map errors to exit codes.

No logic lives here. Exit codes: 0 success; 1 a user error (bad input or a
usage mistake, one line per error on stderr); 2 an external tool, service
or the system failed; 3 an internal error (a bug in airlock, one line, the
traceback only with AIRLOCK_DEBUG=1); 130 interrupted (SIGINT), 143
terminated (SIGTERM, SIGHUP). Whatever ends a run, the ``finally`` blocks of
the modules run, so no staging folder or temporary file is left behind.
Every line printed is redacted: no URL credential reaches the terminal.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import traceback
from pathlib import Path

from airlock import progress, settings
from airlock.data import platforms
from airlock.errors import AirlockError, ErrorList
from airlock.ext import exec as ext_exec
from airlock.urls import redact, strip_userinfo


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line and exit 1 (2 means a tool failed)."""

    def error(self, message: str):  # type: ignore[override]
        raise AirlockError(self.prog, message, f"see {self.prog} --help")


class Terminated(BaseException):
    """SIGTERM or SIGHUP: unwinds like Ctrl-C, so every cleanup runs."""


def _terminate(signum, frame) -> None:
    ext_exec.stop_all()  # the programs airlock waits for end with it
    raise Terminated(signum)


def _interrupt(signum, frame) -> None:
    ext_exec.stop_all()  # Ctrl-C reaches them too, ``kill -INT`` does not
    raise KeyboardInterrupt


def _say(line: str) -> None:
    """A progress line: redacted, flushed (a log under Zuul shows it at once).

    Through :mod:`airlock.progress`, so that it never lands inside a live line.
    """
    progress.say(line, sys.stdout)


def _add_layout_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", help="airlock data root (default: $AIRLOCK_ROOT, "
                        "or the nearest folder holding releases/)")
    parser.add_argument("--releases-dir", help="releases folder (default: ROOT/releases)")
    parser.add_argument("--patches-dir", help="patches folder (default: ROOT/patches)")
    parser.add_argument("--images-dir", help="images folder (default: ROOT/images)")


def _layout(args: argparse.Namespace):
    from airlock.data.layout import resolve_layout

    return resolve_layout(args.root, args.releases_dir, args.patches_dir, args.images_dir)


def _where(option: str | None, flag: str, env: str) -> str:
    """How a message names a setting: the option when given, else its variable."""
    return flag if option is not None else f"${env}"


def _git_base(args: argparse.Namespace) -> str | None:
    """``--git-base`` / $AIRLOCK_GIT_BASE, checked before any git runs.

    A URL is held to what ``repo:`` entries are (no option, no remote
    helper, no shell text, a scheme git knows), but may carry credentials;
    a local folder must exist, or every component fails with the same line.
    """
    from airlock.data.release import repo_problem, shown

    base = settings.git_base(args.git_base)
    if base is None:
        return None
    where = _where(args.git_base, "--git-base", settings.GIT_BASE_ENV)
    bare = strip_userinfo(base)
    problem = repo_problem(f"{bare.rstrip('/')}/openstack/x")  # as its repositories are named
    if problem is not None:
        raise AirlockError(where, f"{shown(bare)} {problem[0]}", problem[1])
    local = "://" not in bare and not re.match(r"^[^/]+:", bare)
    if local and not Path(bare).is_dir():
        what = "is not a folder" if os.path.lexists(bare) else "no such folder"
        raise AirlockError(where, f"{shown(bare)}: {what}",
                           "pass the folder that holds openstack/<project> repositories, "
                           "or the git mirror's URL")
    return base


def _index_url(args: argparse.Namespace) -> str | None:
    """``--index-url`` / $AIRLOCK_INDEX_URL; a scheme-less one holding '@' is never quoted.

    Without ``://`` it is taken for a local folder and named in messages:
    ``user:token@nexus/simple`` would print the token.
    """
    url = settings.index_url(args.index_url)
    if url is not None and "://" not in url and "@" in url:
        raise AirlockError(_where(args.index_url, "--index-url", settings.INDEX_URL_ENV),
                           "holds '@' but no scheme (credentials without https://?)",
                           "write the URL with its scheme (https://...), or a local folder")
    return url


def _folder(value: str | Path | None, where: str) -> Path | None:
    """A folder (``--dest``, ``--work-dir``, ``--cache``), checked before any work.

    It, or the nearest existing path above it, must be a folder: a file on
    the way is found now, not after a download or a build. ``where`` is the
    option or the variable that gave it.
    """
    if value is None:
        return None
    if "://" in str(value):  # Path would make folders named after its credentials
        fix = f"set {where[1:]} to a local folder" if where.startswith("$") else \
            f"choose a local folder for {where}"
        raise AirlockError(where, f"{redact(str(value))} is a URL, not a folder", fix)
    path = Path(value)
    for candidate in (path, *path.parents):
        if candidate.is_dir():
            return path
        if os.path.lexists(candidate):
            kind = "a dangling symbolic link" if candidate.is_symlink() else "not a folder"
            fix = f"set {where[1:]} to a folder" if where.startswith("$") else \
                f"choose another {where}"
            raise AirlockError(str(candidate), f"is {kind} (given with {where})", fix)
    return path


def _check_given(args: argparse.Namespace) -> None:
    """An option given an empty value is a mistake (an unset shell variable), not "unset"."""
    for key, value in vars(args).items():
        values = value if isinstance(value, list) else [value]
        if any(v == "" for v in values):
            name = "REL" if key == "releases" else f"--{key.replace('_', '-')}"
            raise AirlockError(name, "is empty", "give it a value, or leave it out")


def _write(text: str, output: str | None) -> None:
    """Write to FILE atomically (never half-written), or to stdout."""
    if output is None:
        sys.stdout.write(redact(text))
        return
    from airlock.files import write_atomic

    write_atomic(Path(output), text)


def cmd_release_validate(args: argparse.Namespace) -> int:
    from airlock.data import validate

    layout = _layout(args)
    if args.index_url is not None and not args.sdists:
        raise AirlockError("--index-url", "is used only with --sdists (validate alone never "
                           "asks the index)", "add --sdists, or leave --index-url out")
    index_url = _index_url(args) if args.sdists else None
    errors = validate.validate(layout, args.releases or None)
    for error in errors:
        print(str(error), file=sys.stderr)
    if errors:
        return 1
    names = args.releases or validate.release_names(layout)
    _say(f"{len(names)} release(s) valid: {', '.join(names)}")
    return _check_sdists(layout, names, index_url, full=not args.releases) if args.sdists else 0


def _check_sdists(layout, names: list[str], index_url: str | None, full: bool) -> int:
    """``validate --sdists``: every sdist-only pin of the releases has its build declared."""
    from airlock.data import sdists
    from airlock.data.release import load_release
    from airlock.ext import index
    from airlock.inputs import sdistcheck

    declared = sdists.load(layout.images_dir)
    releases = [load_release(layout, name) for name in names]
    where = index.locations(index_url)
    results = sdistcheck.check(releases, declared, where)
    errors = sdistcheck.problems(results, declared)
    for error in errors:
        print(str(error), file=sys.stderr)
    if errors:
        return 1
    _say(f"{sdistcheck.summary(results, declared)} (index: "
         f"{sdistcheck.shown_locations(where)})")
    stale = sdistcheck.unused(results, declared) if full else []
    if stale:
        _say(f"{declared.path}: not sdist-only in any release, the lines of "
             f"{', '.join(stale)} can go")
    return 0


def cmd_refs_resolve(args: argparse.Namespace) -> int:
    from airlock.data import refs
    from airlock.data.release import load_release

    git_base = _git_base(args)
    release = load_release(_layout(args), args.release)
    lock = refs.resolve_release(release, git_base, jobs=args.jobs,
                                only=args.component or None)
    _write(refs.dump_lock(lock), args.output)
    return 0


def cmd_sources_prepare(args: argparse.Namespace) -> int:
    from airlock.data import refs
    from airlock.data.release import load_release
    from airlock.inputs import sources

    git_base = _git_base(args)
    layout = _layout(args)
    release = load_release(layout, args.release)
    if args.lock:
        lock = refs.load_lock(Path(args.lock))
    else:
        lock = refs.resolve_release(release, git_base, only=[args.component])
    record = sources.prepare(release, args.component, lock, layout.patches_dir, Path(args.dest),
                             git_base=git_base)
    _say(f"{args.component}: {record['sha']} exported to {args.dest} "
          f"with {len(record['patches'])} patch(es)")
    return 0


def cmd_constraints(args: argparse.Namespace) -> int:
    from airlock.data import constraints
    from airlock.data.release import load_release

    release = load_release(_layout(args), args.release)
    _write(constraints.render(constraints.merged(release, component=args.component)),
           args.output)
    return 0


def cmd_packages(args: argparse.Namespace) -> int:
    from airlock.data import packages
    from airlock.data.release import load_release

    layout = _layout(args)
    release = load_release(layout, args.release or packages.default_release_name(layout))
    names = packages.resolve(release, layout.images_dir, args.service, args.profile,
                             source_dir=Path(args.source) if args.source else None)
    _write("".join(f"{n}\n" for n in names), args.output)
    return 0


def cmd_mirror_create(args: argparse.Namespace) -> int:
    from airlock.data.release import load_release
    from airlock.inputs import mirror

    index_url = _index_url(args)
    dest = _folder(args.dest, "--dest")
    release = load_release(_layout(args), args.release)
    for row in mirror.create(release, dest, index_url=index_url,
                             components=args.component or None):
        _say(f"{row['component']}: {row['version']} -> {row['repo']} ({row['sha']})")
    return 0


def cmd_base_create(args: argparse.Namespace) -> int:
    from airlock.data.release import load_release
    from airlock.inputs import baseimage

    work = _work_dir(args)
    _check_auth_file()
    layout = _layout(args)
    release = load_release(layout, args.release)
    spec = baseimage.spec_for_release(release)
    say = _say_err if args.json else _say
    result = baseimage.create(spec, layout.images_dir, work, force=args.force,
                              check_reproducible=args.check_reproducible, progress=say)
    say(f"{result.ref}@{result.digest} {'built' if result.built else 'present'} "
        f"(inputs {result.input_digest})")
    if args.json:
        _json_out({"ref": result.ref, "digest": result.digest,
                   "input_digest": result.input_digest, "changed": result.built,
                   "status": "built" if result.built else "present"})
    return 0


def _work_where(args: argparse.Namespace) -> str:
    """What gave the work folder: the option, else its variable (else the default: the option)."""
    given = getattr(args, "work_dir", None) is None and os.environ.get(settings.WORK_ENV)
    return f"${settings.WORK_ENV}" if given else "--work-dir"


def _work_dir(args: argparse.Namespace) -> Path:
    """``--work-dir`` / $AIRLOCK_WORK_DIR / ./work, checked (see :func:`_folder`)."""
    return _folder(settings.work_dir(args.work_dir), _work_where(args))


def _cache(args: argparse.Namespace, work: Path | None = None) -> Path:
    """``--cache`` / $AIRLOCK_CACHE_DIR / <work dir>/cache, checked (see :func:`_folder`)."""
    option = getattr(args, "cache", None)
    where = "--cache" if option is not None else f"${settings.CACHE_ENV}" \
        if os.environ.get(settings.CACHE_ENV) else _work_where(args) if work or \
        os.environ.get(settings.WORK_ENV) else "--cache"
    return _folder(settings.cache_dir(option, work=work), where)


def _check_auth_file() -> None:
    """$AIRLOCK_REGISTRY_AUTH_FILE, when set, is checked before any work (never quoted)."""
    from airlock.ext import registry

    registry.check_auth_file()


def _lock_file(args: argparse.Namespace) -> Path | None:
    """``--lock`` of a build, read and checked now: a bad lock must not cost a build."""
    from airlock.data import refs

    if args.lock is None:
        return None
    lock = refs.load_lock(Path(args.lock))
    if lock["release"] != args.release:
        raise AirlockError(args.lock, f"is the lock of release {lock['release']}, not "
                           f"{args.release}", f"write one with: airlock refs resolve --release "
                           f"{args.release} -o FILE")
    return Path(args.lock)


def _registry(args: argparse.Namespace) -> str:
    """The repository prefix, checked before any work starts.

    A malformed prefix found only at the first push would waste a build.
    """
    from airlock.ext import registry

    where = "--registry" if args.registry else f"${settings.REGISTRY_ENV}" \
        if os.environ.get(settings.REGISTRY_ENV) else "registry"
    return registry.check_prefix(settings.registry(args.registry), where)


def _json_out(doc: dict) -> None:
    """The one JSON document of ``--json`` on stdout (progress went to stderr)."""
    sys.stdout.write(redact(json.dumps(doc, indent=1, sort_keys=True)) + "\n")
    sys.stdout.flush()


def _say_err(line: str) -> None:
    """A progress line on stderr: with ``--json`` stdout holds only the document."""
    progress.say(line, sys.stderr)


def _one_release(args: argparse.Namespace) -> None:
    """``build`` without ``--all`` builds one release: ``--release`` once, as before."""
    if args.release is None or len(args.release) != 1:
        what = "the following arguments are required: --release" if args.release is None \
            else "--release is given more than once"
        raise AirlockError("airlock build", what,
                           "pass one --release, or --all to build several")
    args.release = args.release[0]


def cmd_build(args: argparse.Namespace) -> int:
    if args.bases_only and (args.all or args.service):
        raise AirlockError("--bases-only", "builds python-base and venv-builder only, for one "
                           "release", "leave out --all and --service")
    if args.all and (args.per_platform or args.assemble):
        raise AirlockError("--per-platform" if args.per_platform else "--assemble",
                           "builds one release's images", "pass one --release, without --all")
    if args.all and args.site:
        raise AirlockError("--site", "builds one release at a time",
                           "pass one --release, without --all")
    if args.all:
        return _build_all(args)
    _one_release(args)
    _zuul_context(args)  # a bad file must not cost a build
    bundle = _bundle_id(args)
    if args.site:
        return _build_at_site(args, bundle)
    # First, all of it: a typo must not cost a build.
    registry, work, cache, git_base, index_url = _where_checked(args)
    lock = _lock_file(args)
    from airlock.data.release import load_release

    layout = _layout(args)
    return _run_build(args, _build_options(
        args, load_release(layout, args.release), layout, work, cache, lock,
        registry=registry, git_base=git_base, index_url=index_url))


def _build_options(args: argparse.Namespace, release, layout, work: Path, cache: Path,
                   lock: Path | None, **stores):
    """One build's options: what the command line selects, plus where its inputs come from."""
    from airlock.image import build

    return build.BuildOptions(
        release=release, layout=layout, work_dir=work, cache_dir=cache,
        services=tuple(args.service or ()), platforms=tuple(args.platform or ()), lock=lock,
        no_cache=args.no_cache, emulate_install=args.emulate_install,
        zuul=_zuul_context(args), bases_only=args.bases_only,
        per_platform=args.per_platform, assemble=args.assemble, **stores)


def _zuul_context(args: argparse.Namespace) -> dict[str, str] | None:
    """``--zuul-context FILE``, read and checked once (before any work)."""
    from airlock.image import annotations

    if args.zuul_context is None:
        return None
    if not hasattr(args, "_zuul"):
        args._zuul = annotations.load_zuul_context(Path(args.zuul_context))
    return args._zuul


def _bundle_id(args: argparse.Namespace) -> str | None:
    """``--bundle ID`` / $AIRLOCK_BUNDLE_ID (``build --site`` only), its form checked."""
    from airlock.image import annotations

    if args.bundle is not None:
        if not args.site:
            raise AirlockError("--bundle", "names the bundle a site build's inputs came from",
                               "add --site, or leave --bundle out")
        return annotations.check_bundle_id(args.bundle, "--bundle")
    given = os.environ.get("AIRLOCK_BUNDLE_ID", "").strip()
    if given and args.site:
        return annotations.check_bundle_id(given, "$AIRLOCK_BUNDLE_ID")
    return None


def _where_checked(args: argparse.Namespace) -> tuple[str, Path, Path, str | None, str | None]:
    """Registry, work folder, cache, git base and index of a run, each checked before any work.

    A typo in any of them must not cost a build or a gathering of hours.
    """
    registry = _registry(args)
    work = _work_dir(args)
    cache = _cache(args, work)
    git_base, index_url = _git_base(args), _index_url(args)
    _check_auth_file()
    return registry, work, cache, git_base, index_url


def _site_only(args: argparse.Namespace) -> None:
    """With --site, the stores come from site.yaml: an option naming one is a mistake."""
    for option in ("registry", "git_base", "index_url"):
        if getattr(args, option, None) is not None:
            raise AirlockError(f"--{option.replace('_', '-')}", "is named by site.yaml's "
                               "stores when --site is given", "leave it out, or fix site.yaml")


def _build_at_site(args: argparse.Namespace, bundle: str | None = None) -> int:
    """``build --site``: every input from the site's stores, nothing from this machine.

    With ``bundle``, the raw store must hold that bundle's import record.
    """
    _site_only(args)
    work = _work_dir(args)
    cache = _cache(args, work)
    lock = _lock_file(args)
    from airlock.data.release import load_release
    from airlock.site import access, config

    site = config.load(Path(args.site))
    layout = _layout(args)
    release = load_release(layout, args.release)
    given = access.settings(site, release)
    with access.registry_auth(site):
        access.check_reachable(site)
        if bundle:
            access.check_imported(site, bundle)
        return _run_build(args, _build_options(
            args, release, layout, work, cache, lock, registry=given.registry,
            git_base=given.git_base, index_url=given.index_url, apt_repos=given.apt_repos,
            base_image=given.base_image, known_libraries=given.known_libraries,
            bundle=bundle))


def _run_build(args: argparse.Namespace, opts) -> int:
    from airlock.image import build, summary

    record = build.run(opts, progress=_say_err if args.json else _say)
    if args.json:
        sys.stderr.write(redact(summary.table(record)))
        _json_out(summary.build_result(
            record, str(build.release_dir(opts) / "build-record.json")))
    else:
        sys.stdout.write(redact(summary.table(record)))
    return 0


def _build_all(args: argparse.Namespace) -> int:
    """``build --all``: the matrix or a slice of it; exit 2 when any image failed."""
    # First, all of it, as for one release: a typo must not cost hours.
    registry, work, cache, git_base, index_url = _where_checked(args)
    if args.bundle is not None:
        raise AirlockError("--bundle", "names the bundle of a site build",
                           "pass one --release with --site, without --all")
    zuul = _zuul_context(args)
    from airlock.image import matrix

    selection = {"releases": list(args.release or ()), "services": list(args.service or ()),
                 "platforms": list(args.platform or ())}
    layout = _layout(args)
    plans = matrix.plan(layout, **selection)
    names = [entry.release.name for entry in plans]
    lock = None
    if args.lock is not None:
        if len(names) != 1:
            raise AirlockError("--lock", f"names the refs of one release, and --all selects "
                               f"{len(names)} ({', '.join(names)})",
                               "pass one --release with --lock, or leave --lock out")
        lock = _lock_file(argparse.Namespace(lock=args.lock, release=names[0]))
    if args.emulate_install and len(args.platform or ()) != 1:
        raise AirlockError("--emulate-install", "assembles the venv on one target platform",
                           "pass exactly one --platform")
    say = _say_err if args.json else _say
    opts = matrix.Options(layout=layout, registry=registry, work_dir=work, cache_dir=cache,
                          git_base=git_base, index_url=index_url, lock=lock,
                          no_cache=args.no_cache, emulate_install=args.emulate_install,
                          zuul=zuul)
    shared: list[matrix.Shared] = []
    rows = matrix.run(plans, opts, progress=say, shared=shared)
    report = matrix.report(rows, layout, selection, shared=shared)
    md, js = matrix.write_report(report, work)
    say(f"matrix: {md} and {js}")
    if args.json:
        sys.stderr.write(redact(matrix.table(report)))
        _json_out(matrix.document(report))
    else:
        sys.stdout.write(redact(matrix.table(report)))
    return 2 if report.failed else 0


def cmd_publish(args: argparse.Namespace) -> int:
    from airlock.image import publish, summary

    work = _work_dir(args)
    say = _say_err if args.json else _say
    if args.site:
        from airlock.site import access, config

        site = config.load(Path(args.site))
        with access.registry_auth(site):
            rows = publish.run(work, args.release, progress=say, move_tags=not args.no_tags)
    else:
        _check_auth_file()
        rows = publish.run(work, args.release, progress=say, move_tags=not args.no_tags)
    published = sum(1 for row in rows if row["status"] == "published")
    say(f"{len(rows)} image(s): {published} published, {len(rows) - published} unchanged")
    if args.json:
        _json_out(summary.publish_result(args.release, rows))
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    """``airlock audit IMAGE``: exit 0 audited, 1 unaudited or inconsistent, 2 no registry."""
    from airlock.ext import registry, registryauth
    from airlock.image import audit

    if args.registry_auth is not None:
        os.environ[registryauth.AUTH_FILE_ENV] = args.registry_auth
    _check_auth_file()
    registry.split_ref(args.image)
    doc = audit.audit(args.image)
    if args.json:
        _json_out(doc)
    else:
        sys.stdout.write(redact(audit.chain(doc)))
    if not doc["audited"]:
        if args.json:
            print(redact(f"unaudited: {doc['ref']} has no build record"), file=sys.stderr)
        return 1
    return 1 if doc["problems"] else 0


def cmd_check(args: argparse.Namespace) -> int:
    from airlock.data.release import load_release
    from airlock.image import check, publish

    work = _work_dir(args)
    layout = _layout(args)
    release = load_release(layout, args.release)
    path = work / release.name / "build-record.json"
    # publish's reading: a broken record is one line naming the field (never
    # "no build record" for a file that is there, nor a KeyError), and a
    # reference's credentials never reach a message.
    record = publish.load_record(path, release.name)
    rows = check.check_release(record, release, layout.images_dir, where=str(path),
                               services=tuple(args.service or ()),
                               platforms=tuple(args.platform or ()),
                               progress=_say_err if args.json else _say,
                               start_emulated=args.start_emulated)
    if not rows:
        raise AirlockError(str(path), "no service image of that selection in the record",
                           "check --service and --platform")
    failed = [r for r in rows if r["status"] != "ok"]
    if args.json:
        _json_out({"release": release.name, "images": rows, "failed": len(failed)})
    else:
        _say(f"{len(rows)} image platform(s) checked: {len(rows) - len(failed)} ok, "
             f"{len(failed)} failed")
    return 2 if failed else 0


def cmd_bundle_create(args: argparse.Namespace) -> int:
    from airlock.bundle import create, inspect, tarstream

    # First, all of it: a typo must not cost a gathering of hours.
    registry, work, cache, git_base, index_url = _where_checked(args)
    out = _folder(args.out, "--out")
    part_size = tarstream.parse_size(args.max_part_size) if args.max_part_size else None
    if part_size is not None and not args.tar:
        raise AirlockError("--max-part-size", "splits the tar file", "add --tar")
    if args.tar:  # found now, not once the gathering is done
        tarstream.check_free(Path(f"{out}.tar"), replace=True)
    layout = _layout(args)
    opts = create.CreateOptions(
        releases=tuple(dict.fromkeys(args.release)), layout=layout, out=out, work_dir=work,
        cache_dir=cache, registry=registry, services=tuple(args.service or ()),
        platforms=tuple(args.platform or ()), git_base=git_base, index_url=index_url,
        key=Path(args.key) if args.key else None, version=args.version,
        since=Path(args.since) if args.since else None)
    created = create.create(opts, progress=_say)
    if args.tar:
        parts = tarstream.write(out, Path(f"{out}.tar"), part_size, progress=_tar_progress,
                                replace=True)
        _say(f"tar: {', '.join(str(p) for p in parts)}")
    sys.stdout.write(redact(inspect.summary(created.manifest, created.reused, created.seconds)))
    create.raise_problems(created)
    return 0


def _tar_progress(done: int, total: int, done_bytes: int, total_bytes: int) -> None:
    _say(f"tar: {done} of {total} files, {done_bytes // 2**20} of {total_bytes // 2**20} MiB")


def _verify_progress(done: int, total: int, done_bytes: int, total_bytes: int) -> None:
    _say_err(f"verify: {done} of {total} files, {done_bytes // 2**20} of "
             f"{total_bytes // 2**20} MiB")


def cmd_bundle_check(args: argparse.Namespace) -> int:
    from airlock.bundle import check, manifest

    folder = Path(args.bundle)
    doc = manifest.read(folder)
    earlier = [Path(p) for p in args.with_ or ()]
    docs = {manifest.read(p)["id"]: p for p in earlier}
    # A bundle may be named by its manifest.json: its files are beside it.
    folder = folder if folder.is_dir() else folder.parent
    docs = {key: p if p.is_dir() else p.parent for key, p in docs.items()}
    missing = [i for i in doc["requires"] if i not in docs]
    if missing:
        raise AirlockError(str(folder), f"is a delta on {', '.join(missing)}",
                           "pass the folder of each with --with DIR")
    by_path = {a["path"]: a["bundle"] for a in doc["artifacts"]}

    def where(path: str) -> Path | None:
        home = folder if by_path.get(path) == doc["id"] else docs.get(by_path.get(path, ""))
        found = home / path if home is not None else None
        if found is None or not found.is_file():
            return None
        # A bundle holds regular files only: a link (or a linked folder) on the
        # way is never followed out of a tree airlock did not make.
        if os.path.realpath(found) != os.path.join(os.path.realpath(home), path):
            raise AirlockError(str(found), "is (or lies under) a symbolic link; a bundle "
                               "holds regular files only", "remove the link, or get the "
                               "bundle again")
        return found

    problems = check.check(doc, where, str(folder), progress=_say)
    if problems:
        raise ErrorList(problems)
    _say(f"{folder}: complete: every release, service and platform resolves from it alone")
    return 0


def cmd_bundle_verify(args: argparse.Namespace) -> int:
    from airlock.bundle import verify

    target = Path(args.bundle)
    signers = Path(args.allowed_signers)
    if target.is_dir() and not target.is_symlink():
        if args.extract:
            raise AirlockError("--extract", "extracts a tar file; this is a folder",
                               "leave --extract out")
        result = verify.verify_dir(target, signers, progress=_verify_progress)
    else:
        result = verify.verify_tar(target, signers,
                                   extract=Path(args.extract) if args.extract else None,
                                   progress=_verify_progress)
    _say(f"{target}: bundle {result.id} version {result.version} verified: signed by "
         f"{result.principal}, {result.files} files, {result.bytes} bytes"
         + (f"; extracted to {args.extract}" if args.extract else ""))
    if result.requires:
        _say(f"{target}: a delta: the site must already hold {', '.join(result.requires)}")
    return 0


def cmd_bundle_import(args: argparse.Namespace) -> int:
    from airlock.errors import ToolError
    from airlock.site import config, importer

    site = config.load(Path(args.site))
    work = _work_dir(args)
    report = importer.run(Path(args.bundle), site, Path(args.allowed_signers), work_dir=work,
                          progress=_say_err)
    if args.json:
        _json_out(report.as_json())
    else:
        sys.stdout.write(redact(report.table()))
        if report.record is not None:
            _say(f"{args.bundle}: bundle {report.bundle_id} imported; record "
                 f"{site.raw.urls['url']}{importer.record_path(report.bundle_id)}")
    if report.failures:
        raise ErrorList([ToolError("", line) for line in report.failures])
    return 0


def cmd_bundle_inspect(args: argparse.Namespace) -> int:
    from airlock.bundle import inspect, manifest, verify

    target = Path(args.bundle)
    if target.is_dir() and not target.is_symlink():
        doc = manifest.read(target)
    else:
        doc = verify.read_manifest(target)
    if args.json:
        _json_out(doc)
    else:
        sys.stdout.write(redact(inspect.render(doc)))
    return 0


def cmd_index_assemble(args: argparse.Namespace) -> int:
    from airlock.image import assemble

    for option, value in (*(("--archive", a) for a in args.archive), ("--out", args.out)):
        if "://" in value:  # else Path folds it into folders named after the credentials
            raise AirlockError(option, f"{redact(value)} is a URL, not a file",
                               "pass a local path (download the archive first)")
    out = Path(args.out)
    _folder(out.parent, "--out")  # a file on the way is one line, not "File exists"
    digest = assemble.write([Path(a) for a in args.archive], out,
                            platforms=tuple(args.platform or ()))
    if args.json:
        _json_out({"archive": str(out), "digest": digest})
    else:
        print(f"{out}: {digest}")
    return 0


def cmd_zuul_jobs(args: argparse.Namespace) -> int:
    """Print zuul.d/releases.yaml, or (``--check``) say whether the committed one is current."""
    from airlock import files
    from airlock.zuul import jobs

    if args.file is not None and not args.check:
        raise AirlockError("--file", "is used only with --check (jobs alone prints to stdout)",
                           "add --check, or write with > FILE")
    layout = _layout(args)
    text = jobs.generate(layout, per_platform=args.per_platform)
    if not args.check:
        _write(text, None)
        return 0
    path = Path(args.file) if args.file else layout.releases_dir.parent / "zuul.d" / \
        "releases.yaml"
    if not path.exists():
        raise AirlockError(str(path), "no such file", f"run {jobs.COMMAND}")
    if files.read_text(path, limit=files.MiB, fix=f"run {jobs.COMMAND}") != text:
        raise AirlockError(str(path), "is not what airlock zuul jobs prints for releases/",
                           f"run {jobs.COMMAND}")
    return 0


def cmd_zuul_site(args: argparse.Namespace) -> int:
    """site.yaml and site-push.yaml from the Zuul variable airlock_site (JSON on stdin)."""
    from airlock.zuul import site

    dest = _folder(args.dest, "--dest")
    read, push = site.write(site.parse(sys.stdin.read(site.LIMIT)), dest)
    _say(f"{read} (reads, anonymous) and {push} (pushes, credentials from "
         f"{site.PUSH_CREDENTIALS} beside it) written")
    return 0


def _platforms(args: argparse.Namespace, release) -> list[str]:
    return list(dict.fromkeys(args.platform or release.platforms))


def cmd_wheels(args: argparse.Namespace) -> int:
    from airlock.data.release import load_release
    from airlock.inputs import wheels

    index_url = _index_url(args)
    dest = _folder(args.dest, "--dest")
    cache = _cache(args)
    layout = _layout(args)
    release = load_release(layout, args.release)
    platforms = _platforms(args, release)
    if args.tools_only:
        dest = wheels.tool_wheels(release, platforms, dest, index_url=index_url,
                                  cache=cache)
        _say(f"{dest}: uv for {', '.join(platforms)}")
        return 0
    if not args.service or not args.source:
        raise AirlockError("airlock wheels", "--service and --source are required",
                           "pass the service and its prepared tree (or --tools-only)")
    result = wheels.prepare(release, args.service, platforms, [Path(s) for s in args.source],
                            dest, index_url=index_url,
                            venv_builder=args.venv_builder, cache=cache, force=args.force,
                            images_dir=layout.images_dir, progress=_say)
    state = "made" if result.changed else "unchanged"
    timing = ", ".join(f"{k} {v} s" for k, v in result.seconds.items())
    _say(f"{result.dest}: {state} ({timing})")
    return 0


def cmd_debs(args: argparse.Namespace) -> int:
    from airlock.data.release import load_release
    from airlock.inputs import debs

    dest = _folder(args.dest, "--dest")
    cache = _cache(args)
    if args.base_image is None or "@sha256:" not in args.base_image:
        _check_auth_file()  # the registry is asked for the base image's digest
    layout = _layout(args)
    release = load_release(layout, args.release)
    for row in debs.prepare(release, layout.images_dir, args.service, _platforms(args, release),
                            dest, base_image=args.base_image, profile=args.profile,
                            source=Path(args.source) if args.source else None, cache=cache,
                            force=args.force, progress=_say):
        _say(f"{row.dest}: {'made' if row.changed else 'unchanged'} "
              f"({len(row.manifest.get('closure', []))} .deb(s), base "
              f"{row.manifest['inputs']['base_image']})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="airlock",
        description="Build OpenStack service images offline, reproducibly, for several "
        "releases and platforms.")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    rel = verbs.add_parser("release", help="release data")
    rel_verbs = rel.add_subparsers(dest="release_verb", required=True, metavar="VERB")
    val = rel_verbs.add_parser("validate", help="check releases/ (all, or the ones named)")
    val.add_argument("releases", nargs="*", metavar="REL")
    val.add_argument("--sdists", action="store_true", help="also ask the package index "
                     "which pins come only as sdists, and check that images/"
                     "sdists.txt declares what building each needs")
    val.add_argument("--index-url", help="with --sdists: the package index (default: "
                     "$AIRLOCK_INDEX_URL, else pip's configuration)")
    _add_layout_options(val)
    val.set_defaults(func=cmd_release_validate)

    ref = verbs.add_parser("refs", help="git refs of the components")
    ref_verbs = ref.add_subparsers(dest="refs_verb", required=True, metavar="VERB")
    res = ref_verbs.add_parser("resolve", help="resolve every ref to a SHA and write the lock")
    res.add_argument("--release", required=True)
    res.add_argument("--git-base", help="base URL or path of the git mirror "
                     "(default: $AIRLOCK_GIT_BASE)")
    res.add_argument("--output", "-o", help="lock file to write (default: stdout)")
    res.add_argument("--jobs", type=int, default=8, help="parallel git queries (default 8)")
    res.add_argument("--component", action="append",
                     help="resolve only this component (repeatable; default: all)")
    _add_layout_options(res)
    res.set_defaults(func=cmd_refs_resolve)

    src = verbs.add_parser("sources", help="component sources")
    src_verbs = src.add_subparsers(dest="sources_verb", required=True, metavar="VERB")
    prep = src_verbs.add_parser("prepare", help="export a component at its SHA and patch it")
    prep.add_argument("--release", required=True)
    prep.add_argument("--component", required=True)
    prep.add_argument("--dest", required=True, help="folder to create (must not exist)")
    prep.add_argument("--lock", help="refs lock file (default: resolve the ref now)")
    prep.add_argument("--git-base", help="default: $AIRLOCK_GIT_BASE")
    _add_layout_options(prep)
    prep.set_defaults(func=cmd_sources_prepare)

    con = verbs.add_parser("constraints", help="print the merged constraints of a build")
    con.add_argument("--release", required=True)
    con.add_argument("--component", help="drop only the pins this component builds from "
                     "source (default: every component of the release)")
    con.add_argument("--output", "-o")
    _add_layout_options(con)
    con.set_defaults(func=cmd_constraints)

    pkg = verbs.add_parser("packages", help="distro packages of a service (bindep)")
    pkg.add_argument("--release", help="release whose target distro is used "
                     "(default: $AIRLOCK_RELEASE, else the newest release)")
    pkg.add_argument("--service", required=True)
    pkg.add_argument("--profile", required=True, choices=["build", "runtime"])
    pkg.add_argument("--source", help="prepared source tree whose bindep.txt is merged in")
    pkg.add_argument("--output", "-o")
    _add_layout_options(pkg)
    pkg.set_defaults(func=cmd_packages)
    mir = verbs.add_parser("mirror", help="the local source mirror (a stand-in for Gerrit)")
    mir_verbs = mir.add_subparsers(dest="mirror_verb", required=True, metavar="VERB")
    mc = mir_verbs.add_parser("create", help="make bare git repositories from released sdists")
    mc.add_argument("--release", required=True)
    mc.add_argument("--dest", required=True, help="git base folder: DEST/openstack/<project>")
    mc.add_argument("--component", action="append", help="only this component (repeatable)")
    mc.add_argument("--index-url", help="package index (default: $AIRLOCK_INDEX_URL, "
                    "else pip's own configuration)")
    _add_layout_options(mc)
    mc.set_defaults(func=cmd_mirror_create)
    base = verbs.add_parser("base", help="the local default base image")
    base_verbs = base.add_subparsers(dest="base_verb", required=True, metavar="VERB")
    bc = base_verbs.add_parser("create", help="bootstrap Debian for each platform of the "
                               "release and push the base image, unless the registry has it")
    bc.add_argument("--release", required=True)
    bc.add_argument("--work-dir", help="cache of root filesystems and archives "
                    "(default: $AIRLOCK_WORK_DIR, else ./work)")
    bc.add_argument("--force", action="store_true",
                    help="bootstrap and build again even if the registry has it")
    bc.add_argument("--check-reproducible", action="store_true",
                    help="bootstrap each platform twice and compare (doubles the time)")
    bc.add_argument("--json", action="store_true", help="print one JSON document (ref, "
                    "digest, changed) on stdout; progress goes to stderr")
    _add_layout_options(bc)
    bc.set_defaults(func=cmd_base_create)

    bld = verbs.add_parser("build", help="build a release's images (offline) unless the "
                           "registry has them; --all: the whole matrix, or a slice")
    bld.add_argument("--release", action="append", help="the release to build; with --all "
                     "repeatable (default: every release)")
    bld.add_argument("--all", action="store_true", help="build every release x service x "
                     "platform selected by --release/--service/--platform, go on past a "
                     "failing image, end with one table (exit 2 when any failed)")
    bld.add_argument("--service", action="append", help="repeatable; default: all (with "
                     "--all: skipped for a release that lacks it)")
    bld.add_argument("--platform", action="append", help="repeatable; default: the "
                     "release's (with --all: skipped for a release that lacks it)")
    bld.add_argument("--registry", help="repository prefix (default: $AIRLOCK_REGISTRY, "
                     f"else {settings.DEFAULT_REGISTRY})")
    bld.add_argument("--work-dir", help="default: $AIRLOCK_WORK_DIR, else ./work")
    bld.add_argument("--git-base", help="default: $AIRLOCK_GIT_BASE")
    bld.add_argument("--index-url", help="default: $AIRLOCK_INDEX_URL, else pip's config")
    bld.add_argument("--lock", help="refs lock to build (default: resolve now)")
    bld.add_argument("--site", help="site.yaml: at an air-gapped site, every input comes "
                     "from its stores (git mirror, PyPI repository, raw apt repository, "
                     "registry) and nothing from this machine's configuration")
    bld.add_argument("--bases-only", action="store_true", help="build (or find by input "
                     "digest) and push python-base and venv-builder only: what every service "
                     "is built on, e.g. the first job of a Zuul buildset")
    bld.add_argument("--per-platform", action="store_true", help="with one --platform: "
                     "build that platform of each service image as a part of the whole (its "
                     "inputs, tags and annotations); publish pushes it under "
                     "<immutable tag>-<arch> for --assemble (a node per platform)")
    bld.add_argument("--assemble", action="store_true", help="make each service image from "
                     "its per-platform parts in the registry instead of building it: the "
                     "index one build of every platform writes, to the digest")
    bld.add_argument("--no-cache", action="store_true",
                     help="build every image again, ignoring the registry and the cache")
    bld.add_argument("--emulate-install", action="store_true",
                     help="assemble each venv on its target platform (under QEMU) "
                     "instead of natively; gives the same image, slower")
    bld.add_argument("--json", action="store_true", help="print one JSON document on "
                     "stdout (every image's name, platforms, digest, ref, status, tags; "
                     "\"changed\"; zuul_artifacts); progress and the table go to stderr")
    bld.add_argument("--zuul-context", metavar="FILE", help="JSON of the Zuul build (tenant, "
                     "pipeline, project, buildset, build, job, ref, newrev, ...): written on "
                     "each image index as io.airlock.zuul.* and in the build record; never "
                     "an input")
    bld.add_argument("--bundle", metavar="ID", help="with --site: the imported bundle the "
                     "inputs came from (default: $AIRLOCK_BUNDLE_ID), checked against the "
                     "raw store's import records, written on each image index")
    _add_layout_options(bld)
    bld.set_defaults(func=cmd_build)

    pub = verbs.add_parser("publish", help="push the last build's images, then tag them")
    pub.add_argument("--release", required=True)
    pub.add_argument("--work-dir", help="default: $AIRLOCK_WORK_DIR, else ./work")
    pub.add_argument("--site", help="site.yaml: push with the credentials of its registry")
    pub.add_argument("--no-tags", action="store_true", help="push and verify by digest "
                     "(the immutable tags) only; leave the moving tags (<release>, <version>) "
                     "for a later publish, e.g. one serialised per release")
    pub.add_argument("--json", action="store_true", help="print one JSON document on "
                     "stdout (every image's name, platforms, digest, status published or "
                     "unchanged, tags; \"changed\"); progress goes to stderr")
    pub.set_defaults(func=cmd_publish)
    chk = verbs.add_parser("check", help="run the last build's images: console scripts, WSGI "
                           "modules, service.yaml's imports and commands, on each platform")
    chk.add_argument("--release", required=True)
    chk.add_argument("--service", action="append", help="repeatable; default: every service "
                     "of the last build")
    chk.add_argument("--platform", action="append", choices=platforms.NAMES,
                     help="repeatable; default: every platform of each image")
    chk.add_argument("--work-dir", help="default: $AIRLOCK_WORK_DIR, else ./work")
    chk.add_argument("--json", action="store_true", help="one JSON document on stdout")
    chk.add_argument("--start-emulated", action="store_true",
                     help="start every script of the venv on an emulated platform too "
                          "(default: import each one's module there; starting takes minutes "
                          "under QEMU)")
    _add_layout_options(chk)
    chk.set_defaults(func=cmd_check)
    whl = verbs.add_parser("wheels", help="the wheelhouse of a service, for each platform")
    whl.add_argument("--release", required=True)
    whl.add_argument("--service", help="the service whose requirements are resolved")
    whl.add_argument("--platform", action="append", choices=platforms.NAMES,
                     help="target platform (repeatable; default: the release's platforms)")
    whl.add_argument("--source", action="append", help="prepared source tree: the service's, "
                     "and each library built from source (repeatable)")
    whl.add_argument("--dest", required=True, help="the wheelhouse folder (made or replaced)")
    whl.add_argument("--index-url", help="package index (default: $AIRLOCK_INDEX_URL, "
                     "else pip's own configuration)")
    whl.add_argument("--venv-builder", help="venv-builder image that builds sdists into "
                     "wheels (needed when a pin has no wheel for a platform)")
    whl.add_argument("--cache", help="download cache shared by every run (default: "
                     "$AIRLOCK_CACHE_DIR, else $AIRLOCK_WORK_DIR/cache or ./work/cache)")
    whl.add_argument("--force", action="store_true", help="resolve and assemble again even "
                     "if the inputs are unchanged")
    whl.add_argument("--tools-only", action="store_true", help="only uv's wheel for each "
                     "platform, flat in DEST (the venv-builder's wheels context)")
    _add_layout_options(whl)
    whl.set_defaults(func=cmd_wheels)
    deb = verbs.add_parser("debs", help="the offline apt repository of a service's packages")
    deb.add_argument("--release", required=True)
    deb.add_argument("--service", required=True, help="image whose bindep.txt is read")
    deb.add_argument("--platform", action="append", choices=platforms.NAMES,
                     help="target platform (repeatable; default: the release's platforms)")
    deb.add_argument("--dest", required=True, help="folder of DEST/<arch>/ repositories")
    deb.add_argument("--base-image", help="base image (default: the release's base_image; "
                     "a tag is pinned to its digest)")
    deb.add_argument("--profile", default="runtime", choices=["build", "runtime"],
                     help="bindep profile (default runtime; build for venv-builder)")
    deb.add_argument("--source", help="prepared source tree whose bindep.txt is merged in")
    deb.add_argument("--cache", help="download cache shared by every run (default: "
                     "$AIRLOCK_CACHE_DIR, else $AIRLOCK_WORK_DIR/cache or ./work/cache)")
    deb.add_argument("--force", action="store_true", help="compute and download again even "
                     "if the inputs are unchanged")
    _add_layout_options(deb)
    deb.set_defaults(func=cmd_debs)
    _bundle_parser(verbs)
    aud = verbs.add_parser("audit", help="an image's chain from its digest to the build and "
                           "the Zuul trigger that made it (its annotations and build record)")
    aud.add_argument("image", metavar="IMAGE[@DIGEST|:TAG]")
    aud.add_argument("--json", action="store_true", help="one JSON document on stdout")
    aud.add_argument("--registry-auth", metavar="FILE", help="containers auth.json for the "
                     "registry (default: $AIRLOCK_REGISTRY_AUTH_FILE)")
    aud.set_defaults(func=cmd_audit)
    idx = verbs.add_parser("index", help="OCI image indexes")
    idx_verbs = idx.add_subparsers(dest="index_verb", required=True, metavar="VERB")
    ia = idx_verbs.add_parser("assemble", help="join per-platform archives (build "
                              "--per-platform) into the multi-platform archive one build of "
                              "every platform writes, to the digest")
    ia.add_argument("--archive", action="append", required=True, help="one platform's OCI "
                    "archive; repeat for each platform")
    ia.add_argument("--platform", action="append", help="the index's platforms in order, "
                    "each with one archive (default: the archives' platforms in their order); "
                    "buildx keeps the order of its --platform, airlock the release's")
    ia.add_argument("--out", required=True, help="the OCI archive to write")
    ia.add_argument("--json", action="store_true", help="print {archive, digest} as JSON")
    ia.set_defaults(func=cmd_index_assemble)

    zul = verbs.add_parser("zuul", help="the Zuul side, generated from the release data")
    zul_verbs = zul.add_subparsers(dest="zuul_verb", required=True, metavar="VERB")
    zj = zul_verbs.add_parser("jobs", help="print zuul.d/releases.yaml: the base and service "
                              "jobs of every release, their semaphores, the manual pipeline")
    zj.add_argument("--check", action="store_true", help="print nothing; exit 1 when the "
                    "committed file differs from what would be printed")
    zj.add_argument("--file", help="with --check: the file to compare "
                    "(default: ROOT/zuul.d/releases.yaml)")
    zj.add_argument("--per-platform", action="store_true", help="a job per platform of "
                    "each service (nodeset airlock-<arch>, defined by the site) and one that "
                    "assembles and publishes the image, for a site with native nodes")
    _add_layout_options(zj)
    zj.set_defaults(func=cmd_zuul_jobs)
    zs = zul_verbs.add_parser("site", help="write site.yaml (anonymous reads) and "
                              "site-push.yaml from the Zuul variable airlock_site, given as "
                              "JSON on stdin; one line naming a missing key")
    zs.add_argument("--dest", required=True, help="the folder to write them into")
    zs.set_defaults(func=cmd_zuul_site)
    return parser


def _bundle_parser(verbs) -> None:
    bun = verbs.add_parser("bundle", help="the offline bundle: everything a site builds from")
    bun_verbs = bun.add_subparsers(dest="bundle_verb", required=True, metavar="VERB")
    bc = bun_verbs.add_parser("create", help="gather every input of the selected releases, "
                              "services and platforms into a signed, checked folder")
    bc.add_argument("--release", action="append", required=True, help="repeatable")
    bc.add_argument("--service", action="append", help="repeatable; default: every service "
                    "of the releases")
    bc.add_argument("--platform", action="append", choices=platforms.NAMES,
                    help="repeatable; default: the releases' platforms")
    bc.add_argument("--out", required=True, help="the bundle folder (new, empty, or an "
                    "earlier bundle to update)")
    bc.add_argument("--key", help="OpenSSH private key to sign SHA256SUMS with (or the .pub "
                    "of a key in ssh-agent); without it the bundle is unsigned")
    bc.add_argument("--version", help="the bundle's version (default: the creation time)")
    bc.add_argument("--since", help="an earlier bundle's manifest.json (or folder): carry "
                    "only what it did not")
    bc.add_argument("--tar", action="store_true", help="also write OUT.tar, streamed")
    bc.add_argument("--max-part-size", help="with --tar: split into OUT.tar.000, .001, ... "
                    "of at most SIZE (e.g. 4GiB, 4700MB)")
    bc.add_argument("--registry", help="where python-base and venv-builder are kept "
                    f"(default: $AIRLOCK_REGISTRY, else {settings.DEFAULT_REGISTRY})")
    bc.add_argument("--work-dir", help="default: $AIRLOCK_WORK_DIR, else ./work")
    bc.add_argument("--cache", help="default: $AIRLOCK_CACHE_DIR, else WORK/cache")
    bc.add_argument("--git-base", help="default: $AIRLOCK_GIT_BASE")
    bc.add_argument("--index-url", help="default: $AIRLOCK_INDEX_URL, else pip's config")
    _add_layout_options(bc)
    bc.set_defaults(func=cmd_bundle_create)
    bk = bun_verbs.add_parser("check", help="prove every release, service and platform of "
                              "a bundle resolves from it alone")
    bk.add_argument("bundle", metavar="DIR")
    bk.add_argument("--with", dest="with_", action="append", metavar="DIR",
                    help="an earlier bundle a delta builds on (repeatable)")
    bk.set_defaults(func=cmd_bundle_check)
    bv = bun_verbs.add_parser("verify", help="check the signature, then every checksum, of "
                              "a bundle folder or tar file (streaming)")
    bv.add_argument("bundle", metavar="DIR|FILE.tar")
    bv.add_argument("--allowed-signers", required=True, help="OpenSSH allowed_signers file "
                    "naming the keys trusted to sign bundles")
    bv.add_argument("--extract", metavar="DEST", help="tar only: extract into DEST once all "
                    "of it verified")
    bv.set_defaults(func=cmd_bundle_verify)
    bm = bun_verbs.add_parser("import", help="verify a bundle folder, then load it into the "
                              "site's stores (pypi, raw apt, registry, git); idempotent")
    bm.add_argument("bundle", metavar="DIR")
    bm.add_argument("--site", required=True, help="the site's site.yaml (where the four "
                    "stores are, where their credentials are)")
    bm.add_argument("--allowed-signers", required=True, help="OpenSSH allowed_signers file "
                    "naming the keys trusted to sign bundles")
    bm.add_argument("--json", action="store_true", help="print the report as one JSON "
                    "document")
    bm.add_argument("--work-dir", help="a copy of the import record goes to WORK/site/imports "
                    "(default: $AIRLOCK_WORK_DIR, else ./work)")
    bm.set_defaults(func=cmd_bundle_import)
    bi = bun_verbs.add_parser("inspect", help="what a bundle holds, without extracting it")
    bi.add_argument("bundle", metavar="DIR|FILE.tar")
    bi.add_argument("--json", action="store_true", help="print the manifest")
    bi.set_defaults(func=cmd_bundle_inspect)


def main(argv: list[str] | None = None) -> int:
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _terminate)
    signal.signal(signal.SIGINT, _interrupt)
    if sys.stdout is None:
        # Descriptor 1 closed (``>&-``): Python then drops what print() is
        # given and any other write ends in an internal error; a result
        # nobody can read must not pass for a success.
        if sys.stderr is not None:
            print("airlock: standard output is closed; run it with standard output open "
                  "(>/dev/null to discard it)", file=sys.stderr)
        return 2
    try:
        args = build_parser().parse_args(argv)
        _check_given(args)
        return args.func(args)
    except AirlockError as error:
        print(str(error), file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("airlock: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print("airlock: terminated", file=sys.stderr)
        return 143
    except OSError as error:
        # The system refused (disk full, permission denied): not a bug.
        where = f"{error.filename}: " if error.filename else ""
        print(redact(f"airlock: {where}{error.strerror or error}"), file=sys.stderr)
        return 2
    except Exception as error:  # noqa: BLE001 - the last line of defence
        if os.environ.get("AIRLOCK_DEBUG"):
            traceback.print_exc()
        print(redact(f"airlock: internal error: {type(error).__name__}: {error}"
                     "; please report it (AIRLOCK_DEBUG=1 shows the traceback)"
                     ).replace("\n", " "), file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
