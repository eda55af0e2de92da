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

import base64
import dataclasses
import functools
import json
import os
import re
import subprocess
import tarfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from airlock import files, progress
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
# buildx's machine-readable progress: BuildKit's solve status, one JSON object
# after another (each printed over several lines, "{" and "}" at column 0),
# then, on failure, plain text (the Dockerfile excerpt and "ERROR: ...").
# (buildx 0.13.1 knows it, although its --help names only auto, plain, tty.)
PROGRESS_FORMAT = "rawjson"
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
    title: str = ""  # its progress line (default: "<context folder>: build <platforms>")


@dataclass(frozen=True)
class BuildResult:
    """What a build produced: the OCI archive, its index digest, the log."""

    archive: Path
    digest: str  # sha256:... of the image index (or manifest) in the archive
    log: Path
    steps: tuple[StepTiming, ...] = ()  # each step's time, from BuildKit's progress


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
    argv = ["docker", "buildx", "build", f"--progress={PROGRESS_FORMAT}", "--provenance=false",
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


_VERTEX_NAME = re.compile(r"^\[(?P<tags>[^\]]*)\] (?P<command>.*)$")
# "linux/arm64", "linux/arm64/v8", or "linux/amd64->arm64": a stage of the
# arm64 image run on the build platform (FROM --platform=$BUILDPLATFORM).
_PLATFORM_TAG = re.compile(r"^(?P<os>[a-z][a-z0-9]*)/(?P<on>[a-z0-9]+(?:/[a-z0-9]+)?)"
                           r"(?:->(?P<to>[a-z0-9]+(?:/[a-z0-9]+)?))?$")
_STEP_TAG = re.compile(r"^\d+/\d+$")


def _timestamp(text: object) -> float | None:
    """Seconds since the epoch of BuildKit's RFC 3339 time (nanoseconds cut to micro)."""
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def _busy_seconds(intervals: dict[float, float | None], end: float | None = None) -> float:
    """Seconds covered by the ``started -> completed`` intervals (overlaps counted once).

    BuildKit may start a vertex more than once (a retry, a second solve of
    the same step); its time is the union of those runs. A run not yet
    completed counts up to ``end`` (or nothing when ``end`` is None).
    """
    total, reach = 0.0, float("-inf")
    for start, stop in sorted(intervals.items()):
        stop = end if stop is None else stop
        if stop is None or stop <= reach:
            continue
        total += stop - max(start, reach)
        reach = stop
    return total


@dataclass
class StatusState:
    """One status of a step (``exporting layers``, ``sending tarball``, a transfer).

    The same id may run more than once (the export rewrites the layers of
    each platform under one id): each run is an interval, as for a step.
    """

    intervals: dict[float, float | None] = field(default_factory=dict)
    current: int = 0
    total: int = 0

    @property
    def running(self) -> float | None:
        """When its unfinished run started (None when none runs)."""
        return max((s for s, e in self.intervals.items() if e is None), default=None)

    def seconds(self) -> float:
        return _busy_seconds(self.intervals)


@dataclass
class VertexState:
    """One step of a build (a vertex of BuildKit's graph), as far as the events told."""

    digest: str
    name: str
    number: int  # the order it was first seen in, from 1 (the #N of plain output)
    intervals: dict[float, float | None] = field(default_factory=dict)
    cached: bool = False
    error: str = ""
    # status id -> its progress: layers, transfers, the export's parts
    statuses: dict[str, StatusState] = field(default_factory=dict)
    output: list[tuple[float, str]] = field(default_factory=list)  # (time, line)
    _partial: dict[int, str] = field(default_factory=dict)  # stream -> unfinished line

    @property
    def started(self) -> float | None:
        return min(self.intervals) if self.intervals else None

    @property
    def completed(self) -> float | None:
        if not self.intervals or any(v is None for v in self.intervals.values()):
            return None
        return max(v for v in self.intervals.values() if v is not None)

    @property
    def running(self) -> bool:
        return bool(self.intervals) and self.completed is None

    def seconds(self) -> float:
        return _busy_seconds(self.intervals)


@dataclass(frozen=True)
class StepTiming:
    """How long one step of a build took, as plain data (for the record and bench).

    ``platform``, ``stage`` and ``command`` come from the step's name
    (``[linux/arm64 build 2/2] RUN ...``); steps of the engine itself
    (``exporting to oci image format``) have none but the command.
    ``parts`` are the step's timed statuses (the export's ``exporting
    layers``, which is where layers are compressed) as (name, seconds).
    """

    name: str
    platform: str
    stage: str
    command: str
    seconds: float
    cached: bool
    error: str = ""
    parts: tuple[tuple[str, float], ...] = ()


def split_vertex_name(name: str) -> tuple[str, str, str]:
    """``(platform, stage, command)`` of ``[linux/arm64 build 2/2] RUN x`` (missing: "").

    The platform is the image's: ``[linux/amd64->arm64 build 2/2]`` (the
    arm64 image's stage run natively on amd64) is linux/arm64's.
    """
    match = _VERTEX_NAME.match(name)
    if not match:
        return "", "", name
    tags = match.group("tags").split()
    platform = ""
    found = _PLATFORM_TAG.match(tags[0]) if tags else None
    if found:
        tags.pop(0)
        platform = f"{found.group('os')}/{found.group('to') or found.group('on')}"
    if tags and _STEP_TAG.match(tags[-1]):
        tags.pop()
    return platform, " ".join(tags), match.group("command")


class BuildProgress:
    """BuildKit's solve status as it arrives from ``--progress rawjson``, read into steps.

    :meth:`feed` takes the output in any pieces (a line may be cut
    anywhere); the queries answer what a person asks of a running build:
    how many steps of how many are done (:meth:`counts`), which one runs now
    (:meth:`current`), and afterwards how long each took (:meth:`timings`)
    and the usual plain log (:meth:`plain_log`, what :func:`failure_line`
    reads). Lines that are not JSON (the command line the log starts with,
    buildx's closing ``ERROR:`` lines) are kept as text.
    """

    def __init__(self) -> None:
        self.vertices: dict[str, VertexState] = {}
        self.head: list[str] = []  # text before the first event
        self.tail: list[str] = []  # text after it
        self._pending = ""  # an unfinished line
        self._object: list[str] | None = None  # the lines of an object being read
        self.last_event: float | None = None

    def feed(self, chunk: str) -> int:
        """Read more output; return how many events it completed."""
        data = self._pending + chunk
        lines = data.split("\n")
        self._pending = lines.pop()
        events = 0
        for line in lines:
            if self._object is None:
                if line == "{":
                    self._object = [line]
                elif line.strip():
                    (self.tail if self.vertices else self.head).append(line)
                continue
            self._object.append(line)
            if line == "}":
                text, self._object = "\n".join(self._object), None
                try:
                    doc = json.loads(text)
                except ValueError:
                    (self.tail if self.vertices else self.head).extend(text.splitlines())
                    continue
                if isinstance(doc, dict):
                    self._event(doc)
                    events += 1
        return events

    def finish(self) -> None:
        """The output ended: keep an unfinished last line or object as text."""
        rest = (self._object or []) + ([self._pending] if self._pending else [])
        (self.tail if self.vertices else self.head).extend(r for r in rest if r.strip())
        self._object, self._pending = None, ""

    def _vertex(self, digest: str, name: str = "") -> VertexState:
        vertex = self.vertices.get(digest)
        if vertex is None:
            vertex = VertexState(digest=digest, name=name or digest[:19],
                                 number=len(self.vertices) + 1)
            self.vertices[digest] = vertex
        elif name:
            vertex.name = name
        return vertex

    def _event(self, doc: dict) -> None:
        for item in doc.get("vertexes") or []:
            if not isinstance(item, dict) or not isinstance(item.get("digest"), str):
                continue
            vertex = self._vertex(item["digest"], str(item.get("name") or ""))
            started = _timestamp(item.get("started"))
            if started is not None:
                completed = _timestamp(item.get("completed"))
                vertex.intervals[started] = completed
                self.last_event = max(self.last_event or 0.0, completed or started)
            vertex.cached = vertex.cached or bool(item.get("cached"))
            if item.get("error"):
                vertex.error = " ".join(str(item["error"]).split())
        for item in doc.get("statuses") or []:
            if not isinstance(item, dict) or not isinstance(item.get("vertex"), str):
                continue
            vertex = self._vertex(item["vertex"])
            status = vertex.statuses.setdefault(str(item.get("id") or ""), StatusState())
            started = _timestamp(item.get("started"))
            if started is not None:
                status.intervals[started] = _timestamp(item.get("completed"))
            status.current = int(item.get("current") or 0)
            status.total = int(item.get("total") or 0)
        for item in doc.get("logs") or []:
            if not isinstance(item, dict) or not isinstance(item.get("vertex"), str):
                continue
            vertex = self._vertex(item["vertex"])
            try:
                text = base64.b64decode(str(item.get("data") or "")).decode("utf-8", "replace")
            except ValueError:
                continue
            when = _timestamp(item.get("timestamp")) or 0.0
            stream = int(item.get("stream") or 1)
            pieces = (vertex._partial.pop(stream, "") + text).replace("\r", "\n").split("\n")
            if pieces[-1]:
                vertex._partial[stream] = pieces[-1]
            vertex.output += [(when, line) for line in pieces[:-1] if line.strip()]

    # -- what a person asks ---------------------------------------------------
    def counts(self) -> tuple[int, int]:
        """``(done, known)``: steps completed (or cached), of the steps known so far."""
        done = sum(1 for v in self.vertices.values() if v.completed is not None)
        return done, len(self.vertices)

    def current(self) -> str:
        """The step started last among those running, and what it does ("" when none runs).

        ``exporting to oci image format: exporting layers``: a status of the
        step still running (a layer compressed, a blob sent) is added.
        """
        running = [v for v in self.vertices.values() if v.running]
        if not running:
            return ""
        vertex = max(running, key=lambda v: (v.started or 0.0, v.number))
        busy = [(s.running, name, s.current, s.total) for name, s in vertex.statuses.items()
                if s.running is not None]
        if not busy:
            return vertex.name
        _, name, current, total = max(busy)
        amount = f" {current}/{total}" if total else ""
        return f"{vertex.name}: {name}{amount}"

    def timings(self) -> list[StepTiming]:
        """Every step that ran or was cached, in the order first seen, with its seconds."""
        rows = []
        for vertex in self.vertices.values():
            if not vertex.intervals and not vertex.cached:
                continue
            platform, stage, command = split_vertex_name(vertex.name)
            parts = tuple((name, round(s.seconds(), 3)) for name, s in vertex.statuses.items()
                          if s.intervals and s.running is None)
            rows.append(StepTiming(name=vertex.name, platform=platform, stage=stage,
                                   command=command, seconds=round(vertex.seconds(), 3),
                                   cached=vertex.cached, error=vertex.error, parts=parts))
        return rows

    def plain_log(self) -> str:
        """The build as ``--progress plain`` shows it, one step after another.

        ``#N name``, the step's output as ``#N SECONDS line``, its
        statuses, then ``#N DONE 1.2s``, ``#N CACHED`` or ``#N ERROR: why``;
        buildx's closing text last.
        """
        out = list(self.head)
        for v in self.vertices.values():
            out.append(f"#{v.number} {v.name}")
            start = v.started or 0.0
            for when, line in v.output:
                out.append(f"#{v.number} {max(when - start, 0.0):.3f} {line}")
            for name, status in v.statuses.items():
                amount = f" {status.current}/{status.total}" if status.total else ""
                took = f" {status.seconds():.1f}s done" \
                    if status.intervals and status.running is None else ""
                out.append(f"#{v.number} {name}{amount}{took}")
            if v.error:
                out.append(f"#{v.number} ERROR: {v.error}")
            elif v.cached:
                out.append(f"#{v.number} CACHED")
            elif v.completed is not None:
                out.append(f"#{v.number} DONE {v.seconds():.1f}s")
            out.append("")
        out += self.tail
        return "\n".join(out) + "\n"


def parse_progress(text: str) -> BuildProgress:
    """A whole ``--progress rawjson`` output (or a build's raw log), read."""
    state = BuildProgress()
    state.feed(text)
    state.finish()
    return state


def raw_log_of(log: Path) -> Path:
    """Where a build keeps buildx's raw progress next to its plain log."""
    return log.with_name(log.name + ".rawjson")


def build_timings(log: Path) -> list[StepTiming]:
    """The step timings of a finished build, from the raw progress beside its log."""
    try:
        text = raw_log_of(log).read_text(errors="replace")
    except OSError as error:
        raise ToolError(str(raw_log_of(log)), f"cannot read the build's progress: "
                        f"{error.strerror}") from None
    return parse_progress(text).timings()


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


def _title(spec: BuildSpec) -> str:
    """What the build's progress line calls it: ``keystone: build linux/amd64, linux/arm64``."""
    if spec.title:
        return spec.title
    target = f" (target {spec.target})" if spec.target else ""
    return f"{spec.dockerfile.resolve().parent.name}: build {', '.join(spec.platforms)}{target}"


def _follow(raw: Path, done: threading.Event, on_events: Callable[[BuildProgress], None]) -> None:
    """Read buildx's raw progress as the build writes it; call ``on_events`` on each event.

    The build's output goes to a file through the one exec helper (its
    timeout, its signal handling, its redacted command line); this thread
    only reads that file as it grows, so a live view costs the build nothing
    and cannot stop it. Display only: the result is read again from the
    whole file once the build ended.
    """
    state = BuildProgress()
    handle = None
    try:
        while True:
            finished = done.is_set()
            if handle is None:
                try:
                    handle = open(raw, errors="replace")  # noqa: SIM115 - closed below
                except OSError:
                    handle = None
            if handle is not None:
                chunk = handle.read(1 << 20)
                if chunk and state.feed(chunk):
                    on_events(state)
                if chunk:
                    continue
            if finished:
                return
            done.wait(0.25)
    except Exception:  # noqa: BLE001 - a display fault must never fail the build
        return
    finally:
        if handle is not None:
            handle.close()


def build(spec: BuildSpec, timeout: float = BUILD_TIMEOUT) -> BuildResult:
    """Run the build; return the archive, its digest, the log and each step's time.

    buildx reports BuildKit's progress as ``rawjson``, kept beside the log
    (:func:`raw_log_of`); while the build runs its events drive one
    progress step (:mod:`airlock.progress`: the step running now, n of m,
    elapsed), and when it ends the log is written as plain text as
    ``--progress plain`` would (the one a person reads and
    :func:`failure_line` parses). A failure raises ToolError naming the
    failing step. A build that outlives ``timeout`` seconds is stopped and
    is a ToolError.
    """
    log = spec.log or spec.output.with_name(spec.output.name + ".log")
    raw = raw_log_of(log)
    log.parent.mkdir(parents=True, exist_ok=True)
    spec.output.parent.mkdir(parents=True, exist_ok=True)
    # Written under a temporary name: a failed or killed build never leaves
    # a half-written archive where a later step would take it as a result.
    tmp = spec.output.with_name(f".{spec.output.name}.tmp-{os.getpid()}")
    argv, env = build_command(dataclasses.replace(spec, output=tmp))
    where = f"docker buildx build {spec.dockerfile}"
    done = False
    raw.unlink(missing_ok=True)  # the follower must not read an earlier build's events
    with progress.step(_title(spec), unit="steps") as step:
        def show(state: BuildProgress) -> None:
            finished, known = state.counts()
            step.update(done=finished, total=known, detail=state.current())

        ended = threading.Event()
        follower = threading.Thread(target=_follow, args=(raw, ended, show),
                                    name="buildx-progress", daemon=True)
        follower.start()
        state = BuildProgress()
        try:
            try:
                with registry.docker_config() as docker_env:  # the site registry's credentials
                    proc = ext_exec.run(argv, where=where, timeout=timeout,
                                        env=ext_exec.environ(**env, **docker_env), log=raw,
                                        check=False)
            finally:  # a timeout or a signal too: the log shows how far it got
                ended.set()
                follower.join(timeout=5)
                if raw.is_file():
                    state = parse_progress(raw.read_text(errors="replace"))
                    files.write_atomic(log, state.plain_log())
            timings = tuple(state.timings())
            if proc.returncode != 0:
                raise ToolError(where, failure_line(state.plain_log()), f"log: {log}")
            tmp.replace(spec.output)
            done = True
        finally:
            if not done:
                tmp.unlink(missing_ok=True)
        cached = sum(1 for row in timings if row.cached)
        step.finish(f"{len(timings)} steps, {cached} cached")
    return BuildResult(archive=spec.output, digest=archive_digest(spec.output), log=log,
                       steps=timings)


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
