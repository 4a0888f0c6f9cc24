"""The files' own tags, through mutagen: read genre, artist, album artist, album and title; write the genre.

Reading happens whenever a worker or local mode opens a file (:func:`read_logged`); a tag that
cannot be read is never a failure of the track, only a line in the log. Writing happens only in
``genretag tag --write`` (:func:`write_genre`), and always on a copy: the copy is made beside the
file, mutagen rewrites the copy's tag, the copy is fsynced and renamed over the file. A kill at
any moment leaves the old file or the new one, never a half-written one. mutagen rewrites tag
blocks only (ID3, Vorbis comment packets, MP4 ``ilst``, ASF header objects); audio frames are
copied byte for byte.

Genre tags by format: ID3v2 ``TCON`` (with ID3v1 numeric genres such as ``(17)`` or ``17`` read as
their names, written as ID3v2.4), Vorbis ``GENRE`` (Ogg Vorbis, Opus, FLAC), MP4 ``©gen`` (and the
numeric ``gnre``, which mutagen reads as ``©gen``), ASF ``WM/Genre``. Several values are joined
with ``"; "``.
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
import stat
import tempfile
from dataclasses import dataclass, fields
from typing import Any

import mutagen
from mutagen.asf import ASF
from mutagen.flac import FLAC
from mutagen.id3 import ID3, TCON, ID3NoHeaderError
from mutagen.mp3 import MP3
from mutagen.mp4 import MP4
from mutagen.oggopus import OggOpus
from mutagen.oggvorbis import OggVorbis

log = logging.getLogger(__name__)

JOIN = "; "
TEMP_SUFFIX = ".genretag-partial"  # ".NAME.XXXX.genretag-partial": the copy beside a file while its tag is
# written; not an audio extension, so a scan never takes a copy left by a killed run for a track

# Field -> the key each tag family stores it under (Vorbis comments compare case-insensitively).
ID3_FRAMES = {"genre": "TCON", "artist": "TPE1", "album_artist": "TPE2", "album": "TALB", "title": "TIT2"}
VORBIS_KEYS = {"genre": ("genre",), "artist": ("artist",), "album_artist": ("albumartist", "album artist"),
               "album": ("album",), "title": ("title",)}
MP4_KEYS = {"genre": "\xa9gen", "artist": "\xa9ART", "album_artist": "aART", "album": "\xa9alb", "title": "\xa9nam"}
ASF_KEYS = {"genre": "WM/Genre", "artist": "Author", "album_artist": "WM/AlbumArtist", "album": "WM/AlbumTitle",
            "title": "Title"}
WRITABLE = (MP3, OggVorbis, OggOpus, FLAC, MP4, ASF)


class TagError(Exception):
    """A tag could not be read or written; ``reason`` is short and meant for people."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


@dataclass(frozen=True)
class FileTags:
    """What a file's tags say; ``None`` where a field is absent."""

    genre: str | None = None
    artist: str | None = None
    album_artist: str | None = None
    album: str | None = None
    title: str | None = None

    def columns(self) -> dict[str, str | None]:
        """As the ``tracks.tag_*`` columns."""
        return {f"tag_{f.name}": getattr(self, f.name) for f in fields(self)}


def _joined(values: list[Any]) -> str | None:
    texts = [str(v).strip() for v in values if str(v).strip()]
    return JOIN.join(texts) if texts else None


def _open(path: str | os.PathLike[str]) -> mutagen.FileType | None:
    """The file as mutagen reads it; only regular files are opened (a FIFO would block the reader)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise TagError(path, "not a regular file")
        return mutagen.File(os.fspath(path))
    except TagError:
        raise
    except mutagen.MutagenError as exc:
        raise TagError(path, f"tags unreadable ({exc})") from None
    except OSError as exc:
        raise TagError(path, f"cannot open: {exc.strerror or exc}") from None
    except Exception as exc:  # noqa: BLE001 - mutagen raises assorted errors on corrupt headers
        raise TagError(path, f"tags unreadable ({type(exc).__name__}: {exc})") from None


def _raw_values(audio: mutagen.FileType, field: str) -> list[str]:
    """The stored text values of one field, as the file holds them (ID3 genres still encoded)."""
    tags = audio.tags
    if tags is None:
        return []
    if isinstance(tags, ID3):
        frame = tags.get(ID3_FRAMES[field])
        return [str(t) for t in frame.text] if frame is not None else []
    if isinstance(audio, MP4):
        return [str(v) for v in tags.get(MP4_KEYS[field], [])]
    if isinstance(audio, ASF):
        return [str(v.value) for v in tags.get(ASF_KEYS[field], [])]
    try:  # Vorbis comments (Ogg Vorbis, Opus, FLAC, Speex, ...)
        return [v for key in VORBIS_KEYS[field] for v in tags.get(key, [])]
    except (AttributeError, TypeError):
        return []


def _field(audio: mutagen.FileType, field: str) -> str | None:
    tags = audio.tags
    if field == "genre" and isinstance(tags, ID3) and "TCON" in tags:
        return _joined(tags["TCON"].genres)  # "(17)", "17" -> "Rock"
    return _joined(_raw_values(audio, field))


def read_tags(path: str | os.PathLike[str]) -> FileTags:
    """The five fields of ``path``'s tags; an empty :class:`FileTags` for a file with no tag block.

    Raises :class:`TagError` when the file cannot be opened or its tags are corrupt.
    """
    audio = _open(path)
    if audio is None or audio.tags is None:
        return FileTags()
    return FileTags(**{f.name: _field(audio, f.name) for f in fields(FileTags)})


def read_logged(path: str | os.PathLike[str]) -> FileTags:
    """:func:`read_tags`, but a failure is logged and gives empty tags: it never fails a track."""
    try:
        return read_tags(path)
    except TagError as exc:
        log.warning("tags of %s not read: %s", exc.path, exc.reason)
        return FileTags()


# --- writing ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Written:
    """One genre written: the file's new size and mtime (for the database) and what it held before."""

    path: str
    genre: str  # the values written, joined; "" when the tag was removed
    previous: list[str] | None  # the raw values before; None: the file had no genre tag
    size: int
    mtime: float
    tag_genre: str | None  # the genre tag as :func:`read_tags` now reads it (the track's ``tag_genre``)


def genre_values(path: str | os.PathLike[str]) -> list[str] | None:
    """The raw stored genre values of ``path``, or ``None`` when it has none; raises :class:`TagError`."""
    audio = _open(path)
    if audio is None:
        raise TagError(path, "unsupported format: mutagen knows no tag format for this file")
    return _raw_values(audio, "genre") or None


def writable_kind(path: str | os.PathLike[str]) -> type[mutagen.FileType]:
    """The mutagen class of ``path`` if this writer handles its format, else :class:`TagError`."""
    audio = _open(path)
    if not isinstance(audio, WRITABLE):
        kind = "unknown" if audio is None else type(audio).__name__
        raise TagError(path, f"unsupported format ({kind}): genre tags are written to MP3, Ogg Vorbis, Opus, "
                             "FLAC, MP4/M4A and ASF/WMA files only")
    return type(audio)


def check_writable(path: str | os.PathLike[str]) -> os.stat_result:
    """The file's stat, if it may be rewritten: a regular file with a write bit, in a writable folder."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise TagError(path, "file vanished (moved or deleted since the scan)") from None
    except OSError as exc:
        raise TagError(path, f"cannot stat: {exc.strerror or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        raise TagError(path, "not a regular file")
    if not st.st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH) or not os.access(path, os.W_OK):
        raise TagError(path, "read-only file: left as it is")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.access(folder, os.W_OK | os.X_OK):
        raise TagError(path, f"folder {folder} is not writable (the new copy is written beside the file)")
    return st


def _drop(tags: Any, *keys: str) -> None:
    for key in keys:
        if key in tags:
            del tags[key]


def _set_genre(audio: mutagen.FileType, values: list[str] | None) -> None:
    """Replace (``values``) or remove (``None``) the genre tag of an opened file, in its own format."""
    if audio.tags is None:
        if values is None:
            return
        audio.add_tags()
    tags = audio.tags
    if isinstance(tags, ID3):
        tags.delall("TCON")
        if values is not None:
            tags.add(TCON(encoding=3, text=values))
    elif isinstance(audio, MP4):
        _drop(tags, "gnre", MP4_KEYS["genre"])
        if values is not None:
            tags[MP4_KEYS["genre"]] = values
    elif isinstance(audio, ASF):
        _drop(tags, "WM/GenreID", ASF_KEYS["genre"])
        if values is not None:
            tags[ASF_KEYS["genre"]] = values
    else:
        _drop(tags, "genre")
        if values is not None:
            tags["genre"] = values


def _save(audio: mutagen.FileType) -> None:
    if isinstance(audio.tags, ID3):
        audio.save(v2_version=4)
    else:
        audio.save()


def _fsync_dir(folder: str) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_genre(path: str | os.PathLike[str], values: list[str] | None, only_if_absent: bool = False) -> Written:
    """Set (or with ``None`` remove) the genre tag of ``path`` atomically; returns the new size and mtime.

    ``only_if_absent`` leaves a file that already has a genre tag alone (:class:`TagError`), judged
    on the copy just made, so a tag added since the scan is never overwritten. The file's mode is
    kept, and its owner where this process may set it.
    """
    path = os.fspath(path)
    st = check_writable(path)
    kind = writable_kind(path)
    folder, name = os.path.split(os.path.abspath(path))
    for stale in glob.glob(os.path.join(glob.escape(folder), f".{glob.escape(name)}.*{TEMP_SUFFIX}")):
        os.unlink(stale)  # a copy of this file left by a write that was killed
    fd, temp = tempfile.mkstemp(prefix=f".{name}.", suffix=TEMP_SUFFIX, dir=folder)
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with open(path, "rb") as src:
                    shutil.copyfileobj(src, out, 1 << 20)
            except FileNotFoundError:
                raise TagError(path, "file vanished (moved or deleted since the scan)") from None
        try:
            audio = kind(temp)  # the original's format: the copy's name says nothing
        except mutagen.MutagenError as exc:
            raise TagError(path, f"tags unreadable ({exc})") from None
        previous = _raw_values(audio, "genre") or None
        if only_if_absent and previous is not None:
            raise TagError(path, f"already has a genre tag ({JOIN.join(previous)}): left as it is (--overwrite replaces it)")
        try:
            _set_genre(audio, values)
            _save(audio)
        except (mutagen.MutagenError, ValueError) as exc:
            raise TagError(path, f"tag not written ({exc})") from None
        os.chmod(temp, stat.S_IMODE(st.st_mode))
        try:
            os.chown(temp, st.st_uid, st.st_gid)
        except PermissionError:
            pass
        with open(temp, "rb+") as f:
            os.fsync(f.fileno())
        now = os.stat(path)
        if (now.st_size, now.st_mtime_ns) != (st.st_size, st.st_mtime_ns):
            raise TagError(path, "file changed while its tag was written: left as it is")
        os.replace(temp, path)
    except BaseException:
        try:
            os.unlink(temp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(folder)
    new = os.stat(path)
    return Written(path, JOIN.join(values or []), previous, new.st_size, new.st_mtime, read_logged(path).genre)
