"""What the files' own tags cost: reading them on every classified file, and a tag write.

    python bench/tags.py ../music-full             # read: every file; write: copies of the first 20

Reading is compared with ``audio.probe`` (the header read every classification already does);
a write is compared with a durable copy of the same file (copy, fsync, rename, fsync of the folder),
the floor for any write that is either the old file or the new one.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from genretag import audio, tags
from genretag.producer.walk import walk


def per_file_ms(paths: list[str], action) -> float:
    times = []
    for p in paths:
        started = time.perf_counter()
        action(p)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def durable_copy(path: str) -> None:
    """A copy made as durable as a tag write makes its file: copied, fsynced, renamed, folder fsynced."""
    temp = path + ".plain"
    shutil.copy(path, temp)
    with open(temp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(temp, path + ".copy")
    fd = os.open(os.path.dirname(path), os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", type=Path)
    parser.add_argument("--writes", type=int, default=20)
    args = parser.parse_args()
    paths = [f.path for f in walk(args.root)]
    probe = per_file_ms(paths, audio.probe)
    read = per_file_ms(paths, tags.read_logged)
    print(f"{len(paths)} files under {args.root}")
    print(f"read tags   median {read:7.2f} ms/file   baseline audio.probe  {probe:6.2f} ms/file   "
          f"ratio {read / probe:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        writable = [p for p in paths if Path(p).suffix.lower() in (".mp3", ".ogg", ".opus", ".flac", ".m4a")]
        copies = [shutil.copy(p, os.path.join(tmp, f"{i}{Path(p).suffix}")) for i, p in enumerate(writable[: args.writes])]
        size = sum(os.path.getsize(c) for c in copies) / len(copies) / 1e6
        copy = per_file_ms(copies, durable_copy)
        write = per_file_ms(copies, lambda p: tags.write_genre(p, ["jazz"]))
    print(f"write genre median {write:7.2f} ms/file   baseline durable copy {copy:6.2f} ms/file   "
          f"ratio {write / copy:.2f}   ({len(copies)} files, {size:.1f} MB each on average)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
