"""site.yaml on a Zuul node, from the one variable a site sets once: ``airlock_site``.

A site names its stores once, in its base job or the executor's site
variables, as a mapping with the keys of site.yaml (URLs only)::

    airlock_site:
      pypi: {upload: ..., simple: ...}
      raw: {url: ...}
      registry: {prefix: ...}
      git: {base: ..., push: ...}

The pre-run of the build jobs hands it over as JSON (``airlock zuul site``);
this module checks it, naming the Zuul variable (``airlock_site.registry
.prefix is not set``) so that a job fails before any work, and writes two
files:

* ``site.yaml``: every store read anonymously (a site's Nexus is read
  without credentials; the jobs hold none for reading);
* ``site-push.yaml``: the same, but the registry's credentials come from
  the file ``registry-push.credentials`` beside it, which only the
  playbooks that push write, from the Zuul secret (a no_log task, mode
  0600), and remove after their one command. Not an environment variable:
  under Zuul a no_log command returns no output at all, and the build and
  publish commands' output is what the roles judge and the operator reads.

A credential given in ``airlock_site`` is refused: secrets come only from
the Zuul secret.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from airlock import files
from airlock.errors import AirlockError
from airlock.site import config
from airlock.urls import has_userinfo, redact

VARIABLE = "airlock_site"
PUSH_CREDENTIALS = "registry-push.credentials"
SITE_FILE = "site.yaml"
PUSH_FILE = "site-push.yaml"
LIMIT = 64 * 1024  # characters of JSON read from stdin: URLs only
FIX = "set it in the site's base job or site variables (README, 'Zuul')"
HEADER = ("# written by `airlock zuul site` from the Zuul variable airlock_site;\n"
          "# URLs only: reads are anonymous{push}.\n")


def _kind(value: object) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean",
            type(None): "null"}.get(type(value), type(value).__name__)


def parse(text: str) -> object:
    """The JSON the pre-run passes (``airlock_site | to_json``); checked by :func:`stores`."""
    if len(text) >= LIMIT:
        raise AirlockError(VARIABLE, f"more than {LIMIT} characters of JSON",
                           "name the stores' URLs only")
    try:
        data = json.loads(text)
    except ValueError as error:
        raise AirlockError(VARIABLE, f"not JSON ({error})",
                           "pass the variable as {{ airlock_site | to_json }}") from None
    except RecursionError:  # "[[[[..." within the size limit: junk, not a bug
        raise AirlockError(VARIABLE, "not JSON (nested too deeply)",
                           "pass the variable as {{ airlock_site | to_json }}") from None
    return data


def _shown(key: object) -> str:
    """``.key`` for a message; a key that is no plain name may be the secret itself.

    YAML reads ``registry: {robot:token@nexus}`` as a mapping whose key is
    ``robot:token@nexus``; the site reader names only plain keys too.
    """
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]{0,39}", str(key)):
        return f".{key}"
    return " (a key that is not a name)"


def _holds_credentials(store: str, value: str) -> bool:
    """Whether a URL carries a secret, in any form the site reader would refuse it in.

    Not only ``scheme://user:pw@``: ``user:pw@host/path`` (a registry
    prefix has no scheme) and ``https:/user:pw@host`` (one slash) carry it
    too; they used to be written into site.yaml and refused only when it
    was read back, the secret left in the file. An ssh login name
    (``ssh://airlock@gerrit``, git's ``airlock@gerrit:path``) is no secret.
    """
    if config._ssh_login(value) or (store == "git" and re.match(r"^[^/:@]+@[^/:@]+:", value)):
        return False
    return (has_userinfo(value) or redact(value) != value
            or ("://" not in value and "@" in value.partition("/")[0]))


def stores(data: object) -> dict[str, dict[str, str]]:
    """Check ``airlock_site`` and return its URLs: one line naming the first mistake."""
    if data is None or data == {}:
        raise AirlockError(VARIABLE, "is not set", FIX)
    if not isinstance(data, dict):
        raise AirlockError(VARIABLE, f"is {_kind(data)}, not a mapping of the stores "
                           f"({', '.join(config.STORES)})", FIX)
    unknown = [key for key in data if key not in config.STORES]
    if unknown:
        raise AirlockError(f"{VARIABLE}{_shown(unknown[0])}", "is not a store",
                           f"use {', '.join(config.STORES)}")
    result: dict[str, dict[str, str]] = {}
    for store in config.STORES:
        entry = data.get(store)
        if entry is None:
            raise AirlockError(f"{VARIABLE}.{store}", "is not set", FIX)
        if not isinstance(entry, dict):
            raise AirlockError(f"{VARIABLE}.{store}", f"is {_kind(entry)}, not a mapping of "
                               f"{', '.join(config.KEYS[store])}", FIX)
        for key in entry:
            if key not in config.KEYS[store]:
                secret = key in config.CREDENTIAL_KEYS or any(
                    word in str(key).lower() for word in ("pass", "token", "secret", "user"))
                what = "a credential does not belong here" if secret else "is not a key"
                raise AirlockError(f"{VARIABLE}.{store}{_shown(key)}", what,
                                   "pushing credentials come from the Zuul secret; "
                                   f"use {', '.join(config.KEYS[store])}")
        result[store] = {}
        for key in config.KEYS[store]:
            value = entry.get(key)
            where = f"{VARIABLE}.{store}.{key}"
            if value is None or (isinstance(value, str) and not value.strip()):
                raise AirlockError(where, "is not set", FIX)
            if not isinstance(value, str):
                raise AirlockError(where, f"is {_kind(value)}, not a string", FIX)
            # Refused before anything is written: a secret never reaches the
            # files. An ssh login name (Gerrit's push URL) is no secret.
            if _holds_credentials(store, value):
                raise AirlockError(where, "holds credentials", "remove user:password@: "
                                   "reads are anonymous, pushes use the Zuul secret")
            result[store][key] = value.strip()
    return result


def render(urls: dict[str, dict[str, str]], push: Path | None) -> str:
    """site.yaml (or, ``push`` naming the credentials file, site-push.yaml) for these URLs."""
    doc = {}
    for store in config.STORES:
        entry: dict[str, object] = dict(urls[store])
        if push is not None and store == "registry":
            entry["credentials_file"] = str(push)
        else:
            entry[config.ANONYMOUS] = True
        doc[store] = entry
    note = (f"; the registry's push credentials are read from {push.name}, which only the "
            "playbooks that push write" if push is not None else "")
    return HEADER.format(push=note) + yaml.safe_dump(doc, sort_keys=False,
                                                     default_flow_style=False)


def write(data: object, dest: Path) -> tuple[Path, Path]:
    """Write site.yaml and site-push.yaml into ``dest``; each is then read back as airlock reads it.

    The reading back finds what the mapping's keys alone do not: a registry
    prefix with a scheme, a URL that is not http(s).
    """
    urls = stores(data)
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for name, push in ((SITE_FILE, None), (PUSH_FILE, dest.resolve() / PUSH_CREDENTIALS)):
        path = dest / name
        files.write_atomic(path, render(urls, push))
        config.load(path)
        written.append(path)
    return written[0], written[1]
