"""What a dataset was when a run read it: a stat fingerprint, and on request a content digest.

The fingerprint (sha256 over each file's relative path, size and mtime_ns)
costs one stat walk and tells that a folder changed on this machine; the
digest (sha256 over each relative path and the sha256 of the file's content)
proves what the content was, wherever it is copied to. Datasets here are
hours of video, so contents are hashed by a bounded pool of threads (hashlib
releases the GIL) and each file's sha256 is kept in a small SQLite cache keyed
by (device, inode, size, mtime_ns, ctime_ns): a second digest of an unchanged
dataset is a stat walk and one cache lookup per file, not a read. ctime cannot
be set by a user, so a file rewritten in place with its mtime restored still
misses the cache.

The per-file list is written beside the record so that `verify`, `rerun` and
`--resume` can name the files that changed. It is named by the sha256 of its
content (`_runs/datasets/<sha256>.json`): on 100,000 files it is 10 MB, and a
lab running many plugins every day over the same dataset wrote one per run
(1,000 runs, 10 GB). Runs over an unchanged dataset now share one file;
records of earlier releases name theirs `<run_id>.json`, which is read as
ever. `mdivicom runs clean` removes the manifests no record names any more.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from stat import S_ISREG
from typing import TYPE_CHECKING

import msgspec

from mdivicomtools.common.durable import write_atomic
from mdivicomtools.common.home import expand_home, user_folder
from mdivicomtools.common.jsonio import decode_layout, pretty
from mdivicomtools.common.safefs import display_name, open_regular
from mdivicomtools.common.text import describe_changes
from mdivicomtools.model.layout import RUNS_DIR
from mdivicomtools.model.run import DatasetInfo
from mdivicomtools.records.inventory import default_workers, map_bounded, symlink_sha256

if TYPE_CHECKING:
    import sqlite3

#: the cache file; "off" (or an empty value) disables the cache
CACHE_ENV = "MDIVICOM_DIGEST_CACHE"
#: inodes per cache query (SQLite allows 999 parameters in older builds)
_CHUNK = 500
MANIFEST_SCHEMA = "mdivicomtools.dataset-manifest.v1"
MANIFESTS_DIR = "datasets"


class DatasetFile(msgspec.Struct, array_like=True, frozen=True):
    """One file of a dataset: relative path, size, mtime_ns and (with a digest) its sha256."""

    path: str
    size: int
    mtime_ns: int
    sha256: str | None = None


class DatasetManifest(msgspec.Struct, kw_only=True):
    """`_runs/datasets/<sha256>.json`: the files a run's dataset held, sorted by path."""

    schema: str = MANIFEST_SCHEMA
    files: list[DatasetFile]


class DatasetChanges(msgspec.Struct, kw_only=True, frozen=True):
    """How a dataset differs from what a record saw, file by file where the record allows."""

    changed: list[str] = []
    added: list[str] = []
    removed: list[str] = []
    #: the record has no per-file list: only "it changed" is known
    unnamed: bool = False

    def __bool__(self) -> bool:
        return bool(self.changed or self.added or self.removed or self.unnamed)

    @property
    def count(self) -> int:
        return len(self.changed) + len(self.added) + len(self.removed)

    def describe(self, limit: int = 5) -> str:
        if self.unnamed:
            return "the dataset differs (the record lists no files to name)"
        return describe_changes(self.changed, self.added, self.removed, limit)


# -- the walk ---------------------------------------------------------------


class DatasetEntry(msgspec.Struct, frozen=True):
    """One file of a walk: what the digest, its cache and the unreadable check need."""

    rel: str
    size: int
    mtime_ns: int
    key: tuple[int, int, int, int, int] | None  # None: not a regular file (a dangling link)
    #: the file's path where it is not `<root>/<rel>` (a name `rel` holds escaped); None
    #: for every other file: a second copy of each path was a tenth of a run's memory
    path: str | None = None

    def location(self, root: str) -> str:
        """The file's path, given the root (as text) of the walk that found it."""
        return self.path if self.path is not None else f"{root}/{self.rel}"


def dataset_entry(entry: os.DirEntry[str], rel: str, root: str) -> DatasetEntry | None:
    """The digest's view of one entry that is not a folder, or None when it is left out.

    File symlinks are followed (git-annex and datalad datasets are made of
    them: the content is what matters). A link that leads to no regular file (a
    folder, nothing, a loop) is listed with size -1 and hashed by its target
    text, as the recipe in docs/reproducibility.md does: it names the git-annex
    key of content not fetched. Anything else that is no regular file (a FIFO)
    is left out. Shared with the run's one walk of its dataset
    (`runner.datasetwalk`), so both list the same files. `root` is the walk's
    root as the text its scandir started from.
    """
    path = None if entry.path[len(root) + 1 :] == rel else entry.path
    try:
        st = entry.stat(follow_symlinks=True)
    except OSError:
        if not entry.is_symlink():
            raise
        # a dangling link or a link loop: listed by its target text
        return DatasetEntry(rel, -1, 0, None, path)
    if not S_ISREG(st.st_mode):
        if entry.is_symlink():  # a link to a folder: listed, not followed
            return DatasetEntry(rel, -1, 0, None, path)
        return None
    key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    return DatasetEntry(rel, st.st_size, st.st_mtime_ns, key, path)


def walk_files(root: Path) -> list[DatasetEntry]:
    """Every file under root, sorted by relative path (`dataset_entry` says which).

    Directory symlinks are not followed, so a link loop cannot make the walk
    endless.
    """
    found: list[DatasetEntry] = []
    top = str(root)
    stack = [(top, "")]
    while stack:
        folder, prefix = stack.pop()
        with os.scandir(folder) as entries:
            for entry in entries:
                # a name that is not UTF-8 is listed escaped, as in the output
                # inventory: the manifest beside the record is JSON
                rel = prefix + display_name(entry.name)[0]
                if entry.is_dir(follow_symlinks=False):
                    stack.append((entry.path, rel + "/"))
                    continue
                item = dataset_entry(entry, rel, top)
                if item is not None:
                    found.append(item)
    found.sort(key=lambda e: e.rel)
    return found


def unreadable_files(
    root: Path, cache: Path | bool | None = True, walked: list[DatasetEntry] | None = None
) -> list[tuple[str, str]]:
    """(relative path, why) of each file `scan_dataset(contents=True)` would read and
    cannot open: a run with --hash-dataset is refused with them before it starts
    (found in the middle of the digest, they failed the run instead). Files the
    cache knows unchanged are not read by the digest, so not opened here either: a
    warm rerun pays a stat walk, not an open per file. `walked` is a walk of root
    already made (`walk_files`): root is then not walked again."""
    if walked is None:
        walked = walk_files(root)
    top = str(root)
    regular = [e for e in walked if e.key is not None]  # links to nothing: never read
    db = DigestCache(cache_path() if cache is True else (cache or None))
    try:
        cached = db.get_many([e.key for e in regular])  # type: ignore[misc]
    finally:
        db.close()
    unreadable = []
    for entry, sha in zip(regular, cached, strict=True):
        if sha is not None:
            continue
        try:
            os.close(os.open(entry.location(top), os.O_RDONLY | os.O_NONBLOCK))
        except OSError as exc:
            unreadable.append((entry.rel, exc.strerror or str(exc)))
    return unreadable


def _link_hash(path: str) -> str:
    """A stand-in content hash for a link that leads to no file: the link's target text."""
    return symlink_sha256(path)


def _sha256_of_lines(lines: Iterable[str]) -> str:
    """sha256 of the lines' UTF-8 text, fed a thousand at a time: the whole text of
    100,000 files, and its bytes, were two more copies of the list in memory."""
    digest = hashlib.sha256()
    chunk: list[str] = []
    for line in lines:
        chunk.append(line)
        if len(chunk) == 1000:
            digest.update("".join(chunk).encode("utf-8", "surrogateescape"))
            chunk.clear()
    digest.update("".join(chunk).encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def stat_fingerprint(files: Iterable[DatasetFile]) -> str:
    """sha256 over each file's relative path, size and mtime_ns, in the given (path) order."""
    return _sha256_of_lines(f"{f.path}\0{f.size}\0{f.mtime_ns}\n" for f in files)


def content_digest(files: Iterable[DatasetFile]) -> str:
    """sha256 over the sorted relative paths and each file's content sha256."""
    return _sha256_of_lines(f"{f.path}\0{f.sha256}\n" for f in files)


# -- the cache --------------------------------------------------------------


def cache_path() -> Path | None:
    """The SQLite cache file: $MDIVICOM_DIGEST_CACHE, else the user cache folder
    (None, no cache, for a process without a home folder)."""
    override = os.environ.get(CACHE_ENV)
    if override is not None:
        return None if override.strip() in ("", "off") else expand_home(override)
    folder = user_folder("cache")
    return None if folder is None else folder / "sha256-cache.sqlite"


_TOP = 1 << 63


def _signed(value: int) -> int:
    """SQLite integers are signed 64-bit; st_dev and st_ino are unsigned."""
    return value - (_TOP << 1) if value >= _TOP else value


class DigestCache:
    """sha256 by (device, inode) with the size, mtime_ns and ctime_ns it was computed for.

    Keyed by (device, inode), so an edited file replaces its old entry and the
    cache does not grow with every edit. It is only an accelerator: a cache that
    cannot be opened or written (read-only home, a locked file on NFS) makes
    the digest read every file, never fail.
    """

    def __init__(self, path: Path | None) -> None:
        # imported here, as concurrent.futures below: only a digest needs them, and
        # every run would otherwise pay for both (logging comes with the latter)
        import sqlite3

        self._error = sqlite3.Error
        self._db: sqlite3.Connection | None = None
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(path, timeout=10, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(
                "CREATE TABLE IF NOT EXISTS sha256 (dev INTEGER, ino INTEGER, size INTEGER, "
                "mtime_ns INTEGER, ctime_ns INTEGER, sha256 TEXT, PRIMARY KEY (dev, ino)) "
                "WITHOUT ROWID"
            )
            db.commit()
        except (OSError, sqlite3.Error):
            return
        self._db = db

    def get_many(self, keys: list[tuple[int, int, int, int, int]]) -> list[str | None]:
        """The cached sha256 for each key, None where the file changed or is not cached.

        Looked up in chunks of inodes per device (one query per 500 files, not
        one per file): this is the whole cost of a warm digest besides the walk.
        """
        if self._db is None:
            return [None] * len(keys)
        rows: dict[tuple[int, int], tuple[int, int, int, str]] = {}
        ids = [(_signed(dev), _signed(ino)) for dev, ino, *_ in keys]
        by_dev: dict[int, list[int]] = {}
        for dev, ino in ids:
            by_dev.setdefault(dev, []).append(ino)
        try:
            for dev, inos in by_dev.items():
                for start in range(0, len(inos), _CHUNK):
                    chunk = inos[start : start + _CHUNK]
                    marks = ",".join("?" * len(chunk))
                    for ino, size, mtime_ns, ctime_ns, sha in self._db.execute(
                        "SELECT ino, size, mtime_ns, ctime_ns, sha256 FROM sha256 "
                        f"WHERE dev=? AND ino IN ({marks})",
                        (dev, *chunk),
                    ):
                        rows[dev, ino] = (size, mtime_ns, ctime_ns, sha)
        except self._error:
            return [None] * len(keys)
        found: list[str | None] = []
        for ident, (_, _, size, mtime_ns, ctime_ns) in zip(ids, keys, strict=True):
            row = rows.get(ident)
            if row is not None and row[0] == size and row[1] == mtime_ns and row[2] == ctime_ns:
                found.append(row[3])
            else:
                found.append(None)
        return found

    def put_many(self, items: list[tuple[tuple[int, int, int, int, int], str]]) -> None:
        if self._db is None or not items:
            return
        with contextlib.suppress(self._error):
            self._db.executemany(
                "INSERT OR REPLACE INTO sha256 VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (_signed(dev), _signed(ino), size, mtime_ns, ctime_ns, sha)
                    for (dev, ino, size, mtime_ns, ctime_ns), sha in items
                ],
            )
            self._db.commit()

    def close(self) -> None:
        if self._db is not None:
            with contextlib.suppress(self._error):
                self._db.close()
            self._db = None


# -- hashing ----------------------------------------------------------------


_BLOCK = 1 << 20


class HashingStopped(Exception):
    """Hashing was given up because the digest as a whole is being abandoned."""


def sha256_file(path: Path, stop: threading.Event | None = None) -> str:
    """sha256 of a file, read in 1 MiB blocks.

    Between blocks it gives up once `stop` is set: Ctrl-C during the digest of
    a 50 GB video must not wait for the other threads to finish their files.
    The file is opened as a regular file only (`safefs.open_regular`, links
    followed): one replaced by a FIFO after the walk saw a file (a dataset
    someone else writes to) blocked the run in open() for good.
    """
    digest = hashlib.sha256()
    buffer = bytearray(_BLOCK)
    view = memoryview(buffer)
    with open_regular(path, follow_links=True) as handle:
        while n := handle.readinto(buffer):
            if stop is not None and stop.is_set():
                raise HashingStopped(str(path))
            digest.update(view[:n])
    return digest.hexdigest()


def hash_bounded(paths: list[str], workers: int | None = None) -> Iterator[tuple[int, str]]:
    """(index, sha256) for each path, hashed by `workers` threads.

    At most a few hundred files wait or are read at once (`map_bounded`), so
    memory stays at a read buffer per thread however many files there are. If the
    caller stops early (an exception, Ctrl-C), the files in flight are
    abandoned within a block.
    """
    workers = workers or default_workers()
    if workers == 1 or len(paths) <= 1:
        for index, path in enumerate(paths):
            yield index, sha256_file(Path(path))
        return
    stop = threading.Event()

    def digest(path: str) -> str:
        return sha256_file(Path(path), stop)

    yield from map_bounded(digest, paths, workers, name="mdivicom-digest", stop=stop)


#: seconds between two lines of `progress` while a dataset is hashed
PROGRESS_EVERY_S = 5.0


def scan_dataset(
    root: Path,
    *,
    contents: bool,
    workers: int | None = None,
    cache: Path | bool | None = True,
    progress: Callable[[str], None] | None = None,
    walked: list[DatasetEntry] | None = None,
) -> tuple[DatasetInfo, DatasetManifest]:
    """The dataset's fingerprint, and with `contents` its digest; plus the per-file list.

    `walked` is a walk of root already made (`walk_files`, or the run's one walk
    of its dataset): the dataset is then not walked again. `cache` True uses
    `cache_path()`, a Path that file, None or False none.
    Raises OSError when a file cannot be read. While files are hashed,
    `progress` gets a line every PROGRESS_EVERY_S seconds saying how far it
    got: a first digest of 100,000 files took a run silent for 6 s after its
    `validate` line, and one of a video study minutes, which reads as hung.
    """
    last = time.monotonic()  # the walk counts: the first line comes PROGRESS_EVERY_S in
    entries = walk_files(root) if walked is None else walked
    top = str(root)
    hashes: list[str | None] = [None] * len(entries)
    if contents:
        db = DigestCache(cache_path() if cache is True else (cache or None))
        try:
            regular = [i for i, e in enumerate(entries) if e.key is not None]
            cached = db.get_many([entries[i].key for i in regular])  # type: ignore[misc]
            todo = []
            for i, sha in zip(regular, cached, strict=True):
                if sha is None:
                    todo.append(i)
                else:
                    hashes[i] = sha
            fresh: list[tuple[tuple[int, int, int, int, int], str]] = []
            total = sum(entries[i].size for i in todo)
            done_bytes = 0
            for j, sha in hash_bounded([entries[i].location(top) for i in todo], workers):
                i = todo[j]
                hashes[i] = sha
                fresh.append((entries[i].key, sha))  # type: ignore[arg-type]
                done_bytes += entries[i].size
                if progress is not None and time.monotonic() - last >= PROGRESS_EVERY_S:
                    last = time.monotonic()
                    progress(
                        f"dataset: hashed {len(fresh)} of {len(todo)} file(s) not in the "
                        f"digest cache, {_mib(done_bytes)} of {_mib(total)} MiB"
                    )
            db.put_many(fresh)
        finally:
            db.close()
        for i, entry in enumerate(entries):
            if entry.key is None:
                hashes[i] = _link_hash(entry.location(top))
    files = [
        DatasetFile(e.rel, e.size, e.mtime_ns, sha) for e, sha in zip(entries, hashes, strict=True)
    ]
    info = DatasetInfo(
        files=len(files),
        bytes=sum(f.size for f in files if f.size > 0),
        fingerprint=stat_fingerprint(files),
        digest=content_digest(files) if contents else None,
    )
    return info, DatasetManifest(files=files)


def _mib(size: int) -> str:
    return f"{size / (1 << 20):.0f}"


# -- the manifest beside the record -----------------------------------------


#: a manifest written or named this recently is kept by `runs clean` even if no
#: record names it yet: a run writes it moments before its final record names it
MANIFEST_GRACE_S = 3600


def manifest_relpath(name: str) -> str:
    """The path, relative to the run root, of the manifest file `name`."""
    return f"{RUNS_DIR}/{MANIFESTS_DIR}/{name}"


def write_manifest(run_out_dir: Path, manifest: DatasetManifest) -> str:
    """Write the per-file list under the sha256 of its content; returns its path
    relative to the run root.

    The same content has the same name, so a manifest already there is the
    one this run would write: it is not written again, only its modification
    time is set to now, which tells `runs clean` it was just named (a file
    another user made, whose time cannot be set, is written again instead).
    That is trusted only of a regular file holding exactly these bytes: a
    name is no proof of content, and in a group-shared --out a colleague's
    file or symlink of the right size there would have become what `verify`
    compares the dataset with. Reading it back costs a fraction of the walk
    that made it.
    """
    data = pretty(manifest)
    rel = manifest_relpath(hashlib.sha256(data).hexdigest() + ".json")
    path = run_out_dir / rel
    try:
        with open_regular(path) as handle:  # never through a symlink, never a FIFO
            if handle.read(len(data) + 1) == data:
                os.utime(handle.fileno())
                return rel
    except OSError:  # none there, or not a file this run may trust (UnsafeFile)
        pass
    write_atomic(path, data)  # replaces whatever had the name, a symlink itself included
    return rel


def read_manifest(run_out_dir: Path, rel: str | None) -> DatasetManifest | None:
    """The per-file list a record points at, or None when it has none or it is unreadable."""
    if not rel:
        return None
    try:
        return decode_layout((run_out_dir / rel).read_bytes(), DatasetManifest, MANIFEST_SCHEMA)
    except (OSError, msgspec.DecodeError):
        return None


def compare_dataset(
    recorded: DatasetInfo,
    manifest: DatasetManifest | None,
    current: DatasetInfo,
    now: DatasetManifest,
) -> DatasetChanges:
    """What changed since the record: by content when both have a digest, else by stat."""
    by_content = recorded.digest is not None and current.digest is not None
    same = (
        recorded.digest == current.digest
        if by_content
        else recorded.fingerprint == current.fingerprint
    )
    if same:
        return DatasetChanges()
    if manifest is None:
        return DatasetChanges(unnamed=True)
    before = {f.path: f for f in manifest.files}
    after = {f.path: f for f in now.files}

    def differs(a: DatasetFile, b: DatasetFile) -> bool:
        if by_content:
            return a.sha256 != b.sha256
        return (a.size, a.mtime_ns) != (b.size, b.mtime_ns)

    return DatasetChanges(
        changed=sorted(p for p in before.keys() & after.keys() if differs(before[p], after[p])),
        added=sorted(after.keys() - before.keys()),
        removed=sorted(before.keys() - after.keys()),
    )
