"""The only module that runs containers: smoke tests, and jobs with bind mounts and a log.

``airlock wheels`` builds sdists into wheels and ``airlock debs`` computes
package closures inside an image of the target platform; the functional
tests run smoke tests in built images. Callers describe a run as plain data
(:class:`RunSpec`); :func:`run_spec_command` turns it into a ``docker run``
command line and is pure, so that the unit tests pin down every flag.
:func:`image_digest` asks the engine's store which digest names an image.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from airlock.errors import AirlockError, ToolError
from airlock.ext.buildx import ARG_NAME, NETWORKS, SETUP_FIX


@dataclass(frozen=True)
class Mount:
    """A host folder (or file) seen inside a container at ``target``."""

    source: Path
    target: str
    read_only: bool = True


@dataclass(frozen=True)
class RunSpec:
    """One throw-away ``docker run`` as plain data.

    For jobs done ahead of a build inside an image of the target platform
    (sdists built into wheels, apt computing a package closure) the output
    may be long, so :func:`run_logged` writes it to ``log``. ``env`` values
    reach the container through the docker client's environment
    (``--env NAME``), never the command line.
    """

    image: str
    command: tuple[str, ...]
    log: Path | None = None
    platform: str | None = None
    network: str = "none"
    mounts: tuple[Mount, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    user: str | None = None
    entrypoint: str | None = None


def run_spec_command(spec: RunSpec) -> list[str]:
    """The argv of ``docker run`` for a :class:`RunSpec` (pure, for the tests).

    ``--mount`` rather than ``-v``: a missing host path is an error instead
    of a new empty folder, and a ``:`` in a path cannot be misread.
    """
    where = f"docker run {spec.image}"
    if spec.network not in NETWORKS:
        raise AirlockError(where, f"network {spec.network!r} is not one of {NETWORKS}",
                           "use none (offline) or host")
    argv = ["docker", "run", "--rm", "--pull", "missing", "--network", spec.network]
    if spec.platform:
        argv += ["--platform", spec.platform]
    if spec.user:
        argv += ["--user", spec.user]
    if spec.entrypoint is not None:
        argv += ["--entrypoint", spec.entrypoint]
    for mount in spec.mounts:
        source = Path(mount.source).resolve()
        if "," in f"{source}{mount.target}":
            raise AirlockError(str(source), "a bind-mounted path holds a comma",
                               "use a folder whose path has none")
        value = f"type=bind,source={source},target={mount.target}"
        argv += ["--mount", value + (",readonly" if mount.read_only else "")]
    for name in sorted(spec.env):
        if not ARG_NAME.match(name):
            raise AirlockError(where, f"environment variable name {name!r} is not valid",
                               "use letters, digits and '_'")
        argv += ["--env", name]  # the value comes from the client's environment
    return [*argv, spec.image, *spec.command]


def _where(spec: RunSpec) -> str:
    return f"docker run {spec.image}" + (f" ({spec.platform})" if spec.platform else "")


def run_logged(spec: RunSpec, timeout: float | None = 3600) -> None:
    """Run the container, its whole output in ``spec.log``; a failure is a ToolError.

    The error names the last lines the command printed (callers that can
    tell a user's mistake from them read the log themselves).
    """
    if spec.log is None:
        raise AirlockError(_where(spec), "run_logged needs a log file", "set RunSpec.log")
    argv = run_spec_command(spec)
    spec.log.parent.mkdir(parents=True, exist_ok=True)
    with open(spec.log, "w") as out:
        out.write("$ " + " ".join(argv) + "\n")
        out.flush()
        try:
            proc = subprocess.run(argv, env={**os.environ, **spec.env}, stdout=out,
                                  stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                  timeout=timeout)
        except FileNotFoundError as error:
            raise ToolError(_where(spec), "the docker client is not installed",
                            SETUP_FIX) from error
        except subprocess.TimeoutExpired as error:
            raise ToolError(_where(spec), f"did not finish within {timeout} s",
                            f"see {spec.log}") from error
    if proc.returncode != 0:
        lines = [line.strip() for line in spec.log.read_text(errors="replace").splitlines()
                 if line.strip()][1:]
        last = " | ".join(lines[-2:]) if lines else "no output"
        raise ToolError(_where(spec), f"exit code {proc.returncode}: {last}",
                        f"log: {spec.log}")


def run(image: str, command: list[str], *, platform: str | None = None,
        user: str | None = None, network: str = "none", entrypoint: str | None = None,
        env: dict[str, str] | None = None, timeout: float | None = 300) -> str:
    """Run ``command`` in a throw-away container and return its standard output.

    For smoke tests of built images (``keystone-manage --version`` on each
    platform); no network unless asked. A non-zero exit is a ToolError.
    """
    spec = RunSpec(image=image, command=tuple(command), platform=platform, user=user,
                   network=network, entrypoint=entrypoint, env=dict(env or {}))
    argv = run_spec_command(spec)
    try:
        proc = subprocess.run(argv, env={**os.environ, **spec.env}, capture_output=True,
                              text=True, stdin=subprocess.DEVNULL, timeout=timeout)
    except FileNotFoundError as error:
        raise ToolError(_where(spec), "the docker client is not installed", SETUP_FIX) from error
    except subprocess.TimeoutExpired as error:
        raise ToolError(_where(spec), f"did not finish within {timeout} s") from error
    if proc.returncode != 0:
        lines = [line.strip() for line in proc.stderr.splitlines() if line.strip()]
        raise ToolError(_where(spec), f"exit code {proc.returncode}: "
                        f"{lines[-1] if lines else 'no output'}")
    return proc.stdout


def image_digest(ref: str, pull: bool = True) -> str | None:
    """The digest that names ``ref`` in the engine's store (an index for a multi-platform image).

    A reference by digest is its own answer. Otherwise the store is asked,
    after a ``docker pull`` when ``pull`` and it is not there; None when the
    image cannot be found. With the containerd image store an image's ID is
    the digest of its index, the same digest the registry serves. An
    unreachable engine is a ToolError, not "no such image".
    """
    if "@sha256:" in ref:
        return ref.rsplit("@", 1)[1]
    argv = ["docker", "image", "inspect", "--format", "{{.Id}}", ref]
    where = f"docker image inspect {ref}"
    proc = _inspect(argv, where)
    if proc.returncode != 0 and pull:
        subprocess.run(["docker", "pull", "-q", ref], capture_output=True, text=True,
                       stdin=subprocess.DEVNULL)
        proc = _inspect(argv, where)
    if proc.returncode != 0:
        return None
    return proc.stdout.strip() or None


def _inspect(argv: list[str], where: str) -> subprocess.CompletedProcess[str]:
    """``docker image inspect``: "no such image" is an answer, anything else a ToolError."""
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    except FileNotFoundError as error:
        raise ToolError(where, "the docker client is not installed", SETUP_FIX) from error
    if proc.returncode != 0 and "no such image" not in proc.stderr.lower():
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        raise ToolError(where, lines[-1].strip() if lines else f"exit code {proc.returncode}",
                        SETUP_FIX)
    return proc
