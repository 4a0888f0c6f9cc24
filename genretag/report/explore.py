"""``genretag explore``: the training data at a glance, as one offline HTML page (the seed's EDA notebook).

Class balance per split, per genre an example clip's waveform, mel spectrogram and MFCC map (the
model's own input, from :mod:`genretag.features`), the MFCC mean and spread per genre over a few
clips, and the clip lengths and sample rates found (read from the file headers). On a library
(``--from-library``) the clips are its tagged tracks, labelled and split as ``train --from-library`` would.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from genretag import audio, features
from genretag.report.html import Section, figure, number, page, paragraph, plain, section, table
from genretag.training.datasets import Clip, Dataset, load_features
from genretag.training.library import LabelledTrack, group_sides, library_clips
from genretag.training.splits import dataset_sides

SECTIONS = ("balance", "examples", "mfcc", "clips")
SIDES = ("train", "valid", "test")


def build(dataset: Dataset, cache_dir: Path | None, per_genre: int = 5) -> str:
    """The page for ``dataset``; ``per_genre`` clips of each genre go into the MFCC statistics."""
    sides, how = dataset_sides(dataset)
    return _page(list(dataset.clips), list(dataset.excerpts), sides, how, cache_dir, per_genre,
                 "genretag training data", f"{dataset.root} ({dataset.layout} layout).")


def build_library(rows: list[LabelledTrack], cache_dir: Path | None, per_genre: int = 5,
                  valid_fraction: float = 0.2, seed: int = 0) -> str:
    """The page for a library's tagged tracks (``queries.library_labels`` rows), split into whole artists."""
    sides = group_sides(rows, valid_fraction, seed)
    how = (f"by artist (else album), {valid_fraction:.0%} of each label's tracks held out as whole groups, "
           "as train --from-library does")
    return _page(library_clips(rows), [], sides, how, cache_dir, per_genre, "genretag library training data",
                 f"{len(rows):,} tagged tracks of the library.")


def _page(clips: list[Clip], excerpts: list[Clip], sides: dict[str, str], how: str, cache_dir: Path | None,
          per_genre: int, title: str, intro: str) -> str:
    genres = sorted({c.genre for c in clips})
    first = {g: [c for c in clips if c.genre == g][:per_genre] for g in genres}
    sections = [
        balance_section(clips, excerpts, sides, how),
        examples_section({g: group[0] for g, group in first.items() if group}),
        mfcc_section({g: load_features(group, cache_dir) for g, group in first.items()}),
        clips_section([*clips, *excerpts]),
    ]
    return page(title, sections, intro)


def balance_section(clips: list[Clip], excerpts: list[Clip], sides: dict[str, str], how: str) -> Section:
    counts = Counter((c.genre, sides.get(c.track_id, "unlisted")) for c in clips)
    extra = Counter(c.genre for c in excerpts)
    genres = sorted({g for g, _ in counts})
    columns = [s for s in (*SIDES, "unlisted") if any(counts[g, s] for g in genres)]
    fig = Figure(figsize=(8, 3.2))
    ax = fig.subplots()
    bottom = np.zeros(len(genres))
    for side in columns:
        heights = np.array([counts[g, side] for g in genres])
        ax.bar([plain(g) for g in genres], heights, bottom=bottom, label=side)
        bottom += heights
    ax.set_ylabel("clips")
    ax.tick_params(axis="x", rotation=30)
    ax.legend(fontsize=8)
    rows = [(g, *(number(counts[g, s]) for s in columns), number(extra[g])) for g in genres]
    rows.append(("all", *(number(sum(counts[g, s] for g in genres)) for s in columns), number(sum(extra.values()))))
    return section("balance", "Class balance per split", paragraph(f"Splits: {how}."),
                   figure(fig, "clips per genre and split"),
                   table(["genre", *columns, "excerpts"], rows, numeric=tuple(range(1, len(columns) + 2))))


def examples_section(examples: dict[str, Clip]) -> Section:
    """Per genre one clip: waveform, mel spectrogram and the MFCC map of its segments, side by side."""
    import librosa

    params = features.FEATURES
    fig = Figure(figsize=(11, 1.6 * len(examples)))
    axes = fig.subplots(len(examples), 3, squeeze=False)
    for row, (genre, clip) in zip(axes, examples.items()):
        y = audio.load(clip.path, params.sr)
        t = np.arange(len(y)) / params.sr
        step = max(1, len(y) // 4000)  # a few thousand points draw the same picture
        row[0].plot(t[::step], y[::step], linewidth=0.4)
        row[0].set_ylabel(plain(genre), fontsize=9)
        mel = librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=params.sr, n_fft=params.n_fft,
                                                                 hop_length=params.hop_length), ref=np.max)
        row[1].imshow(mel, origin="lower", aspect="auto", cmap="magma")
        maps = features.extract(y, params)  # (segments, frames, n_mfcc): what the model is fed
        joined = np.concatenate(list(maps)).T if len(maps) else np.zeros((params.n_mfcc, 1))
        scaled = (joined - joined.mean(axis=1, keepdims=True)) / (joined.std(axis=1, keepdims=True) + 1e-6)
        row[2].imshow(scaled, origin="lower", aspect="auto", cmap="coolwarm", vmin=-3, vmax=3)
        for ax in row:
            ax.tick_params(labelsize=6)
    for ax, title in zip(axes[0], ("waveform (s)", "mel spectrogram (dB, frames)", "MFCC map (segments joined; z-score per coefficient)")):
        ax.set_title(title, fontsize=9)
    fig.subplots_adjust(left=0.06, right=0.99, top=1 - 0.25 / len(examples), bottom=0.03, hspace=0.45, wspace=0.15)
    names = ", ".join(f"{g} {c.track_id}" for g, c in examples.items())
    return section("examples", "An example per genre", figure(fig, "waveform, mel spectrogram and MFCC per genre"),
                   paragraph(f"Clips: {names}. MFCC parameters: {params.n_mfcc} coefficients, n_fft {params.n_fft}, "
                             f"hop {params.hop_length}, {params.segment_seconds:g}-s segments.", note=True))


def mfcc_section(loaded: dict[str, list]) -> Section:
    """Mean and standard deviation of each coefficient over every frame of the clips loaded per genre."""
    stats = {}
    for genre, tracks in loaded.items():
        if tracks:
            frames = np.concatenate([t.maps.reshape(-1, t.maps.shape[-1]) for t in tracks])
            stats[genre] = (len(tracks), frames.mean(axis=0), frames.std(axis=0))
    if not stats:
        return section("mfcc", "MFCC mean and spread per genre", paragraph("No clip could be read.", note=True))
    fig = Figure(figsize=(10, 3.4))
    first, rest = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 4]})
    names = list(stats)
    first.bar(range(len(names)), [m[0] for _, m, _ in stats.values()], yerr=[s[0] for _, _, s in stats.values()])
    first.set_xticks(range(len(names)), [plain(g) for g in names], rotation=60, fontsize=7)
    first.set_title("coefficient 0 (energy)", fontsize=9)
    k = np.arange(1, len(next(iter(stats.values()))[1]))
    for genre, (_, mean, std) in stats.items():
        line, = rest.plot(k, mean[1:], marker=".", label=plain(genre))
        rest.fill_between(k, mean[1:] - std[1:], mean[1:] + std[1:], color=line.get_color(), alpha=0.08)
    rest.set_xticks(k)
    rest.set_xlabel("coefficient")
    rest.set_title("coefficients 1-12: mean, band = one standard deviation", fontsize=9)
    rest.legend(fontsize=7, ncol=2)
    rows = [(g, n, *(f"{m:.1f} ± {s:.1f}" for m, s in zip(mean[:4], std[:4]))) for g, (n, mean, std) in stats.items()]
    return section("mfcc", "MFCC mean and spread per genre", figure(fig, "MFCC mean and spread per genre"),
                   table(["genre", "clips", "c0", "c1", "c2", "c3"], rows, numeric=(1, 2, 3, 4, 5)))


def clips_section(clips: list[Clip]) -> Section:
    """Lengths and sample rates as the file headers state them; unreadable files are listed."""
    lengths: dict[bool, list[float]] = {False: [], True: []}
    rates: Counter[tuple[int, str]] = Counter()
    unreadable = []
    for clip in clips:
        try:
            info = audio.probe(clip.path)
        except audio.AudioError as exc:
            unreadable.append((str(clip.path), exc.reason))
            continue
        lengths[clip.excerpt].append(info.duration)
        rates[info.samplerate, info.format] += 1
    fig = Figure(figsize=(8, 2.8))
    ax = fig.subplots()
    for excerpt, values in lengths.items():
        if values:
            ax.hist(values, bins=40, alpha=0.7, label="excerpts" if excerpt else "clips")
    ax.set_xlabel("seconds")
    ax.set_ylabel("files")
    ax.legend(fontsize=8)
    full = lengths[False]
    facts = (f"{len(full)} clips, {min(full):.2f}-{max(full):.2f} s (median {np.median(full):.2f} s)"
             if full else "no readable clip")
    parts = [paragraph(facts + (f"; {len(lengths[True])} excerpts." if lengths[True] else ".")),
             figure(fig, "clip lengths"),
             table(["sample rate (Hz)", "format", "files"], [(r, f, n) for (r, f), n in sorted(rates.items())],
                   numeric=(0, 2))]
    if unreadable:
        parts.append(table(["unreadable file", "reason"], unreadable))
    return section("clips", "Clip lengths and sample rates", *parts)
