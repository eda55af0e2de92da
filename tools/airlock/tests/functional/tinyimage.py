"""Tiny real OCI archives: an image index with one small image per platform.

What ``airlock build`` writes (an OCI layout in a tar, index.json naming
one image index), made in milliseconds: real registries accept, store and
serve them like any image, so publish can be tested against them without a
build. ``seed`` makes images that differ.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _layer(text: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        data = text.encode()
        info = tarfile.TarInfo("seed.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def make(path: Path, platforms: list[str], seed: str,
         index_annotations: dict[str, str] | None = None) -> str:
    """Write the archive at ``path``; return its index digest (what publish pushes).

    ``index_annotations``: on the index only (as a build's run annotations),
    the platform images stay those of ``seed``.
    """
    blobs: dict[str, bytes] = {}

    def blob(data: bytes, media_type: str, **extra) -> dict:
        digest = _digest(data)
        blobs[digest] = data
        return {"mediaType": media_type, "digest": digest, "size": len(data), **extra}

    entries = []
    for platform in platforms:
        os_name, arch = platform.split("/", 1)
        raw = _layer(f"{seed} {platform}\n")
        layer = blob(gzip.compress(raw, mtime=0), LAYER)
        config = blob(json.dumps({
            "architecture": arch, "os": os_name,
            "rootfs": {"type": "layers", "diff_ids": [_digest(raw)]},
            "config": {}}, sort_keys=True).encode(), CONFIG)
        manifest = json.dumps({"schemaVersion": 2, "mediaType": MANIFEST, "config": config,
                               "layers": [layer]}, sort_keys=True).encode()
        entries.append(blob(manifest, MANIFEST,
                            platform={"os": os_name, "architecture": arch}))
    doc: dict = {"schemaVersion": 2, "mediaType": INDEX, "manifests": entries}
    if index_annotations:
        doc["annotations"] = dict(index_annotations)
    index = blob(json.dumps(doc, sort_keys=True).encode(), INDEX)
    layout = {"oci-layout": json.dumps({"imageLayoutVersion": "1.0.0"}).encode(),
              "index.json": json.dumps({"schemaVersion": 2, "mediaType": INDEX,
                                        "manifests": [index]}).encode()}
    layout.update({f"blobs/sha256/{d.split(':', 1)[1]}": data for d, data in blobs.items()})
    with tarfile.open(path, "w") as tar:
        for name, data in layout.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return index["digest"]
