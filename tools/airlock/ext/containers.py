"""The only module that runs containers: smoke tests, and jobs with bind mounts and a log.

``airlock wheels`` builds sdists into wheels and ``airlock debs`` computes
package closures inside an image of the target platform; the functional
tests run smoke tests in built images. Callers describe a run as plain data
(:class:`RunSpec`); :func:`run_spec_command` turns it into a ``docker run``
command line and is pure, so that the unit tests pin down every flag.
:func:`image_digest` asks the engine's store which digest names an image.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from airlock.errors import AirlockError, ToolError
from airlock.ext import exec as ext_exec
from airlock.ext import registry
from airlock.ext.buildx import ARG_NAME, NETWORKS, QUERY_TIMEOUT, SETUP_FIX

# Seconds: a job (sdists into wheels under QEMU, an apt closure) may take an
# hour; a smoke test a few minutes; a pull of a large image over a slow
# link half an hour.
JOB_TIMEOUT = 3600
SMOKE_TIMEOUT = 300
PULL_TIMEOUT = 1800


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
    name: str | None = None
    read_only: bool = False  # the container's root filesystem (queries that write nothing)


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
    if spec.name:
        argv += ["--name", spec.name]
    if spec.platform:
        argv += ["--platform", spec.platform]
    if spec.user:
        argv += ["--user", spec.user]
    if spec.entrypoint is not None:
        argv += ["--entrypoint", spec.entrypoint]
    if spec.read_only:
        argv += ["--read-only"]
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


@contextlib.contextmanager
def _removed_if_abandoned(spec: RunSpec) -> Iterator[RunSpec]:
    """``spec`` with a name of its own; the container is removed if the run is abandoned.

    Killing the docker client (a timeout, Ctrl-C, SIGTERM of airlock) does
    not stop its container: it would go on writing into the bind-mounted
    staging folders that airlock's cleanup is removing. On any exception the
    named container is removed by force (best effort: a cleanup never fails).
    """
    named = dataclasses.replace(spec, name=f"airlock-{os.getpid()}-{secrets.token_hex(6)}")
    try:
        yield named
    except BaseException:
        with contextlib.suppress(Exception):
            ext_exec.run(["docker", "rm", "--force", named.name], where="docker rm",
                         timeout=QUERY_TIMEOUT, check=False)
        raise


def run_logged(spec: RunSpec, timeout: float = JOB_TIMEOUT) -> None:
    """Run the container, its whole output in ``spec.log``; a failure is a ToolError.

    The error names the last lines the command printed (callers that can
    tell a user's mistake from them read the log themselves).
    """
    if spec.log is None:
        raise AirlockError(_where(spec), "run_logged needs a log file", "set RunSpec.log")
    with _removed_if_abandoned(spec) as named:
        with registry.docker_config() as docker_env:
            proc = ext_exec.run(run_spec_command(named), where=_where(spec), timeout=timeout,
                                env=ext_exec.environ(**spec.env, **docker_env), log=spec.log,
                                check=False)
    if proc.returncode != 0:
        lines = [line.strip() for line in spec.log.read_text(errors="replace").splitlines()
                 if line.strip()][1:]
        last = " | ".join(lines[-2:]) if lines else "no output"
        raise ToolError(_where(spec), f"exit code {proc.returncode}: {last}",
                        f"log: {spec.log}")


def run(image: str, command: list[str], *, platform: str | None = None,
        user: str | None = None, network: str = "none", entrypoint: str | None = None,
        env: dict[str, str] | None = None, timeout: float = SMOKE_TIMEOUT,
        read_only: bool = False, mounts: tuple[Mount, ...] = ()) -> str:
    """Run ``command`` in a throw-away container and return its standard output.

    For smoke tests of built images (``keystone-manage --version`` on each
    platform) and queries of an image (``read_only``); no network unless
    asked. A non-zero exit is a ToolError.
    """
    spec = RunSpec(image=image, command=tuple(command), platform=platform, user=user,
                   network=network, entrypoint=entrypoint, env=dict(env or {}),
                   read_only=read_only, mounts=tuple(mounts))
    with _removed_if_abandoned(spec) as named:
        with registry.docker_config() as docker_env:
            proc = ext_exec.run(run_spec_command(named), where=_where(spec), timeout=timeout,
                                env=ext_exec.environ(**spec.env, **docker_env), check=False)
    if proc.returncode != 0:
        lines = [line.strip() for line in proc.stderr.splitlines() if line.strip()]
        raise ToolError(_where(spec), f"exit code {proc.returncode}: "
                        f"{lines[-1] if lines else 'no output'}")
    return proc.stdout


def image_digest(ref: str, pull: bool = True) -> str | None:
    """The digest that names ``ref`` in the engine's store (an index for a multi-platform image).

    A reference by digest is its own answer. Otherwise the store is asked,
    after a ``docker pull`` when ``pull`` and it is not there. With the
    containerd image store an image's ID is the digest of its index, the
    same digest the registry serves.

    None only when the image really is nowhere: not in the store and, for
    a reference with a registry host, absent from that registry (asked by
    :mod:`airlock.ext.registry`, whose answer is the registry's error code,
    not the engine's wording). A pull that fails for another reason (the
    registry refuses the engine's credentials or its certificate, or is
    down) is a ToolError with the engine's reason, never "no such image".
    A reference without a registry host is never pulled: that would reach
    Docker Hub, which an air-gapped build must not.
    """
    if "@sha256:" in ref:
        return ref.rsplit("@", 1)[1]
    argv = ["docker", "image", "inspect", "--format", "{{.Id}}", ref]
    where = f"docker image inspect {ref}"
    proc = _inspect(argv, where)
    if proc.returncode != 0 and pull and _qualified(ref):
        _pull(ref)
        proc = _inspect(argv, where)
    if proc.returncode != 0:
        return None
    return proc.stdout.strip() or None


def _qualified(ref: str) -> bool:
    try:
        registry.split_ref(ref)
    except AirlockError:
        return False
    return True


def _pull(ref: str) -> None:
    """``docker pull ref``; a failure is a ToolError unless the registry lacks ``ref``."""
    where = f"docker pull {ref}"
    with registry.docker_config() as docker_env:
        proc = ext_exec.run(["docker", "pull", "-q", ref], where=where, timeout=PULL_TIMEOUT,
                            env=ext_exec.environ(**docker_env), check=False)
    if proc.returncode == 0:
        return
    # Raises the registry's own ToolError (credentials, unreachable, TLS).
    if registry.digest(ref) is None:
        return
    said = ext_exec.last_line(proc.stderr, f"exit code {proc.returncode}")
    raise ToolError(where, said, "the registry has the image but the engine cannot pull it: "
                    "check the engine's access to the registry (docker login, "
                    "insecure-registries in /etc/docker/daemon.json)")


def _inspect(argv: list[str], where: str) -> subprocess.CompletedProcess[str]:
    """``docker image inspect``: "no such image" is an answer, anything else a ToolError."""
    proc = ext_exec.run(argv, where=where, timeout=QUERY_TIMEOUT, check=False)
    if proc.returncode != 0 and "no such image" not in proc.stderr.lower():
        raise ToolError(where, ext_exec.last_line(proc.stderr, f"exit code {proc.returncode}"),
                        SETUP_FIX)
    return proc
