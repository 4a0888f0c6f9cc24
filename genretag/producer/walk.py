"""Find audio files under a root, streaming: one ``os.scandir`` per directory, nothing held in memory.

Symbolic links are skipped unless ``follow_symlinks``; when followed, each directory is entered at
most once, by its ``(st_dev, st_ino)``, so a link back up the tree cannot loop, and an audio-named
link that leads nowhere is reported like a file, so its failure is recorded with the reason.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass

from genretag.audio import AUDIO_EXTENSIONS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FoundFile:
    path: str
    size: int
    mtime: float


def is_audio_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in AUDIO_EXTENSIONS


def walk(root: str | os.PathLike[str], follow_symlinks: bool = False) -> Iterator[FoundFile]:
    """Audio files under ``root`` in a stable order (names sorted within each directory).

    Unreadable directories and files that vanish mid-walk are logged and skipped; the walk goes on.
    """
    root = os.fspath(root)
    visited: set[tuple[int, int]] = set()
    stack = [root]
    while stack:
        directory = stack.pop()
        if follow_symlinks:
            try:
                st = os.stat(directory)
            except OSError as exc:
                log.warning("skipping %s: %s", directory, exc.strerror or exc)
                continue
            if (st.st_dev, st.st_ino) in visited:
                continue
            visited.add((st.st_dev, st.st_ino))
        try:
            with os.scandir(directory) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            log.warning("skipping %s: %s", directory, exc.strerror or exc)
            continue
        subdirs = []
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=follow_symlinks):
                    subdirs.append(entry.path)
                    continue
                is_file = entry.is_file(follow_symlinks=follow_symlinks)
            except OSError as exc:  # a chain of links that loops, when following links
                log.warning("%s: %s", entry.path, exc.strerror or exc)
                is_file = False
            if not is_audio_name(entry.name):
                continue
            try:
                if is_file:
                    st = entry.stat(follow_symlinks=follow_symlinks)
                elif follow_symlinks and entry.is_symlink():
                    # A followed link to nothing (broken, or looping) still names a track of the
                    # library: it gets a row, and classification records why it cannot be read.
                    st = entry.stat(follow_symlinks=False)
                else:
                    continue
            except OSError as exc:  # vanished mid-walk
                log.warning("skipping %s: %s", entry.path, exc.strerror or exc)
                continue
            yield FoundFile(entry.path, st.st_size, st.st_mtime)
        stack.extend(reversed(subdirs))
