"""Publish the service images of a build record to the registry.

Order matters, so that nobody ever pulls a partial image by a tag:

1. push each built OCI archive whole (every platform, digests kept) under
   its immutable tag ``<version>-<release>-<input digest prefix>``;
2. check that the registry now serves exactly the archive's index digest
   and every platform the record asks for;
3. only then point the moving tags (``<release>``, ``<version>``) at that
   digest. A failure in 1 or 2 stops before any moving tag is written.

Images the build skipped are already in the registry: only their moving
tags are (re)written. Registry errors are retried with backoff by
:mod:`airlock.ext.registry`; credentials come from its auth file variable,
never from the command line.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from airlock.errors import AirlockError, ToolError
from airlock.ext import registry

Progress = Callable[[str], None]


def load_record(path: Path) -> dict:
    """Read a build record written by ``airlock build``."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as error:
        raise AirlockError(str(path), "no build record", "run airlock build first") from error
    except ValueError as error:
        raise AirlockError(str(path), f"not a build record: {error}",
                           "run airlock build again") from error


def _noop(_: str) -> None:
    pass


def publish(record: dict, progress: Progress = _noop) -> list[dict]:
    """Push and tag every service image of ``record``; return one row per image."""
    rows = []
    for image in record["images"]:
        if not image.get("service"):
            continue
        rows.append(_publish_one(image, progress))
    return rows


def _publish_one(image: dict, progress: Progress) -> dict:
    repo = image["ref"].split("@", 1)[0]
    immutable = f"{repo}:{image['tag']}"
    if image["status"] in ("built", "kept"):
        progress(f"{image['image']}: pushing {immutable}")
        pushed = registry.push_archive(Path(image["archive"]), immutable)
        if pushed != image["digest"]:
            raise ToolError(immutable, f"the registry stored {pushed}, the build made "
                            f"{image['digest']}", "check the registry for digest rewriting")
    served = registry.digest(immutable)
    if served != image["digest"]:
        raise ToolError(immutable, f"the registry serves {served}, expected {image['digest']}",
                        "no moving tag was written; publish again")
    present = set(registry.platforms(f"{repo}@{image['digest']}"))
    missing = [p for p in image["platforms"] if p not in present]
    if missing:
        raise ToolError(immutable, f"platform(s) {', '.join(missing)} missing from the index",
                        "no moving tag was written; rebuild and publish again")
    for tag in image["moving_tags"]:
        registry.tag(f"{repo}@{image['digest']}", tag)
    progress(f"{image['image']}: {image['digest']} tagged "
             f"{', '.join([image['tag'], *image['moving_tags']])}")
    return {"image": image["image"], "repo": repo, "digest": image["digest"],
            "tags": [image["tag"], *image["moving_tags"]]}
