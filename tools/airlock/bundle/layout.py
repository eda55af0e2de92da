"""Where each artifact lives in a bundle, and which kind it is: the one home of those names.

A bundle is a plain folder (see ``docs`` in README, "The offline bundle")::

    manifest.json              what the bundle holds, for whom, from where
    SHA256SUMS                 every other file's sha256 (``sha256sum -c`` reads it)
    SHA256SUMS.sig             ``ssh-keygen -Y sign`` over SHA256SUMS
    sources/locks/<release>.lock.yaml
    sources/git/<component>-<sha12>.bundle
    sources/git/airlock-<sha12>.bundle   airlock's own repository (releases/, images/, ...)
    sources/patches/<component>/<release>/<name>.patch   (a --patches-dir as it is)
    python/wheels/<wheel>      one pool: every release, platform and build requirement
    python/airlock/<wheel>     airlock itself and what it needs, to install it offline
    python/requirements/<release>/<service>/<file>
    debs/<distro>-<codename>/<arch>/   one flat apt repository (Packages + .debs)
    images/<name>-<digest16>.oci.tar   a base image, every platform

The names are chosen so that every path component matches what
:mod:`airlock.bundle.sums` accepts: a path is never a way out of the bundle.
"""

from __future__ import annotations

SCHEMA = 1
MANIFEST = "manifest.json"
SUMS = "SHA256SUMS"
SIGNATURE = "SHA256SUMS.sig"
# Present while ``bundle create`` fills a folder: a hidden file is never part
# of a bundle, so an interrupted create can never pass ``bundle verify``.
PARTIAL = ".airlock-bundle-partial"

# kind -> the group the summary and ``bundle inspect`` count it under.
GROUPS = {
    "git": "sources", "patch": "sources", "lock": "sources",
    "wheel": "python", "airlock": "python", "requirements": "python",
    "deb": "debs", "apt-index": "debs",
    "image": "images",
}
GROUP_ORDER = ("sources", "python", "debs", "images")

# What a service's resolution reads, kept per release and service.
REQUIREMENTS_FILES = ("requirements.in", "constraints.txt", "build-constraints.txt",
                      "install.txt")


def lock(release: str) -> str:
    return f"sources/locks/{release}.lock.yaml"


def git_bundle(component: str, sha: str) -> str:
    return f"sources/git/{component}-{sha[:12]}.bundle"


def airlock_git_bundle(sha: str) -> str:
    """airlock's own repository at ``sha``: the site's checkout of airlock comes from it."""
    return git_bundle("airlock", sha)


PATCHES = "sources/patches"


def patch(release: str, component: str, name: str) -> str:
    """Laid out as patches/ is, so that the folder is a ``--patches-dir`` as it is."""
    return f"{PATCHES}/{component}/{release}/{name}"


def wheel(filename: str) -> str:
    return f"python/wheels/{filename}"


def airlock_wheel(filename: str) -> str:
    return f"python/airlock/{filename}"


def requirements(release: str, service: str, name: str) -> str:
    return f"python/requirements/{release}/{service}/{name}"


def apt_repo(distro: str, codename: str, arch: str) -> str:
    return f"debs/{distro}-{codename}/{arch}"


def image(name: str, digest: str) -> str:
    return f"images/{name}-{digest.split(':', 1)[-1][:16]}.oci.tar"


def group(kind: str) -> str:
    return GROUPS.get(kind, "other")
