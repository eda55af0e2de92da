"""Small real bundles for tests: a few files, a contract manifest, SHA256SUMS, a real signature.

Keys are real ed25519 keys made by ssh-keygen; the signature is made by
:func:`airlock.ext.sshkeygen.sign`, as ``bundle create --key`` makes it.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from airlock.bundle import sums
from airlock.ext import sshkeygen

WHEEL = "python/wheels/pbr-6.1.1-py2.py3-none-any.whl"


def make_key(folder: Path, name: str = "signer", passphrase: str = "") -> Path:
    """A new ed25519 private key ``folder/name`` (its public key is ``name.pub``)."""
    key = Path(folder) / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase, "-C", name,
                    "-f", str(key)], check=True, stdin=subprocess.DEVNULL, timeout=30)
    return key


def allowed_signers(path: Path, keys: Mapping[str, Path],
                    namespace: str = sshkeygen.NAMESPACE) -> Path:
    """An allowed_signers file trusting each ``{principal: private key}`` for ``namespace``."""
    lines = []
    for principal, key in keys.items():
        public = Path(f"{key}.pub").read_text().split()
        lines.append(f'{principal} namespaces="{namespace}" {public[0]} {public[1]}\n')
    Path(path).write_text("".join(lines))
    return Path(path)


def default_files() -> dict[str, bytes]:
    """A bundle's worth of small files, one of each kind."""
    return {
        WHEEL: b"PK\x03\x04 a wheel " * 300,
        "python/wheels/six-1.16.0-py2.py3-none-any.whl": b"six" * 5000,
        "sources/keystone.bundle": b"# v2 git bundle\n" + bytes(range(256)) * 40,
        "sources/locks/2025.2.yaml": b"keystone: 28.1.0\n",
        "debs/debian-trixie-amd64/Packages": b"Package: libc6\n",
        "images/base-2025.2.oci.tar": b"\0" * 20000 + b"oci",
    }


def manifest_for(files: Mapping[str, bytes], bundle_id: str = "airlock-test-1",
                 version: str = "2025.2-1", requires: Sequence[str] = (),
                 elsewhere: Mapping[str, str] | None = None) -> dict:
    """A manifest per the contract for ``files`` (arriving in this bundle).

    ``elsewhere`` adds artifacts ``{path: bundle id}`` that arrive in an
    earlier bundle (a delta).
    """
    artifacts = []
    for path, data in sorted(files.items()):
        artifacts.append(_artifact(path, hashlib.sha256(data).hexdigest(), len(data),
                                   bundle_id))
    for path, other in sorted((elsewhere or {}).items()):
        artifacts.append(_artifact(path, hashlib.sha256(path.encode()).hexdigest(), 1, other))
    return {"schema": 1, "id": bundle_id, "version": version,
            "created_at": "2026-01-01T00:00:00Z", "requires": list(requires),
            "artifacts": artifacts}


def _artifact(path: str, sha: str, size: int, bundle: str) -> dict:
    return {"path": path, "sha256": sha, "size": size, "kind": path.split("/")[0],
            "release": "2025.2", "platform": "linux/amd64",
            "origin": "https://example.invalid/" + path.rsplit("/", 1)[-1], "bundle": bundle}


def write_sums(root: Path, key: Path | None) -> None:
    """SHA256SUMS of every file under ``root`` but the two it cannot list; signed with ``key``."""
    root = Path(root)
    listed = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if rel not in sums.UNLISTED:
            listed[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    (root / sums.SUMS).write_bytes(sums.render(listed))
    if key is not None:
        sign(root, key)


def sign(root: Path, key: Path) -> None:
    """(Re)write SHA256SUMS.sig over the folder's SHA256SUMS."""
    (Path(root) / sums.SIGNATURE).write_bytes(sshkeygen.sign(key, Path(root) / sums.SUMS))


def make_bundle(root: Path, files: Mapping[str, bytes] | None = None, key: Path | None = None,
                *, manifest: dict | None = None, **manifest_args) -> Path:
    """Write a complete bundle folder at ``root`` (created) and return it.

    ``files`` default to :func:`default_files`; ``manifest`` to
    :func:`manifest_for` (``manifest_args`` go to it). Without ``key`` the
    bundle is unsigned.
    """
    root = Path(root)
    files = default_files() if files is None else files
    root.mkdir(parents=True, exist_ok=True)
    for path, data in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(data)
    if manifest is None:
        manifest = manifest_for(files, **manifest_args)
    (root / sums.MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    write_sums(root, key)
    return root
