"""Small file helpers every step shares: safe reads, atomic writes, digests.

Caches, wheelhouses, apt repositories and build records are written so that
the same data gives the same bytes (sorted JSON) and a crash never leaves a
half-written file (write to a temporary name, then rename).

Every file airlock reads from a user (release data, patches, locks, build
records) goes through :func:`read_bytes`/:func:`read_text`: regular files
only, of a bounded size, opened without blocking, so that a FIFO, a device
or a huge file is one clear line instead of a hang. Every file airlock
writes goes through :func:`write_atomic` (a new temporary file beside the
target, renamed over it: a symbolic link at the target is replaced, never
written through) or, inside a tree it did not create, :func:`create_new`.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import hashlib
import json
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from airlock.errors import AirlockError

# File digests remembered while a ``remembered_digests`` block runs:
# "dev:ino" -> [size, mtime_ns, ctime_ns, hex digest, path]. A build hashes
# every file of its contexts to compute input digests, and wheelhouses share
# their wheels by hard link, so most files are seen many times in one run and
# again in the next; re-reading them is what made a no-op rebuild slow.
_memo: dict[str, list] | None = None
# A file whose last change is this close to the moment it is hashed is not
# remembered: the kernel stamps times from a coarse clock, so a second write
# in the same tick could keep size, mtime and ctime (git's "racy" files).
RACY_NS = 2_000_000_000


def _content_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's content, read in blocks (wheels can be large).

    Inside ``remembered_digests`` a file already hashed is not read again
    while its inode, size, mtime and ctime are unchanged. ctime cannot be set
    by hand and moves on every write, so an edited file is always re-read.
    """
    if _memo is None:
        return _content_sha256(path)
    before = os.stat(path)
    key = f"{before.st_dev}:{before.st_ino}"
    seen = [before.st_size, before.st_mtime_ns, before.st_ctime_ns]
    hit = _memo.get(key)
    if hit is not None and hit[:3] == seen:
        return hit[3]
    started = time.time_ns()
    hexdigest = _content_sha256(path)
    after = os.stat(path)
    if ([after.st_size, after.st_mtime_ns, after.st_ctime_ns] == seen
            and max(before.st_mtime_ns, before.st_ctime_ns) < started - RACY_NS):
        _memo[key] = [*seen, hexdigest, str(Path(path).absolute())]
    return hexdigest


@contextlib.contextmanager
def remembered_digests(store: Path) -> Iterator[None]:
    """Remember file digests in ``store`` across runs (see ``sha256_file``).

    A missing or unreadable store starts empty: it is only a cache. On the
    way out, entries whose path no longer names the same inode are dropped,
    so the store stays the size of the files that still exist.

    The store is shared by every run on the host (two releases building
    side by side): on the way out it is merged with what the store holds
    then, under a short lock, and replaced atomically, so that neither run
    loses what the other remembered. Which of two entries of one inode wins
    does not matter: an entry is used only while size, mtime and ctime match.
    """
    global _memo
    if _memo is not None:  # nested: the outer block owns the store
        yield
        return
    _memo = _valid_entries(read_json(store))
    try:
        yield
    finally:
        memo, _memo = _memo, None
        with locked(store.with_name(f".{store.name}.lock"), str(store)):
            merged = {**_valid_entries(read_json(store)), **memo}
            write_json(store, {key: entry for key, entry in merged.items()
                               if _same_inode(key, entry[4])})


def _valid_entries(loaded: dict | None) -> dict[str, list]:
    return {key: entry for key, entry in (loaded or {}).items()
            if isinstance(entry, list) and len(entry) == 5 and isinstance(entry[4], str)}


def _same_inode(key: str, path: str) -> bool:
    try:
        st = os.stat(path)
    except OSError:
        return False
    return f"{st.st_dev}:{st.st_ino}" == key


@contextlib.contextmanager
def locked(path: Path, what: str,
           waiting: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold an exclusive lock on the file ``path`` while the block runs.

    Two airlock runs on one host (two Zuul jobs on one node, an operator
    beside a periodic job) share work folders and caches: the second waits
    for the first instead of writing into the same files. When it has to
    wait it says so, once, through ``waiting``: the line names ``what`` and
    the pid the holder wrote into the lock file. The kernel releases the
    lock when the holder exits, however it exits (no stale lock to clean
    up); the file itself stays (removing a lock file that another process
    has open would split the lock in two).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except OSError as error:
        raise AirlockError(str(path), f"cannot open the lock file: {error.strerror}",
                           "remove whatever is there (a lock file is a plain file) or fix "
                           "the permissions") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder_pid(fd)
            if waiting is not None:
                who = f"airlock pid {holder}" if holder.isdigit() else "another airlock run"
                waiting(f"{what}: in use by {who}; waiting for it to finish")
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # releases the lock


def _holder_pid(fd: int, patience: float = 2.0) -> str:
    """The pid the lock's holder wrote into the lock file (empty if none came).

    The holder writes it just after it took the lock: a run started at the
    same moment can find the lock taken and the file still empty, so it
    looks again for a moment before it names no one.
    """
    deadline = time.monotonic() + patience
    while True:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        if text.isdigit() or time.monotonic() >= deadline:
            return text
        time.sleep(0.05)


def link_or_copy(src: Path, dest: Path) -> None:
    """Hard-link ``src`` to ``dest`` (a cache and its users share the bytes), else copy.

    ``src`` must be a regular file itself: caches and staging folders are
    filled by other programs (pip, apt and builds in containers running as
    root), and a symbolic link there would be carried into a wheelhouse or
    an apt repository by a hard link, or followed out of the tree by a copy
    (``/etc/shadow`` into an image). The file opened and checked is the
    one linked (a link that turns out to name another file is undone) or
    copied, so nothing can be swapped in between. ``dest`` must not exist.
    """
    try:
        fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as error:
        what = ("is a symbolic link, not a regular file" if error.errno == errno.ELOOP
                else f"cannot open: {error.strerror}")
        raise AirlockError(str(src), what, "remove it; airlock takes regular files only"
                           ) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise AirlockError(str(src), f"is {_kind(st.st_mode)}, not a regular file",
                               "remove it; airlock takes regular files only")
        try:
            os.link(src, dest, follow_symlinks=False)
        except OSError as error:
            if error.errno == errno.EEXIST:
                raise
        else:
            linked = os.lstat(dest)
            if (linked.st_dev, linked.st_ino) == (st.st_dev, st.st_ino):
                return
            os.unlink(dest)
            raise AirlockError(str(src), "changed while it was being linked",
                               "run again; nothing else may write into the cache meanwhile")
        with os.fdopen(os.dup(fd), "rb") as source, open(dest, "xb") as target:
            shutil.copyfileobj(source, target, 1 << 20)
            target.flush()
            os.fchmod(target.fileno(), stat.S_IMODE(st.st_mode))
            os.utime(target.fileno(), ns=(st.st_atime_ns, st.st_mtime_ns))
    finally:
        os.close(fd)


def json_digest(data: object) -> str:
    """``sha256:<hex>`` of the canonical JSON of ``data``: every input digest is one.

    Sorted keys and no spaces: the same data gives the same digest, however
    it was assembled.
    """
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


# Limits of what airlock reads from users: far above any real file, far
# below what would exhaust memory or time.
MiB = 1 << 20
DATA_LIMIT = 4 * MiB  # release.yaml, source-refs.yaml, constraints, bindep.txt, locks
PATCH_LIMIT = 16 * MiB
RECORD_LIMIT = 64 * MiB  # build records, manifests


def kind_of(mode: int) -> str:
    """What a non-regular file is, for "is a FIFO, not a regular file"."""
    return _kind(mode)


def _kind(mode: int) -> str:
    """What a non-regular file is, for "is a FIFO, not a regular file"."""
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISLNK, "a symbolic link")):
        if test(mode):
            return name
    return "not a regular file"


def read_bytes(path: Path, *, limit: int = DATA_LIMIT, fix: str = "check the path",
               within: Path | None = None) -> bytes:
    """The content of the regular file ``path``, at most ``limit`` bytes.

    Anything else is one AirlockError naming the file: missing, a directory,
    a FIFO or device (opened without blocking, never read), too large,
    unreadable. With ``within``, a path that resolves outside that folder
    (a symbolic link out of the tree) is refused too.
    """
    where = str(path)
    if within is not None:
        try:
            Path(path).resolve().relative_to(Path(within).resolve())
        except ValueError:
            raise AirlockError(where, f"leads outside {within} (a symbolic link?)",
                               "replace the link by the file itself") from None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        kind = "a dangling symbolic link" if os.path.islink(path) else None
        raise AirlockError(where, f"is {kind}" if kind else "no such file", fix) from None
    except OSError as error:
        raise AirlockError(where, f"cannot open: {error.strerror}", fix) from None
    # Checked before fdopen, which refuses a directory with its own error.
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise AirlockError(where, f"is {_kind(mode)}, not a regular file", fix)
    with os.fdopen(fd, "rb") as handle:
        try:
            data = handle.read(limit + 1)
        except OSError as error:
            raise AirlockError(where, f"cannot read: {error.strerror}", fix) from None
    if len(data) > limit:
        shown = f"{limit // MiB} MiB" if limit >= MiB else f"{limit // 1024} KiB"
        raise AirlockError(where, f"is larger than {shown}, the limit for this file", fix)
    return data


def read_text(path: Path, *, limit: int = DATA_LIMIT, fix: str = "check the path",
              within: Path | None = None) -> str:
    """:func:`read_bytes` decoded as UTF-8; other bytes are one line naming the file."""
    data = read_bytes(path, limit=limit, fix=fix, within=within)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise AirlockError(str(path), f"not UTF-8 text ({error.reason} at byte {error.start})",
                           "save the file as UTF-8") from None


def read_json(path: Path, limit: int = RECORD_LIMIT) -> dict | None:
    """A JSON object from ``path``; None when absent, unreadable or not an object.

    For caches and notes airlock wrote itself, where anything odd means
    "make it again".
    """
    try:
        data = json.loads(read_bytes(path, limit=limit))
    except (AirlockError, ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def write_atomic(path: Path, data: bytes | str, mode: int = 0o644) -> None:
    """Replace ``path`` whole, or leave it as it was: never half-written.

    The data goes to a new temporary file beside ``path`` (created
    exclusively: a leftover or a planted link is never opened), then is
    renamed over it; a symbolic link at ``path`` is replaced, not followed.
    Failures are one line naming the path.
    """
    path = Path(path)
    parent = path.parent
    if isinstance(data, str):
        data = data.encode("utf-8")
    check_replaceable_file(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent)
    except OSError as error:
        if not parent.is_dir():
            if os.path.lexists(parent):
                raise AirlockError(str(parent), "is not a folder", "write somewhere else") \
                    from None
            raise AirlockError(str(parent), "no such folder",
                               "create it first, or write somewhere else") from None
        raise AirlockError(str(path), f"cannot create a file in {parent}: {error.strerror}",
                           "write somewhere else, or fix the permissions") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            os.fchmod(handle.fileno(), mode)
        os.replace(tmp, path)
    except OSError as error:
        what = "is a directory" if os.path.isdir(path) and not os.path.islink(path) \
            else f"cannot write: {error.strerror}"
        raise AirlockError(str(path), what, "write somewhere else") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def check_replaceable_file(path: Path) -> None:
    """Refuse to rename a file over anything but a regular file, or a link to one.

    :func:`write_atomic` checks it; a writer that streams to a temporary
    name of its own (an OCI archive) calls it before it starts.

    airlock runs as root: ``-o /dev/null`` or ``-o /dev/stdout`` would
    otherwise replace the device (or /dev's link to it) with a regular
    file, for every program on the host. A dangling link is replaced.
    """
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return  # nothing there (or nothing to look at): mkstemp says what is wrong
    link = stat.S_ISLNK(mode)
    if link:
        try:
            mode = os.stat(path).st_mode
        except OSError:
            return
    if stat.S_ISREG(mode):
        return
    what = "is a directory" if stat.S_ISDIR(mode) and not link else (
        f"is {'a symbolic link to ' if link else ''}"
        f"{_kind(mode)}, not a regular file")
    raise AirlockError(str(path), what, "write somewhere else")


def create_new(path: Path, data: bytes | str, mode: int = 0o644) -> None:
    """Create ``path``, which must not exist, without following a link at it.

    For writing inside a tree airlock did not create (a prepared source,
    a staging folder filled by a tool): ``O_EXCL | O_NOFOLLOW`` make a file
    or link already there an error instead of a write somewhere else.
    """
    if isinstance(data, str):
        data = data.encode("utf-8")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     mode)
    except FileExistsError:
        raise AirlockError(str(path), "already exists (a file or a symbolic link)",
                           "the tree must not hold it; remove it from the source or patch"
                           ) from None
    except OSError as error:
        raise AirlockError(str(path), f"cannot create: {error.strerror}",
                           "check the folder") from None
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def write_json(path: Path, data: dict) -> None:
    """Write JSON atomically, sorted, one key a line: same data, same bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(data, indent=1, sort_keys=True) + "\n")


def check_replaceable(dest: Path, marker: str, what: str) -> None:
    """Refuse to replace a folder that is not one we wrote: replacing deletes it.

    Ours means it holds ``marker`` (the manifest every prepared tree ends
    with); an empty folder or a missing one is fine too.
    """
    if dest.exists() and (not dest.is_dir() or (any(dest.iterdir())
                                                and not (dest / marker).is_file())):
        raise AirlockError(str(dest), f"exists and is not {what} (no {marker})",
                           "choose a new or empty folder for --dest")


def remove_tree(path: Path, patience: float = 5.0) -> None:
    """Remove a staging folder in a cleanup, even while a child still writes into it.

    A signal can land while a child process (git apply) is being started:
    the child then outlives the exception for a moment and writes a file
    after ``rmtree`` passed. Trying again for a few seconds removes what it
    left; a folder that still cannot be removed is left, never an error in
    a cleanup.
    """
    deadline = time.monotonic() + patience
    while True:
        shutil.rmtree(path, ignore_errors=True)
        if not os.path.lexists(path) or time.monotonic() > deadline:
            return
        time.sleep(0.05)


@contextlib.contextmanager
def staged(dest: Path, mode: int = 0o755) -> Iterator[Path]:
    """A fresh folder beside ``dest`` to fill; it replaces ``dest`` if the block succeeds.

    Whatever ends the block (an error, Ctrl-C, SIGTERM), the folder is
    removed: ``dest`` is the old tree or the new one, never a mix, and no
    staging folder is left behind. Beside ``dest`` so that the swap is a
    rename on one file system.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{dest.name}.new-", dir=dest.parent))
    try:
        yield stage
        os.chmod(stage, mode)
        swap_into_place(stage, dest)
    finally:
        remove_tree(stage)


def swap_into_place(stage: Path, dest: Path) -> None:
    """Replace ``dest`` by ``stage`` (same parent): the old tree is gone only once the new is in.

    The kernel exchanges the two names in one step (``renameat2`` with
    ``RENAME_EXCHANGE``), so no signal can land between "old moved away"
    and "new moved in": ``dest`` is always the old tree or the new one,
    never missing, and no ``.old`` folder is left behind. Where the call is
    not available, two renames do the same with that short window.
    """
    stage, dest = Path(stage), Path(dest)
    if os.path.lexists(dest) and _exchange(stage, dest):
        remove_tree(stage)  # now the old tree
        return
    old = None
    if os.path.lexists(dest):
        old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
        os.replace(dest, old)
    os.replace(stage, dest)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(one: Path, other: Path) -> bool:
    """Swap two paths atomically; False where renameat2 is not available."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                          ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(one), _AT_FDCWD, os.fsencode(other),
                 _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL):  # an old kernel, or a file system without it
        return False
    raise OSError(err, os.strerror(err), str(other))
