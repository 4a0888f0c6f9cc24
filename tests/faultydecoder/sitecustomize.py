"""A decoder library that misbehaves by file name, for the fault suite's real genretag processes.

Put this folder first on PYTHONPATH and every Python process started with it (``genretag scan``,
its spawned decode processes, a Celery worker and its pool) loads it at start-up. It wraps PyAV's
``open``, the third-party library that decodes in-process, as a fake ffmpeg program once stood in
for an external decoder: a file named ``hang*`` is held open forever, ``crash*`` kills the process
that opens it (as a codec's segfault would), ``slow*`` opens after ``FAULTY_DECODER_DELAY`` seconds.
Every other file decodes as usual.
"""

import os
import signal
import time

import av

_open = av.open


def _faulty_open(file, *args, **kwargs):
    name = os.path.basename(os.fspath(file))
    if name.startswith("hang"):
        with open(file, "rb"):  # held open, so a decoder left running is seen in /proc
            time.sleep(3600)
    if name.startswith("crash"):
        os.kill(os.getpid(), signal.SIGKILL)
    if name.startswith("slow"):
        time.sleep(float(os.environ.get("FAULTY_DECODER_DELAY", "2")))
    return _open(file, *args, **kwargs)


av.open = _faulty_open
