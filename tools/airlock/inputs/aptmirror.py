"""The Debian mirror a release's packages come from: where it is, and its state.

One module owns the mirror: which URL to use (``$AIRLOCK_APT_MIRROR``, else
the machine's own apt sources, so nothing in the repository names a host)
and reading its Release file over HTTP (or ``file://``), whose date pins
the SOURCE_DATE_EPOCH of everything bootstrapped from that mirror state.
The base image (:mod:`airlock.inputs.baseimage`) and the offline apt repositories
(:mod:`airlock.inputs.debs`) both take the mirror from here.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from email.utils import parsedate_to_datetime
from pathlib import Path

from airlock.errors import AirlockError, ToolError

MIRROR_ENV = "AIRLOCK_APT_MIRROR"
DEBIAN_SOURCES = Path("/etc/apt/sources.list.d/debian.sources")


def mirror_from_sources(text: str, codename: str) -> str | None:
    """The first ``URIs:`` of the deb822 stanza whose ``Suites:`` holds ``codename``."""
    for stanza in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line or line[:1].isspace():
                continue
            key, _, value = line.partition(":")
            fields[key.strip().lower()] = value.strip()
        if fields.get("enabled", "yes").lower() == "no":
            continue
        if codename in fields.get("suites", "").split() and fields.get("uris"):
            return fields["uris"].split()[0]
    return None


def apt_mirror(codename: str, env: dict[str, str] | None = None,
               sources: Path = DEBIAN_SOURCES) -> str:
    """The Debian mirror to bootstrap from: ``$AIRLOCK_APT_MIRROR``, else the machine's.

    Nothing in the repository names a mirror host: the default is the
    machine's own apt configuration for ``codename``.
    """
    env = os.environ if env is None else env
    if env.get(MIRROR_ENV):
        return env[MIRROR_ENV]
    try:
        found = mirror_from_sources(sources.read_text(), codename)
    except OSError:
        found = None
    if not found:
        raise AirlockError(str(sources), f"no apt entry for {codename} to take the mirror from",
                           f"set {MIRROR_ENV}=<Debian mirror URL>")
    return found


def release_epoch(mirror: str, codename: str, timeout: float = 60) -> int:
    """``SOURCE_DATE_EPOCH`` of a mirror state: the Date: of its Release file.

    The same mirror state gives the same epoch on every machine, unlike the
    clock. Read from ``dists/<codename>/InRelease`` (or ``Release``); a
    ``file://`` mirror works too.
    """
    base = mirror.rstrip("/")
    last_error = ""
    for name in ("InRelease", "Release"):
        url = f"{base}/dists/{codename}/{name}"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as answer:  # noqa: S310
                text = answer.read().decode("utf-8", "replace")
        except (urllib.error.URLError, OSError) as error:
            last_error = f"{url}: {getattr(error, 'reason', error)}"
            continue
        for line in text.splitlines():
            if line.startswith("Date:"):
                return int(parsedate_to_datetime(line[5:].strip()).timestamp())
        last_error = f"{url}: no Date: field"
    raise ToolError(f"apt mirror {mirror}", f"cannot read the {codename} Release file "
                    f"({last_error})", f"check the mirror or set {MIRROR_ENV}")
