"""SHA256SUMS of a bundle: render, parse strictly, and hash many files on both cores.

The file is what ``sha256sum -c`` reads ("<64 hex>  <path>" a line, sorted
by path), so a site can check a bundle with coreutils alone; airlock parses
it strictly, because every path in it becomes a file airlock creates on
extraction: a malformed line, a duplicate, a path that is absolute, has
``..``, a hidden component or a character outside the contract's set, is
one line naming the line number.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import stat
import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from pathlib import Path

from airlock.errors import AirlockError

SUMS = "SHA256SUMS"
SIGNATURE = "SHA256SUMS.sig"
MANIFEST = "manifest.json"
# Files of the bundle that SHA256SUMS never lists (it cannot hash itself).
UNLISTED = (SUMS, SIGNATURE)
BLOCK = 1 << 20
PATH_MAX = 1024
COMPONENT_MAX = 255
_COMPONENT = re.compile(r"[A-Za-z0-9_+@=-][A-Za-z0-9._+@=%~-]*")
_LINE = re.compile(r"([0-9a-f]{64})  (.+)")
GET_AGAIN = "the bundle was changed or damaged in transit; get it again"
# Progress: (done files, total files, done bytes, total bytes).
Progress = Callable[[int, int, int, int], None]
PROGRESS_EVERY = 0.3  # seconds


def safe_path(name: str) -> str | None:
    """What is wrong with ``name`` as a path inside a bundle, or None when it is fine.

    The contract's paths: relative, POSIX, each component matching
    ``[A-Za-z0-9_+@=-][A-Za-z0-9._+@=%~-]*`` (no hidden file, no ``.`` or
    ``..``), no empty component.
    """
    if not name:
        return "is an empty path"
    if name.startswith("/"):
        return "is an absolute path"
    if len(name) > PATH_MAX:
        return f"is longer than {PATH_MAX} characters"
    parts = name.split("/")
    if ".." in parts:
        return "has a '..' component (it would leave the bundle)"
    for part in parts:
        if not part:
            return "has an empty component ('//' or a trailing '/')"
        if part == ".":
            return "has a '.' component"
        if part.startswith("."):
            return f"has a hidden component {part!r}"
        if len(part) > COMPONENT_MAX:
            return f"has a component longer than {COMPONENT_MAX} characters"
        if not _COMPONENT.fullmatch(part):
            return (f"has a character outside [A-Za-z0-9._+@=%~-] in {part!r}"
                    .encode("ascii", "backslashreplace").decode())
    return None


def render(sums: Mapping[str, str]) -> bytes:
    """SHA256SUMS for ``{path: sha256}``: sorted by the paths' bytes, as ``sha256sum`` writes."""
    lines = []
    for path in sorted(sums, key=lambda p: p.encode()):
        problem = safe_path(path)
        if problem or path in UNLISTED:
            raise AirlockError(path, problem or "cannot be listed in SHA256SUMS",
                               "a bundle path must follow the bundle contract")
        if not re.fullmatch(r"[0-9a-f]{64}", sums[path]):
            raise AirlockError(path, f"not a sha256: {sums[path]!r}", "pass a hex sha256")
        lines.append(f"{sums[path]}  {path}\n")
    return "".join(lines).encode()


def parse(data: bytes, where: str = SUMS) -> dict[str, str]:
    """``{path: sha256}`` in file order (sorted); every fault is one line with its number."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise AirlockError(where, f"not UTF-8 text (byte {error.start})", GET_AGAIN) from None
    if text and not text.endswith("\n"):
        raise AirlockError(where, "the last line has no newline (cut short?)", GET_AGAIN)
    result: dict[str, str] = {}
    previous = b""
    for number, line in enumerate(text.split("\n")[:-1], start=1):
        at = f"{where}:{number}"
        found = _LINE.fullmatch(line)
        if not found:
            raise AirlockError(at, "not a '<64 lowercase hex>  <path>' line", GET_AGAIN)
        digest, path = found.groups()
        problem = safe_path(path)
        if problem:
            raise AirlockError(at, f"{path!r} {problem}", GET_AGAIN)
        if path in UNLISTED:
            raise AirlockError(at, f"lists {path}, which SHA256SUMS cannot hold", GET_AGAIN)
        if path in result:
            raise AirlockError(at, f"lists {path} a second time", GET_AGAIN)
        if path.encode() < previous:
            raise AirlockError(at, f"{path} is out of order (SHA256SUMS is sorted by path)",
                               GET_AGAIN)
        previous = path.encode()
        result[path] = digest
    if not result:
        raise AirlockError(where, "lists no file", GET_AGAIN)
    for path in result:
        parent = path.rpartition("/")[0]
        while parent:
            if parent in result:
                raise AirlockError(where, f"lists {parent} as a file and as the folder of "
                                   f"{path}", GET_AGAIN)
            parent = parent.rpartition("/")[0]
    return result


class _Counter:
    """Progress shared by the hashing threads, read by the thread that reports it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.files = 0
        self.bytes = 0
        self.stop = False

    def add(self, files: int, size: int) -> None:
        with self.lock:
            self.files += files
            self.bytes += size


def hash_file(root: Path, path: str, counter: _Counter | None = None) -> tuple[str, int]:
    """(sha256, size) of ``root/path``: a regular file, opened without following a link."""
    where = f"{root}/{path}"
    try:
        fd = os.open(os.path.join(root, path),
                     os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise AirlockError(where, "is missing (SHA256SUMS lists it)", GET_AGAIN) from None
    except OSError as error:
        what = ("is a symbolic link; a bundle holds regular files only"
                if error.errno == errno.ELOOP else f"cannot open: {error.strerror}")
        raise AirlockError(where, what, GET_AGAIN) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise AirlockError(where, "is not a regular file", GET_AGAIN)
        digest = hashlib.sha256()
        buffer = bytearray(BLOCK)
        view = memoryview(buffer)
        size = 0
        while True:
            try:
                n = os.readv(fd, [buffer])
            except OSError as error:
                raise AirlockError(where, f"cannot read: {error.strerror}",
                                   "check the medium") from None
            if not n:
                break
            digest.update(view[:n])  # releases the GIL: the other core hashes meanwhile
            size += n
            if counter is not None:
                counter.add(0, n)
                if counter.stop:
                    raise KeyboardInterrupt
        return digest.hexdigest(), size
    finally:
        os.close(fd)


def hash_files(root: Path, paths: Iterable[str], jobs: int = 2,
               progress: Progress | None = None,
               sizes: Mapping[str, int] | None = None) -> dict[str, tuple[str, int]]:
    """``{path: (sha256, size)}`` of files under ``root``, hashed by ``jobs`` threads.

    hashlib and the reads release the GIL, so two threads keep both cores
    busy. ``sizes`` (known from a walk) lets the largest files start first,
    so one big file does not finish alone at the end, and gives progress a
    total. ``progress`` is called from the calling thread, at most every
    :data:`PROGRESS_EVERY` seconds, and once at the end. The first error
    stops the others; so does Ctrl-C.
    """
    paths = list(paths)
    order = sorted(paths, key=lambda p: -(sizes or {}).get(p, 0)) if sizes else paths
    total_bytes = sum((sizes or {}).get(p, 0) for p in paths)
    counter = _Counter()
    results: dict[str, tuple[str, int]] = {}

    def one(path: str) -> None:
        results[path] = hash_file(root, path, counter)
        counter.add(1, 0)

    pool = ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="sha256")
    try:
        pending = {pool.submit(one, path) for path in order}
        while pending:
            done, pending = wait(pending, timeout=PROGRESS_EVERY, return_when=FIRST_EXCEPTION)
            for future in done:
                future.result()  # the first error, raised here
            if progress is not None:
                progress(counter.files, len(paths), counter.bytes, total_bytes)
    except BaseException:
        counter.stop = True
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    if progress is not None:
        progress(len(paths), len(paths), counter.bytes, max(total_bytes, counter.bytes))
    return {path: results[path] for path in paths}


def first_mismatch(root_name: str, expected: Mapping[str, str],
                   got: Mapping[str, tuple[str, int]]) -> None:
    """Raise for the first path, in SHA256SUMS order, whose sha256 is not the listed one."""
    for path, digest in expected.items():
        actual = got[path][0]
        if actual != digest:
            raise AirlockError(f"{root_name}/{path}",
                               f"sha256 {actual[:12]}… but SHA256SUMS says {digest[:12]}…",
                               GET_AGAIN)
