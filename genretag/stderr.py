"""Catch what C libraries write straight to file descriptor 2, so it can go to the log instead.

libsndfile's bundled mpg123 and LiteRT's C++ side print to the process's stderr, past Python's
``sys.stderr``; a normal run must print nothing of theirs (decoders and runtimes log at debug level).
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def captured() -> Iterator[list[str]]:
    """Redirect descriptor 2 to a temporary file meanwhile; on exit the yielded list holds its lines."""
    sys.stderr.flush()
    lines: list[str] = []
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            lines.extend(capture.read().decode(errors="replace").splitlines())
