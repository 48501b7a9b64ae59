"""The output inventory: every file a plugin wrote, with its size and sha256.

Outputs in this field are often large videos, so hashing runs on a thread pool:
hashlib releases the GIL while it digests, so threads use every core without
the cost of processes.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from mdivicomtools.model.run import OutputFile

_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    with path.open("rb") as handle:
        if sys.version_info >= (3, 11):
            return hashlib.file_digest(handle, "sha256").hexdigest()
        digest = hashlib.sha256()  # pragma: no cover - Python 3.10 only
        buffer = bytearray(_CHUNK)
        view = memoryview(buffer)
        while n := handle.readinto(buffer):
            digest.update(view[:n])
        return digest.hexdigest()


def iter_files(root: Path) -> Iterator[Path]:
    """Regular files under root, recursively; symlinks are not followed."""
    stack = [root]
    while stack:
        folder = stack.pop()
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
                elif entry.is_file(follow_symlinks=False):
                    yield Path(entry.path)


def default_workers() -> int:
    return min(8, (os.cpu_count() or 1) + 1)


def inventory(root: Path, *, workers: int | None = None) -> list[OutputFile]:
    """Size and sha256 of every regular file under root, sorted by relative path."""
    files = sorted(iter_files(root))
    if not files:
        return []
    workers = workers or default_workers()

    def entry(path: Path) -> OutputFile:
        return OutputFile(
            path=path.relative_to(root).as_posix(),
            size=path.stat().st_size,
            sha256=sha256_file(path),
        )

    if workers == 1 or len(files) == 1:
        return [entry(path) for path in files]
    # imported here: concurrent.futures pulls in logging, a cost every run would pay
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mdivicom-hash") as pool:
        return list(pool.map(entry, files))
