"""``genretag report``: the library's figures (from :mod:`genretag.report.aggregates`) as one HTML page."""

from __future__ import annotations

import math
from typing import Any

from matplotlib.figure import Figure
from sqlalchemy.orm import Session

from genretag.db.queries import Agreement, done_tallies, tag_agreement
from genretag.genremap import GenreMap
from genretag.report import aggregates as agg
from genretag.report.html import Html, Section, esc, figure, number, page, paragraph, plain, section, share, table

SECTIONS = ("summary", "genres", "confidence", "uncertain", "folders", "tags", "failures", "scans", "model")


def build(session: Session, meta: dict[str, Any] | None, model_version: str | None = None, top_folders: int = 15,
          genre_map: GenreMap | None = None) -> str:
    """The report page for the library in ``session``; ``meta`` is the model bundle's metadata (or None).

    ``genre_map`` maps the files' genre tags to labels, as ``genretag stats`` does (default: the built-in table).
    """
    labels = (meta or {}).get("labels", [])
    tallies = done_tallies(session, model_version, agg.HISTOGRAM_EDGES)  # genres and tags in one pass
    genres, by_model = agg.genre_figures(tallies)
    colours = _colours([*labels, *(g.genre for g in genres)])
    which = f"predictions of model {model_version}" if model_version else "each track's current prediction"
    sections = [
        summary_section(agg.summary(session, by_model)),
        genres_section(genres, colours),
        confidence_section(genres, colours),
        uncertain_section(genres),
        folders_section([agg.folder_table(session, root, model_version, top_folders)
                         for root in agg.scanned_roots(session)], colours),
        tags_section(tag_agreement(tallies, genre_map, labels)),
        failures_section(agg.failure_reasons(session)),
        scans_section(agg.scan_history(session)),
        model_section(meta),
    ]
    return page("genretag library report", sections, f"Genres are {which}.")


def _colours(labels: list[str]) -> dict[str, Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10"] if len(set(labels)) <= 10 else colormaps["tab20"]
    ordered = list(dict.fromkeys(labels))
    return {g: cmap(i % cmap.N) for i, g in enumerate(ordered)}


def summary_section(s: agg.Summary) -> Section:
    rows = [("tracks", s.tracks), *((f"  {status}", n) for status, n in sorted(s.by_status.items())),
            ("scanned roots", s.roots), ("last scan started", s.last_scan.strftime("%Y-%m-%d %H:%M") if s.last_scan else None)]
    models = table(["model version", "done tracks"], sorted(s.by_model.items()), numeric=(1,)) if s.by_model else Html()
    return section("summary", "Summary", table(["", "count"], [(k, number(v) if isinstance(v, int) else v)
                                                               for k, v in rows], numeric=(1,)), models)


def genres_section(genres: list[agg.GenreFigures], colours: dict[str, Any]) -> Section:
    total = sum(g.tracks for g in genres)
    if not total:
        return section("genres", "Genre distribution", paragraph("No track has been classified yet.", note=True))
    fig = Figure(figsize=(8, 3.2))
    ax = fig.subplots()
    ax.bar([plain(g.genre) for g in genres], [g.tracks for g in genres], color=[colours[g.genre] for g in genres])
    ax.set_ylabel("done tracks")
    ax.tick_params(axis="x", rotation=30)
    rows = [(g.genre, number(g.tracks), share(g.tracks, total)) for g in genres]
    return section("genres", "Genre distribution", figure(fig, "tracks per predicted genre"),
                   table(["genre", "tracks", "share"], rows, numeric=(1, 2)))


def confidence_section(genres: list[agg.GenreFigures], colours: dict[str, Any]) -> Section:
    if not genres:
        return section("confidence", "Confidence per genre", paragraph("No predictions yet.", note=True))
    cols = min(5, len(genres))
    rows = math.ceil(len(genres) / cols)
    fig = Figure(figsize=(2.2 * cols, 1.9 * rows))
    axes = fig.subplots(rows, cols, squeeze=False, sharex=True)
    edges = agg.HISTOGRAM_EDGES
    for ax, g in zip(axes.flat, genres):
        ax.stairs(g.histogram, edges, fill=True, color=colours[g.genre])  # one artist, not one per bin: fast
        ax.set_title(plain(f"{g.genre} ({g.tracks:,})"), fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(genres):]:
        ax.set_visible(False)
    fig.supxlabel("confidence of the predicted genre", fontsize=9)
    fig.subplots_adjust(left=0.06, right=0.99, bottom=0.16 / rows + 0.04, top=0.93, wspace=0.3, hspace=0.5)
    return section("confidence", "Confidence per genre", figure(fig, "confidence histogram per genre"),
                   paragraph("Bins of 0.05; the count of done tracks in each.", note=True))


def uncertain_section(genres: list[agg.GenreFigures]) -> Section:
    assessed = sum(g.assessed for g in genres)
    total = sum(g.tracks for g in genres)
    low = f"confidence below {agg.LOW_CONFIDENCE}"
    if assessed == total:
        how = "Share of predictions flagged uncertain (predictions.uncertain, set when the track was classified)."
    elif assessed == 0:
        how = (f"No prediction carries the uncertain flag (they were written before it existed): shown instead is "
               f"the low-confidence share, {low}.")
    else:
        how = (f"{assessed:,} of {total:,} predictions carry the uncertain flag; for the others the low-confidence "
               f"share ({low}) stands in.")
    rows = [(g.genre, number(g.tracks), share(g.uncertain, g.assessed) if g.assessed else "-",
             share(g.unassessed_low, g.tracks - g.assessed) if g.tracks > g.assessed else "-") for g in genres]
    rows.append(("all", number(total), share(sum(g.uncertain for g in genres), assessed) if assessed else "-",
                 share(sum(g.unassessed_low for g in genres), total - assessed) if total > assessed else "-"))
    return section("uncertain", "Uncertain share", paragraph(how),
                   table(["genre", "tracks", "uncertain (flagged)", f"low confidence (not flagged, {low})"], rows,
                         numeric=(1, 2, 3)))


def folders_section(tables: list[agg.FolderTable], colours: dict[str, Any]) -> Section:
    parts: list[Html] = []
    for t in tables:
        if not t.tracks:
            continue
        parts.append(paragraph(esc("Root "), Html(f"<code>{esc(t.root)}</code>"),
                               f": {t.tracks:,} done tracks in {t.folders:,} top-level folders; the {len(t.top)} largest:"))
        order = sorted({g for _, _, mix in t.top for g in mix}, key=lambda g: list(colours).index(g))
        names = [f or "(files in the root)" for f, _, _ in t.top]
        fig = Figure(figsize=(8, 0.35 * len(t.top) + 1))
        ax = fig.subplots()
        left = [0] * len(t.top)
        for genre in order:
            widths = [mix.get(genre, 0) / n for _, n, mix in t.top]
            ax.barh([plain(n) for n in names], widths, left=left, color=colours[genre], label=plain(genre))
            left = [a + b for a, b in zip(left, widths)]
        ax.invert_yaxis()
        ax.set_xlabel("share of the folder's done tracks")
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
        parts.append(figure(fig, f"genres by top-level folder of {t.root}"))
        rows = []
        for name, (_, n, mix) in zip(names, t.top):
            genre, count = max(mix.items(), key=lambda kv: (kv[1], kv[0]))
            rest = ", ".join(f"{g} {c}" for g, c in sorted(mix.items(), key=lambda kv: -kv[1]))
            rows.append((name, number(n), genre, share(count, n), rest))
        parts.append(table(["folder", "tracks", "top genre", "its share", "all genres"], rows, numeric=(1, 3)))
    if not parts:
        parts.append(paragraph("No scanned root holds done tracks yet.", note=True))
    return section("folders", "Genres by top-level folder", *parts)


def tags_section(a: Agreement) -> Section:
    title = "Agreement with the files' own tags"
    if not (a.tracks or a.uncertain_tracks or a.unmapped):
        return section("tags", title, paragraph("No done track carries a genre tag of its own.", note=True))
    parts: list[Html] = []
    if a.tracks:
        parts.append(paragraph(
            f"{a.tracks:,} done tracks carry a genre tag that maps to a label and were predicted with confidence; "
            f"the prediction matches the tag's label for {a.agree:,} ({a.agree / a.tracks:.1%}). A tag counts as "
            "a label of the model when it spells one (case and spacing aside), else as the genre the mapping table "
            "(docs/tags.md, GENRETAG_TAG_MAP) gives it."))
        parts.append(table(["tag's genre", "tagged tracks", "prediction agrees"],
                           [(g, number(r["tracks"]), share(r["agree"], r["tracks"])) for g, r in a.per_genre.items()],
                           numeric=(1, 2)))
        pairs = sorted(((n, tag, predicted) for tag, row in a.confusion.items() for predicted, n in row.items()
                        if predicted != tag), key=lambda d: (-d[0], d[1], d[2]))
        if pairs:
            parts.append(paragraph("Most common disagreements:"))
            parts.append(table(["tag's genre", "predicted", "tracks"], [(t, p, number(n)) for n, t, p in pairs],
                               numeric=(2,)))
    if a.uncertain_tracks:
        parts.append(paragraph(f"Counted apart: {a.uncertain_tracks:,} tagged tracks whose prediction is flagged "
                               f"uncertain; of those it matches the tag for {a.uncertain_agree:,} "
                               f"({share(a.uncertain_agree, a.uncertain_tracks)})."))
    if a.unmapped:
        parts.append(paragraph(f"{a.unmapped:,} done tracks carry a genre tag that maps to no label; the commonest:"))
        parts.append(table(["file's tag", "tracks"], [(tag, number(n)) for tag, n in a.unmapped_spellings],
                           numeric=(1,)))
    return section("tags", title, *parts)


def failures_section(reasons: list[agg.FailureReason]) -> Section:
    if not reasons:
        return section("failures", "Failures by reason", paragraph("No track failed.", note=True))
    rows = [(r.reason, number(r.tracks), Html("<br>".join(esc(p) for p in r.examples))) for r in reasons]
    return section("failures", "Failures by reason", table(["reason", "tracks", "examples"], rows, numeric=(1,)))


def scans_section(runs: list[agg.ScanPoint]) -> Section:
    if not runs:
        return section("scans", "Scan history", paragraph("No scan has run.", note=True))
    fig = Figure(figsize=(8, 3))
    ax = fig.subplots()
    x = list(range(len(runs)))
    for name, colour in (("found", "#888"), ("done", "#2a7"), ("failed", "#c33")):
        ax.plot(x, [getattr(r, name) for r in runs], marker="o", label=name, color=colour)
    ax.set_xticks(x, [r.started_at.strftime("%m-%d %H:%M") for r in runs], rotation=45, ha="right", fontsize=7)
    ax.set_ylabel("files")
    ax.legend(fontsize=8)
    rows = [(r.id, r.root, r.mode, r.started_at.strftime("%Y-%m-%d %H:%M:%S"),
             r.finished_at.strftime("%Y-%m-%d %H:%M:%S") if r.finished_at else "running",
             number(r.found), number(r.done), number(r.failed)) for r in reversed(runs)]
    return section("scans", "Scan history", figure(fig, "found, done and failed files per scan run"),
                   table(["run", "root", "mode", "started", "finished", "found", "done", "failed"], rows,
                         numeric=(5, 6, 7)))


def model_section(meta: dict[str, Any] | None) -> Section:
    """The model card: what the bundle's metadata says about the model and how it was measured."""
    if meta is None:
        return section("model", "Model card", paragraph("No model bundle could be read.", note=True))
    training = meta.get("training") or {}
    data = training.get("data") or {}
    features = meta.get("features") or {}
    parts = [table(["", ""], [
        ("version", meta.get("version")), ("architecture", meta.get("architecture")),
        ("labels", ", ".join(meta.get("labels", []))),
        ("features", ", ".join(f"{k} {v}" for k, v in sorted(features.items()))),
        ("calibration", _inline(meta.get("calibration"))),
        ("training data", f"{data.get('layout', '-')} layout; split: {data.get('split', '-')}"),
        ("training settings", _inline(training.get("settings"))),
        ("epochs", f"{training.get('epochs_run', '-')} (best {training.get('best_epoch', '-')})"),
    ])]
    clips = data.get("clips_per_genre") or {}
    if clips:
        excerpts = data.get("excerpts_per_genre") or {}
        parts.append(table(["genre", "clips", "excerpts"], [(g, n, excerpts.get(g, 0)) for g, n in clips.items()],
                           numeric=(1, 2)))
    metrics = meta.get("metrics") or {}
    cv, test = metrics.get("cv"), metrics.get("test") or (metrics if "confusion" in metrics else None)
    if cv:
        parts.append(paragraph(f"Cross-validation ({cv.get('folds', '?')} folds; {cv.get('split', '')}):"))
        parts.append(table(["figure", "mean", "std"], [
            (k, number(v["mean"]), number(v["std"])) for k, v in cv.items()
            if isinstance(v, dict) and {"mean", "std"} <= set(v)], numeric=(1, 2)))
    if test:
        parts.append(paragraph(f"Held-out {test.get('split', 'test')} split ({test.get('tracks', '?')} tracks):"))
        parts.append(table(["figure", "value"], [(k, number(v)) for k, v in test.items()
                                                 if isinstance(v, float)], numeric=(1,)))
        if test.get("confusion"):
            parts.append(figure(_confusion(test["confusion"], test.get("labels") or meta.get("labels", [])),
                                "confusion matrix on the held-out split"))
    if not (cv or test):
        parts.append(paragraph("This bundle records no cross-validation or test figures (meta.json \"metrics\" "
                               "holds none).", note=True))
    return section("model", "Model card", *parts)


def _inline(value: Any) -> str | None:
    if isinstance(value, dict):
        return ", ".join(f"{k} {v}" for k, v in value.items()) or None
    return value


def _confusion(matrix: list[list[int]], labels: list[str]) -> Figure:
    fig = Figure(figsize=(5.5, 4.8))
    ax = fig.subplots()
    image = ax.imshow(matrix, cmap="Blues")
    ticks = range(len(labels))
    ax.set_xticks(ticks, [plain(label) for label in labels], rotation=45, ha="right", fontsize=8)
    ax.set_yticks(ticks, [plain(label) for label in labels], fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    peak = max((max(row) for row in matrix), default=0)
    for i, row in enumerate(matrix):
        for j, n in enumerate(row):
            if n:
                ax.text(j, i, n, ha="center", va="center", fontsize=7, color="white" if n > peak / 2 else "black")
    fig.colorbar(image, ax=ax, shrink=0.8)
    return fig
