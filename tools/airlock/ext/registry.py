"""The only module that talks to an OCI registry (through skopeo).

Operations work on plain references (``host[:port]/repo:tag`` or
``host[:port]/repo@sha256:...``) and return plain data (digests, tag lists,
parsed manifests). skopeo is used because it pushes an OCI archive with all
its platforms and keeps every digest (``--preserve-digests`` makes it fail
rather than silently convert), copies between repositories without
re-uploading blobs the registry already has, and speaks the auth schemes of
real registries (Nexus, distribution).

Credentials are never on a command line nor in a log: when the registry
needs them, ``$AIRLOCK_REGISTRY_AUTH_FILE`` names a containers-auth.json
file (``skopeo login --authfile`` writes one) passed as ``--authfile``;
without it skopeo's own default file applies.

TLS is verified except for registries on the loopback (127.0.0.1,
localhost, ::1, the local default) and hosts listed in
``$AIRLOCK_REGISTRY_INSECURE`` (comma-separated ``host[:port]``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import tempfile
import time
from pathlib import Path

from airlock.errors import AirlockError, ToolError

AUTH_FILE_ENV = "AIRLOCK_REGISTRY_AUTH_FILE"
INSECURE_ENV = "AIRLOCK_REGISTRY_INSECURE"
RETRIES_ENV = "AIRLOCK_REGISTRY_RETRIES"

_LOOPBACK = ("127.0.0.1", "localhost", "[::1]", "::1")

# skopeo stderr fragments that mean "the reference does not exist" ...
_NOT_FOUND = ("manifest unknown", "name unknown", "not found", "404",
              "repository name not known", "NAME_UNKNOWN", "MANIFEST_UNKNOWN",
              "image may not exist")
# ... and those worth another attempt (the network or the registry hiccuped).
_TRANSIENT = ("connection refused", "connection reset", "i/o timeout", "timeout",
              "TLS handshake", "EOF", "502", "503", "504", "500 Internal",
              "too many requests", "TOOMANYREQUESTS", "temporary failure",
              "no route to host", "broken pipe")
_UNREACHABLE = ("connection refused", "no such host", "no route to host", "i/o timeout",
                "timeout", "network is unreachable", "temporary failure")

# A manifest or index: what skopeo inspect --raw accepts for an Accept header.
_INDEX_TYPES = ("application/vnd.oci.image.index.v1+json",
                "application/vnd.docker.distribution.manifest.list.v2+json")


def split_ref(ref: str) -> tuple[str, str, str]:
    """Split ``host/repo:tag`` / ``host/repo@sha256:..`` into (host, repo, tag-or-digest).

    Only fully qualified references are accepted: an unqualified name would
    be completed by skopeo's registries.conf, i.e. reach some default
    upstream host, which an air-gapped tool must never do.
    """
    where = f"image reference {ref!r}"
    if "://" in ref:
        raise AirlockError(where, "has a transport prefix", "write host[:port]/repo:tag")
    if "@" in ref:
        name, _, pointer = ref.partition("@")
    else:
        slash = ref.rfind("/")
        colon = ref.rfind(":")
        name, pointer = (ref[:colon], ref[colon + 1:]) if colon > slash else (ref, "latest")
    host, _, repo = name.partition("/")
    if not repo or not ("." in host or ":" in host or host == "localhost"):
        raise AirlockError(where, "does not start with a registry host",
                           "write host[:port]/repo:tag, e.g. 127.0.0.1:5000/airlock/x:tag")
    return host, repo, pointer


def is_insecure(ref: str, env: dict[str, str] | None = None) -> bool:
    """True when the registry of ``ref`` is spoken to without TLS verification."""
    host = split_ref(ref)[0]
    bare = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    if bare in _LOOPBACK or host in _LOOPBACK:
        return True
    env = os.environ if env is None else env
    listed = [h.strip() for h in env.get(INSECURE_ENV, "").split(",") if h.strip()]
    return host in listed or bare in listed


def _auth_args(env: dict[str, str] | None = None) -> list[str]:
    env = os.environ if env is None else env
    path = env.get(AUTH_FILE_ENV)
    if not path:
        return []
    if not Path(path).is_file():
        raise AirlockError(f"${AUTH_FILE_ENV}={path}", "no such file",
                           "point it at a containers auth.json (skopeo login --authfile FILE)")
    return ["--authfile", path]


def copy_command(src: str, dest: str, *, src_insecure: bool = False,
                 dest_insecure: bool = False, digestfile: Path | None = None,
                 env: dict[str, str] | None = None) -> list[str]:
    """The argv of ``skopeo copy`` of every platform, digests kept (pure)."""
    argv = ["skopeo", "copy", "--all", "--preserve-digests", "--retry-times", "2"]
    argv += _auth_args(env)
    if src.startswith("docker://"):
        argv.append(f"--src-tls-verify={'false' if src_insecure else 'true'}")
    if dest.startswith("docker://"):
        argv.append(f"--dest-tls-verify={'false' if dest_insecure else 'true'}")
    if digestfile is not None:
        argv += ["--digestfile", str(digestfile)]
    return [*argv, src, dest]


_LOGRUS = re.compile(r'level=(?:fatal|error) msg="((?:[^"\\]|\\.)*)"')


def _last_line(text: str) -> str:
    """skopeo's last stderr line, without its ``time=... level=fatal msg="..."`` frame."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return ""
    match = _LOGRUS.search(lines[-1])
    if match:
        return match.group(1).replace('\\"', '"').replace("\\\\", "\\")
    return lines[-1]


def _attempts() -> int:
    try:
        return max(1, int(os.environ.get(RETRIES_ENV, "4")))
    except ValueError:
        return 4


def _skopeo(argv: list[str], where: str, *, not_found_ok: bool = False,
            timeout: float = 600) -> subprocess.CompletedProcess[str] | None:
    """Run skopeo, retrying transient failures with backoff (1, 2, 4 ... s).

    Returns None for "not found" when ``not_found_ok``; any other failure is
    a ToolError with skopeo's last stderr line (an unreachable registry says
    so, distinctly from an absent image).
    """
    attempts = _attempts()
    for attempt in range(1, attempts + 1):
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        except FileNotFoundError as error:
            raise ToolError(where, "skopeo is not installed",
                            "run tools/setup-host build-host") from error
        except subprocess.TimeoutExpired:
            proc = subprocess.CompletedProcess(argv, 124, "", f"timeout after {timeout} s")
        if proc.returncode == 0:
            return proc
        last = _last_line(proc.stderr) or f"skopeo exited {proc.returncode}"
        low = proc.stderr.lower()
        if not_found_ok and any(s.lower() in low for s in _NOT_FOUND) \
                and not any(s in low for s in _UNREACHABLE):
            return None
        if attempt < attempts and any(s.lower() in low for s in _TRANSIENT):
            time.sleep(2 ** (attempt - 1))
            continue
        if any(s in low for s in _UNREACHABLE):
            raise ToolError(where, f"registry unreachable: {last}",
                            "check that the registry runs (tools/setup-host build-host "
                            "starts the local one) and the address is right")
        raise ToolError(where, last)
    raise AssertionError("unreachable")  # pragma: no cover


def _tls(ref: str, flag: str = "--tls-verify") -> str:
    return f"{flag}={'false' if is_insecure(ref) else 'true'}"


def manifest_raw(ref: str) -> bytes | None:
    """The manifest or index bytes at ``ref`` exactly as stored; None if absent."""
    split_ref(ref)
    proc = _skopeo(["skopeo", "inspect", "--raw", "--retry-times", "0", _tls(ref),
                    *_auth_args(), f"docker://{ref}"],
                   f"skopeo inspect {ref}", not_found_ok=True, timeout=120)
    if proc is None:
        return None
    return proc.stdout.encode()


def manifest(ref: str) -> dict | None:
    """The manifest or image index at ``ref`` as parsed JSON; None if absent."""
    raw = manifest_raw(ref)
    return None if raw is None else json.loads(raw)


def digest(ref: str) -> str | None:
    """The digest of what ``ref`` points to (index or manifest); None if absent.

    Computed from the raw bytes the registry serves, which is how a
    registry defines it; an unreachable registry raises ToolError instead.
    """
    raw = manifest_raw(ref)
    return None if raw is None else "sha256:" + hashlib.sha256(raw).hexdigest()


def platforms(ref: str) -> list[str]:
    """The platforms (``os/arch[/variant]``) an index at ``ref`` offers."""
    doc = manifest(ref)
    if doc is None:
        raise ToolError(ref, "no such image in the registry")
    if doc.get("mediaType") not in _INDEX_TYPES and "manifests" not in doc:
        # A single-platform image: its platform is in the config, which
        # skopeo inspect (not --raw) reads for us.
        proc = _skopeo(["skopeo", "inspect", "--retry-times", "0", _tls(ref), *_auth_args(),
                        f"docker://{ref}"], f"skopeo inspect {ref}", timeout=120)
        conf = json.loads(proc.stdout)
        return ["/".join(filter(None, (conf.get("Os"), conf.get("Architecture"),
                                       conf.get("Variant"))))]
    found = []
    for entry in doc.get("manifests", []):
        plat = entry.get("platform") or {}
        if plat.get("os") and plat.get("architecture"):
            found.append("/".join(filter(None, (plat["os"], plat["architecture"],
                                                plat.get("variant")))))
    return found


def annotations(ref: str) -> dict[str, str] | None:
    """The annotations of the index (or manifest) at ``ref``; None if absent."""
    doc = manifest(ref)
    return None if doc is None else dict(doc.get("annotations") or {})


def push_archive(archive: Path, ref: str) -> str:
    """Push an OCI archive (all platforms, digests kept) to ``ref``; return the digest."""
    split_ref(ref)
    if not archive.is_file():
        raise AirlockError(str(archive), "no such OCI archive", "build the image first")
    with tempfile.TemporaryDirectory(prefix="airlock-push-") as tmp:
        digestfile = Path(tmp) / "digest"
        argv = copy_command(f"oci-archive:{archive.resolve()}", f"docker://{ref}",
                            dest_insecure=is_insecure(ref), digestfile=digestfile)
        _skopeo(argv, f"skopeo copy {archive.name} -> {ref}")
        return digestfile.read_text().strip()


def copy(src: str, dest: str) -> str:
    """Copy ``src`` (a tag or digest reference) to ``dest``; return the digest.

    Within one registry the blobs are already there and only the manifests
    are written: tagging and promotion do not re-upload layers.
    """
    split_ref(src)
    split_ref(dest)
    with tempfile.TemporaryDirectory(prefix="airlock-copy-") as tmp:
        digestfile = Path(tmp) / "digest"
        argv = copy_command(f"docker://{src}", f"docker://{dest}",
                            src_insecure=is_insecure(src), dest_insecure=is_insecure(dest),
                            digestfile=digestfile)
        _skopeo(argv, f"skopeo copy {src} -> {dest}")
        return digestfile.read_text().strip()


def tag(ref_by_digest: str, new_tag: str) -> str:
    """Give the image at ``repo@sha256:...`` the tag ``new_tag`` in the same repository."""
    host, repo, pointer = split_ref(ref_by_digest)
    if not pointer.startswith("sha256:"):
        raise AirlockError(ref_by_digest, "is not a digest reference", "pass repo@sha256:...")
    return copy(ref_by_digest, f"{host}/{repo}:{new_tag}")


def list_tags(repo: str) -> list[str]:
    """The tags of ``host/repo`` (sorted); an absent repository has none."""
    host, name, _ = split_ref(f"{repo}:latest")
    target = f"{host}/{name}"
    proc = _skopeo(["skopeo", "list-tags", "--retry-times", "0", _tls(f"{target}:latest"),
                    *_auth_args(), f"docker://{target}"],
                   f"skopeo list-tags {target}", not_found_ok=True, timeout=120)
    if proc is None:
        return []
    return sorted(json.loads(proc.stdout).get("Tags") or [])


def delete(ref: str) -> bool:
    """Delete the manifest ``ref`` points to; False if it was absent."""
    split_ref(ref)
    proc = _skopeo(["skopeo", "delete", "--retry-times", "0", _tls(ref), *_auth_args(),
                    f"docker://{ref}"], f"skopeo delete {ref}", not_found_ok=True,
                   timeout=120)
    return proc is not None
