"""Clients of the site's four stores, for ``bundle import``: what is there, and putting more.

Each store is asked before it is written to, and the answer decides
(:func:`decide`): absent -> upload; there with the same sha256 -> skip;
there with another sha256 -> a conflict, never overwritten. That one rule
makes an import idempotent (a second run uploads nothing) and resumable
(a rerun after a failure uploads only what is missing).

- :class:`PypiStore`: the PyPI-hosted repository. The simple index (PEP
  691 JSON or PEP 503 HTML, via :mod:`airlock.ext.pypi`) says which files a
  project has and their sha256; uploads go through twine's library (the
  standard upload API), credentials in the session, never in a URL.
- :class:`RawStore`: a raw-hosted repository (Nexus raw, nginx DAV): HEAD,
  GET and PUT over urllib with Basic auth; redirects are not followed (the
  credentials go to the store's own URL only).
- :class:`RegistryStore`: the Docker-hosted registry, through
  :mod:`airlock.ext.registry` (skopeo and the registry API); the store's
  credentials reach both as a private containers auth file named by
  ``$AIRLOCK_REGISTRY_AUTH_FILE`` for the duration of the import
  (:func:`airlock.site.access.registry_auth`).
- :class:`GitStore`: the git mirror, a folder of bare repositories or a
  push URL; refs follow :func:`plan_refs` (tags never move, branches only
  forward, nothing else touched).

No credential reaches a message: every error names the store by its URL
without userinfo (:func:`airlock.urls.strip_userinfo`).
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import io
import os
import re
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from airlock import files
from airlock.errors import AirlockError, ToolError
from airlock.ext import git, pypi, registry
from airlock.site.config import Store
from airlock.urls import basic_authorization, strip_userinfo

UPLOAD, SKIP, CONFLICT = "upload", "skip", "conflict"
TIMEOUT = 60  # seconds without a byte from a store
BLOCK = 1 << 20
CREDENTIALS_FIX = "check the credentials file or variable site.yaml names for this store"


def decide(local_sha256: str, remote_sha256: str | None) -> str:
    """What to do with one artifact: :data:`UPLOAD`, :data:`SKIP` or :data:`CONFLICT`.

    ``remote_sha256`` is None when the store does not have the file, ""
    when it has it but its hash is unknown (never taken for a match).
    """
    if remote_sha256 is None:
        return UPLOAD
    if remote_sha256 and remote_sha256.lower() == local_sha256.lower():
        return SKIP
    return CONFLICT


def conflict(store: str, name: str, remote_sha256: str | None) -> AirlockError:
    """The one line of an artifact already in a store with other bytes."""
    there = f"sha256 {remote_sha256[:12]}…" if remote_sha256 else "an unknown sha256"
    return AirlockError(f"{store}: {name}", f"already there with {there}, other bytes than "
                        "the bundle's; not overwritten",
                        "find out which is right; remove the store's copy to import this one")


# --- PyPI ---------------------------------------------------------------------


def _with_userinfo(url: str, creds: tuple[str, str] | None) -> str:
    if creds is None:
        return url
    parts = urllib.parse.urlsplit(url)
    user, password = (urllib.parse.quote(c, safe="") for c in creds)
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:{password}@{parts.netloc}"))


class PypiStore:
    """The PyPI-hosted repository: its simple index to ask, its upload URL to send to."""

    def __init__(self, store: Store) -> None:
        self.upload_url = store.urls["upload"]
        self.simple_url = store.urls["simple"]
        self._creds = store.credentials()
        self._pages: dict[str, dict[str, tuple[str, str | None]]] = {}
        self._repository = None

    def remote_sha256(self, filename: str) -> str | None:
        """The sha256 of the index's ``filename``; None when the index does not have it.

        The index's own hash when it gives one (Nexus, pypiserver with
        ``--hash-algo sha256``); else the file is read and hashed.
        """
        from packaging.utils import parse_wheel_filename

        project = str(parse_wheel_filename(filename)[0])
        if project not in self._pages:
            self._pages[project] = pypi.project_files(
                _with_userinfo(self.simple_url, self._creds), project,
                fix="check pypi.simple in site.yaml, the index and its credentials")
        if filename not in self._pages[project]:
            return None
        url, sha = self._pages[project][filename]
        if sha:
            return sha
        return _download_sha256(url, self._creds, same_origin=self.simple_url)

    def upload(self, path: Path) -> None:
        """Upload one wheel with twine's library; a refusal is one line naming the file."""
        import requests
        from twine import exceptions as twine_exceptions
        from twine.repository import Repository

        shown = strip_userinfo(self.upload_url)
        where = f"pypi {shown}: {path.name}"
        if self._repository is None:
            user, password = self._creds or (None, None)
            self._repository = Repository(self.upload_url, user, password,
                                          disable_progress_bar=True)
        try:
            package = _package_file(path)
            # twine prints "Uploading NAME" with rich: keep stdout for the report.
            with contextlib.redirect_stdout(io.StringIO()):
                answer = self._repository.upload(package)
        except twine_exceptions.TwineException as error:
            raise AirlockError(where, f"twine cannot read it: {type(error).__name__}",
                               "get the bundle again") from None
        except requests.RequestException as error:
            raise ToolError(where, f"upload failed: {type(error).__name__} (the index is "
                            "unreachable or dropped the connection)",
                            "check the pypi store; import again to resume") from None
        status = answer.status_code
        if status in (200, 201):
            return
        if status in (401, 403):
            raise ToolError(where, f"upload refused: HTTP {status} (credentials missing or "
                            "refused)", CREDENTIALS_FIX)
        if status == 409:
            raise conflict("pypi", path.name, self.remote_sha256(path.name) or "")
        raise ToolError(where, f"upload failed: HTTP {status} "
                        f"{http.client.responses.get(status, '')}".rstrip(),
                        "check the pypi store; import again to resume")

    def forget(self, filename: str) -> None:
        """Ask the index again next time (after an upload)."""
        from packaging.utils import parse_wheel_filename

        self._pages.pop(str(parse_wheel_filename(filename)[0]), None)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # noqa: ANN002, ANN003 - urllib's signature
        return None  # the 3xx is raised as an HTTPError: credentials never follow a redirect


def _download_sha256(url: str, creds: tuple[str, str] | None, same_origin: str) -> str:
    """The sha256 of the file at ``url``, read as a stream; credentials to the index's host only."""
    request = urllib.request.Request(url)
    origin = urllib.parse.urlsplit(same_origin)
    here = urllib.parse.urlsplit(url)
    if creds and (here.scheme, here.netloc) == (origin.scheme, origin.netloc):
        request.add_header("Authorization", basic_authorization(*creds))
    digest = hashlib.sha256()
    try:
        with urllib.request.build_opener(_NoRedirect()).open(request, timeout=TIMEOUT) as answer:
            while chunk := answer.read(BLOCK):
                digest.update(chunk)
    except urllib.error.HTTPError as error:
        error.close()
        raise ToolError(f"pypi {strip_userinfo(url)}", f"cannot read it to compare: HTTP "
                        f"{error.code}", CREDENTIALS_FIX if error.code in (401, 403)
                        else "check the pypi store") from None
    except (OSError, http.client.HTTPException) as error:
        raise ToolError(f"pypi {strip_userinfo(url)}", f"cannot read it to compare: "
                        f"{type(error).__name__}", "check the pypi store") from None
    return digest.hexdigest()


# --- raw ----------------------------------------------------------------------


class RawStore:
    """A raw-hosted repository: files by path under its base URL."""

    def __init__(self, store: Store) -> None:
        self.base = store.urls["url"]
        creds = store.credentials()
        self._auth = basic_authorization(*creds) if creds else None
        self._opener = urllib.request.build_opener(_NoRedirect())

    def url(self, path: str) -> str:
        return self.base + urllib.parse.quote(path)

    def _request(self, method: str, path: str, data=None, headers: dict | None = None):
        request = urllib.request.Request(self.url(path), data=data, method=method,
                                         headers=dict(headers or {}))
        if self._auth:
            request.add_header("Authorization", self._auth)
        where = f"raw {self.url(path)}"
        try:
            return self._opener.open(request, timeout=TIMEOUT)
        except urllib.error.HTTPError as error:
            error.close()
            if error.code == 404 and method in ("HEAD", "GET"):
                return None
            if error.code in (401, 403):
                raise ToolError(where, f"{method} refused: HTTP {error.code} (credentials "
                                "missing or refused)", CREDENTIALS_FIX) from None
            raise ToolError(where, f"{method} failed: HTTP {error.code} "
                            f"{http.client.responses.get(error.code, '')}".rstrip(),
                            "check the raw store; import again to resume") from None
        except (OSError, http.client.HTTPException) as error:
            reason = getattr(error, "reason", None) or error
            raise ToolError(where, f"{method} failed: {type(reason).__name__}: "
                            f"{str(reason)[:120]}",
                            "check the raw store is up; import again to resume") from None

    def remote_sha256(self, path: str, size: int | None = None) -> str | None:
        """The sha256 of the store's ``path`` (None: absent); a size that differs: "".

        HEAD first: a file of another size is a conflict without reading it.
        """
        with contextlib.ExitStack() as stack:
            answer = self._request("HEAD", path)
            if answer is None:
                return None
            stack.callback(answer.close)
            length = answer.headers.get("Content-Length")
            if size is not None and length is not None and length.isdigit() \
                    and int(length) != size:
                return ""
        answer = self._request("GET", path)
        if answer is None:
            return None
        digest = hashlib.sha256()
        with answer:
            while chunk := answer.read(BLOCK):
                digest.update(chunk)
        return digest.hexdigest()

    def get(self, path: str, limit: int = files.RECORD_LIMIT) -> bytes | None:
        """The bytes of ``path`` (at most ``limit``); None when absent."""
        answer = self._request("GET", path)
        if answer is None:
            return None
        with answer:
            data = answer.read(limit + 1)
        if len(data) > limit:
            raise ToolError(f"raw {self.url(path)}", f"larger than {limit} bytes",
                            "check the raw store")
        return data

    def put(self, path: str, source: Path | bytes) -> None:
        """PUT ``source`` (a file, streamed, or bytes) at ``path``."""
        if isinstance(source, bytes):
            with self._request("PUT", path, data=source,
                               headers={"Content-Type": "application/octet-stream"}):
                return
        with open(source, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            with self._request("PUT", path, data=handle,
                               headers={"Content-Length": str(size),
                                        "Content-Type": "application/octet-stream"}):
                return


def merge_packages(remote: bytes, local: bytes) -> bytes:
    """One flat repository's Packages: the store's stanzas and the bundle's, by file name.

    A delta adds .debs to a repository a full bundle made; its Packages
    must still advertise the earlier ones. The bundle's stanza wins for a
    file both name (same name, same bytes: a .deb is never overwritten).
    """
    def stanzas(data: bytes) -> dict[str, str]:
        found: dict[str, str] = {}
        for stanza in data.decode("utf-8", errors="replace").split("\n\n"):
            for line in stanza.splitlines():
                if line.startswith("Filename: "):
                    found[line[len("Filename: "):].strip()] = stanza.strip("\n") + "\n"
                    break
        return found

    merged = {**stanzas(remote), **stanzas(local)}
    return "\n".join(merged[name] for name in sorted(merged)).encode()


# --- registry -----------------------------------------------------------------


def image_repo(prefix: str, bundle_path: str) -> str:
    """``<prefix>/<name>`` of ``images/<name>-<digest16>.oci.tar``."""
    stem = bundle_path.rsplit("/", 1)[-1].removesuffix(".oci.tar")
    return f"{prefix}/{stem.rsplit('-', 1)[0]}"


def image_tag(origin_tag: str | None, digest: str) -> str | None:
    """The tag the site gives an imported base image: the release reference's own.

    ``build --site`` reads ``<prefix>/<name>:<tag>`` of the release's base
    image reference (:func:`airlock.site.access.base_image_ref`). None when
    the reference names a digest only.
    """
    del digest  # the image itself is kept by digest; the tag only points at it
    return origin_tag or None


class RegistryStore:
    """The Docker-hosted registry: images by digest, plus their tag."""

    def __init__(self, store: Store) -> None:
        self.prefix = store.urls["prefix"]

    def push(self, archive: Path, repo: str, digest: str, tag: str | None,
             ) -> tuple[str, str]:
        """Push ``archive`` as ``repo@digest`` and point ``tag`` at it; return (what, note).

        ``what``: :data:`UPLOAD` or :data:`SKIP`. The image, by digest, is
        never overwritten (a digest names its bytes). The tag is a pointer
        the site build reads: absent, it is set; at another digest (an
        earlier bundle's base image), it is moved to this one, and the note
        says from where.
        """
        by_digest = f"{repo}@{digest}"
        tagged = registry.digest(f"{repo}:{tag}") if tag else None
        if not registry.exists(by_digest):
            target = f"{repo}:{tag}" if tag else by_digest
            pushed = registry.push_archive(archive, target)
            if pushed != digest:
                raise ToolError(f"registry {by_digest}", f"the registry stored {pushed}, not "
                                "the bundle's digest",
                                "use a registry that keeps image indexes as pushed")
            moved = f" (tag {tag} moved from {tagged})" if tagged and tagged != digest else ""
            return UPLOAD, f"{target}@{digest}{moved}" if tag else by_digest
        if tag and tagged != digest:
            registry.tag(by_digest, tag)
            moved = f" (moved from {tagged})" if tagged else ""
            return UPLOAD, f"{repo}:{tag}@{digest}{moved}"
        return SKIP, f"{repo}:{tag}@{digest}" if tag else by_digest


# --- git ----------------------------------------------------------------------


@dataclass
class RefPlan:
    """What an import does to one repository's refs."""

    set: dict[str, str] = field(default_factory=dict)  # ref -> new sha (absent or forward)
    same: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # one line each


def plan_refs(current: dict[str, str], wanted: dict[str, str],
              descends: Callable[[str, str], bool]) -> RefPlan:
    """The updates that give ``wanted`` refs their sha, under the mirror's rules.

    A ref that is absent is created; one at the same sha is left; a tag (or
    any ref but a branch) never moves; a branch moves only forward
    (``descends(old, new)``). Refs not in ``wanted`` are not looked at.
    """
    plan = RefPlan()
    for ref, sha in sorted(wanted.items()):
        old = current.get(ref)
        if old is None:
            plan.set[ref] = sha
        elif old == sha:
            plan.same.append(ref)
        elif ref.startswith("refs/heads/") and descends(old, sha):
            plan.set[ref] = sha
        elif ref.startswith("refs/heads/"):
            plan.refused.append(f"branch {ref[len('refs/heads/'):]} is at {old[:12]}, which "
                                f"{sha[:12]} does not descend from; not moved back or aside")
        else:
            name = ref.removeprefix("refs/tags/")
            plan.refused.append(f"{'tag ' if ref.startswith('refs/tags/') else ''}{name} is "
                                f"at {old[:12]}, not {sha[:12]}; tags never move")
    return plan


# Where the mirror keeps repositories: each component at ``openstack/<project>``,
# airlock's own repository at ``airlock`` (the site checks it out to build).
OPENSTACK = "openstack"
AIRLOCK_REPOSITORY = "airlock"
_REPOSITORY_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")


def project_of(repo_url: str, component: str) -> str:
    """The mirror's project name of a component: the last part of its upstream repo."""
    last = strip_userinfo(repo_url).rstrip("/").rsplit("/", 1)[-1].removesuffix(".git")
    return last or component


class GitStore:
    """The git mirror: ``<push>/<repository>``, a local bare repository or a URL.

    ``repository`` is the mirror's path of one repository: ``openstack/<project>``
    for a component, ``airlock`` for airlock's own.
    """

    def __init__(self, store: Store) -> None:
        self.push_base = store.urls["push"]
        self.read_base = store.urls["base"]
        self.local = "://" not in self.push_base and not self.push_base.startswith("git@")
        creds = store.credentials()
        self._push = _with_userinfo(self.push_base, creds) \
            if creds and self.push_base.startswith(("http://", "https://")) else self.push_base

    @staticmethod
    def _checked(repository: str) -> str:
        """``repository`` if every part of it is a plain name (never ``..``, never absolute)."""
        if not all(_REPOSITORY_PART.fullmatch(part) for part in repository.split("/")):
            raise AirlockError(f"git {repository!r}"[:200], "is not a repository path of the "
                               "mirror (plain names joined by /)",
                               "get the bundle again from the Mirror Factory")
        return repository

    def target(self, repository: str) -> str:
        """Where import writes ``repository`` (``openstack/keystone``, ``airlock``)."""
        return f"{self.push_base.rstrip('/')}/{self._checked(repository)}"

    def read_url(self, repository: str) -> str:
        """Where the site reads ``repository``: ``<git base>/<repository>``, no credentials."""
        return f"{strip_userinfo(self.read_base).rstrip('/')}/{self._checked(repository)}"

    def load(self, bundle: Path, repository: str, heads: dict[str, str],
             default_branch: str | None) -> RefPlan:
        """Give ``repository`` the refs ``heads`` from the git bundle; return what was done.

        The bundle is read into a scratch repository; the mirror's refs are
        listed; ancestry is judged in the scratch repository (it holds the
        new commit's whole history, so an old tip it lacks is not an
        ancestor); then one atomic, unforced push sets the refs to set.
        """
        where = f"git {self.target(repository)}"
        url = self._push.rstrip("/") + f"/{repository}"
        with tempfile.TemporaryDirectory(prefix="airlock-import-git-") as tmp:
            scratch = Path(tmp) / "scratch.git"
            git.init_bare(scratch)
            git.unbundle(scratch, bundle)
            # Only once the bundle reads: one that does not leaves no empty
            # repository behind in the mirror.
            if self.local:
                repo = Path(self.target(repository))
                if not repo.exists():
                    repo.parent.mkdir(parents=True, exist_ok=True)
                    git.init_bare(repo)
                    if default_branch:
                        git.set_default_branch(repo, default_branch)
            try:
                current = git.remote_refs(url)
            except ToolError as error:
                raise ToolError(where, f"cannot list its refs: {error.what}",
                                "check the git store (and its credentials)") from None
            plan = plan_refs(current, heads,
                             lambda old, new: git.is_ancestor(scratch, old, new))
            if plan.refused:
                return plan
            try:
                git.push_refs(scratch, url, plan.set)
            except ToolError as error:
                raise ToolError(where, f"push refused: {error.what}",
                                "check the git store (and its credentials)") from None
        return plan


def _package_file(path: Path):
    """twine's PackageFile of a wheel, its metadata read as the index once accepted it.

    twine 6+ refuses metadata that the current specifications reject:
    Metadata-Version 2.0 (Parsley 1.3), a malformed content type
    (fasteners 0.19). PyPI took those wheels, and the releases pin them;
    a site index takes them as well. Only when twine's strict reading
    refuses, the same fields are read leniently (what no specification
    knows is left out), the name and version still required.
    """
    from packaging import metadata
    from twine import exceptions as twine_exceptions
    from twine import wheel
    from twine.package import PackageFile

    try:
        return PackageFile.from_filename(str(path), comment=None)
    except twine_exceptions.InvalidDistribution:
        dist = wheel.Wheel(str(path))
        raw, _unparsed = metadata.parse_email(dist.read())
        if not raw.get("name") or not raw.get("version"):
            raise
        raw.pop("license_files", None)
        return PackageFile(str(path), None, raw, dist.py_version, "bdist_wheel")
