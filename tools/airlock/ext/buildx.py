"""The only module that knows ``docker buildx`` flags, and asks the engine about itself.

Callers describe a build as plain data (:class:`BuildSpec`) and get plain data
back (:class:`BuildResult`); how that becomes a ``docker buildx build`` command
line is decided here, in :func:`build_command`, which is pure so that it can
be tested without an engine.

Every build is offline and reproducible by construction (see the build host
notes): ``--network none`` unless asked otherwise, ``--provenance=false``
(Nexus rejects attestation manifests), ``SOURCE_DATE_EPOCH`` both in the
environment and as a build argument, and the OCI exporter with
``rewrite-timestamp=true`` (the image/registry exporters of the default driver
refuse it). The result is an OCI archive that :mod:`airlock.ext.registry` pushes
with its digests intact.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
import subprocess
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from airlock.errors import AirlockError, ToolError
from airlock.ext import exec as ext_exec
from airlock.ext import registry

SETUP_FIX = "run tools/setup-host build-host (as root) to install and start the engine"
# Seconds: a build of a service for several platforms, some under QEMU, may
# take an hour; a question to the engine (docker info, buildx inspect) a
# moment, unless the engine hangs.
BUILD_TIMEOUT = 3 * 3600
QUERY_TIMEOUT = 60

# Build context names as BuildKit accepts them (also used in FROM/--from=).
_CONTEXT_NAME = re.compile(r"^[a-z0-9][a-z0-9._/:-]*$")
ARG_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
NETWORKS = ("none", "host", "default")
# The Dockerfile frontend's switch for an image index even for one platform.
MULTI_PLATFORM_ARG = "BUILDKIT_MULTI_PLATFORM"
# Named context values that are references, not local folders.
_REF_SCHEMES = ("docker-image://", "oci-layout://", "target:")


@dataclass(frozen=True)
class BuildSpec:
    """One ``docker buildx build`` as plain data.

    ``contexts`` maps a named build context to a local folder (a Path or a
    path string) or to a reference (``docker-image://REF``,
    ``oci-layout://DIR``). ``secrets`` maps a secret id to a *file*: its
    content reaches the build through ``--secret``, never the command line.
    ``annotations`` are written on the image index of a multi-platform
    build (on the manifest of a single-platform one), where a registry
    client reads them without pulling configs. ``index_annotations`` go on
    the image index only, never on a platform's manifest (what names the
    run rather than the inputs); a single-platform build given some is
    built as a one-platform index (``BUILDKIT_MULTI_PLATFORM=1``) to have one.
    ``index`` builds the given platforms as a part of a larger index: a
    one-platform index too, ``annotations`` on it as on the whole build's,
    so its manifest is the one the whole build makes for that platform
    (:mod:`airlock.image.assemble` joins the parts).
    """

    dockerfile: Path
    context: Path
    output: Path  # the OCI archive to write
    platforms: tuple[str, ...] = ("linux/amd64",)
    contexts: dict[str, Path | str] = field(default_factory=dict)
    build_args: dict[str, str] = field(default_factory=dict)
    secrets: dict[str, Path] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    index_annotations: dict[str, str] = field(default_factory=dict)
    target: str | None = None
    network: str = "none"
    source_date_epoch: int = 0
    no_cache: bool = False
    log: Path | None = None  # default: <output>.log
    index: bool = False


@dataclass(frozen=True)
class BuildResult:
    """What a build produced: the OCI archive, its index digest, the log."""

    archive: Path
    digest: str  # sha256:... of the image index (or manifest) in the archive
    log: Path


def _csv_field(text: str) -> str:
    """Quote one field of buildx's CSV-style ``--output`` value if needed."""
    if any(c in text for c in ',"\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


def _check_spec(spec: BuildSpec) -> None:
    """Reject a spec that would become a wrong or ambiguous command line."""
    where = f"build of {spec.dockerfile}"
    if spec.network not in NETWORKS:
        raise AirlockError(where, f"network {spec.network!r} is not one of {NETWORKS}",
                           "use none (offline builds) or host")
    if not spec.platforms:
        raise AirlockError(where, "no platform given", "name at least one, e.g. linux/amd64")
    for name in spec.contexts:
        if not _CONTEXT_NAME.match(name):
            raise AirlockError(where, f"build context name {name!r} is not valid",
                               "use lower-case letters, digits, '.', '_', '-'")
    for name in (*spec.build_args, *spec.secrets):
        if not ARG_NAME.match(name):
            raise AirlockError(where, f"build argument or secret id {name!r} is not valid",
                               "use letters, digits and '_'")
    if MULTI_PLATFORM_ARG in spec.build_args:
        raise AirlockError(where, f"{MULTI_PLATFORM_ARG} is given as a build argument",
                           "set BuildSpec.index_annotations; the index follows from them")
    for key, value in (*spec.annotations.items(), *spec.index_annotations.items()):
        if not key or "=" in key or any(ord(c) < 32 for c in key + value):
            raise AirlockError(where, f"annotation {key[:80]!r} is not a key=value line",
                               "use a key without '=' and values without control characters")
    if "SOURCE_DATE_EPOCH" in spec.build_args:
        raise AirlockError(where, "SOURCE_DATE_EPOCH is given as a build argument",
                           "set BuildSpec.source_date_epoch instead")


def _context_value(value: Path | str) -> str:
    """A named context as buildx takes it: a reference, or an absolute folder."""
    text = str(value)
    if text.startswith(_REF_SCHEMES):
        return text
    return str(Path(text).resolve())


def build_command(spec: BuildSpec) -> tuple[list[str], dict[str, str]]:
    """Return the argv and the extra environment of ``docker buildx build``.

    Pure: no engine needed, so the unit tests pin down every flag. Values
    that may be secret never appear here: secrets are passed as file paths.
    """
    _check_spec(spec)
    epoch = str(int(spec.source_date_epoch))
    argv = ["docker", "buildx", "build", "--progress=plain", "--provenance=false",
            "--sbom=false", "--network", spec.network,
            "--platform", ",".join(spec.platforms),
            "--file", str(spec.dockerfile.resolve())]
    if spec.network == "host":
        argv += ["--allow", "network.host"]
    if spec.target:
        argv += ["--target", spec.target]
    if spec.no_cache:
        argv.append("--no-cache")
    for name in sorted(spec.contexts):
        argv += ["--build-context", f"{name}={_context_value(spec.contexts[name])}"]
    argv += ["--build-arg", f"SOURCE_DATE_EPOCH={epoch}"]
    one_index = (bool(spec.index_annotations) or spec.index) and len(spec.platforms) == 1
    if one_index:
        argv += ["--build-arg", f"{MULTI_PLATFORM_ARG}=1"]
    for name in sorted(spec.build_args):
        argv += ["--build-arg", f"{name}={spec.build_args[name]}"]
    for name in sorted(spec.secrets):
        argv += ["--secret", f"id={name},src={Path(spec.secrets[name]).resolve()}"]
    level = "annotation-index" if len(spec.platforms) > 1 or spec.index else \
        "annotation-manifest"
    output = ["type=oci", f"dest={spec.output.resolve()}", "rewrite-timestamp=true"]
    output += [_csv_field(f"{level}.{key}={spec.annotations[key]}")
               for key in sorted(spec.annotations)]
    output += [_csv_field(f"annotation-index.{key}={spec.index_annotations[key]}")
               for key in sorted(spec.index_annotations)]
    argv += ["--output", ",".join(output), str(spec.context.resolve())]
    env = {"SOURCE_DATE_EPOCH": epoch, "BUILDX_NO_DEFAULT_ATTESTATIONS": "1"}
    return argv, env


_ERROR_LINE = re.compile(r"^(ERROR|error):\s*(.*)$")
_STEP_ERROR = re.compile(r"^#(\d+) ERROR: ")
_STEP_OUTPUT = re.compile(r"^#(\d+) \d+\.\d+ (.*)$")


def failure_line(log_text: str) -> str:
    """The one line that says why a build failed, from buildx's plain output.

    buildx ends with ``ERROR: failed to solve: process "/bin/sh -c ..." did
    not complete successfully: exit code: N``; the last line that the failing
    step (``#N ERROR: ...``) printed, e.g. ``ConnectionRefusedError: ...``,
    is added, as it usually names the cause.
    """
    lines = [line.rstrip() for line in log_text.splitlines() if line.strip()]
    error = ""
    for line in reversed(lines):
        match = _ERROR_LINE.match(line)
        if match:
            error = match.group(2)
            break
    if not error:
        error = lines[-1] if lines else "no output"
    failed = {m.group(1) for m in map(_STEP_ERROR.match, lines) if m}
    cause = ""
    for line in reversed(lines):
        match = _STEP_OUTPUT.match(line)
        if match and match.group(1) in failed:
            cause = match.group(2).strip()
            break
    text = f"{error} (last output: {cause})" if cause and cause not in error else error
    return " ".join(text.split())


def archive_digest(archive: Path) -> str:
    """The digest of the image an OCI archive holds (its one index.json entry)."""
    try:
        with tarfile.open(archive) as tar:
            member = tar.extractfile("index.json")
            if member is None:
                raise KeyError("index.json")
            index = json.load(member)
    except (OSError, KeyError, tarfile.TarError, ValueError) as error:
        raise ToolError(str(archive), f"not a readable OCI archive: {error}") from error
    manifests = index.get("manifests") or []
    if len(manifests) != 1:
        raise ToolError(str(archive), f"index.json lists {len(manifests)} images, expected 1")
    return manifests[0]["digest"]


def archive_manifest(archive: Path) -> dict:
    """The image index (or manifest) an OCI archive holds, parsed (its one index.json entry)."""
    digest = archive_digest(archive)
    try:
        with tarfile.open(archive) as tar:
            member = tar.extractfile("blobs/sha256/" + digest.split(":", 1)[1])
            if member is None:
                raise KeyError(digest)
            doc = json.loads(member.read(4 * 1024 * 1024))
    except (OSError, KeyError, tarfile.TarError, ValueError) as error:
        raise ToolError(str(archive), f"not a readable OCI archive: {error}") from error
    if not isinstance(doc, dict):
        raise ToolError(str(archive), f"{digest} is not a JSON object")
    return doc


def build(spec: BuildSpec, timeout: float = BUILD_TIMEOUT) -> BuildResult:
    """Run the build; return the archive, its digest and the log path.

    The whole buildx output goes to the log (one file per build, kept for
    the build record); a failure raises ToolError naming the failing step.
    A build that outlives ``timeout`` seconds is stopped and is a ToolError.
    """
    log = spec.log or spec.output.with_name(spec.output.name + ".log")
    log.parent.mkdir(parents=True, exist_ok=True)
    spec.output.parent.mkdir(parents=True, exist_ok=True)
    # Written under a temporary name: a failed or killed build never leaves
    # a half-written archive where a later step would take it as a result.
    tmp = spec.output.with_name(f".{spec.output.name}.tmp-{os.getpid()}")
    argv, env = build_command(dataclasses.replace(spec, output=tmp))
    where = f"docker buildx build {spec.dockerfile}"
    done = False
    try:
        with registry.docker_config() as docker_env:  # the site registry's credentials
            proc = ext_exec.run(argv, where=where, timeout=timeout,
                                env=ext_exec.environ(**env, **docker_env), log=log, check=False)
        if proc.returncode != 0:
            raise ToolError(where, failure_line(log.read_text(errors="replace")),
                            f"log: {log}")
        tmp.replace(spec.output)
        done = True
    finally:
        if not done:
            tmp.unlink(missing_ok=True)
    return BuildResult(archive=spec.output, digest=archive_digest(spec.output), log=log)


@dataclass(frozen=True)
class EngineInfo:
    """What airlock needs to know about the engine, as plain data."""

    server_version: str
    buildx_version: str
    containerd_snapshotter: bool
    platforms: tuple[str, ...]


def _run(argv: list[str], where: str, *, timeout: float = QUERY_TIMEOUT,
         fix: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run a short docker command; a failure is a ToolError with its last stderr line."""
    return ext_exec.run(argv, where=where, timeout=timeout, fix=fix)


@dataclass(frozen=True)
class Builder:
    """What ``docker buildx inspect`` says about the current builder."""

    driver: str
    buildkit: tuple[str, ...]  # the BuildKit version of each node, as reported
    platforms: tuple[str, ...]


def parse_inspect(text: str) -> Builder:
    """The driver, BuildKit versions and platforms in ``docker buildx inspect`` output.

    buildx 0.10+ says ``BuildKit version: v0.12.5`` per node, older ones
    ``Buildkit: v0.10.6``. A builder of several nodes offers every
    platform of each.
    """
    driver = ""
    buildkit: list[str] = []
    platforms: list[str] = []
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key, value = key.strip().lower(), value.strip()
        if key == "driver" and not driver:
            driver = value
        elif key in ("buildkit version", "buildkit"):
            buildkit.append(value)
        elif key == "platforms":
            platforms += [p.strip() for p in value.split(",") if p.strip()]
    return Builder(driver=driver, buildkit=tuple(buildkit),
                   platforms=tuple(dict.fromkeys(platforms)))


def parse_buildx_version(text: str) -> str:
    """buildx's version in ``docker buildx version`` (``github.com/docker/buildx 0.13.1 ..``)."""
    words = text.split()
    return words[1] if len(words) > 1 else "?"


def info() -> EngineInfo:
    """Ask the engine about itself (``docker info``, ``docker buildx``)."""
    proc = _run(["docker", "info", "--format", "{{json .}}"], "docker info", fix=SETUP_FIX)
    data = json.loads(proc.stdout)
    if data.get("ServerErrors") or not data.get("ServerVersion"):
        errors = data.get("ServerErrors") or ["the engine did not answer"]
        raise ToolError("docker info", str(errors[-1]), SETUP_FIX)
    status = data.get("DriverStatus") or []
    snapshotter = any("io.containerd.snapshotter" in str(v) for pair in status for v in pair)
    version = _run(["docker", "buildx", "version"], "docker buildx version", fix=SETUP_FIX)
    inspect = _run(["docker", "buildx", "inspect"], "docker buildx inspect", fix=SETUP_FIX)
    return EngineInfo(server_version=data["ServerVersion"],
                      buildx_version=parse_buildx_version(version.stdout),
                      containerd_snapshotter=snapshotter,
                      platforms=parse_inspect(inspect.stdout).platforms)


def _known(version: str) -> bool:
    """Whether a reported BuildKit version names a release (distribution builds say unknown)."""
    return bool(version) and "unknown" not in version and not version.startswith("v0.0.0")


@functools.cache
def engine_identity() -> dict[str, str]:
    """What of the engine decides an image's bytes: ``{"buildx": .., "buildkit": ..}``.

    For input digests: an upgrade of buildx or of BuildKit may change the
    bytes a build makes, so it must change the digest, or an "immutable" tag
    would silently point at other bytes. ``buildkit`` is the BuildKit of the
    current builder as ``docker buildx inspect`` reports it (the versions of
    its nodes, sorted, joined by ","). With the ``docker`` driver BuildKit is
    compiled into dockerd, and distribution builds of dockerd report
    ``v0.0.0+unknown``: then ``dockerd <server version>`` names it. Asked
    once per process (a build computes many digests).
    """
    version = _run(["docker", "buildx", "version"], "docker buildx version", fix=SETUP_FIX)
    inspect = _run(["docker", "buildx", "inspect"], "docker buildx inspect", fix=SETUP_FIX)
    builder = parse_inspect(inspect.stdout)
    kits = sorted(set(builder.buildkit))
    if builder.driver == "docker" and not any(_known(k) for k in kits):
        server = _run(["docker", "version", "--format", "{{.Server.Version}}"],
                      "docker version", fix=SETUP_FIX).stdout.strip()
        kits = [f"dockerd {server}"]
    return {"buildx": parse_buildx_version(version.stdout),
            "buildkit": ",".join(kits) or "unknown"}


def check(platforms: tuple[str, ...] = ()) -> EngineInfo:
    """Fail with one clear line unless the engine can do airlock's builds.

    Needed: a reachable engine, buildx, the containerd image store (multi-
    platform builds with the default driver) and every requested platform.
    """
    engine = info()
    if not engine.containerd_snapshotter:
        raise ToolError("docker", "the engine does not use the containerd image store "
                        "(multi-platform builds need it)", SETUP_FIX)
    missing = [p for p in platforms if p not in engine.platforms]
    if missing:
        raise ToolError("docker buildx", f"the builder cannot build for {', '.join(missing)} "
                        f"(it offers {', '.join(engine.platforms) or 'nothing'})",
                        SETUP_FIX + " (it enables QEMU)")
    return engine
