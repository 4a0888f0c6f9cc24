"""The training-data explorer on the real GTZAN subset and on a tagged, scanned library (in headless Chromium),
and on a Kaggle-layout copy."""

from __future__ import annotations

import re
from pathlib import Path

from click.testing import CliRunner

from genretag.cli import cli
from genretag.report.explore import SECTIONS
from browser import EXTERNAL_URL, rendered_sections
from filetags import set_tags
from media import convert
from processes import run_genretag


def explore(data: Path, out: Path, cache: Path) -> str:
    return explore_page(["--data", str(data)], out, cache)


def explore_page(source: list[str], out: Path, cache: Path) -> str:
    res = CliRunner().invoke(cli, ["explore", *source, "--out", str(out), "--per-genre", "1"],
                             env={"GENRETAG_CACHE_DIR": str(cache)})
    assert res.exit_code == 0, res.output
    page = out.read_text()
    assert not EXTERNAL_URL.search(page) and "<script" not in page
    return page


def test_explorer_of_the_gtzan_subset_in_chromium(gtzan_dir: Path, tmp_path: Path, training_cache: Path) -> None:
    out = tmp_path / "eda.html"
    explore(gtzan_dir, out, training_cache)
    dom = rendered_sections(out, tmp_path, 5000, SECTIONS)
    assert "fault-filtered lists" in dom  # the subset's own split lists
    assert re.search(r'<td>jazz</td><td class="n">\d+</td><td class="n">\d+</td><td class="n">\d+</td>', dom)  # per split
    assert "OGG/OPUS" in dom and dom.count("<img") == 4
    assert re.search(r"\d+ clips, [\d.]+-30\.\d+ s", dom)


def test_explorer_reads_the_kaggle_layout(synthetic_gtzan: Path, tmp_path: Path, training_cache: Path) -> None:
    page = explore(synthetic_gtzan, tmp_path / "eda.html", training_cache)
    assert "kaggle layout" in page and "stratified by genre" in page
    assert '<td>all</td><td class="n">28</td><td class="n">6</td><td class="n">6</td>' in page  # 40 clips, 70/15/15
    assert "40 clips, 9.00-9.00 s" in page and '<td class="n">22050</td><td>WAV/PCM_S16LE</td><td class="n">40</td>' in page
    assert '<td>metal</td><td class="n">1</td>' in page  # one clip per genre in the MFCC statistics


# (clip, file, genre tag, artist): two labels of three artists each (one tag spelt apart), a label too small, a file untagged
LIBRARY = [
    ("jazz/jazz.00000", "Ann <i>/a.mp3", "Jazz", "Ann <i>"), ("jazz/jazz.00001", "Bob/b.flac", "jazz", "Bob"),
    ("jazz/jazz.00002", "Cat/c.mp3", "Jazz", "Cat"), ("metal/metal.00000", "Dan/d.flac", "Metal", "Dan"),
    ("metal/metal.00001", "Eve/e.mp3", "Metal", "Eve"), ("metal/metal.00002", "Fay/f.flac", "Metal", "Fay"),
    ("blues/blues.00000", "Gus/g.mp3", "Blues", "Gus"), ("pop/pop.00000", "Hal/h.flac", None, "Hal"),
]


def test_explorer_of_a_tagged_library_in_chromium(gtzan_dir: Path, sqlite_url: str, tmp_path: Path,
                                                  training_cache: Path) -> None:
    root = tmp_path / "music"
    for clip, name, genre, artist in LIBRARY:
        path = convert(gtzan_dir / f"{clip}.opus", root / name, 8.0)
        set_tags(path, [genre] if genre else None, artist=artist, album=f"{artist} album")
    scanned = run_genretag(sqlite_url, "scan", str(root), broker_url="", workers=1)
    assert scanned.returncode == 0 and "8 done" in scanned.stdout, scanned.stdout + scanned.stderr
    out = tmp_path / "library.html"
    res = CliRunner().invoke(cli, ["--database-url", sqlite_url, "explore", "--from-library", str(root),
                                   "--min-tracks", "3", "--valid-fraction", "0.4", "--per-genre", "1", "--out", str(out)],
                             env={"GENRETAG_CACHE_DIR": str(training_cache)})
    assert res.exit_code == 0, res.output
    page = out.read_text()
    assert not EXTERNAL_URL.search(page) and "<script" not in page and "<i>" not in page
    dom = rendered_sections(out, tmp_path, 5000, SECTIONS)
    assert "6 tagged tracks of the library" in dom and "held out as whole groups" in dom
    # labels in their commonest spelling, 3 tracks each, one artist of each held out; Blues (1 track) and the
    # untagged file left out
    for label in ("Jazz", "Metal"):
        assert re.search(rf'<td>{label}</td><td class="n">2</td><td class="n">1</td><td class="n">0</td>', dom), label
    assert '<td>all</td><td class="n">4</td><td class="n">2</td><td class="n">0</td>' in dom
    assert "Blues" not in dom and "Ann &lt;i&gt;/a.mp3" in dom  # Jazz's example clip, its path as text
    assert "6 clips" in dom and "MP3" in dom and "FLAC" in dom and dom.count("<img") == 4
