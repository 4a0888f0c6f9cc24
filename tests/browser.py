"""Pages in headless Chromium, offline: a screenshot and the DOM after loading (report and explorer tests)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

# Anything a page could fetch: a URL with a scheme, a src/href that is not inline data or an anchor, CSS imports.
EXTERNAL_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://|(?:src|href)\s*=\s*(?![\"']?(?:data:|#))|@import|url\(", re.I)


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.fail("chromium not installed (scripts/test.sh installs it with apt-get)")
    return found


def render(page: Path, tmp: Path, height: int) -> tuple[Path, str]:
    """A screenshot of ``page`` and its DOM after loading, from headless Chromium with the network refused."""
    flags = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp / 'profile'}",
             "--host-resolver-rules=MAP * ~NOTFOUND", f"--window-size=1200,{height}"]
    shot = tmp / f"{page.stem}.png"
    subprocess.run([*flags, f"--screenshot={shot}", page.as_uri()], check=True, capture_output=True, timeout=120)
    dom = subprocess.run([*flags, "--dump-dom", page.as_uri()], check=True, capture_output=True, text=True,
                         timeout=120).stdout
    return shot, dom


def assert_not_blank(shot: Path) -> None:
    from PIL import Image, ImageStat

    image = Image.open(shot).convert("L")
    assert image.size[0] >= 1000
    assert ImageStat.Stat(image).stddev[0] > 20, "the screenshot is (nearly) one colour"


def rendered_sections(page: Path, tmp: Path, height: int, sections: tuple[str, ...]) -> str:
    """The DOM of ``page`` in Chromium, after checking its screenshot is not blank and each section has a heading."""
    shot, dom = render(page, tmp, height)
    assert_not_blank(shot)
    for anchor in sections:
        assert re.search(rf'<section id="{anchor}"><h2>[^<]+</h2>', dom), anchor
    return dom
