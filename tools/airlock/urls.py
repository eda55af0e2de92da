"""Credentials in URLs: never printed, never recorded.

A site may hand airlock a URL with credentials in it
(``https://user:token@git.site/...`` as ``--git-base``, ``repo:`` or
``--index-url``). They may be used for the call they were given for, but
every line airlock prints and every file it records (locks, build records,
manifests, logs) carries the URL without them: :func:`redact` where a text
is shown, :func:`strip_userinfo` where a URL is recorded. A recorded URL
gets its credentials back at use time only from the URL the user gave in
this run (:func:`with_credentials`), or from git's and pip's own mechanisms
(``~/.netrc``).
"""

from __future__ import annotations

import base64
import re
import urllib.parse
from collections.abc import Iterable

# scheme://userinfo@ : the userinfo runs to the last '@' before the path,
# so a password holding an unencoded '@' is redacted whole.
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)"
                       r"(?P<userinfo>[^/\s?#@]*(?:@[^/\s?#@]*)*)@")
REDACTED = "***"
# What redact hides besides: the same URL after pathlib folded its "//"
# ("https:/user:token@host/x"), as a URL given where a path is expected
# is printed back ("--file https://user:token@host/x: no such file").
_SHOWN_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*:/{1,2})"
                             r"(?P<userinfo>[^/\s?#@]*(?:@[^/\s?#@]*)*)@")


def redact(text: str) -> str:
    """``text`` with the userinfo of every URL in it replaced by ``***``."""
    return _SHOWN_USERINFO.sub(lambda m: f"{m['scheme']}{REDACTED}@", text)


def strip_userinfo(url: str) -> str:
    """``url`` without its ``user:password@``: what a lock or record keeps."""
    return _USERINFO.sub(lambda m: m["scheme"], url, count=1)


def has_userinfo(url: str) -> bool:
    """Whether ``url`` carries credentials."""
    return _USERINFO.search(url) is not None


def credentials(url: str) -> tuple[str, str] | None:
    """The (user, password) a URL carries, percent-decoded; None when it carries none."""
    if not has_userinfo(url):
        return None
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.unquote(parts.username or ""), urllib.parse.unquote(parts.password or "")


def basic_authorization(user: str, password: str) -> str:
    """The ``Authorization`` header value of HTTP Basic auth for ``user:password``."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def with_credentials(url: str, given: Iterable[str | None]) -> str:
    """``url`` with the credentials of a URL the user gave that it lies under.

    A lock records ``https://git.site/openstack/nova``; this run was given
    ``--git-base https://user:token@git.site``: nova is fetched with the
    token. A URL under none of them is returned as it is.
    """
    for candidate in given:
        if not candidate or not has_userinfo(candidate):
            continue
        bare = strip_userinfo(candidate).rstrip("/")
        if url == bare or url.startswith(bare + "/"):
            return candidate.rstrip("/") + url[len(bare):]
    return url
