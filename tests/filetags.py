"""Tags written into real files the way a ripper would: with mutagen, in each format's own frames, not our code."""

from __future__ import annotations

from pathlib import Path

import mutagen
from mutagen.id3 import ID3, TALB, TCON, TIT2, TPE1, TPE2


def set_tags(path: Path, genre: list[str] | None, artist: str = "", album: str = "", title: str = "",
             album_artist: str = "") -> None:
    """Tag ``path`` the way a ripper would, in its own format (mutagen, not our code)."""
    if path.suffix == ".mp3":
        id3 = ID3()
        for frame, value in ((TPE1, artist), (TALB, album), (TIT2, title), (TPE2, album_artist)):
            if value:
                id3.add(frame(encoding=3, text=[value]))
        if genre:
            id3.add(TCON(encoding=3, text=genre))
        id3.save(path, v2_version=4)  # v2.3 would join several values with "/"
        return
    audio = mutagen.File(path)
    if path.suffix == ".m4a":
        values = {"\xa9gen": genre, "\xa9ART": [artist], "\xa9alb": [album], "\xa9nam": [title], "aART": [album_artist]}
    elif path.suffix == ".wma":
        values = {"WM/Genre": genre, "Author": [artist], "WM/AlbumTitle": [album], "Title": [title],
                  "WM/AlbumArtist": [album_artist]}
    else:
        values = {"genre": genre, "artist": [artist], "album": [album], "title": [title], "albumartist": [album_artist]}
    for key, value in values.items():
        if value and value[0]:
            audio[key] = value
    audio.save()
