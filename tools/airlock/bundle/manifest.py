"""manifest.json: what a bundle holds, for which releases, from where; read and written here.

Plain data. The id is derived from the content (the selection and every
artifact's path and sha256, and for a delta where each earlier one
arrived): the same inputs make the same id, so an id names content, not a
moment. ``version`` is for people (``--version``, default the creation
time); ``requires`` lists the earlier bundles a delta builds on.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from airlock import files
from airlock.bundle import layout, sums
from airlock.errors import AirlockError

LIMIT = 256 * files.MiB


def bundle_id(selection: dict, artifacts: list[dict]) -> str:
    """``airlock-<20 hex>`` over the selection and each artifact's path, sha256 and origin bundle.

    An artifact arriving in this bundle counts with an empty origin, so the
    id can be computed before it is written into the artifacts.
    """
    rows = sorted((a["path"], a["sha256"], a.get("bundle") or "") for a in artifacts)
    text = json.dumps({"selection": selection, "artifacts": rows}, sort_keys=True,
                      separators=(",", ":"))
    return "airlock-" + hashlib.sha256(text.encode()).hexdigest()[:20]


FIX = "pass a bundle folder (or its manifest.json) made by airlock bundle create"


def load(path: Path, within: Path | None = None) -> dict:
    """A bundle's manifest, checked enough that every reader can rely on its shape.

    ``within``: the bundle folder it was found in; a manifest.json that is
    a link out of it is refused (nothing follows a link out of a tree
    airlock did not make).
    """
    return parse(files.read_bytes(path, limit=LIMIT, fix=FIX, within=within), str(path))


def read(folder_or_file: Path) -> dict:
    """The checked manifest of a bundle folder (never through a link out of it), or a file."""
    folder_or_file = Path(folder_or_file)
    if folder_or_file.is_dir():
        return load(folder_or_file / layout.MANIFEST, within=folder_or_file)
    return load(folder_or_file)


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is no JSON number")


def parse(raw: bytes, where: str, fix: str = FIX) -> dict:
    """The manifest in ``raw``, once every field a reader uses has its type (else one line)."""
    try:
        data = json.loads(raw, parse_constant=_no_constant)
    except RecursionError:
        raise AirlockError(where, "is not JSON (nested too deeply)", fix) from None
    except ValueError as error:  # bad UTF-8, bad JSON, NaN, a number of 4300+ digits
        raise AirlockError(where, f"is not JSON ({str(error)[:120]})", fix) from None
    return checked(data, where, fix)


def checked(data: object, where: str, fix: str = FIX) -> dict:
    """``data`` if it has the shape every reader relies on; else one line naming the key.

    A manifest may come from anywhere (a stick, a download): the readers
    (inspect, check, ``--since``) index it freely, so a wrong type, a path
    out of the bundle, a control character in what is printed, is refused
    here, never met later as a traceback.
    """
    if not isinstance(data, dict) or data.get("schema") != layout.SCHEMA:
        raise AirlockError(where, f"is not an airlock bundle manifest of schema "
                           f"{layout.SCHEMA}", fix)
    _Shape(where, fix).manifest(data)
    return data


_SHA256 = re.compile(r"[0-9a-f]{64}")
# A ref a bundle may give the site's mirror; the rest of git's refname rules below.
_PUSHED_REF = re.compile(r"refs/(heads|tags|airlock)/[^\x00-\x20\x7f~^:?*\[\\]+")


def _ref_problem(ref: str) -> str | None:
    """Why ``ref`` may not be pushed to the site's mirror (None: it may)."""
    if not _PUSHED_REF.fullmatch(ref):
        return "is not a branch, tag or refs/airlock/ ref (refs/heads|tags|airlock/NAME)"
    parts = ref.split("/")
    if (".." in ref or "@{" in ref or ref.endswith(".")
            or any(not part or part.startswith(".") or part.endswith(".lock")
                   for part in parts)):
        return "is not a valid ref name (git check-ref-format)"
    return None
_KINDS = {dict: "a mapping", list: "a list", str: "a string", int: "a whole number",
          bool: "true or false"}


class _Shape:
    """The type of every field the bundle readers use; the first one wrong is one line."""

    def __init__(self, where: str, fix: str) -> None:
        self.where, self.fix = where, fix

    def fail(self, key: str, what: str) -> None:
        if not key.isprintable():  # a hostile name must not write on the terminal
            key = key.encode("unicode_escape").decode()
        raise AirlockError(f"{self.where}:{key[:200]}", what, self.fix)

    def names(self, value: dict, key: str) -> dict:
        """A mapping whose keys are printed (release, component, service, arch names)."""
        for name in value:
            if not name or not name.isprintable() or len(name) > 200:
                self.fail(f"{key}.{name}", "is not a printable name")
        return value

    def need(self, value, kind: type, key: str, optional: bool = False):
        if value is None and optional:
            return kind()
        if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
            self.fail(key, f"missing or not {_KINDS.get(kind, kind.__name__)}")
        return value

    def text(self, value, key: str, optional: bool = False) -> str:
        value = self.need(value, str, key, optional)
        if not value.isprintable():
            self.fail(key, "holds a control character")
        return value

    def texts(self, value, key: str, optional: bool = False) -> list[str]:
        value = self.need(value, list, key, optional)
        for number, item in enumerate(value):
            self.text(item, f"{key}[{number}]")
        return value

    def path(self, value, key: str) -> str:
        problem = sums.safe_path(self.need(value, str, key))
        if problem:
            self.fail(key, f"{value!r} {problem}"[:300])
        return value

    def manifest(self, data: dict) -> None:
        for key in ("id", "version"):
            if not self.text(data.get(key), key):
                self.fail(key, "is empty")
        self.text(data.get("created_at"), "created_at", optional=True)
        self.texts(data.get("requires"), "requires")
        self.texts(data.get("notes"), "notes", optional=True)
        self.need(data.get("complete"), bool, "complete", optional=True)
        self.airlock(self.need(data.get("airlock"), dict, "airlock", optional=True))
        selection = self.need(data.get("selection"), dict, "selection", optional=True)
        for key in ("releases", "services", "platforms"):
            self.texts(selection.get(key), f"selection.{key}", optional=True)
        for number, art in enumerate(self.need(data.get("artifacts"), list, "artifacts")):
            at = f"artifacts[{number}]"
            self.need(art, dict, at)
            self.path(art.get("path"), f"{at}.path")
            for key in ("kind", "bundle"):
                self.text(art.get(key), f"{at}.{key}")
            if not _SHA256.fullmatch(self.need(art.get("sha256"), str, f"{at}.sha256")):
                self.fail(f"{at}.sha256", "not a sha256 (64 lowercase hex)")
            if self.need(art.get("size"), int, f"{at}.size") < 0:
                self.fail(f"{at}.size", "is negative")
        for name, entry in self.names(self.need(data.get("releases"), dict, "releases"),
                                      "releases").items():
            self.release(f"releases.{name}", self.need(entry, dict, f"releases.{name}"))

    def airlock(self, entry: dict) -> None:
        """airlock's own entry; its repository (commit, git bundle) when the bundle has one."""
        for key in ("version", "python"):
            self.text(entry.get(key), f"airlock.{key}", optional=True)
        if entry.get("commit") is None:
            return  # a bundle made before airlock's repository crossed too
        if not re.fullmatch(r"[0-9a-f]{40}", self.text(entry.get("commit"), "airlock.commit")):
            self.fail("airlock.commit", "not a commit sha (40 lowercase hex)")
        self.path(entry.get("bundle"), "airlock.bundle")
        self.heads(self.need(entry.get("heads"), dict, "airlock.heads"), "airlock.heads")
        self.need(entry.get("uncommitted"), bool, "airlock.uncommitted")

    def heads(self, heads: dict, key: str) -> None:
        """The refs import pushes to the site's mirror: branches, tags and airlock's own.

        Pushed as ``<sha>:<ref>``: a ref elsewhere (Gerrit's refs/meta/config
        holds a project's access rules) or a "sha" that is ``+<sha>`` (a
        forced push), ``HEAD`` or an abbreviation would reach the mirror.
        """
        for ref, sha in self.names(heads, key).items():
            if _ref_problem(ref):
                self.fail(f"{key}.{ref}", _ref_problem(ref))
            if not isinstance(sha, str) or not re.fullmatch(r"[0-9a-f]{40}", sha):
                self.fail(f"{key}.{ref}", "not an object sha (40 lowercase hex)")

    def release(self, at: str, entry: dict) -> None:
        self.texts(entry.get("platforms"), f"{at}.platforms", optional=True)
        for key in ("python_version", "uv", "python_base"):
            self.text(entry.get(key), f"{at}.{key}", optional=True)
        base = self.need(entry.get("base_image"), dict, f"{at}.base_image", optional=True)
        for key in ("ref", "digest"):
            self.text(base.get(key), f"{at}.base_image.{key}", optional=True)
        components = self.need(entry.get("components"), dict, f"{at}.components",
                               optional=True)
        for name, comp in self.names(components, f"{at}.components").items():
            here = f"{at}.components.{name}"
            self.need(comp, dict, here)
            self.text(comp.get("ref"), f"{here}.ref")
            if not re.fullmatch(r"[0-9a-f]{40}", self.text(comp.get("sha"), f"{here}.sha")):
                self.fail(f"{here}.sha", "not a commit sha (40 lowercase hex)")
            self.path(comp.get("bundle"), f"{here}.bundle")
            self.heads(self.need(comp.get("heads"), dict, f"{here}.heads", optional=True),
                       f"{here}.heads")
            for number, patch in enumerate(self.need(comp.get("patches"), list,
                                                     f"{here}.patches", optional=True)):
                self.need(patch, dict, f"{here}.patches[{number}]")
                self.path(patch.get("path"), f"{here}.patches[{number}].path")
        python = self.need(entry.get("python"), dict, f"{at}.python", optional=True)
        for service, svc in self.names(python, f"{at}.python").items():
            here = f"{at}.python.{service}"
            reqs = self.need(self.need(svc, dict, here).get("requirements"), dict,
                             f"{here}.requirements")
            for key in layout.REQUIREMENTS_FILES[:3]:
                self.path(reqs.get(key), f"{here}.requirements.{key}")
        apt = self.need(entry.get("apt"), dict, f"{at}.apt", optional=True)
        for arch, repo in self.names(apt, f"{at}.apt").items():
            self.path(repo, f"{at}.apt.{arch}")
        packages = self.need(entry.get("packages"), dict, f"{at}.packages", optional=True)
        for owner, lists in self.names(packages, f"{at}.packages").items():
            for arch, names in self.names(self.need(lists, dict, f"{at}.packages.{owner}"),
                                          f"{at}.packages.{owner}").items():
                self.texts(names, f"{at}.packages.{owner}.{arch}")


def of(folder_or_file: Path) -> Path:
    """The manifest.json of a bundle folder, or the file itself."""
    return folder_or_file / layout.MANIFEST if folder_or_file.is_dir() else folder_or_file


def carried(manifest: dict) -> list[dict]:
    """The artifacts that arrive in this very bundle (all of them, unless it is a delta)."""
    return [a for a in manifest["artifacts"] if a["bundle"] == manifest["id"]]


def totals(artifacts: list[dict]) -> dict[str, dict[str, int]]:
    """``{group: {"artifacts": n, "bytes": n}}`` in the summary's order."""
    result = {group: {"artifacts": 0, "bytes": 0} for group in layout.GROUP_ORDER}
    for art in artifacts:
        row = result.setdefault(layout.group(art["kind"]), {"artifacts": 0, "bytes": 0})
        row["artifacts"] += 1
        row["bytes"] += int(art.get("size") or 0)
    return result
