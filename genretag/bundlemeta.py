"""A model bundle's ``meta.json``, read without the predictor's imports (numpy, SciPy, LiteRT).

``stats`` and ``report`` only need the labels and the model card; importing :mod:`genretag.bundle`
for them would cost a few tenths of a second of start-up. :mod:`genretag.bundle` re-exports both names.
"""

from __future__ import annotations

import json
import os
import zipfile
from typing import Any


class BundleError(Exception):
    """A model file is unreadable or does not match this code."""


def read_meta(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The metadata of a bundle, without loading its network."""
    try:
        with zipfile.ZipFile(path) as zf:
            return json.loads(zf.read("meta.json"))
    except (OSError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
        raise BundleError(f"{path}: not a genretag model bundle ({exc})") from None
