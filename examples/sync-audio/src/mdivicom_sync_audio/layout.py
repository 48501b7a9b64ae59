"""A session's streams: the media files of its raw/audio/str-<id>/ and raw/video/str-<id>/.

Nothing a user put there is passed over without a word, since a stream or a
file left out would be missing from the results while the run succeeds:

- a stream id is one stream (its timebase map is named by it), so media in
  folders of one name under both audio/ and video/ is an error naming both;
- a link whose target is gone (a card or drive not mounted) is an error naming
  it: the stream would be synced without that file;
- a stream folder whose files are none of them media by their suffix (a phone's
  `.3gp` before this tool knew it) is named in a warning: that stream is not synced;
- media in a stream folder's subfolders (a camera card copied whole, its files
  under `DCIM/100GOPRO/` or `PRIVATE/AVCHD/BDMV/STREAM/`) is named in a warning:
  only the files directly in a stream folder are its recordings, and a stream of
  such a card alone is not synced.

Hidden files are left out, as a shell does: a Mac writes `._C0001.MP4` beside
every file it copies to a card or an exFAT drive (its AppleDouble metadata, not
media), and `.DS_Store`. Other files beside media are the usual sidecars (the
stream's `str-<id>_stream.yaml`, a GoPro's `.LRV` proxy and `.THM` thumbnail)
and are left alone.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from mdivicom_sync_audio.io import MEDIA_SUFFIXES

SHOWN_NAMES = 3  # of a folder's files, in a warning
# a GoPro's chapter files: GX|GH + chapter + recording (GX010042, GX020042), and the
# older GOPR + recording (the first chapter) and GP + chapter + recording
GOPRO_CHAPTER = re.compile(r"(?i)(?:(G[HX])(\d\d)|(GP)(\d\d)|(GOPR))(\d{4})")


class LayoutError(ValueError):
    """The session's stream folders cannot be read as the user meant; the message
    names the path and what to do."""


@dataclass(frozen=True)
class Streams:
    """str-<id> -> its media files by name; `notes`: the stream folders left out,
    in words naming them (the run warns of each)."""

    files: dict[str, list[Path]]
    notes: list[str] = field(default_factory=list)


def find_streams(session: Path) -> Streams:
    """The streams of `session` (see the module docstring)."""
    files: dict[str, list[Path]] = {}
    folders: dict[str, Path] = {}
    left_out: dict[str, tuple[Path, list[str]]] = {}
    nested: list[tuple[str, Path, list[Path]]] = []  # media in a stream's subfolders
    for kind in ("audio", "video"):
        for folder in sorted((session / "raw" / kind).glob("str-*")):
            if not folder.is_dir():
                continue
            media, others = _entries(folder)
            below = _media_below(folder)
            if below:
                nested.append((folder.name, folder, below))
            if not media:
                if others:
                    left_out.setdefault(folder.name, (folder, others))
                continue
            if folder.name in folders:
                raise LayoutError(
                    f"{folders[folder.name]} and {folder} both hold media of stream "
                    f"{folder.name}; a stream id names one stream (its timebase map is named "
                    "by it): rename one of the folders, or move its files into the other"
                )
            folders[folder.name] = folder
            files[folder.name] = media
    notes = [
        f"{sid}: {folder.relative_to(session)} holds no media file by its suffix "
        f"({_names(others)}), so it is not synced; a recording FFmpeg reads can be renamed "
        "to one (.wav, .flac, .mp4, .mov, .mts, ...: sync-audio's README lists them under "
        '"Input")'
        for sid, (folder, others) in sorted(left_out.items())
        if sid not in files and not any(sid == name for name, _, _ in nested)
    ]
    notes += [
        f"{sid}: {folder.relative_to(session)} holds media in its subfolders "
        f"({_names([str(path.relative_to(folder)) for path in below])}), "
        + ("which are not read" if sid in files else "so the stream is not synced")
        + ": only the files directly in a stream folder are its recordings (a camera "
        "card copied whole?); move them up into it to sync them"
        for sid, folder, below in nested
    ]
    return Streams(dict(sorted(files.items())), notes)


def _entries(folder: Path) -> tuple[list[Path], list[str]]:
    """The media files of a stream folder by name, and the names of the other files
    but its sidecar and hidden ones."""
    media: list[Path] = []
    others: list[str] = []
    for path in sorted(folder.iterdir(), key=recording_order):
        if path.name.startswith("."):
            continue  # AppleDouble `._*` companions, .DS_Store: never media
        if path.suffix.lower() in MEDIA_SUFFIXES:
            if path.is_symlink() and not path.exists():
                raise LayoutError(
                    f"{path}: a link to {os.readlink(path)}, which does not exist (a card or "
                    "drive not mounted?): mount it, or remove the link to sync without it"
                )
            if path.is_file():
                media.append(path)
        elif path.is_file() and path.name != f"{folder.name}_stream.yaml":
            others.append(path.name)
    return media, others


def recording_order(path: Path) -> tuple[str, str]:
    """A stream's files in the order they were recorded: by name, but a GoPro numbers
    a recording's chapters before the recording (GX010042.MP4, GX020042.MP4 are
    recording 42's first two chapters; GX010043.MP4 is the next recording), so its
    names sort as recording, then chapter. The files of a camera are taken to
    continue each other in this order (network.seams)."""
    name = path.name
    gopro = GOPRO_CHAPTER.fullmatch(path.stem)
    if gopro:
        family, chapter, _, old_chapter, _, number = gopro.groups()
        # GOPR0042 (the first chapter) and GP010042 (the second) are one family
        family = family.upper() if family else "GOPR"
        name = f"{family}{number}-{int(chapter or old_chapter or 0):02d}{path.suffix}"
    return name, path.name


def _media_below(folder: Path) -> list[Path]:
    """The media files by suffix in `folder`'s subfolders, at any depth, by name
    (hidden files and folders left out, as in the folder itself)."""
    found: list[Path] = []
    for top, dirs, names in os.walk(folder):
        dirs[:] = sorted(name for name in dirs if not name.startswith("."))
        if Path(top) == folder:
            continue  # the folder's own files are its recordings
        found += [
            Path(top, name)
            for name in sorted(names)
            if not name.startswith(".") and Path(name).suffix.lower() in MEDIA_SUFFIXES
        ]
    return found


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:SHOWN_NAMES])
    return shown if len(names) <= SHOWN_NAMES else f"{shown} and {len(names) - SHOWN_NAMES} more"
