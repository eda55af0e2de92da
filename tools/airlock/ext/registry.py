"""The only module that talks to an OCI registry: its HTTP API for questions, skopeo for copies.

Operations work on plain references (``host[:port]/repo:tag`` or
``host[:port]/repo@sha256:...``) and return plain data (digests, tag lists,
parsed manifests).

Two ways in, each for what it does best:

- **Questions** (a manifest's bytes and digest, an image's platforms, the
  tags of a repository, whether a reference exists) go straight to the
  Registry HTTP API v2 (:mod:`airlock.ext.registryhttp`). Its answers carry
  the registry's status and error codes, so "absent" is told from
  "refused" by what the registry said, never by reading a tool's message:
  skopeo prints some failures without their code (``list-tags`` of a
  missing repository says only "invalid status code from registry 404 (Not
  Found)"), and an ``unauthorized`` error for a tag holding ``404`` once
  read as "absent" and made a build rebuild instead of failing on its
  credentials.
- **Copies and pushes** run skopeo: it pushes an OCI archive with all its
  platforms and keeps every digest (``--preserve-digests`` makes it fail
  rather than silently convert), and copies between repositories without
  re-uploading blobs the registry already has. When skopeo fails, the
  registry is asked (the same HTTP requests, for the repositories
  involved) why: unreachable, refusing the credentials, or answering
  well, in which case skopeo's own last line is the reason.

Credentials come from :mod:`airlock.ext.registryauth` (the auth file), for
skopeo and the HTTP requests alike; TLS and retries from
:mod:`airlock.ext.registryhttp`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import urllib.parse
from collections.abc import Mapping
from pathlib import Path

from airlock import files, progress
from airlock.errors import AirlockError, ToolError
from airlock.ext import exec as ext_exec
from airlock.ext.registryauth import AUTH_FILE_ENV, auth_args, check_auth_file, docker_config
from airlock.ext.registryhttp import (
    ABSENT,
    INSECURE_ENV,
    OTHER,
    RETRIES_ENV,
    RegistryFailure,
    insecure_host,
    request,
    retrying,
)

# Re-exported: what callers of the registry set and check.
__all__ = ["AUTH_FILE_ENV", "INSECURE_ENV", "RETRIES_ENV", "check_auth_file", "docker_config"]

# Seconds one skopeo copy (a service image with all its platforms, over a
# slow link) or delete may take.
COPY_TIMEOUT = 1800
DELETE_TIMEOUT = 120

# A tag list may weigh more than a manifest.
LIST_LIMIT = 16 * files.MiB

# A manifest or index of either family, what a GET of a manifest accepts.
_INDEX_TYPES = ("application/vnd.oci.image.index.v1+json",
                "application/vnd.docker.distribution.manifest.list.v2+json")
_MANIFEST_TYPES = ("application/vnd.oci.image.manifest.v1+json",
                   "application/vnd.docker.distribution.manifest.v2+json")
_ACCEPT = ", ".join((*_INDEX_TYPES, *_MANIFEST_TYPES))


# --- references ---------------------------------------------------------------

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
    if not repo or not _looks_like_host(host):
        raise AirlockError(where, "does not start with a registry host",
                           "write host[:port]/repo:tag, e.g. 127.0.0.1:5000/airlock/x:tag")
    return host, repo, pointer


def _looks_like_host(text: str) -> bool:
    """A registry host as the distribution reference grammar tells it from a path."""
    return "." in text or ":" in text or text == "localhost"


# A host (DNS name, IPv4, or [IPv6]) with an optional port, and a path
# component, as the distribution reference grammar writes them.
_DNS_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_HOST = re.compile(rf"^(?:{_DNS_LABEL}(?:\.{_DNS_LABEL})*|\[[0-9A-Fa-f:.]+\])(?::[0-9]{{1,5}})?$")
_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_PREFIX_FIX = "write host[:port]/path, e.g. 127.0.0.1:5000/airlock or nexus.site:8443/openstack"


def check_prefix(prefix: str, where: str = "--registry") -> str:
    """Check a repository prefix (``host[:port][/path]``); return it without a trailing '/'.

    The host must be told from a path (a '.', a ':' or ``localhost``, as
    for :func:`split_ref`); each path component is lowercase letters and
    digits joined by '.', '_', '__' or dashes, as the distribution spec
    requires. A mistake is one line (``where``: the option or variable that
    gave it), before any work starts; a prefix holding '@' is not quoted
    (it may hold a password).
    """
    text = prefix.rstrip("/")
    if "@" in text:
        raise AirlockError(where, "contains '@' (credentials or a digest)",
                           f"{_PREFIX_FIX}; credentials go in ${AUTH_FILE_ENV}")

    def bad(why: str) -> AirlockError:
        return AirlockError(where, f"{prefix!r} is not a repository prefix ({why})",
                            _PREFIX_FIX)

    if not text:
        raise bad("it is empty")
    if "://" in text:
        raise bad("a registry is named without a scheme")
    if any(c.isspace() or ord(c) < 32 for c in text):
        raise bad("it holds white space")
    host, _, path = text.partition("/")
    if not _looks_like_host(host) or not _HOST.match(host):
        raise bad(f"{host!r} is not a registry host: a name with a '.', an address, a port, "
                  "or localhost")
    for component in path.split("/") if path else []:
        if not _COMPONENT.match(component):
            raise bad(f"path component {component!r} is not lowercase letters and digits "
                      "joined by '.', '_' or '-'")
    if len(text) > 200:
        raise bad("longer than 200 characters; a whole image name may have 255")
    return text


def is_insecure(ref: str, env: Mapping[str, str] | None = None) -> bool:
    """True when the registry of ``ref`` is spoken to without TLS verification."""
    return insecure_host(split_ref(ref)[0], env)




# --- questions ------------------------------------------------------------------

def _manifest_answer(host: str, repo: str, pointer: str) -> bytes | None:
    try:
        return request(host, repo, f"manifests/{pointer}", accept=_ACCEPT).body
    except RegistryFailure as failure:
        if failure.kind == ABSENT:
            return None
        raise


def manifest_raw(ref: str) -> bytes | None:
    """The manifest or index bytes at ``ref`` exactly as stored; None if absent."""
    host, repo, pointer = split_ref(ref)
    raw = retrying(ref, lambda: _manifest_answer(host, repo, pointer))
    if raw is not None and pointer.startswith("sha256:") \
            and "sha256:" + hashlib.sha256(raw).hexdigest() != pointer:
        raise ToolError(ref, "the registry served a manifest whose digest is not the one asked "
                        "for", "check the registry (and any proxy in front of it)")
    return raw


def exists(ref: str) -> bool:
    """Whether the registry has ``ref`` (an unreachable or refusing registry raises)."""
    return manifest_raw(ref) is not None


def manifest(ref: str) -> dict | None:
    """The manifest or image index at ``ref`` as parsed JSON; None if absent."""
    raw = manifest_raw(ref)
    if raw is None:
        return None
    try:
        doc = json.loads(raw)
    except ValueError:
        raise ToolError(ref, "the registry served a manifest that is not JSON") from None
    if not isinstance(doc, dict):
        raise ToolError(ref, "the registry served a manifest that is not a JSON object")
    return doc


def digest(ref: str) -> str | None:
    """The digest of what ``ref`` points to (index or manifest); None if absent.

    Computed from the raw bytes the registry serves, which is how a
    registry defines it; an unreachable registry raises ToolError instead.
    """
    raw = manifest_raw(ref)
    return None if raw is None else "sha256:" + hashlib.sha256(raw).hexdigest()


def pinned(ref: str) -> str | None:
    """``host/repo@sha256:...`` for ``ref``: a digest reference as is, a tag looked up.

    None when a tag is not in the registry (the caller says what to do);
    a digest reference whose digest is malformed is refused. Either must be
    fully qualified: the engine would complete ``debian@sha256:...`` with
    Docker Hub.
    """
    host, repo, pointer = split_ref(ref)
    if "@" in ref:
        if not re.fullmatch(r"sha256:[0-9a-f]{64}", pointer):
            raise AirlockError(f"image reference {ref!r}", "has a malformed digest",
                               "write host[:port]/repo@sha256:<64 hex digits>")
        return ref
    found = digest(ref)
    return f"{host}/{repo}@{found}" if found else None


def blob(ref: str, blob_digest: str, limit: int = files.RECORD_LIMIT) -> bytes:
    """The blob ``blob_digest`` of the repository of ``ref`` (at most ``limit`` bytes), checked."""
    host, repo, _ = split_ref(ref)
    body = retrying(ref, lambda: request(host, repo, f"blobs/{blob_digest}", limit=limit).body)
    if "sha256:" + hashlib.sha256(body).hexdigest() != blob_digest:
        raise ToolError(ref, f"the registry served blob {blob_digest} with other content")
    return body


def _has_blob(host: str, repo: str, blob_digest: str) -> bool:
    try:
        request(host, repo, f"blobs/{blob_digest}", method="HEAD", actions="pull,push")
    except RegistryFailure as failure:
        if failure.kind == ABSENT:
            return False
        raise
    return True


def put_blob(repo_ref: str, data: bytes) -> str:
    """Upload ``data`` as a blob of the repository of ``repo_ref`` (monolithic); its digest.

    A blob the repository already has is not sent again.
    """
    host, repo, _ = split_ref(repo_ref)
    blob_digest = "sha256:" + hashlib.sha256(data).hexdigest()

    def once() -> None:
        if _has_blob(host, repo, blob_digest):
            return
        started = request(host, repo, "blobs/uploads/", method="POST", data=b"",
                          actions="pull,push", ok=(202,))
        location = started.headers.get("Location")
        if not location:
            raise RegistryFailure(OTHER, f"the registry {host} started an upload without "
                                  "a Location")
        joiner = "&" if "?" in location else "?"
        request(host, repo, f"{location}{joiner}digest={urllib.parse.quote(blob_digest)}",
                method="PUT", data=data, content_type="application/octet-stream",
                actions="pull,push", ok=(201,))

    retrying(f"{host}/{repo}", once)
    return blob_digest


def put_manifest(ref: str, raw: bytes, media_type: str) -> str:
    """PUT the manifest ``raw`` at ``ref`` (a tag); return its digest as the registry names it."""
    host, repo, pointer = split_ref(ref)
    answer = retrying(ref, lambda: request(host, repo, f"manifests/{pointer}", method="PUT",
                                           data=raw, content_type=media_type,
                                           actions="pull,push", ok=(201,)))
    ours = "sha256:" + hashlib.sha256(raw).hexdigest()
    said = answer.headers.get("Docker-Content-Digest")
    if said and said != ours:
        raise ToolError(ref, f"the registry stored {said}, airlock sent {ours}",
                        "use a registry that keeps manifests as pushed")
    return ours


def platforms(ref: str) -> list[str]:
    """The platforms (``os/arch[/variant]``) an index at ``ref`` offers."""
    doc = manifest(ref)
    if doc is None:
        raise ToolError(ref, "no such image in the registry")
    if doc.get("mediaType") not in _INDEX_TYPES and "manifests" not in doc:
        # A single-platform image: its platform is in its config blob.
        config_digest = (doc.get("config") or {}).get("digest")
        if not isinstance(config_digest, str):
            raise ToolError(ref, "the manifest names no config")
        try:
            conf = json.loads(blob(ref, config_digest))
        except ValueError:
            raise ToolError(ref, "the image config is not JSON") from None
        return ["/".join(filter(None, (conf.get("os"), conf.get("architecture"),
                                       conf.get("variant"))))]
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


_NEXT = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')


def _tags(host: str, name: str) -> list[str]:
    tags: list[str] = []
    path = "tags/list?n=1000"
    for _ in range(10000):  # a registry that keeps sending "next" is not followed forever
        try:
            answer = request(host, name, path, limit=LIST_LIMIT)
        except RegistryFailure as failure:
            if failure.kind == ABSENT:
                return tags
            raise
        try:
            tags += list(json.loads(answer.body).get("tags") or [])
        except (ValueError, AttributeError, TypeError):
            raise RegistryFailure(OTHER, f"the registry {host} sent a tag list that is not "
                                  "JSON") from None
        link = _NEXT.search(answer.headers.get("Link") or "")
        if not link:
            return tags
        target = urllib.parse.urlsplit(link.group(1))
        prefix = f"/v2/{name}/"
        if not target.path.startswith(prefix):
            return tags
        path = target.path[len(prefix):] + (f"?{target.query}" if target.query else "")
    return tags


def list_tags(repo: str) -> list[str]:
    """The tags of ``host/repo`` (sorted); an absent repository has none."""
    host, name, _ = split_ref(f"{repo}:latest")
    return sorted(set(retrying(f"{host}/{name}", lambda: _tags(host, name))))


# --- copies and pushes (skopeo) -----------------------------------------------

def copy_command(src: str, dest: str, *, src_insecure: bool = False,
                 dest_insecure: bool = False, digestfile: Path | None = None,
                 env: Mapping[str, str] | None = None) -> list[str]:
    """The argv of ``skopeo copy`` of every platform, digests kept (pure but for the auth file).

    No ``--retry-times``: retries are this module's (:func:`attempts`).
    """
    argv = ["skopeo", "copy", "--all", "--preserve-digests"]
    argv += auth_args(env)
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


def _probe(source: str | None, dest: str | None, dest_actions: str = "pull,push") -> None:
    """Ask the registries of a failed copy why; raise their RegistryFailure, if any.

    The source must exist (absent is its own answer); the destination's
    repository must answer its tag list under ``dest_actions`` (absent is
    fine: a push creates it).
    """
    if source is not None:
        host, repo, pointer = split_ref(source)
        if _manifest_answer(host, repo, pointer) is None:
            raise RegistryFailure(ABSENT, "no such image in the registry")
    if dest is not None:
        host, repo, _ = split_ref(dest)
        try:
            request(host, repo, "tags/list?n=1", actions=dest_actions, limit=LIST_LIMIT)
        except RegistryFailure as failure:
            if failure.kind != ABSENT:
                raise


def _skopeo(argv: list[str], where: str, *, source: str | None, dest: str | None,
            timeout: float = COPY_TIMEOUT, dest_actions: str = "pull,push") -> None:
    """Run skopeo; after a failure, the registries say whether to try again.

    Transient (the registry is unreachable, overloaded or failing):
    another attempt after a backoff. Credentials refused, or the source
    absent: that line. The registries answering well: skopeo's own last
    line, not retried (a digest skopeo refuses to change will not change).
    """
    def once() -> None:
        proc = ext_exec.run(argv, where=where, timeout=timeout, check=False)
        if proc.returncode == 0:
            return
        said = _last_line(proc.stderr) or f"skopeo exited {proc.returncode}"
        _probe(source, dest, dest_actions)
        raise RegistryFailure(OTHER, said)

    retrying(where, once)


def push_archive(archive: Path, ref: str) -> str:
    """Push an OCI archive (all platforms, digests kept) to ``ref``; return the digest."""
    split_ref(ref)
    if not archive.is_file():
        raise AirlockError(str(archive), "no such OCI archive", "build the image first")
    with tempfile.TemporaryDirectory(prefix="airlock-push-") as tmp, \
            progress.step(f"push {archive.name} -> {ref}") as step:
        digestfile = Path(tmp) / "digest"
        argv = copy_command(f"oci-archive:{archive.resolve()}", f"docker://{ref}",
                            dest_insecure=is_insecure(ref), digestfile=digestfile)
        _skopeo(argv, f"skopeo copy {archive.name} -> {ref}", source=None, dest=ref)
        step.finish(f"{progress.bytes_text(archive.stat().st_size)} archive")
        return digestfile.read_text().strip()


def save_archive(ref: str, archive: Path) -> str:
    """Copy the image at ``ref`` (every platform, digests kept) into an OCI archive.

    The archive is written beside ``archive`` and renamed into place: an
    interrupted copy leaves nothing that looks whole. Returns the digest.
    """
    split_ref(ref)
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".airlock-save-", dir=archive.parent) as tmp, \
            progress.step(f"save {ref} -> {archive.name}", unit="bytes") as step:
        digestfile, part = Path(tmp) / "digest", Path(tmp) / "image.oci.tar"
        argv = copy_command(f"docker://{ref}", f"oci-archive:{part.resolve()}",
                            src_insecure=is_insecure(ref), digestfile=digestfile)
        with step.follow(lambda: part.stat().st_size):  # skopeo writes the archive as it goes
            _skopeo(argv, f"skopeo copy {ref} -> {archive.name}", source=ref, dest=None)
        os.replace(part, archive)
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
        _skopeo(argv, f"skopeo copy {src} -> {dest}", source=src, dest=dest)
        return digestfile.read_text().strip()


def tag(ref_by_digest: str, new_tag: str) -> str:
    """Give the image at ``repo@sha256:...`` the tag ``new_tag`` in the same repository."""
    host, repo, pointer = split_ref(ref_by_digest)
    if not pointer.startswith("sha256:"):
        raise AirlockError(ref_by_digest, "is not a digest reference", "pass repo@sha256:...")
    return copy(ref_by_digest, f"{host}/{repo}:{new_tag}")


def delete(ref: str) -> bool:
    """Delete the manifest ``ref`` points to; False if it was absent."""
    if manifest_raw(ref) is None:
        return False
    argv = ["skopeo", "delete", f"--tls-verify={'false' if is_insecure(ref) else 'true'}",
            *auth_args(), f"docker://{ref}"]
    _skopeo(argv, f"skopeo delete {ref}", source=ref, dest=ref, timeout=DELETE_TIMEOUT,
            dest_actions="pull,push,delete")
    return True
