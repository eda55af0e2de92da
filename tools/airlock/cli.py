"""``airlock <verb>``: parse arguments, call one module, map errors to exit codes.

No logic lives here. Exit codes: 0 success, 1 a user error (bad input, with
one line per error on stderr), 2 an external tool or service failed.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from airlock.errors import AirlockError


def _add_layout_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", help="airlock data root (default: $AIRLOCK_ROOT, "
                        "or the nearest folder holding releases/)")
    parser.add_argument("--releases-dir", help="releases folder (default: ROOT/releases)")
    parser.add_argument("--patches-dir", help="patches folder (default: ROOT/patches)")
    parser.add_argument("--images-dir", help="images folder (default: ROOT/images)")


def _layout(args: argparse.Namespace):
    from airlock.layout import resolve_layout

    return resolve_layout(args.root, args.releases_dir, args.patches_dir, args.images_dir)


def _git_base(args: argparse.Namespace) -> str | None:
    return args.git_base or os.environ.get("AIRLOCK_GIT_BASE")


def _write(text: str, output: str | None) -> None:
    """Write to FILE atomically (never half-written), or to stdout."""
    if not output:
        sys.stdout.write(text)
        return
    path = Path(output)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    tmp.replace(path)


def cmd_release_validate(args: argparse.Namespace) -> int:
    from airlock import validate

    layout = _layout(args)
    errors = validate.validate(layout, args.releases or None)
    for error in errors:
        print(str(error), file=sys.stderr)
    if errors:
        return 1
    names = args.releases or validate.release_names(layout)
    print(f"{len(names)} release(s) valid: {', '.join(names)}")
    return 0


def cmd_refs_resolve(args: argparse.Namespace) -> int:
    from airlock import refs
    from airlock.release import load_release

    release = load_release(_layout(args), args.release)
    lock = refs.resolve_release(release, _git_base(args), jobs=args.jobs)
    _write(refs.dump_lock(lock), args.output)
    return 0


def cmd_sources_prepare(args: argparse.Namespace) -> int:
    from airlock import refs, sources
    from airlock.release import load_release

    layout = _layout(args)
    release = load_release(layout, args.release)
    if args.lock:
        lock = refs.load_lock(Path(args.lock))
    else:
        lock = refs.resolve_release(release, _git_base(args), only=[args.component])
    record = sources.prepare(release, args.component, lock, layout.patches_dir, Path(args.dest))
    print(f"{args.component}: {record['sha']} exported to {args.dest} "
          f"with {len(record['patches'])} patch(es)")
    return 0


def cmd_constraints(args: argparse.Namespace) -> int:
    from airlock import constraints
    from airlock.release import load_release

    release = load_release(_layout(args), args.release)
    _write(constraints.render(constraints.merged(release, component=args.component)),
           args.output)
    return 0


def cmd_packages(args: argparse.Namespace) -> int:
    from airlock import packages
    from airlock.release import load_release

    layout = _layout(args)
    release = load_release(layout, args.release)
    names = packages.resolve(release, layout.images_dir, args.service, args.profile,
                             source_dir=Path(args.source) if args.source else None)
    _write("".join(f"{n}\n" for n in names), args.output)
    return 0


def cmd_mirror_create(args: argparse.Namespace) -> int:
    from airlock import mirror
    from airlock.release import load_release

    release = load_release(_layout(args), args.release)
    index_url = args.index_url or os.environ.get("AIRLOCK_INDEX_URL")
    for row in mirror.create(release, Path(args.dest), index_url=index_url,
                             components=args.component or None):
        print(f"{row['component']}: {row['version']} -> {row['repo']} ({row['sha']})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="airlock",
        description="Build OpenStack service images offline, reproducibly, for several "
        "releases and platforms.")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    rel = verbs.add_parser("release", help="release data")
    rel_verbs = rel.add_subparsers(dest="release_verb", required=True, metavar="VERB")
    val = rel_verbs.add_parser("validate", help="check releases/ (all, or the ones named)")
    val.add_argument("releases", nargs="*", metavar="REL")
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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except AirlockError as error:
        print(str(error), file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("airlock: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
