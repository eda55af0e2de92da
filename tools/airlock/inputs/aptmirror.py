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
import sys
import urllib.error
import urllib.parse
import urllib.request
from email.utils import parsedate_to_datetime
from pathlib import Path

from airlock.errors import AirlockError, ToolError
from airlock.urls import basic_authorization, credentials, strip_userinfo

MIRROR_ENV = "AIRLOCK_APT_MIRROR"
DEBIAN_SOURCES = Path("/etc/apt/sources.list.d/debian.sources")
SOURCES_LIST = Path("/etc/apt/sources.list")


def _deb822_entries(text: str) -> list[tuple[str, list[str]]]:
    """(first URI, suites) of each enabled ``Types: deb`` stanza of a deb822 file."""
    entries = []
    for stanza in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line or line[:1].isspace():
                continue
            key, _, value = line.partition(":")
            fields[key.strip().lower()] = value.strip()
        if fields.get("enabled", "yes").lower() == "no":
            continue
        if "deb" not in fields.get("types", "deb").split() or not fields.get("uris"):
            continue
        entries.append((fields["uris"].split()[0], fields.get("suites", "").split()))
    return entries


def _one_line_entries(text: str) -> list[tuple[str, list[str]]]:
    """(URI, [suite]) of each ``deb [options] URI suite ...`` line of a sources.list."""
    entries = []
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if not words or words[0] != "deb":
            continue
        words = words[1:]
        if words and words[0].startswith("["):
            while words and not words[0].endswith("]"):
                words = words[1:]
            words = words[1:]
        if len(words) >= 2:
            entries.append((words[0], [words[1]]))
    return entries


def mirror_from_sources(text: str, codename: str) -> str | None:
    """The mirror of ``codename`` in apt sources text (deb822 or one-line form).

    The entry whose suites name ``codename`` wins. A host of another
    release has none (a Debian 13 host building a bookworm base): then the
    mirror of the host's own main suite (a suite without ``-updates`` or
    ``-security``) serves, as a Debian mirror carries every release.
    """
    entries = _deb822_entries(text) if "URIs:" in text else _one_line_entries(text)
    for uri, suites in entries:
        if codename in suites:
            return uri
    for uri, suites in entries:
        if any("-" not in suite for suite in suites):
            return uri
    return None


def apt_mirror(codename: str, env: dict[str, str] | None = None,
               sources: tuple[Path, ...] = (DEBIAN_SOURCES, SOURCES_LIST)) -> str:
    """The Debian mirror to bootstrap from: ``$AIRLOCK_APT_MIRROR``, else the machine's.

    Nothing in the repository names a mirror host: the default is the
    machine's own apt configuration (the first of ``sources`` that has an
    entry) for ``codename``.
    """
    env = os.environ if env is None else env
    if env.get(MIRROR_ENV):
        return check_mirror(env[MIRROR_ENV], f"${MIRROR_ENV}")
    for path in sources:
        try:
            found = mirror_from_sources(path.read_text(), codename)
        except OSError:
            found = None
        if found:
            return found
    raise AirlockError(str(sources[0]), f"no apt entry for {codename} to take the mirror from",
                       f"set {MIRROR_ENV}=<Debian mirror URL>")


def check_mirror(url: str, where: str) -> str:
    """``url`` if mmdebstrap and apt can use it as a mirror: http(s) or file, one word.

    Checked before any work: it ends up as an argument of mmdebstrap (where
    ``--foo`` is an option) and a line of a sources list. Messages name it
    without its credentials.
    """
    bare = strip_userinfo(url)
    try:
        parts = urllib.parse.urlsplit(bare)
        _ = parts.port  # a port that is no number raises here
    except ValueError:
        parts = None
    # A mirror may be a server's root (dists/ at the top): http needs a host only.
    usable = parts is not None and parts.scheme in ("http", "https", "file") \
        and bool(parts.netloc if parts.scheme != "file" else parts.path.strip("/")) \
        and not any(c.isspace() or ord(c) < 32 for c in url)
    if not usable:
        raise AirlockError(where, f"{bare!r} is not a Debian mirror URL",
                           f"set {MIRROR_ENV} to http://host/debian (https:// and file:// "
                           "work too)")
    return url


def apt_auth(mirror: str) -> tuple[str, str | None]:
    """The mirror as apt's sources list names it, and its ``auth.conf`` entry (if any).

    apt takes credentials from ``auth.conf`` (``machine scheme://host/path
    login U password P``), never from the URL: there they would be printed
    in apt's output and written into the log. The scheme is always named:
    without it apt uses an entry for https only.
    """
    bare = strip_userinfo(mirror)
    given = credentials(mirror)
    if given is None:
        return bare, None
    login, password = given
    parts = urllib.parse.urlsplit(mirror)
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    machine = f"{parts.scheme}://{host}{parts.path}".rstrip("/")
    return bare, f"machine {machine} login {login} password {password}"


def release_epoch(mirror: str, codename: str, timeout: float = 60) -> int:
    """``SOURCE_DATE_EPOCH`` of a mirror state: the Date: of its Release file.

    The same mirror state gives the same epoch on every machine, unlike the
    clock. Read from ``dists/<codename>/InRelease`` (or ``Release``); a
    ``file://`` mirror works too.
    """
    base = strip_userinfo(mirror).rstrip("/")
    headers = {}
    given = credentials(mirror)
    if given is not None:  # urllib ignores a URL's userinfo: send it as a header
        headers["Authorization"] = basic_authorization(*given)
    last_error = ""
    for name in ("InRelease", "Release"):
        url = f"{base}/dists/{codename}/{name}"
        try:
            request = urllib.request.Request(url, headers=headers)
            with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310
                text = answer.read().decode("utf-8", "replace")
        except (urllib.error.URLError, OSError) as error:
            last_error = f"{url}: {getattr(error, 'reason', error)}"
            continue
        for line in text.splitlines():
            if line.startswith("Date:"):
                return int(parsedate_to_datetime(line[5:].strip()).timestamp())
        last_error = f"{url}: no Date: field"
    raise ToolError(f"apt mirror {base}", f"cannot read the {codename} Release file "
                    f"({last_error})", f"check the mirror or set {MIRROR_ENV}")


def main(argv: list[str]) -> int:
    """``python3 -m airlock.inputs.aptmirror CODENAME``: the mirror, for tools/setup-host."""
    if len(argv) != 1:
        print("usage: python3 -m airlock.inputs.aptmirror CODENAME", file=sys.stderr)
        return 2
    try:
        print(apt_mirror(argv[0]))
    except AirlockError as error:
        print(str(error), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
