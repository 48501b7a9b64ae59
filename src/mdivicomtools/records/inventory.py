"""The output inventory: every entry a plugin wrote, with its type, size and sha256.

Entries are found by `common.safefs.scan` (lstat only, symlinks never
followed) and files are hashed through `safefs.open_regular`, so a FIFO, a
device node or a symlink to a host file can neither hang nor leak into the
runner. Entries that must not be promoted (special files, setuid/setgid
files, symlinks leaving the folder) are returned as problems for the caller to
refuse.

Outputs in this field are often large videos, so hashing runs on a thread pool:
hashlib releases the GIL while it digests, so threads use every core without
the cost of processes.
"""

from __future__ import annotations

import hashlib
import os
import stat
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

from mdivicomtools.common.safefs import Entry, display_name, open_regular, scan
from mdivicomtools.common.text import some
from mdivicomtools.model.run import OutputFile, RunOutcome

_CHUNK = 1 << 20

#: items handed to map_bounded's threads at a time: a few hundred futures are
#: some 100 KiB, and waiting for the first to end less often keeps small files
#: as fast as a pool.map of them all (each thread reads one file at a time)
IN_FLIGHT = 256

_Item = TypeVar("_Item")
_Result = TypeVar("_Result")


def sha256_file(path: Path | bytes) -> str:
    return sha256_and_size(path)[0]


def sha256_and_size(path: Path | bytes, size_hint: int = _CHUNK) -> tuple[str, int]:
    """The sha256 of a regular file and the number of bytes it was taken over.

    The inventory records that count as the file's size: a file still being
    written while it is listed (by a process the plugin left running) was
    recorded with the size it had when the folder was walked and the digest
    of the longer content read later, a pair that described no file at all.
    `size_hint` (the size the walk saw) keeps the read buffer small for small
    files: a zeroed 1 MiB buffer per file made listing 20,000 tiny files slow.
    """
    digest = hashlib.sha256()
    buffer = bytearray(min(_CHUNK, max(size_hint + 1, 1 << 16)))
    view = memoryview(buffer)
    size = 0
    with open_regular(path) as handle:
        while n := handle.readinto(buffer):
            digest.update(view[:n])
            size += n
    return digest.hexdigest(), size


def symlink_sha256(path: Path | bytes | str) -> str:
    """The stand-in digest of a symlink: sha256 of `symlink:` and its target text.

    The recipe the dataset digest uses for a link that leads to no file. An
    output symlink's digest was empty, so `verify` said MATCHES for a link
    pointed elsewhere (`latest -> b.txt`, or out of the folder) or replaced by a
    FIFO: nothing about it was compared.
    """
    return hashlib.sha256(b"symlink:" + os.readlink(os.fsencode(path))).hexdigest()


def iter_files(root: Path) -> Iterator[Path]:
    """Regular files under root, recursively; symlinks are not followed."""
    for entry in scan(root):
        if entry.type == "file":
            yield root / os.fsdecode(entry.raw)


def default_workers() -> int:
    return min(8, (os.cpu_count() or 1) + 1)


def map_bounded(
    func: Callable[[_Item], _Result],
    items: Sequence[_Item],
    workers: int,
    *,
    name: str,
    stop: threading.Event | None = None,
) -> Iterator[tuple[int, _Result]]:
    """(index, func(item)) for each item, computed by `workers` threads, as they end.

    At most IN_FLIGHT items wait or run at once: handing the pool every item at
    once (`pool.map`) made a future per item before the first ended, and listing
    an output of 200,000 small files took 450 MB. If the caller stops
    early (an exception, Ctrl-C), `stop` is set before the pool is shut down, so
    `func` can give up within a block rather than finish a 50 GB file.
    """
    # imported here: concurrent.futures pulls in logging, a cost every run would pay
    from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
    try:
        pending: dict[Future[_Result], int] = {}
        for index, item in enumerate(items):
            pending[pool.submit(func, item)] = index
            if len(pending) >= max(IN_FLIGHT, 2 * workers):
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    yield pending.pop(future), future.result()
        for future in list(pending):
            yield pending.pop(future), future.result()
    finally:
        if stop is not None:
            stop.set()  # a no-op after the last item; otherwise it ends the threads' work
        pool.shutdown(wait=True, cancel_futures=True)


def unsafe_entries(entries: list[Entry]) -> list[str]:
    """One line per entry that must not be promoted: its path and why."""
    return [f"{e.path} ({e.problem})" for e in entries if e.problem is not None]


def list_outputs(outcome: RunOutcome) -> None:
    """Check and list a successful run's staged output into `outcome.outputs`, or fail
    the run naming every entry that must never be promoted (a FIFO, a device node,
    a setuid file, a symlink leaving the folder) before anything reads a file, or
    every entry the runner may not read.

    A tool that leaves a file or a folder mode 000 made the run fail with `the
    output could not be listed; see hook_errors` and a PermissionError about one
    path. The record promises a sha256 for every output it lists, and `verify`,
    `rerun` and `runs export` read each one, so such an output is still not
    promoted; the error names all of them, their modes, and the fix.
    """
    unlistable: list[bytes] = []
    entries = scan(outcome.staging_dir, unlistable=unlistable)
    refused = unsafe_entries(entries)
    if refused:
        outcome.fail(
            "UnsafeOutput",
            "the output holds entries that are never promoted: " + some(refused, 20),
        )
        return
    unreadable = [_unreadable(outcome.staging_dir, raw, "folder") for raw in unlistable]
    unread: list[bytes] = []
    outputs = inventory_of(outcome.staging_dir, entries, unreadable=unread)
    unreadable += [_unreadable(outcome.staging_dir, raw, "file") for raw in unread]
    if unreadable:
        outcome.fail(
            "UnreadableOutput",
            "the plugin left outputs this user may not read, so they cannot be listed "
            f"with their sha256: {some(sorted(unreadable), 10)}; nothing was promoted. Have "
            "the plugin (or the tool it runs) leave its outputs readable (chmod u+r on "
            "files, u+rx on folders) and run again",
        )
        return
    outcome.outputs = outputs


def _unreadable(root: Path, raw: bytes, what: str) -> str:
    """`'sub/x.bin' (a file, mode 000)`: an output the runner may not read."""
    try:
        mode = f", mode {stat.S_IMODE(os.lstat(os.path.join(os.fsencode(root), raw)).st_mode):03o}"
    except OSError:
        mode = ""
    return f"{display_name(raw)[0]!r} (a {what}{mode})"


def inventory(root: Path, *, workers: int | None = None) -> list[OutputFile]:
    """Every entry under root but folders, sorted by relative path."""
    return inventory_of(root, scan(root), workers=workers)


def inventory_of(
    root: Path,
    entries: list[Entry],
    *,
    workers: int | None = None,
    unreadable: list[bytes] | None = None,
) -> list[OutputFile]:
    """The inventory of entries `scan(root)` found (scan once, check and hash).

    A file this user may not open raises PermissionError, unless `unreadable`
    is given: its path relative to root is added there and it is left out.
    """
    listed = [e for e in entries if e.type != "dir"]
    if not listed:
        return []
    workers = workers or default_workers()
    root_b = os.fsencode(root)

    def output(entry: Entry) -> OutputFile | None:
        _, escaped = display_name(entry.raw)
        path = os.path.join(root_b, entry.raw)
        digest, size = "", entry.size
        if entry.type == "file":
            try:
                digest, size = sha256_and_size(path, entry.size)
            except PermissionError:
                if unreadable is None:
                    raise
                unreadable.append(entry.raw)  # list.append is atomic across threads
                return None
        elif entry.type == "symlink":
            digest = symlink_sha256(path)
        return OutputFile(
            path=entry.path, size=size, sha256=digest, type=entry.type, escaped=escaped
        )

    if workers == 1 or len(listed) == 1:
        return [item for item in map(output, listed) if item is not None]
    found: list[OutputFile | None] = [None] * len(listed)
    for index, item in map_bounded(output, listed, workers, name="mdivicom-hash"):
        found[index] = item
    return [item for item in found if item is not None]
