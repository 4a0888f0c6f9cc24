"""The training-data explorer on the real GTZAN subset (in headless Chromium) and on a Kaggle-layout copy."""

from __future__ import annotations

import re
from pathlib import Path

from click.testing import CliRunner

from genretag.cli import cli
from genretag.report.explore import SECTIONS
from browser import EXTERNAL_URL, assert_not_blank, render


def explore(data: Path, out: Path, cache: Path) -> str:
    res = CliRunner().invoke(cli, ["explore", "--data", str(data), "--out", str(out), "--per-genre", "1"],
                             env={"GENRETAG_CACHE_DIR": str(cache)})
    assert res.exit_code == 0, res.output
    page = out.read_text()
    assert not EXTERNAL_URL.search(page) and "<script" not in page
    return page


def test_explorer_of_the_gtzan_subset_in_chromium(gtzan_dir: Path, tmp_path: Path, training_cache: Path) -> None:
    out = tmp_path / "eda.html"
    explore(gtzan_dir, out, training_cache)
    shot, dom = render(out, tmp_path, 5000)
    assert_not_blank(shot)
    for anchor in SECTIONS:
        assert re.search(rf'<section id="{anchor}"><h2>[^<]+</h2>', dom), anchor
    assert "fault-filtered lists" in dom  # the subset's own split lists
    assert re.search(r'<td>jazz</td><td class="n">\d+</td><td class="n">\d+</td><td class="n">\d+</td>', dom)  # per split
    assert "OGG/OPUS" in dom and dom.count("<img") == 4
    assert re.search(r"\d+ clips, [\d.]+-30\.\d+ s", dom)


def test_explorer_reads_the_kaggle_layout(synthetic_gtzan: Path, tmp_path: Path, training_cache: Path) -> None:
    page = explore(synthetic_gtzan, tmp_path / "eda.html", training_cache)
    assert "kaggle layout" in page and "stratified by genre" in page
    assert '<td>all</td><td class="n">28</td><td class="n">6</td><td class="n">6</td>' in page  # 40 clips, 70/15/15
    assert "40 clips, 9.00-9.00 s" in page and '<td class="n">22050</td><td>WAV/PCM_16</td><td class="n">40</td>' in page
    assert '<td>metal</td><td class="n">1</td>' in page  # one clip per genre in the MFCC statistics
