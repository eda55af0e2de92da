"""What a long step is doing, how far it is, and for how long: the one place that draws it.

A step that can take more than a few seconds (mmdebstrap, the apt closure,
wheel downloads, sdist builds, each buildx build, a push, a bundle step) is
wrapped in :func:`step`; it reports how far it is with :meth:`Step.update`
(n of m, bytes, what it works on now). Plain data in: nothing here knows
what an image or a wheel is.

Two renderings, one rule to choose (:func:`choose_mode`):

- ``tty``: stderr is a terminal: one live line per running step, rewritten
  in place (``\\r`` and erase-to-end-of-line) about once a second with the
  elapsed time, then replaced by the step's one final line.
- ``plain``: a log, a pipe, a CI job (Zuul sets ``ZUUL_JOB``, most others
  ``CI``): one line per step, when it ends, with the elapsed time and how
  far it got; no carriage return, no colour, nothing in between.

In both, a step that fails draws nothing more: the error airlock then
prints is that step's one line (hostile input and broken tools get one
clear line, never a progress line beside it).

``AIRLOCK_PROGRESS=plain|tty|auto`` overrides the choice (``auto``, the
default, is the rule above). Other progress lines (:func:`say`) go through
the same renderer, so that a live line never gets mixed into them.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TextIO

from airlock.urls import redact

ENV = "AIRLOCK_PROGRESS"
MODES = ("auto", "plain", "tty")
# Variables that say "this runs in a CI job": their output is a log.
CI_VARIABLES = ("ZUUL_JOB", "CI", "GITHUB_ACTIONS", "GITLAB_CI", "JENKINS_URL", "BUILD_ID")
# Seconds between two redraws of the live line (the elapsed time ticks).
TICK = 1.0


def choose_mode(env: Mapping[str, str] | None = None, stream: TextIO | None = None) -> str:
    """``tty`` or ``plain``: how progress is drawn on ``stream`` in environment ``env``.

    ``AIRLOCK_PROGRESS`` wins when it says ``plain`` or ``tty``; otherwise
    (``auto``, unset, anything else) a terminal that is not ``TERM=dumb``
    gets the live line, unless a CI variable is set: a CI job's "terminal"
    is recorded as a log, where rewritten lines become noise.
    """
    env = os.environ if env is None else env
    stream = sys.stderr if stream is None else stream
    asked = env.get(ENV, "auto").strip().lower()
    if asked in ("plain", "tty"):
        return asked
    if any(env.get(name) for name in CI_VARIABLES) or env.get("TERM") == "dumb":
        return "plain"
    try:
        return "tty" if stream.isatty() else "plain"
    except (AttributeError, ValueError):  # closed, or not a real stream
        return "plain"


def seconds_text(seconds: float) -> str:
    """``4.2 s``, ``1 min 05 s``: an elapsed time as people read it."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(seconds + 0.5), 60)
    return f"{minutes} min {rest:02d} s"


def bytes_text(count: float) -> str:
    """``512 B``, ``3.4 MB``, ``1.20 GB`` (decimal units, as the summary's sizes)."""
    if count < 1000:
        return f"{int(count)} B"
    for unit, size in (("kB", 1e3), ("MB", 1e6), ("GB", 1e9)):
        if count < size * 1000 or unit == "GB":
            value = count / size
            return f"{value:.2f} {unit}" if value < 10 else f"{value:.1f} {unit}"
    raise AssertionError("unreachable")


def last_line_of(path: str | os.PathLike[str], limit: int = 4096) -> str:
    """The last non-blank line of a log being written (its last ``limit`` bytes read)."""
    with open(path, "rb") as handle:
        handle.seek(max(handle.seek(0, os.SEEK_END) - limit, 0))
        lines = handle.read().decode("utf-8", "replace").splitlines()
    return next((line.strip() for line in reversed(lines) if line.strip()), "")


@dataclass
class Step:
    """One running step: what it is, how far (``done`` of ``total``), what it does now."""

    what: str
    started: float
    total: int | None = None
    done: int = 0
    unit: str = ""  # "bytes" ("1.2 MB of 4.0 MB"), or what is counted ("3 of 12 wheels")
    detail: str = ""
    result: str = ""  # said on its final line (e.g. "12 wheels, 3 built")
    _renderer: Renderer | None = field(default=None, repr=False, compare=False)

    def update(self, done: int | None = None, total: int | None = None,
               detail: str | None = None, advance: int = 0) -> None:
        """Say how far the step is; redrawn on the live line (never a line of its own)."""
        if done is not None:
            self.done = done
        self.done += advance
        if total is not None:
            self.total = total
        if detail is not None:
            self.detail = redact(" ".join(detail.split()))
        if self._renderer is not None:
            self._renderer.changed(self)

    @contextlib.contextmanager
    def follow(self, measure: Callable[[], int], every: float = 0.5,
               detail: Callable[[], str] | None = None) -> Iterator[Step]:
        """While the body runs, ``done`` is ``measure()`` (files so far, bytes written).

        For a program that says nothing to airlock while it works (pip
        download, mmdebstrap, apt in a container): what it leaves on disk
        is how far it is, and ``detail`` (e.g. its log's last line) what it
        does. Both run in a thread; an error in them is ignored.
        """
        stop = threading.Event()

        def poll() -> None:
            while not stop.wait(every):
                with contextlib.suppress(Exception):
                    self.update(done=measure(), detail=detail() if detail else None)

        thread = threading.Thread(target=poll, name="airlock-progress-follow", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            stop.set()
            thread.join(timeout=every + 1)
            with contextlib.suppress(Exception):
                self.done = measure()

    def finish(self, result: str) -> None:
        """What the final line says besides the elapsed time."""
        self.result = " ".join(result.split())

    def amount(self) -> str:
        """``3 of 12 wheels``, ``1.2 MB of 4.0 MB``, ``7 wheels``, or nothing yet."""
        if self.unit == "bytes":
            if self.total:
                return f"{bytes_text(self.done)} of {bytes_text(self.total)}"
            return bytes_text(self.done) if self.done else ""
        noun = f" {self.unit}" if self.unit else ""
        if self.total:
            return f"{self.done} of {self.total}{noun}"
        return f"{self.done}{noun}" if self.done else ""


def live_line(step: Step, now: float, others: int = 0, width: int = 0) -> str:
    """The live line of a running step: ``what 12.3 s, 3 of 12 (+1 more): detail``.

    The detail comes last, so that a line cut to ``width`` columns (a live
    line must never wrap: ``\r`` would not reach its start) keeps the
    elapsed time and the count.
    """
    text = f"{step.what} {seconds_text(now - step.started)}"
    amount = step.amount()
    if amount:
        text += f", {amount}"
    if others:
        text += f" (+{others} more)"
    if step.detail:
        text += f": {step.detail}"
    if width and len(text) > width:
        text = text[:max(width - 1, 1)] + "…"
    return text


def end_line(step: Step, now: float, error: BaseException | None) -> str:
    """The final line of a step: ``what: done in 12.3 s (12 of 12, ...)`` or ``failed after``."""
    said = [p for p in (step.result or step.amount(),) if p]
    tail = f" ({', '.join(said)})" if said else ""
    if error is None:
        return f"{step.what}: done in {seconds_text(now - step.started)}{tail}"
    why = "interrupted" if isinstance(error, (KeyboardInterrupt, SystemExit)) else "failed"
    return f"{step.what}: {why} after {seconds_text(now - step.started)}{tail}"


class Renderer:
    """Draws steps and lines on one stream, in one mode, safe from several threads.

    ``clock`` and ``width`` are parameters so that a test draws with a
    clock it moves itself; ``ticker`` False draws only on events.
    """

    def __init__(self, stream: TextIO | None, mode: str, *,
                 clock: Callable[[], float] = time.monotonic,
                 width: Callable[[], int] | None = None, ticker: bool = True) -> None:
        if mode not in ("plain", "tty"):
            raise ValueError(f"progress mode {mode!r}: use plain or tty")
        self._stream, self.mode, self.clock = stream, mode, clock
        self.width = width or (lambda: shutil.get_terminal_size((100, 24)).columns)
        self._ticker = ticker
        self._lock = threading.RLock()
        self._active: list[Step] = []
        self._drawn = False  # a live line is on the screen now
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()

    @property
    def stream(self) -> TextIO:
        """The stream drawn on: the one given, else stderr as it is now (tests replace it)."""
        return self._stream if self._stream is not None else sys.stderr

    # -- events ---------------------------------------------------------------
    def start(self, what: str, total: int | None = None, unit: str = "") -> Step:
        """A step begins: its live line (tty); plain mode waits for the end."""
        step = Step(what=" ".join(redact(what).split()), started=self.clock(), total=total,
                    unit=unit, _renderer=self)
        with self._lock:
            self._active.append(step)
            if self.mode == "tty":
                self._draw()
                self._start_ticker()
        return step

    def changed(self, step: Step) -> None:
        """A step moved on: redraw the live line (plain mode waits for the end)."""
        if self.mode == "tty":
            with self._lock:
                self._draw()

    def end(self, step: Step, error: BaseException | None = None) -> None:
        """A step ended: its one final line, with the elapsed time (none when it failed)."""
        with self._lock:
            with contextlib.suppress(ValueError):
                self._active.remove(step)
            step._renderer = None
            if error is None:
                self._write(end_line(step, self.clock(), error))
            else:  # the error that follows is the step's line
                self._clear()
                self._draw()

    def say(self, line: str, stream: TextIO | None = None) -> None:
        """A line of its own (to ``stream``, default this renderer's), under the live line."""
        with self._lock:
            self._clear()
            _put(stream or self.stream, redact(line) + "\n")
            self._draw()

    # -- drawing --------------------------------------------------------------
    def _write(self, line: str) -> None:
        self._clear()
        _put(self.stream, redact(line) + "\n")
        if self.mode == "tty":
            self._draw()

    def _clear(self) -> None:
        if self._drawn:
            _put(self.stream, "\r\x1b[K")
            self._drawn = False

    def _draw(self) -> None:
        if self.mode != "tty" or not self._active:
            if self._drawn:
                self._clear()
            return
        step = self._active[-1]  # the latest step: the one a reader waits for
        text = live_line(step, self.clock(), len(self._active) - 1, max(self.width() - 1, 20))
        _put(self.stream, "\r" + text + "\x1b[K")
        self._drawn = True

    def _start_ticker(self) -> None:
        if not self._ticker or (self._thread and self._thread.is_alive()):
            return
        self._thread = threading.Thread(target=self._tick, name="airlock-progress", daemon=True)
        self._thread.start()

    def _tick(self) -> None:
        while not self._wake.wait(TICK):
            with self._lock:
                if not self._active:
                    self._thread = None
                    return
                self._draw()


def _put(stream: TextIO | None, text: str) -> None:
    """Write and flush progress; a reader gone away ends the progress, never the run.

    ``2>&-`` leaves no stream (sys.stderr is None); a pipe whose reader
    exited (``2>&1 | head``) or a terminal that hung up fails every write.
    Either used to fail the step being drawn (exit 3, or exit 2 "Broken
    pipe") for the sake of a line nobody could read. The stream's file is
    pointed at /dev/null, so that later lines and the interpreter's last
    flush succeed too.
    """
    if stream is None:
        return
    try:
        stream.write(text)
        stream.flush()
    except (OSError, ValueError):  # ValueError: the stream was closed
        with contextlib.suppress(OSError, ValueError, AttributeError, io.UnsupportedOperation):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, stream.fileno())
            os.close(devnull)


_default: Renderer | None = None
_default_lock = threading.Lock()


def renderer() -> Renderer:
    """The process's renderer on stderr, its mode chosen once by :func:`choose_mode`."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Renderer(None, choose_mode())
        return _default


def use(new: Renderer | None) -> Renderer | None:
    """Make ``new`` the process's renderer (None: choose again on next use); return the old."""
    global _default
    with _default_lock:
        old, _default = _default, new
        return old


@contextlib.contextmanager
def step(what: str, total: int | None = None, unit: str = "") -> Iterator[Step]:
    """Run a step: its start, its live progress, its end with the elapsed time.

    The step fails (its line says so) when the body raises; the exception
    goes on unchanged.
    """
    draw = renderer()
    current = draw.start(what, total=total, unit=unit)
    try:
        yield current
    except BaseException as error:
        draw.end(current, error)
        raise
    draw.end(current)


def say(line: str, stream: TextIO | None = None) -> None:
    """Print a progress line (redacted, flushed) without tearing a live line."""
    renderer().say(line, stream)
