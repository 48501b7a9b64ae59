"""Reading what a plugin wrote without trusting it: the one safe-output mechanism.

A plugin's output folder is written by code we do not control, possibly as
root inside a container. Everything the runner does with it (the inventory,
the result-bundle check, `bundles validate`, promotion) goes through here:

- `scan` walks a folder with lstat only (`os.scandir`, never following a
  symlink), gives every entry a type, and names each entry that must not be
  promoted: FIFOs, sockets, device nodes, files with the setuid or setgid bit,
  and symlinks that leave the folder (absolute, or resolving outside it from
  their place in the tree, whatever folder holds the tree).
- `open_regular` opens a file for reading with O_NOFOLLOW | O_NONBLOCK and
  checks with fstat that it is a regular file, so a FIFO cannot block the
  runner and a symlink cannot make it read a host file as the runner's user.
- `read_regular` adds a size cap for content that is parsed.
- `open_append` opens a file the runner writes (a run's log) never through
  a symlink someone else put there (a record's temporary file is made new,
  O_EXCL, by `durable.write_atomic`).
- `display_name` turns a file name that is not UTF-8 into a lossless,
  documented text form, so records can always be written.
- `remove_tree` removes a folder the plugin may have made read-only, by
  folder descriptors (never through a symlink, however deep), and says what
  it could not remove instead of pretending it did.
- `path_problem` checks a relative path read from data (a run record, a
  result bundle sidecar) before it is joined to a folder, so a tampered
  record or sidecar cannot name a file outside that folder.
"""

from __future__ import annotations

import errno
import io
import os
import re
import stat
from pathlib import Path, PurePosixPath
from typing import Literal

import msgspec

EntryType = Literal[
    "file", "dir", "symlink", "fifo", "socket", "block_device", "char_device", "unknown"
]

#: the most the runner reads of a file whose content it parses (a sidecar, a header)
PARSE_LIMIT = 16 * 1024 * 1024


class UnsafeFile(OSError):
    """A path that is not a regular file, is a symlink, or is too large to parse."""


class Entry(msgspec.Struct, kw_only=True, frozen=True):
    """One entry under a scanned folder; `problem` says why it must not be promoted."""

    path: str
    raw: bytes
    type: EntryType
    size: int
    problem: str | None = None


def display_name(name: str | bytes) -> tuple[str, bool]:
    """A path as text that survives JSON, and whether it had to be escaped.

    Names that are valid UTF-8 are returned unchanged. Any other name is
    escaped: every backslash is doubled and every byte that is not part of a
    valid UTF-8 sequence is written as `\\xNN` (two lowercase hex digits). The
    flag tells a reader which form it has, so the original bytes can always be
    rebuilt.
    """
    if isinstance(name, bytes):
        raw = name
    else:
        try:
            raw = os.fsencode(name)
        except UnicodeEncodeError:
            # text beside a name from the disk (`Fehler: ü` and a surrogate-escaped path
            # in one message) under an ASCII or Latin-1 filesystem encoding: its
            # characters are text already, its escapes the disk's bytes
            raw = name.encode("utf-8", "surrogateescape")
    try:
        return raw.decode("utf-8"), False
    except UnicodeDecodeError:
        text = raw.decode("utf-8", "surrogateescape").replace("\\", "\\\\")
        escaped = "".join(
            f"\\x{ord(ch) - 0xDC00:02x}" if 0xDC80 <= ord(ch) <= 0xDCFF else ch for ch in text
        )
        return escaped, True


_ESCAPE = r"\\\\|\\x([0-9a-f]{2})"


def disk_name(text: str, escaped: bool = False) -> str:
    """The name on disk of a path `display_name` returned: the inverse, so a record's
    path, escaped or not, can be opened.

    Record and sidecar text names the file's bytes in UTF-8, whatever the locale
    of the process that wrote it; Python opens a str in the filesystem encoding of
    this process. Under the C locale with PYTHONUTF8=0 (ASCII) or a Latin-1
    locale, `open('Ergebnis-ü.txt')` looks for other bytes than the record names,
    or cannot encode the name at all, so the text goes through its UTF-8 bytes
    and back (in a UTF-8 locale that is the text itself).
    """
    if not escaped:
        try:
            return os.fsdecode(text.encode("utf-8", "surrogateescape"))
        except UnicodeEncodeError:  # a lone surrogate that is no escaped byte
            return text
    raw = bytearray()
    last = 0
    for match in re.finditer(_ESCAPE, text):
        raw += text[last : match.start()].encode("utf-8", "surrogateescape")
        raw += b"\\" if match.group(1) is None else bytes([int(match.group(1), 16)])
        last = match.end()
    raw += text[last:].encode("utf-8", "surrogateescape")
    return os.fsdecode(bytes(raw))


def _type_of(mode: int) -> EntryType:
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISFIFO(mode):
        return "fifo"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISBLK(mode):
        return "block_device"
    if stat.S_ISCHR(mode):
        return "char_device"
    return "unknown"


def entry_type(path: Path | bytes | str) -> EntryType | None:
    """What `path` itself is (a symlink is not followed), or None if nothing is there."""
    try:
        return _type_of(os.lstat(path).st_mode)
    except FileNotFoundError:
        return None


def kind_name(kind: EntryType) -> str:
    """`a fifo`, `a char device`: an entry type as a message names it."""
    return f"a {kind.replace('_', ' ')}"


#: symlinks followed while resolving one link inside a tree before giving up; above
#: the kernel's own limit (40 on Linux), so a chain it can follow is always checked
_MAX_LINKS = 64


def _climbs_out(root: bytes, here: list[bytes], target: bytes) -> bool:
    """Whether `target`, met in folder `here` (components below root), leaves root.

    The walk happens inside the tree: `..` at root is leaving it, and each
    component that is a symlink in the tree is replaced by its target, read
    from the tree, as the kernel would. A target that is absolute leaves too.
    Components that do not exist are taken by their text. Nothing depends on
    where root is, so the answer holds wherever the tree is moved.
    """
    parts = list(here)
    pending = target.split(b"/")[::-1]
    followed = 0
    while pending:
        name = pending.pop()
        if name in (b"", b"."):
            continue
        if name == b"..":
            if not parts:
                return True
            parts.pop()
            continue
        path = os.path.join(root, *parts, name)
        try:
            is_link = stat.S_ISLNK(os.lstat(path).st_mode)
        except OSError:
            is_link = False
        if not is_link:
            parts.append(name)
            continue
        followed += 1
        if followed > _MAX_LINKS:  # a loop: the kernel cannot follow it either
            return False
        inner = os.readlink(path)
        if os.path.isabs(inner):
            return True
        pending.extend(inner.split(b"/")[::-1])
    return False


def _symlink_problem(root: bytes, link: bytes) -> str | None:
    """Why a symlink must not be promoted, or None if it stays inside root.

    The check is made in staging and must hold after promotion moves the tree
    to `<out>/<id>/`: a link resolved by real path in staging would pass with
    `../../<run_id>/<id>/f`, which is inside only while the tree sits in
    `_staging/<run_id>/`. So the target is resolved within the tree from the
    link's own place in it (`_climbs_out`), never through the folders around it.
    """
    target = os.readlink(link)
    if os.path.isabs(target):
        return "a symlink to an absolute path"
    here = [
        part for part in os.path.relpath(os.path.dirname(link), root).split(b"/") if part != b"."
    ]
    if _climbs_out(root, here, target):
        return "a symlink that leaves the output folder"
    return None


def scan(root: Path, *, unlistable: list[bytes] | None = None) -> list[Entry]:
    """Every entry under root (folders included), sorted by path, never following links.

    A folder below root that this user may not list (a tool left it mode 000)
    or may list but not enter (mode 644, what `chmod -R 644` leaves: its names
    can be read, their types and sizes cannot) raises PermissionError, unless
    `unlistable` is given: its path relative to root is added there and the walk
    goes on, so a caller can name every such folder at once.
    """
    root_b = os.fsencode(root)
    found: list[Entry] = []
    stack = [root_b]
    while stack:
        folder = stack.pop()
        try:
            listing = os.scandir(folder)
        except PermissionError:
            if unlistable is None or folder == root_b:
                raise
            unlistable.append(os.path.relpath(folder, root_b))
            continue
        # what this folder added, taken back if it turns out not to be enterable
        found_before, stack_before = len(found), len(stack)
        with listing as entries:
            for item in entries:
                try:
                    st = item.stat(follow_symlinks=False)
                except PermissionError:
                    if unlistable is None or folder == root_b:
                        raise
                    del found[found_before:], stack[stack_before:]
                    unlistable.append(os.path.relpath(folder, root_b))
                    break
                kind = _type_of(st.st_mode)
                rel = os.path.relpath(item.path, root_b)
                problem = None
                if kind == "dir":
                    stack.append(item.path)
                elif kind == "symlink":
                    problem = _symlink_problem(root_b, item.path)
                elif kind == "file":
                    if st.st_mode & (stat.S_ISUID | stat.S_ISGID):
                        problem = "a file with the setuid or setgid bit"
                else:
                    problem = f"a {kind.replace('_', ' ')}, not a regular file"
                text, _ = display_name(rel)
                found.append(Entry(path=text, raw=rel, type=kind, size=st.st_size, problem=problem))
    found.sort(key=lambda e: e.raw)
    return found


def open_regular(path: Path | bytes | str, *, follow_links: bool = False) -> io.BufferedReader:
    """Open a regular file for reading; refuse symlinks, FIFOs, devices and sockets.

    O_NONBLOCK makes opening a FIFO return at once instead of waiting for a
    writer; the fstat check then refuses it before a single read. With
    `follow_links` a symlink is followed (a dataset's git-annex files), and
    what it leads to must be a regular file.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0)
    if not follow_links:
        flags |= os.O_NOFOLLOW
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if not follow_links and os.path.islink(path):
            raise UnsafeFile(f"{os.fsdecode(path)} is a symlink; it was not read") from exc
        raise
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise UnsafeFile(
                f"{os.fsdecode(path)} is a {_type_of(mode).replace('_', ' ')}, "
                "not a regular file; it was not read"
            )
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "rb")


#: a file the runner writes is never opened through a symlink, and never left to others
_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


def open_append(path: Path) -> io.BufferedWriter:
    """A file of the runner's (a run's log) opened to append to, made when missing,
    never through a symlink: where another user replaced it by one (a shared --out),
    this fails instead of appending to whatever it leads to."""
    return os.fdopen(os.open(path, _WRITE_FLAGS | os.O_APPEND, 0o666), "ab")


def read_regular(path: Path | bytes | str, limit: int = PARSE_LIMIT) -> bytes:
    """The content of a regular file, refusing anything larger than `limit` bytes."""
    with open_regular(path) as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise UnsafeFile(f"{os.fsdecode(path)} is larger than {limit} bytes; it was not read")
    return data


def read_within(root: Path, path: Path, limit: int = PARSE_LIMIT) -> bytes:
    """`read_regular` of the file `path` leads to, symlinks followed (a datalad or
    git-annex dataset's sidecar), only when that lies inside `root`: a dataset's
    symlink must not make the runner read, or wait on, a file outside it
    (`/proc/kmsg` blocks a reader; `/etc/shadow` ends up hashed in a report)."""
    if not inside(root, path):
        raise UnsafeFile(f"{os.fsdecode(path)} leads out of {os.fsdecode(root)}; it was not read")
    return read_regular(Path(os.path.realpath(path)), limit)


def inside(root: Path, path: Path) -> bool:
    """Whether `path`, with every symlink resolved, is root or below it."""
    real_root = os.path.realpath(root)
    real = os.path.realpath(path)
    return real == real_root or real.startswith(real_root.rstrip("/") + "/")


def path_problem(path: str) -> str | None:
    """Why `path`, read from a record or a sidecar, cannot name an entry below its folder.

    Returns None for a path that stays below the folder whatever the folder
    is: relative and without a `..` component. The inventory only ever lists
    such paths, so any other one was written by someone else; joined to the
    folder unchecked it would reach any file the runner can read. Checked by
    text alone, so it holds before the file exists and wherever the folder is.
    """
    if PurePosixPath(path).is_absolute():
        return "an absolute path"
    if ".." in PurePosixPath(path).parts:
        return "a path that climbs out with '..'"
    return None


class Removal(msgspec.Struct, kw_only=True, frozen=True):
    """What `remove_tree` did: `left` names each entry it could not remove, and why.

    A removal that says nothing when it fails lets callers report a folder as
    removed while it is still there (a plugin's read-only tool cache), so the
    outcome is returned and callers only say "removed" when `removed` is true.
    """

    path: str
    left: list[str] = []

    @property
    def removed(self) -> bool:
        return not self.left


def _reason(exc: OSError, path: bytes) -> str:
    return f"{display_name(path)[0]}: {exc.strerror or exc}"


#: a folder opened for listing and removing in it: never through a symlink
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


def _open_folder(name: bytes, parent: int | None, path: bytes, left: list[str]) -> int | None:
    """A descriptor of folder `name` in the folder open as `parent` (None: `name` is the
    tree's root), opened without following a symlink, or None (why is in `left`).

    Its owner gets read, write and search on it (a plugin's `chmod 000`, Go's
    read-only module cache), so what is in it can be listed and removed; a folder
    that cannot even be opened is made readable first, after checking (lstat) that
    it is a real folder.
    """
    try:
        fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
    except FileNotFoundError:
        return None
    except PermissionError as exc:
        try:
            mode = os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode
            if not stat.S_ISDIR(mode):
                raise exc
            os.chmod(name, stat.S_IMODE(mode) | 0o700, dir_fd=parent)
            fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
        except OSError as again:
            left.append(_reason(again, path))
            return None
    except OSError as exc:
        left.append(_reason(exc, path))
        return None
    try:
        mode = os.fstat(fd).st_mode
        if mode & 0o700 != 0o700:
            os.chmod(fd, stat.S_IMODE(mode) | 0o700)
    except OSError:
        pass  # another user's folder: what is in it is named as it fails
    return fd


def _remove_at(name: bytes, parent: int | None, is_dir: bool, path: bytes, left: list[str]) -> None:
    """Remove one emptied entry of the folder open as `parent`. A folder that is not
    empty is named only if none of its entries was."""
    try:
        if is_dir:
            os.rmdir(name, dir_fd=parent)
        else:
            os.unlink(name, dir_fd=parent)
    except FileNotFoundError:
        return
    except OSError as exc:
        if not (is_dir and exc.errno == errno.ENOTEMPTY and left):  # its entries are named
            left.append(_reason(exc, path))


class _Folder(msgspec.Struct):
    """A folder `_clear` is emptying: its descriptor, path (for messages), the names
    still to remove in it and its own name in the folder above."""

    fd: int
    path: bytes
    names: list[bytes]
    name: bytes


def _clear(top: bytes, left: list[str]) -> None:
    """Remove everything in `top` (a real folder), depth first, by descriptors: each
    folder is opened without following a symlink and its entries are looked at and
    removed relative to it, so nothing swapped for a symlink while the tree is
    removed (another user writing into a shared output) leads the removal out of
    it, and neither depth nor path length can stop it (a loop, not recursion)."""
    fd = _open_folder(top, None, top, left)
    if fd is None:
        return
    stack: list[_Folder] = []
    try:
        stack.append(_Folder(fd=fd, path=top, names=_names(fd, top, left), name=top))
        while stack:
            folder = stack[-1]
            if not folder.names:
                stack.pop()
                os.close(folder.fd)
                if stack:
                    _remove_at(folder.name, stack[-1].fd, True, folder.path, left)
                continue
            name = folder.names.pop()
            path = os.path.join(folder.path, name)
            try:
                mode = os.stat(name, dir_fd=folder.fd, follow_symlinks=False).st_mode
            except FileNotFoundError:
                continue
            except OSError as exc:
                left.append(_reason(exc, path))
                continue
            if not stat.S_ISDIR(mode):
                _remove_at(name, folder.fd, False, path, left)
                continue
            child = _open_folder(name, folder.fd, path, left)
            if child is None:
                _remove_at(name, folder.fd, True, path, left)
                continue
            stack.append(_Folder(fd=child, path=path, names=[], name=name))
            stack[-1].names = _names(child, path, left)
    finally:
        for folder in stack:
            os.close(folder.fd)


def _names(fd: int, path: bytes, left: list[str]) -> list[bytes]:
    try:
        return [os.fsencode(name) for name in os.listdir(fd)]
    except OSError as exc:
        left.append(_reason(exc, path))
        return []


def remove_tree(root: Path) -> Removal:
    """Remove `root` and everything under it, and say honestly whether it is gone.

    `shutil.rmtree(ignore_errors=True)` gives up silently at the first folder a
    plugin made read-only (Go's module cache, `chmod -R a-w`, `chmod 000`), and
    the runner would report a staging folder removed that is still there. Here
    each folder is made usable for its owner as it is opened. Only entries inside
    the tree are changed: every folder is opened without following a symlink and
    its entries are removed relative to it, so no symlink is ever followed, not
    even one swapped in meanwhile. A missing `root` counts as removed; the folder
    holding `root` is never changed.
    """
    left: list[str] = []
    path = os.fsencode(root)
    try:
        is_dir = stat.S_ISDIR(os.lstat(path).st_mode)
    except FileNotFoundError:
        return Removal(path=str(root))
    except OSError as exc:
        return Removal(path=str(root), left=[_reason(exc, path)])
    if is_dir:
        _clear(path, left)
    _remove_at(path, None, is_dir, path, left)
    return Removal(path=str(root), left=left)
