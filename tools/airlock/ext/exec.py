"""The one way airlock runs an external program: a timeout, a log, one line on failure.

Every module of :mod:`airlock.ext` runs its program through :func:`run`, so
that every call has a timeout (nothing hangs forever), a program that is
not installed names the Debian package to install (:data:`PACKAGES`, the
one table of what airlock runs and where it comes from, which a unit test
holds against bindep.txt), a log never records a credential (the command
line is redacted), and a failure is a :class:`ToolError` carrying the
program's own last words.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import TypeVar

from airlock.errors import ToolError
from airlock.urls import redact

T = TypeVar("T")

# Program -> the Debian package that provides it (bindep.txt installs each).
PACKAGES = {
    "git": "git",
    "docker": "docker-cli",
    "skopeo": "skopeo",
    "mmdebstrap": "mmdebstrap",
    "arch-test": "arch-test",
    "ssh-keygen": "openssh-client",
}
SETUP = "tools/setup-host build-host"
# Programs that are no Debian package: what to do instead.
OTHER_FIXES = {
    "uv": "install uv next to airlock (pip install uv) or put it on PATH",
}


def install_fix(program: str) -> str:
    """What to do when ``program`` is missing: the package, and the script that installs it."""
    name = Path(program).name
    if name in OTHER_FIXES:
        return OTHER_FIXES[name]
    package = PACKAGES.get(name)
    if package is None:
        return f"install {name}"
    return f"install the Debian package {package} (as root: {SETUP})"


def last_line(text: str, default: str = "") -> str:
    """The last non-blank line of a program's output: usually the one that says why."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else default


# Programs running now, so that a signal ends them with airlock (see stop_all).
_running: set[subprocess.Popen] = set()
_running_lock = threading.RLock()  # re-entrant: stop_all runs in a signal handler
_stopping = False
# Seconds a program has to clean up after SIGTERM (mmdebstrap unmounts and
# removes its chroot) before it is killed.
GRACE = 5.0


def stop_all() -> None:
    """End every program airlock waits for, and start no other: the run is ending.

    A signal reaches airlock only, not the programs it started (``kill PID``,
    a CI job's timeout). Without this, ``git ls-remote`` of a server that
    does not answer would keep the worker threads, and so airlock, alive
    until its own timeout, minutes after SIGTERM. Each program (with what
    it started) gets SIGTERM, and SIGKILL :data:`GRACE` seconds later if it
    is still there; worker threads start no new program (see _spawn).
    Called by the CLI's signal handlers, before the exception that unwinds
    the run; it does not wait.
    """
    global _stopping
    with _running_lock:
        _stopping = True
        live = list(_running)
    for proc in live:
        _signal(proc, signal.SIGTERM)
    if live:
        timer = threading.Timer(GRACE, lambda: [_signal(p, signal.SIGKILL) for p in live])
        timer.daemon = True
        timer.start()


def _signal(proc: subprocess.Popen, signum: int) -> None:
    """Signal a program and what it started (``git-remote-http``, which holds its pipes)."""
    if proc.returncode is not None:
        return  # reaped: its pid may be another process's now
    with contextlib.suppress(OSError):
        os.killpg(proc.pid, signum)  # its own group: see _spawn
    with contextlib.suppress(OSError):
        proc.send_signal(signum)


def result(future: Future[T]) -> T:
    """``future.result()``, waking every 0.2 s so that a signal is handled at once.

    A signal may be delivered to any thread; the main thread, blocked
    without a timeout on a future whose worker waits on a program, would
    run the handler only once that program ended. Threads that run
    programs are waited for with this.
    """
    while True:
        try:
            return future.result(timeout=0.2)
        except FutureTimeout:
            continue


def _spawn(argv: list[str], *, timeout: float, input: str | bytes | None,
           **popen: object) -> subprocess.CompletedProcess:
    """:func:`subprocess.run`, with the child known to :func:`stop_all` while it runs.

    Each program gets a process group of its own, so that a timeout or a
    signal ends it with the programs it started: git's ``git-remote-http``
    would otherwise outlive it and keep its output pipes, and so the wait
    for them, open.
    """
    with _running_lock:
        # After a signal, the worker threads start nothing new (queued git
        # queries, downloads); the main thread does: it is unwinding, and its
        # cleanups may run a program (docker rm of an abandoned container).
        if _stopping and threading.current_thread() is not threading.main_thread():
            raise ToolError(argv[0], "not started: airlock is stopping")
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE if input is not None
                                else subprocess.DEVNULL, process_group=0,
                                **popen)  # type: ignore[call-overload]
        _running.add(proc)
    with proc:
        try:
            out, err = proc.communicate(input, timeout=timeout)
        except BaseException:  # the timeout, or a signal: the program goes too
            if _stopping:  # it has had SIGTERM (stop_all): let it clean up
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=GRACE)
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, signal.SIGKILL)  # what it started, too
            proc.kill()
            proc.wait()
            raise
        finally:
            with _running_lock:
                _running.discard(proc)
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def run(argv: Sequence[str], *, where: str, timeout: float, env: Mapping[str, str] | None = None,
        cwd: Path | str | None = None, input: str | bytes | None = None,
        log: Path | None = None, check: bool = True, text: bool = True,
        fix: str | None = None) -> subprocess.CompletedProcess:
    """Run ``argv`` and return the completed process.

    ``env`` is the whole environment (default: this process's). With
    ``log``, stdout and stderr go to that file after a first line holding
    the (redacted) command; otherwise both are captured. With ``check``, a
    non-zero exit raises ToolError(``where``, the last line of stderr (or
    of the log), ``fix``). A program that is not installed, and a run that
    outlives ``timeout`` seconds, are ToolErrors whatever ``check`` says.
    """
    argv = [str(a) for a in argv]
    try:
        if log is None:
            proc = _spawn(argv, env=env, cwd=cwd, input=input, text=text, timeout=timeout,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        else:
            log.parent.mkdir(parents=True, exist_ok=True)
            with open(log, "w") as out:
                out.write("$ " + redact(" ".join(argv)) + "\n")
                out.flush()
                proc = _spawn(argv, env=env, cwd=cwd, input=input, text=text, timeout=timeout,
                              stdout=out, stderr=subprocess.STDOUT)
    except FileNotFoundError:
        raise ToolError(where, f"{Path(argv[0]).name} is not installed",
                        install_fix(argv[0])) from None
    except PermissionError as error:
        raise ToolError(where, f"cannot run {argv[0]}: {error.strerror}",
                        install_fix(argv[0])) from None
    except subprocess.TimeoutExpired:
        raise ToolError(where, f"did not finish within {timeout:g} s",
                        f"see {log}" if log else fix) from None
    if check and proc.returncode != 0:
        if log is not None:
            said = last_line(log.read_text(errors="replace"))
        else:
            stderr = proc.stderr if isinstance(proc.stderr, str) else \
                proc.stderr.decode("utf-8", "replace")
            said = last_line(stderr)
        raise ToolError(where, said or f"exit code {proc.returncode}",
                        fix or (f"log: {log}" if log else None))
    return proc


def environ(**extra: str) -> dict[str, str]:
    """This process's environment with ``extra`` on top: the usual ``env`` for :func:`run`."""
    return {**os.environ, **extra}
