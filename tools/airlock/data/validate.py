"""``airlock release validate``: every error of the data tree in one run.

The loaders stop at the first error because a build cannot go on; a review
wants them all at once. This module checks each release folder
(release.yaml, source-refs.yaml, both constraints files) and what ties the
folders together: a usable image folder for every service and base image
(its bindep.txt parsed), a distro the images' bindep files speak, and patch
series that belong to a real component of a real release and that git can
read. It is the gate a reviewer trusts: whatever a later command would
refuse for a reason visible in the data, it refuses first. Nothing here
runs docker or reaches the network (git only reads patch files), so it is
quick enough for every check pipeline.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from airlock import files
from airlock.data import constraints, packages, patches, services, yamlfile
from airlock.data import release as release_mod
from airlock.data.layout import Layout
from airlock.data.release import Release
from airlock.errors import AirlockError

# Files every images/<service>/ folder must hold (the Dockerfile joins later).
IMAGE_FILES: tuple[str, ...] = ("Dockerfile", "bindep.txt")
PATCH_SUFFIX = patches.SUFFIX


def release_names(layout: Layout) -> list[str]:
    """The release folder names under releases/, sorted (files such as README.md ignored)."""
    return release_mod.release_names(layout)


def validate(layout: Layout, names: list[str] | None = None) -> list[AirlockError]:
    """Every error of the named releases (all when ``names`` is empty), in a stable order.

    Order: per release (sorted by name on a full run, as given otherwise)
    its own files; then the distros; then the image folders; then patches/.
    Checks that span all releases (a patch folder of a component no release
    builds, of a release that does not exist) run only on a full run: a run
    for one release reports what is wrong with that release.
    """
    known = release_names(layout)
    errors: list[AirlockError] = []
    if not names:
        if not known:
            return [AirlockError(str(layout.releases_dir), "no release folders",
                                 "add releases/<release>/ with release.yaml, source-refs.yaml "
                                 "and upper-constraints.txt")]
        selected = known
    else:
        selected = []
        for name in names:
            if name not in known:
                errors.append(release_mod.no_such_release(layout, name))
            elif name not in selected:
                selected.append(name)
    loaded: dict[str, Release] = {}
    for name in selected:
        release, found = release_mod.load_release_checked(layout, name)
        errors += found
        if release is not None:
            errors += constraints.check_upper_constraints(release)
            errors += constraints.check_overrides(release)
            loaded[name] = release
    errors += check_distros(list(loaded.values()))
    errors += check_images(layout.images_dir, list(loaded.values()))
    errors += check_patches(layout, selected, full=not names)
    return errors


def _component_names(layout: Layout, release: str) -> set[str] | None:
    """The keys of a release's source-refs.yaml as written; None if unreadable.

    Taken from the file rather than the loaded Release: an entry with a bad
    ref is still that release's component, and its patches are not strays.
    """
    try:
        data = yamlfile.load(layout.release_dir(release) / "source-refs.yaml",
                             within=layout.releases_dir)
    except AirlockError:
        return None  # reported by the release loader
    return {str(key) for key in data} if isinstance(data, dict) else set()


def check_images(images_dir: Path, releases: list[Release]) -> list[AirlockError]:
    """The image folders the releases build are complete and usable; each reported once.

    Every service of the releases, and the base images every service is
    built on (python-base, venv-builder), needs images/<name>/ with
    IMAGE_FILES: regular files inside images/, and a bindep.txt bindep can
    parse (``packages`` and ``build`` read it). Nothing in a folder may be a
    FIFO, a socket or a device: a build hashes every file of its context.
    """
    errors: list[AirlockError] = []
    services: list[str] = []
    for release in releases:
        services += [s for s in release.services if s not in services]
    for service in services:
        users = [r.name for r in releases if service in r.services]
        noun = "release" if len(users) == 1 else "releases"
        errors += _check_image(images_dir, service,
                               f"service '{service}' of {noun} {', '.join(users)}")
    if releases:
        for base in packages.BASE_IMAGES:
            errors += _check_image(images_dir, base, f"base image '{base}'")
    return errors


def _check_image(images_dir: Path, name: str, what: str) -> list[AirlockError]:
    """One images/<name>/ folder; ``what`` says who needs it."""
    folder = images_dir / name
    if not folder.is_dir():
        return [AirlockError(str(folder), f"no image folder for {what}",
                             f"create it with {', '.join(IMAGE_FILES)}")]
    errors = []
    for file in IMAGE_FILES:
        path = folder / file
        if not os.path.lexists(path):
            errors.append(AirlockError(str(path), "no such file",
                                       f"every image folder needs {', '.join(IMAGE_FILES)}"))
            continue
        try:
            if file == "bindep.txt":
                packages.load(path, images_dir)
            else:
                files.read_bytes(path, within=images_dir,
                                 fix=f"replace it with the image's real {file}")
        except AirlockError as error:
            errors.append(error)
    # A mistake in service.yaml is found here, on the connected side, and not
    # first by the wheelhouse step or airlock check at the site.
    try:
        services.load(images_dir, name)
    except AirlockError as error:
        errors.append(error)
    for top, dirs, names in os.walk(folder):
        for entry in sorted(dirs + names):
            path = Path(top, entry)
            if path.parent == folder and entry in (*IMAGE_FILES, services.FILE):
                continue  # read above, and reported as what it is
            mode = path.lstat().st_mode
            if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode) or stat.S_ISLNK(mode)):
                errors.append(AirlockError(str(path), "is not a regular file, a folder or a link",
                                           "a build hashes and sends every file of the image "
                                           "folder: remove it"))
    return errors


def check_distros(releases: list[Release]) -> list[AirlockError]:
    """Each release's distro is one the images' bindep files speak (``packages`` refuses others)."""
    errors = []
    for release in releases:
        if release.distro.name:  # an empty one is reported by the loader
            try:
                packages.platform_profiles(release.distro,
                                           where=f"{release.release_yaml_path}:distro")
            except AirlockError as error:
                errors.append(error)
    return errors


def _entries(folder: Path) -> list[Path]:
    return sorted(folder.iterdir(), key=lambda p: p.name)


def check_patches(layout: Layout, selected: list[str], full: bool = True,
                  ) -> list[AirlockError]:
    """patches/<component>/<release>/*.patch must belong to a component of that release.

    A patch that nothing applies is a mistake waiting to surprise someone:
    the build would silently ignore it. ``selected`` are the releases under
    validation; with ``full``, folders of components no release builds and
    of releases that do not exist are reported too.
    """
    root = layout.patches_dir
    if not root.is_dir():
        return patches.check_root(root)  # absent: nothing is patched, which is fine
    known = release_mod.release_names(layout)
    refs = {name: _component_names(layout, name) for name in known}
    complete = all(names is not None for names in refs.values())
    components = set().union(*(names for names in refs.values() if names is not None))
    errors: list[AirlockError] = []
    for comp_dir in _entries(root):
        if not comp_dir.is_dir():
            continue  # README and the like document the folder
        if not comp_dir.resolve().is_relative_to(root.resolve()):
            errors.append(AirlockError(str(comp_dir), f"leads outside {root} (a symbolic link?)",
                                       "replace the link by the folder itself"))
            continue
        if comp_dir.name not in components:
            if full and complete:
                errors.append(AirlockError(str(comp_dir), f"no release builds a component "
                                           f"'{comp_dir.name}'", "name the folder after a "
                                           "component of some source-refs.yaml, or remove it"))
            continue
        for rel_dir in _entries(comp_dir):
            errors += _check_patch_release(rel_dir, comp_dir.name, refs, selected, full)
    return errors


def _check_patch_release(rel_dir: Path, component: str, refs: dict[str, set[str] | None],
                         selected: list[str], full: bool) -> list[AirlockError]:
    """One patches/<component>/<release>/ entry."""
    name = rel_dir.name
    if not rel_dir.is_dir():
        return [AirlockError(str(rel_dir), "not a release folder",
                             f"move it into patches/{component}/<release>/")] if full else []
    if name not in refs:
        return [AirlockError(str(rel_dir), f"no such release '{name}'",
                             f"known: {', '.join(refs) or 'none'}")] if full else []
    if name not in selected:
        return []
    names = refs[name]
    if names is not None and component not in names:
        return [AirlockError(str(rel_dir), f"'{component}' is not in "
                             f"releases/{name}/source-refs.yaml",
                             "add its ref there or remove the folder")]
    # What sources prepare would refuse (unreadable, empty, binary, not a
    # patch, touching .airlock/ or '..'), and files nothing applies.
    return patches.check_series(rel_dir.parent.parent, component, name, strays=True)[1]
