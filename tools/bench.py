"""Benchmark keystone's build: times, sizes and ratios, printed, never asserted.

    tox -e bench                  (or: python tools/bench.py [--release 2025.2])

Measures on this machine, with the local default (base image, source
mirror, local registry) that ./tools/run-local sets up:

- cold build time of keystone per platform (``--no-cache``, one platform
  at a time), and the arm64/amd64 ratio;
- the no-op rebuild of keystone (nothing changed: its images are skipped)
  and, unless ``--keystone-only``, of every image of the release on every
  platform (all six services built once first, which takes a while cold),
  warm and, as root, again with the page cache dropped;
- keystone's runtime image size unpacked, and the size of the same image
  with the build stage left in (its build target), and their ratio;
- where the cold build's time goes per step (the venv stage, the apt stage,
  the copy of the venv, export, compression, push), from BuildKit's own
  progress (the rawjson timings ``airlock.ext.buildx`` keeps beside the log);
- the same keystone from the same wheelhouse built the common way, as LOCI
  and Kolla install (``tools/bench/loci-style.Dockerfile``: one stage,
  ``pip install`` into a venv, nothing separated out of the runtime, arm64
  under QEMU, no network), beside airlock's build: build time per platform,
  size unpacked (``du -sxb /``) and compressed (the manifest's layers), as
  ratios;
- keystone's offline bundle (``--bundle-only``: just this): its size per
  kind, ``bundle create`` cold (a cache of its own) and resumed, and
  ``bundle verify`` against ``sha256sum`` on the folder and on the tar;
- that bundle into a site (``tools/site-up``'s stand-ins): ``bundle
  import`` per store into empty stores and again, and ``build --site`` of
  keystone for both platforms, cold, next to the connected cold build.

Timed tests would flake on noisy machines; this script prints figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

from airlock.data import platforms
from airlock.ext import buildx, containers

TOP = Path(__file__).resolve().parents[1]


def airlock(*args: str) -> float:
    """Run ``airlock ARGS``; return the seconds it took."""
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "airlock.cli", *args], cwd=TOP,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"bench: airlock {' '.join(args)} failed:\n{proc.stdout[-2000:]}"
                 f"{proc.stderr[-2000:]}")
    return time.monotonic() - started


def record(work: Path, release: str) -> dict:
    return json.loads((work / release / "build-record.json").read_text())


def keystone(rec: dict) -> dict:
    return next(row for row in rec["images"] if row["image"] == "keystone")


def unpacked_size(ref: str, platform: str) -> int:
    """Bytes of the image's file system, as ``du`` inside it sees them."""
    out = containers.run(ref, ["du", "-sxb", "/"], platform=platform, user="0")
    return int(out.split()[0])


def build_stage_size(row: dict, work: Path, images_dir: Path) -> int:
    """Size of keystone's image had the build stage been shipped (target build)."""
    archive = work / "bench" / "keystone-build-stage.oci.tar"
    spec = buildx.BuildSpec(
        dockerfile=images_dir / "keystone" / "Dockerfile", context=images_dir / "keystone",
        output=archive, platforms=("linux/amd64",),
        contexts={k: Path(v) for k, v in row["contexts"].items()},
        build_args=row["build_args"], target="build")
    result = buildx.build(spec)
    ref = f"127.0.0.1:5000/airlock-bench/keystone-build-stage:{uuid.uuid4().hex[:8]}"
    from airlock.ext import registry

    registry.push_archive(result.archive, ref)
    return unpacked_size(ref, "linux/amd64")


LOCI_STYLE = TOP / "tools" / "bench" / "loci-style.Dockerfile"


def compressed_sizes(ref: str) -> dict[str, int]:
    """Bytes of each platform's layers as the registry keeps them (compressed), by digest ref."""
    from airlock.ext import registry

    repo = ref.split("@")[0]
    doc = registry.manifest(ref) or {}
    if "layers" in doc:  # one platform: a manifest, no index
        config = json.loads(registry.blob(ref, doc["config"]["digest"]))
        return {f"{config['os']}/{config['architecture']}":
                sum(layer["size"] for layer in doc["layers"])}
    sizes = {}
    for entry in doc.get("manifests") or []:
        plat = entry.get("platform") or {}
        if plat.get("os") != "linux":
            continue
        layers = (registry.manifest(f"{repo}@{entry['digest']}") or {}).get("layers") or []
        sizes[f"linux/{plat['architecture']}"] = sum(layer["size"] for layer in layers)
    return sizes


def step_kind(step: buildx.StepTiming, run_label: str = "apt stage") -> str:
    """Which part of a service build a BuildKit step is (its Dockerfile's stages)."""
    if step.name.startswith("exporting to"):
        return "export"
    if step.stage in ("internal", "context") or step.command.startswith(
            ("FROM ", "load ", "WORKDIR")):
        return "setup (contexts, base images)"
    if step.stage == "build":
        return "venv stage"
    if step.command.startswith("RUN"):
        return run_label
    if "COPY" in step.command.split()[:2]:  # "COPY --link" and its "LINK COPY"
        return "copy of the venv"
    return "other"


def print_breakdown(title: str, steps: list[buildx.StepTiming], extra: list[tuple[str, float]],
                    run_label: str = "apt stage", platform: str | None = None) -> None:
    """Seconds per kind of step and platform, the export split into its parts.

    ``platform``: the one platform of a single-platform build, whose step
    names carry none.
    """
    per: dict[str, dict[str, float]] = {}
    export = compress = archive = 0.0
    for step in steps:
        kind = step_kind(step, run_label)
        if kind == "export":
            export += step.seconds
            # Layers are compressed when made ("exporting layers") and made
            # again with SOURCE_DATE_EPOCH's times ("rewriting layers with
            # source-date-epoch ...", rewrite-timestamp=true).
            compress += sum(s for name, s in step.parts
                            if name.startswith(("exporting layers", "rewriting layers")))
            archive += sum(s for name, s in step.parts if name.startswith("sending tarball"))
            continue
        where = step.platform or platform or "-"
        row = per.setdefault(kind, {})
        row[where] = row.get(where, 0.0) + step.seconds
    print(title)
    print(f"  {'step':<30} {'amd64':>9} {'arm64':>9}  (BuildKit's times; platforms run side by "
          "side)")
    for kind, row in per.items():
        cells = [f"{row[p]:7.1f} s" if p in row else f"{'-':>9}" for p in platforms.NAMES]
        other = sum(v for p, v in row.items() if p not in platforms.NAMES)
        note = f"  (+{other:.1f} s for no one platform)" if other >= 0.05 else ""
        print(f"  {kind:<30} {cells[0]:>9} {cells[1]:>9}{note}")
    print(f"  {'export':<30} {export:7.1f} s  (compressing layers {compress:.1f} s, writing "
          f"the archive {archive:.1f} s, the rest {export - compress - archive:.1f} s)")
    for label, seconds in extra:
        print(f"  {label:<30} {seconds:7.1f} s")


def pip_wheel_dir(dest: Path) -> Path:
    """A folder holding a pip wheel (ensurepip's, from this Python) for the common-way venv."""
    import ensurepip
    import shutil

    bundled = sorted((Path(ensurepip.__file__).parent / "_bundled").glob("pip-*.whl"))
    if not bundled:
        sys.exit("bench: this Python has no ensurepip wheel of pip; run bench with a Python "
                 "that has ensurepip (tox -e bench)")
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(bundled[-1], dest / bundled[-1].name)
    return dest


def common_way(row: dict, base_image: str, work: Path, prefix: str) -> dict[str, dict]:
    """keystone built as LOCI and Kolla do, one platform at a time, cold; its figures.

    The same wheelhouse, sources and runtime packages as airlock's build
    (the keystone row's named contexts), the same base image, no network.
    """
    from airlock.ext import registry

    bench = work / "bench"
    pip_dir = pip_wheel_dir(bench / "pip")
    empty = bench / "empty-context"
    empty.mkdir(parents=True, exist_ok=True)
    contexts = {name: Path(row["contexts"][name]) for name in ("wheels", "sources", "debs")}
    out = {}
    for platform in platforms.NAMES:
        arch = platform.split("/")[1]
        started = time.monotonic()
        result = buildx.build(buildx.BuildSpec(
            dockerfile=LOCI_STYLE, context=empty, output=bench / f"loci-style-{arch}.oci.tar",
            platforms=(platform,), contexts={**contexts, "pip": pip_dir},
            build_args={"BASE_IMAGE": base_image}, no_cache=True,
            title=f"keystone the common way: build {platform}"))
        seconds = time.monotonic() - started
        digest = registry.push_archive(result.archive, f"{prefix}/keystone-loci-style:{arch}")
        ref = f"{prefix}/keystone-loci-style@{digest}"
        out[platform] = {"seconds": seconds, "steps": list(result.steps),
                         "unpacked": unpacked_size(ref, platform),
                         "compressed": compressed_sizes(ref)[platform]}
    return out


def print_side_by_side(ours: dict[str, dict], common: dict[str, dict]) -> None:
    """The two builds per platform, and the common way's figures as multiples of airlock's."""
    mb = 1e6
    print("keystone, the common way (tools/bench/loci-style.Dockerfile: one stage, pip, "
          "arm64 under QEMU) beside airlock, cold, one platform at a time, same wheelhouse:")
    print(f"  {'':<26} {'airlock':>11} {'common way':>11}  common/airlock")
    for platform in platforms.NAMES:
        arch = platform.split("/")[1]
        a, c = ours[platform], common[platform]
        print(f"  {'build ' + arch:<26} {a['seconds']:9.1f} s {c['seconds']:9.1f} s  "
              f"{c['seconds'] / a['seconds']:6.2f}x  (airlock: the keystone image step)")
        print(f"  {'unpacked ' + arch:<26} {a['unpacked'] / mb:8.1f} MB "
              f"{c['unpacked'] / mb:8.1f} MB  {c['unpacked'] / a['unpacked']:6.2f}x")
        print(f"  {'compressed ' + arch:<26} {a['compressed'] / mb:8.1f} MB "
              f"{c['compressed'] / mb:8.1f} MB  {c['compressed'] / a['compressed']:6.2f}x")


def service_sizes(rec: dict) -> dict[str, dict[str, tuple[int, int]]]:
    """Per service image and platform: (unpacked, compressed) bytes, from the registry."""
    sizes = {}
    for row in rec["images"]:
        if not row.get("service"):
            continue
        ref = f"{row['ref'].split('@')[0]}@{row['digest']}"
        packed = compressed_sizes(ref)
        sizes[row["image"]] = {p: (unpacked_size(ref, p), packed[p]) for p in platforms.NAMES}
    return sizes


def print_release(release: str, seconds: float, rec: dict,
                  sizes: dict[str, dict[str, tuple[int, int]]]) -> None:
    """The cold build of a whole release, image by image, and each service's size."""
    mb = 1e6
    print(f"every image of {release}, cold (--no-cache), both platforms: {seconds:.1f} s")
    print(f"  {'image':<14} {'build':>9}  {'unpacked amd64/arm64':>22}  "
          f"{'compressed amd64/arm64':>24}")
    for row in rec["images"]:
        size = sizes.get(row["image"])
        cells = ""
        if size:
            amd, arm = size["linux/amd64"], size["linux/arm64"]
            cells = (f"  {amd[0] / mb:9.1f} / {arm[0] / mb:6.1f} MB"
                     f"  {amd[1] / mb:10.1f} / {arm[1] / mb:6.1f} MB")
        print(f"  {row['image']:<14} {row['seconds']:7.1f} s{cells}")


def drop_page_cache() -> bool:
    """Empty the kernel's page cache (root only): the worst case for a no-op."""
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        return False
    return True


def median_seconds(argv: list[str], runs: int = 3, cwd: Path | None = None) -> float:
    """The median wall time of ``runs`` runs of a command (it must succeed)."""
    times = []
    for _ in range(runs):
        started = time.monotonic()
        proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(f"bench: {' '.join(argv)} failed:\n{proc.stderr[-2000:]}")
        times.append(time.monotonic() - started)
    return sorted(times)[len(times) // 2]


def free_ports(count: int) -> list[int]:
    """Ports nothing listens on now (the kernel's choice), all different."""
    import socket

    socks = [socket.socket() for _ in range(count)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def site_figures(release: str, bundle: Path, signers: Path, tmp: Path,
                 connected: tuple[float, float] | None) -> None:
    """The site side of keystone's bundle: import per store, then build --site, cold.

    tools/site-up's stand-ins on free ports of 127.0.0.1 (the stores are
    local: the figures are airlock's and the servers', not a network's).
    ``connected``: the connected side's cold build of keystone for both
    platforms (total, keystone image step), for the ratio.
    """
    site = tmp / "site"
    site.mkdir(mode=0o755)
    for parent in site.parents:  # nginx's workers (www-data) read site/raw
        if parent.stat().st_mode & 0o001 == 0:
            parent.chmod(parent.stat().st_mode | 0o001)
    stores = ("pypi", "raw", "registry", "git")
    ports = free_ports(len(stores))
    site_up = [str(TOP / "tools" / "site-up")]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_"))}
    subprocess.run([*site_up, "start", "--dir", str(site),
                    *[a for store, port in zip(stores, ports, strict=True)
                      for a in (f"--{store}-port", str(port))]],
                   check=True, capture_output=True, env=env)
    try:
        site_yaml = str(site / "site.yaml")
        imports = []
        for _ in range(2):  # into empty stores, then again: nothing to upload
            started = time.monotonic()
            proc = subprocess.run([sys.executable, "-m", "airlock.cli", "bundle", "import",
                                   str(bundle), "--site", site_yaml, "--allowed-signers",
                                   str(signers), "--json"], cwd=TOP, capture_output=True,
                                  text=True)
            if proc.returncode != 0:
                sys.exit(f"bench: bundle import failed:\n{proc.stderr[-2000:]}")
            imports.append((time.monotonic() - started, json.loads(proc.stdout)))
        work = tmp / "site-work"
        total = airlock("build", "--release", release, "--service", "keystone", "--site",
                        site_yaml, "--work-dir", str(work), "--no-cache")
        image = keystone(record(work, release))["seconds"]
    finally:
        subprocess.run([*site_up, "stop", "--dir", str(site)], check=False,
                       capture_output=True)
    print(f"keystone's bundle into a site's stores (tools/site-up on 127.0.0.1), {release}:")
    for label, (seconds, doc) in zip(("import, empty stores:", "import again:"), imports,
                                     strict=True):
        per = ", ".join(f"{name} {row['seconds']:.1f} s ({len(row['uploaded'])} up)"
                        for name, row in doc["stores"].items())
        print(f"  {label:<28} {seconds:7.1f} s  ({per})")
    print(f"  build --site, cold, both platforms: {total:7.1f} s  (keystone image {image:.1f} s;"
          " python-base and venv-builder from the imported base image)")
    if connected:
        print(f"  connected build, cold, both platforms: {connected[0]:7.1f} s  (keystone image "
              f"{connected[1]:.1f} s): the site's keystone step is "
              f"{image / connected[1]:.2f}x the connected one")


def bundle_figures(release: str, work: Path, git: str, prefix: str,
                   connected: tuple[float, float] | None = None) -> None:
    """keystone's bundle: size per kind, create cold and resumed, verify against sha256sum."""
    import shutil
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix="bench-bundle-", dir=work))
    try:
        key = tmp / "key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)],
                       check=True)
        pub = key.with_suffix(".pub").read_text().split()
        (tmp / "signers").write_text(f'bench namespaces="airlock-bundle" {pub[0]} {pub[1]}\n')
        out = tmp / "bundle"
        # Cold: a cache of its own (every wheel, .deb and git bundle fetched
        # or made again); resumed: the same command once more.
        common = ["bundle", "create", "--release", release, "--service", "keystone",
                  "--out", str(out), "--key", str(key), "--registry", prefix,
                  "--git-base", git, "--work-dir", str(tmp / "work"),
                  "--cache", str(tmp / "cache")]
        cold = airlock(*common)
        resumed = airlock(*common)
        doc = json.loads((out / "manifest.json").read_text())
        kinds: dict[str, list[int]] = {}
        from airlock.bundle import layout

        for art in doc["artifacts"]:
            row = kinds.setdefault(layout.group(art["kind"]), [0, 0])
            row[0] += 1
            row[1] += art["size"]
        tar = tmp / "bundle.tar"
        from airlock.bundle import tarstream

        tarstream.write(out, tar, None)
        cli = [sys.executable, "-m", "airlock.cli", "bundle", "verify"]
        signers = ["--allowed-signers", str(tmp / "signers")]
        sums_dir = median_seconds(["sha256sum", "--quiet", "-c", "SHA256SUMS"], cwd=out)
        ours_dir = median_seconds([*cli, str(out), *signers])
        sums_tar = median_seconds(["sha256sum", str(tar)])
        ours_tar = median_seconds([*cli, str(tar), *signers])
        total = sum(row[1] for row in kinds.values())
        print(f"keystone bundle for {release}, both platforms: {total / 1e6:.1f} MB, "
              f"{len(doc['artifacts'])} artifacts")
        for group in layout.GROUP_ORDER:
            count, size = kinds.get(group, [0, 0])
            print(f"  {group:<8} {count:5d} artifacts {size / 1e6:9.1f} MB")
        print(f"  create, cold (own cache):     {cold:7.1f} s")
        print(f"  create, resumed (all there):  {resumed:7.1f} s")
        print(f"  verify folder: {ours_dir:6.2f} s, sha256sum -c {sums_dir:6.2f} s: "
              f"{sums_dir / ours_dir:.2f}x sha256sum's speed (target >= 1.6x)")
        print(f"  verify tar:    {ours_tar:6.2f} s, sha256sum    {sums_tar:6.2f} s: "
              f"{sums_tar / ours_tar:.2f}x sha256sum's speed (target >= 0.9x)")
        site_figures(release, out, tmp / "signers", tmp, connected)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--release", default="2025.2")
    parser.add_argument("--keystone-only", action="store_true",
                        help="skip building every service for the whole-release no-op figure")
    parser.add_argument("--bundle-only", action="store_true",
                        help="only the offline bundle's figures (size, create, verify)")
    args = parser.parse_args()
    work = Path(os.environ.get("AIRLOCK_WORK_DIR") or TOP / "work")
    prefix = f"127.0.0.1:5000/airlock-bench/{uuid.uuid4().hex[:8]}"
    git = str(work / "git")
    common = ["--release", args.release, "--registry", prefix, "--work-dir", str(work),
              "--git-base", git]
    airlock("base", "create", "--release", args.release, "--work-dir", str(work))
    mirror = [] if not args.keystone_only else ["--component", "keystone"]
    airlock("mirror", "create", "--release", args.release, "--dest", git, *mirror)
    if args.bundle_only:
        bundle_figures(args.release, work, git, prefix)
        return 0
    # Warm the wheelhouse and apt repository: they are prepared ahead of the
    # build (and measured by their own steps), not part of the build time.
    airlock("build", *common, "--service", "keystone")

    cold = {}
    for platform in platforms.NAMES:
        total = airlock("build", *common, "--service", "keystone", "--platform", platform,
                        "--no-cache")
        cold[platform] = (total, keystone(record(work, args.release))["seconds"])
    both = airlock("build", *common, "--service", "keystone", "--no-cache")
    both_rec = record(work, args.release)
    both_row = keystone(both_rec)
    both_image = both_row["seconds"]
    both_steps = buildx.build_timings(Path(both_row["log"]))
    base_image = next(r for r in both_rec["images"]
                      if r["image"] == "python-base")["build_args"]["BASE_IMAGE"]
    push = airlock("publish", "--release", args.release, "--work-dir", str(work))
    row = keystone(record(work, args.release))
    noop = airlock("build", *common, "--service", "keystone")
    noop_rec = record(work, args.release)

    release_noop = release_noop_cold = None
    release_cold = None
    if not args.keystone_only:
        # Every service, every platform, cold: the per-image breakdown.
        seconds = airlock("build", *common, "--no-cache")
        release_cold = (seconds, record(work, args.release))
        # Not published: the rebuild keeps the archives (status "kept").
        seconds = airlock("build", *common)
        rec = record(work, args.release)
        release_noop = (seconds, sum(1 for r in rec["images"]
                                     if r["status"] in ("skipped", "kept")),
                        len(rec["images"]), sum(len(r["platforms"]) for r in rec["images"]))
        # The first no-op after other work finds nothing in the page cache.
        if drop_page_cache():
            release_noop_cold = airlock("build", *common)

    services_sizes = {}
    if release_cold:
        airlock("publish", "--release", args.release, "--work-dir", str(work))
        services_sizes = service_sizes(release_cold[1])

    ref = f"{row['ref'].split('@')[0]}@{row['digest']}"
    runtime = unpacked_size(ref, "linux/amd64")
    with_build = build_stage_size(row, work, TOP / "images")
    packed = compressed_sizes(ref)
    ours = {p: {"seconds": cold[p][1], "compressed": packed[p],
                "unpacked": runtime if p == "linux/amd64" else unpacked_size(ref, p)}
            for p in platforms.NAMES}
    common_figures = common_way(both_row, base_image, work, prefix)

    mb = 1e6
    amd, arm = cold["linux/amd64"], cold["linux/arm64"]
    print(f"keystone {row['version']} for {args.release}, on {os.cpu_count()} cores")
    print(f"  cold build, amd64:            {amd[0]:7.1f} s  (keystone image {amd[1]:.1f} s)")
    print(f"  cold build, arm64:            {arm[0]:7.1f} s  (keystone image {arm[1]:.1f} s)")
    print(f"  arm64/amd64 build-time ratio: {arm[1] / amd[1]:7.2f}x (keystone image step)")
    print(f"  cold build, both platforms:   {both:7.1f} s  (keystone image {both_image:.1f} s)")
    skipped = sum(1 for r in noop_rec["images"] if r["status"] == "skipped")
    print(f"  no-op rebuild:                {noop:7.1f} s  ({skipped}/{len(noop_rec['images'])}"
          f" images skipped; target < 10 s)")
    if release_noop:
        print(f"  no-op rebuild, whole release: {release_noop[0]:7.1f} s  ({release_noop[1]}/"
              f"{release_noop[2]} images, {release_noop[3]} image-platforms skipped; "
              "target < 10 s)")
    if release_noop_cold is not None:
        print(f"  the same, page cache dropped: {release_noop_cold:7.1f} s")
    print(f"  runtime image, unpacked:      {runtime / mb:7.1f} MB (target <= 200 MB; "
          f"compressed amd64 {packed['linux/amd64'] / mb:.1f} MB, arm64 "
          f"{packed['linux/arm64'] / mb:.1f} MB, target <= 75 MB)")
    print(f"  with the build stage left in: {with_build / mb:7.1f} MB "
          f"({with_build / runtime:.2f}x the runtime image)")
    print_breakdown(f"where keystone's cold build goes, both platforms ({both_image:.1f} s "
                    "for the image):", both_steps,
                    [("push (airlock publish)", push)])
    for platform in platforms.NAMES:
        figures = common_figures[platform]
        print_breakdown(f"the common way, {platform} ({figures['seconds']:.1f} s):",
                        figures["steps"], [], run_label="the one RUN: apt + pip",
                        platform=platform)
    print_side_by_side(ours, common_figures)
    if release_cold:
        print_release(args.release, *release_cold, services_sizes)
    bundle_figures(args.release, work, git, prefix, connected=(both, both_image))
    return 0


if __name__ == "__main__":
    sys.exit(main())
