"""Generate the bad-input corpus: every kind of file a messy library holds, built at test time.

No binary fixtures: broken files are cut or corrupted copies of real files (the small real library,
GTZAN Opus clips) or written with soundfile. Each :class:`BadInput` says what a scan must make of
it: a ``done`` prediction, a ``failed`` track whose error contains ``reason``, or (for entries that
are not audio files) ``walked``: no track of its own, the walk goes on (and logs ``reason`` when
it is a link that leads nowhere).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 22050


@dataclass(frozen=True)
class BadInput:
    kind: str  # short name shown in the runner's table
    path: Path  # the file as the walk finds it
    expect: str  # "done", "failed" or "walked"
    reason: str = ""  # fragment of the recorded error ("failed"), or why it is walked past
    slow: bool = False

    def matches(self, status: str | None, error: str | None) -> bool:
        if self.expect == "walked":
            return status is None
        return status == self.expect and (self.expect != "failed" or self.reason in (error or ""))


def _music(seconds: float, seed: int = 0) -> np.ndarray:
    """A few seconds of loud enough, non-silent synthetic audio (chords plus noise bursts)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    y = 0.2 * np.sin(2 * np.pi * 110 * t) + 0.1 * np.sin(2 * np.pi * 330 * t)
    y += 0.1 * rng.standard_normal(len(t)) * (np.floor(t * 4) % 2 == 0)
    return y.astype(np.float32)


def _truncate(src: Path, dest: Path) -> Path:
    data = src.read_bytes()
    dest.write_bytes(data[: len(data) // 2])
    return dest


def _first(root: Path, pattern: str) -> Path:
    found = sorted(root.rglob(pattern))
    if not found:
        raise FileNotFoundError(f"no {pattern} under {root}")
    return found[0]


def write_long_noise(path: Path, hours: float, sr: int = 8000) -> Path:
    """Hours of low-rate noise with a beat, written in chunks (an 8 kHz 8-bit WAV: ~29 MB an hour)."""
    rng = np.random.default_rng(7)
    chunk = 60 * sr
    with sf.SoundFile(path, "w", samplerate=sr, channels=1, format="WAV", subtype="PCM_U8") as f:
        for _ in range(int(hours * 60)):
            t = np.arange(chunk) / sr
            f.write((0.3 * rng.standard_normal(chunk) * (np.floor(t * 2) % 2 == 0)).clip(-1, 1))
    return path


def make_corpus(dest: Path, real_library: Path, gtzan: Path, slow: bool = False) -> list[BadInput]:
    """Write the corpus under ``dest`` (created) and return what each entry must become."""
    dest.mkdir(parents=True, exist_ok=True)
    real_mp3, real_ogg = _first(real_library, "*.mp3"), _first(real_library, "*.ogg")
    opus = gtzan / "blues" / "blues.00000.opus"
    cases: list[BadInput] = []

    def add(kind: str, path: Path, expect: str, reason: str = "", slow_case: bool = False) -> None:
        cases.append(BadInput(kind, path, expect, reason, slow_case))

    empty = dest / "empty.mp3"
    empty.touch()
    add("zero-byte .mp3", empty, "failed", "empty file")

    add("truncated mp3 (half)", _truncate(real_mp3, dest / "truncated.mp3"), "done")
    add("truncated ogg (half)", _truncate(real_ogg, dest / "truncated.ogg"), "done")
    flac = dest / "whole.flac.tmp"
    sf.write(flac, _music(20.0), SR, format="FLAC")
    add("truncated flac (half)", _truncate(flac, dest / "truncated.flac"), "done")
    sf.write(flac, _music(120.0, seed=1), SR, format="FLAC")  # long enough for spread windows
    add("truncated flac, 2 min (windows past the cut)", _truncate(flac, dest / "truncated-long.flac"), "done")
    flac.unlink()

    (dest / "random.mp3").write_bytes(np.random.default_rng(0).bytes(200_000))
    add("random bytes .mp3", dest / "random.mp3", "failed", "not a readable audio file")

    (dest / "notes.flac").write_text("Track list\n1. Intro\n2. Outro\n" * 200)
    add("text file .flac", dest / "notes.flac", "failed", "not a readable audio file")

    sf.write(dest / "silence.wav", np.zeros(30 * SR, np.float32), SR)
    add("pure silence (30 s)", dest / "silence.wav", "failed", "silent")

    sf.write(dest / "blip.wav", _music(0.5), SR)
    add("0.5-s clip", dest / "blip.wav", "failed", "too short")

    corrupt = dest / "corrupt-header.wav"
    sf.write(corrupt, _music(10.0), SR, subtype="PCM_16")
    raw = bytearray(corrupt.read_bytes())
    raw[0:4], raw[8:16] = b"RIFX", b"JUNKJUNK"  # neither RIFF nor WAVE fmt: no decoder's header
    corrupt.write_bytes(bytes(raw))
    add("wav with corrupt header", corrupt, "failed", "not a readable audio file")

    for kind, name in (
        ("unicode name", "Beyoncé – Ñandú 東京 ☃.opus"),
        ("spaces in name", "  two  spaces  .opus"),
        ("newline in name", "line\nbreak.opus"),
        ("quotes/semicolon name", "it's \"x\"; DROP TABLE tracks;--.opus"),
    ):
        shutil.copyfile(opus, dest / name)
        add(kind, dest / name, "done")

    unreadable = dest / "no-permission.ogg"
    shutil.copyfile(opus, unreadable)
    unreadable.chmod(0)
    add("no read permission", unreadable, "failed", "permission denied")

    # Followed links that lead nowhere are tracks that cannot be read: recorded failed, with the reason.
    os.symlink(dest / "does-not-exist.mp3", dest / "broken-link.mp3")
    add("broken symlink", dest / "broken-link.mp3", "failed", "broken symlink")
    os.symlink(dest / "loop-b", dest / "loop-a.mp3")
    os.symlink(dest / "loop-a.mp3", dest / "loop-b")
    add("symlink loop", dest / "loop-a.mp3", "failed", "Too many levels of symbolic links")

    album = dest / "x.mp3"
    album.mkdir()
    shutil.copyfile(opus, album / "inside.opus")
    add("directory named x.mp3", album, "walked", "a directory: walked into, not classified")
    add("file inside x.mp3/", album / "inside.opus", "done")

    (dest / "cover.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(1000))
    add("non-audio name (.jpg)", dest / "cover.jpg", "walked", "not an audio extension")

    if slow:
        add("2-hour file", write_long_noise(dest / "two-hours.wav", 2.0), "done", slow_case=True)
    return cases
