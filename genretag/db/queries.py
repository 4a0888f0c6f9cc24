"""The read side of the library database: filtered track listings, library statistics, export rows.

Every statement is built with ``select()`` and bound parameters; user text (genres, paths, globs)
never becomes SQL. Rows stream with ``yield_per``, so listing or exporting a large library does
not hold it in memory.
"""

from __future__ import annotations

import fnmatch
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from itertools import islice
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, func, or_, select, true
from sqlalchemy.orm import Session, aliased

from genretag.db.models import Prediction, ScanRun, TagWrite, Track, TrackStatus
from genretag.genremap import GenreMap, first_value, label_key, load_map, tidy, values_of

STREAM_BATCH = 2000  # rows fetched per round trip when streaming (a few MB)
GLOB_CHARS = "*?["
LIKE_ESCAPE = "\\"
CONFIDENCE_EDGES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


# --- rows ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrackRow:
    """One track with the prediction a query selected for it (all prediction fields ``None`` without one)."""

    path: str
    status: str
    error: str | None
    size: int
    mtime: float
    duration: float | None
    format: str | None
    model_version: str | None
    genre: str | None
    confidence: float | None
    vote_share: float | None
    uncertain: bool | None
    runner_up: str | None
    mean_probability: float | None
    probabilities: dict[str, float] | None
    votes: dict[str, int] | None
    segments_used: int | None
    segment_mode: str | None
    predicted_at: datetime | None
    tag_genre: str | None  # the file's own genre tag, as it is
    tag_artist: str | None
    tag_album_artist: str | None
    tag_album: str | None
    tag_title: str | None

    def top(self, k: int = 3) -> list[tuple[str, float]]:
        """The ``k`` most probable genres with their mean probabilities (as ``TrackResult.top``)."""
        return sorted((self.probabilities or {}).items(), key=lambda kv: kv[1], reverse=True)[:k]

    def summary(self) -> dict[str, Any]:
        """What ``genretag query`` shows."""
        return {
            "path": self.path,
            "status": self.status,
            "genre": self.genre,
            "confidence": self.confidence,
            "uncertain": self.uncertain,
            "runner_up": self.runner_up,
            "vote_share": self.vote_share,
            "mean_probability": self.mean_probability,
            "top3": [{"genre": g, "probability": p} for g, p in self.top(3)],
            "model_version": self.model_version,
            "tag_genre": self.tag_genre,
            "error": self.error,
        }

    def full(self) -> dict[str, Any]:
        """Everything the store holds about the track (what ``genretag export`` writes)."""
        row = {f.name: getattr(self, f.name) for f in fields(self)}  # shallow: asdict deep-copies every dict
        row["predicted_at"] = self.predicted_at.isoformat() if self.predicted_at else None
        return row


SUMMARY_FIELDS = ("path", "status", "genre", "confidence", "uncertain", "runner_up", "vote_share", "mean_probability",
                  "top3", "model_version", "tag_genre", "error")
EXPORT_FIELDS = tuple(TrackRow.__dataclass_fields__)

_ROW_COLUMNS = (
    Track.path, Track.status, Track.error, Track.size, Track.mtime, Track.duration, Track.format,
    Prediction.model_version, Prediction.genre, Prediction.confidence, Prediction.vote_share, Prediction.uncertain,
    Prediction.runner_up, Prediction.mean_probability, Prediction.probabilities, Prediction.votes, Prediction.segments_used, Prediction.segment_mode,
    Prediction.created_at.label("predicted_at"),
    Track.tag_genre, Track.tag_artist, Track.tag_album_artist, Track.tag_album, Track.tag_title,
)


# --- paths: prefixes and globs -----------------------------------------------------------------


def is_glob(pattern: str) -> bool:
    return any(c in pattern for c in GLOB_CHARS)


def _successor(prefix: str) -> str | None:
    """The smallest string greater than every string that starts with ``prefix`` (``None``: no bound)."""
    chars = list(prefix.rstrip(chr(0x10FFFF)))
    if not chars:
        return None
    nxt = ord(chars[-1]) + 1
    if 0xD800 <= nxt <= 0xDFFF:  # surrogates are not valid text; skip to the next character
        nxt = 0xE000
    chars[-1] = chr(nxt)
    return "".join(chars)


def starts_with(column: ColumnElement[str], prefix: str) -> ColumnElement[bool]:
    """``column`` starts with ``prefix``, as an index range (paths compare byte-wise on both databases).

    A range, not ``LIKE``: it is case-sensitive on SQLite too, and ``%`` or ``_`` in a path are
    plain characters.
    """
    if not prefix:
        return true()
    upper = _successor(prefix)
    lower = column >= prefix
    return lower if upper is None else and_(lower, column < upper)


def glob_to_like(pattern: str) -> str:
    """A ``LIKE`` pattern (escape character ``\\``) matching at least what the glob matches.

    ``*`` becomes ``%``, ``?`` and each ``[...]`` class become ``_``; ``%``, ``_`` and ``\\`` in the
    glob are escaped. SQLite's ``LIKE`` ignores ASCII case, so callers check the exact glob after.
    """
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        i += 1
        if c == "*":
            out.append("%")
        elif c == "?":
            out.append("_")
        elif c == "[" and (end := _class_end(pattern, i)) is not None:
            out.append("_")
            i = end + 1
        elif c in "%_\\":
            out.append(LIKE_ESCAPE + c)
        else:
            out.append(c)
    return "".join(out)


def _class_end(pattern: str, start: int) -> int | None:
    """Index of the ``]`` closing a class opened just before ``start``, as :mod:`fnmatch` reads it."""
    j = start
    if j < len(pattern) and pattern[j] == "!":
        j += 1
    if j < len(pattern) and pattern[j] == "]":
        j += 1
    end = pattern.find("]", j)
    return None if end < 0 else end


def literal_prefix(pattern: str) -> str:
    """The part of a glob before its first wildcard."""
    cut = min((i for i in (pattern.find(c) for c in GLOB_CHARS) if i >= 0), default=len(pattern))
    return pattern[:cut]


def path_condition(column: ColumnElement[str], pattern: str) -> ColumnElement[bool]:
    """SQL narrowing for ``--path``: the exact prefix test, or for a glob its prefix range and ``LIKE``.

    For a glob the result is a superset; :func:`find_tracks` keeps the rows ``fnmatchcase`` accepts.
    """
    if not is_glob(pattern):
        return starts_with(column, pattern)
    return and_(starts_with(column, literal_prefix(pattern)), column.like(glob_to_like(pattern), escape=LIKE_ESCAPE))


# --- which prediction goes with a track --------------------------------------------------------


def _with_prediction(stmt: Select, model_version: str | None) -> Select:
    """Outer-join each track to its prediction by ``model_version``, or to its current one.

    The current prediction is the one ``store.record_prediction`` wrote last (``tracks.current_prediction_id``).
    """
    if model_version is not None:
        return stmt.outerjoin(
            Prediction, and_(Prediction.track_id == Track.id, Prediction.model_version == model_version)
        )
    return stmt.outerjoin(Prediction, Prediction.id == Track.current_prediction_id)


# --- listing -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrackFilter:
    """What ``genretag query`` asks for; ``None`` fields do not filter."""

    genre: str | None = None
    min_confidence: float | None = None
    max_confidence: float | None = None
    path: str | None = None  # a prefix, or a glob when it holds * ? [
    status: str | None = None
    model_version: str | None = None  # None: each track's latest prediction
    uncertain: bool | None = None  # True: only uncertain calls; False: only confident ones
    tag_genre: str | None = None  # the file's genre tag, compared ignoring case
    limit: int | None = None

    def __post_init__(self) -> None:
        if self.status is not None and self.status not in {s.value for s in TrackStatus}:
            raise ValueError(f"unknown status {self.status!r}; known: {', '.join(s.value for s in TrackStatus)}")


def track_query(flt: TrackFilter) -> Select:
    """The SELECT behind :func:`find_tracks` (without the glob's exact check or a glob's limit)."""
    stmt = _with_prediction(select(*_ROW_COLUMNS).select_from(Track), flt.model_version)
    if flt.genre is not None:
        stmt = stmt.where(Prediction.genre == flt.genre)
    if flt.min_confidence is not None:
        stmt = stmt.where(Prediction.confidence >= flt.min_confidence)
    if flt.max_confidence is not None:
        stmt = stmt.where(Prediction.confidence <= flt.max_confidence)
    if flt.uncertain is not None:
        stmt = stmt.where(Prediction.uncertain.is_(flt.uncertain))
    if flt.status is not None:
        stmt = stmt.where(Track.status == flt.status)
    if flt.tag_genre is not None:
        stmt = stmt.where(func.lower(Track.tag_genre) == flt.tag_genre.lower())
    if flt.path:
        stmt = stmt.where(path_condition(Track.path, flt.path))
    stmt = stmt.order_by(Track.path)
    if flt.limit is not None and not (flt.path and is_glob(flt.path)):
        stmt = stmt.limit(flt.limit)
    return stmt


def find_tracks(session: Session, flt: TrackFilter = TrackFilter()) -> Iterator[TrackRow]:
    """Tracks matching ``flt`` in path order, streamed; with no filter, the whole store (export)."""
    rows = session.execute(track_query(flt).execution_options(yield_per=STREAM_BATCH))
    found = (TrackRow(**row._mapping) for row in rows)
    if flt.path and is_glob(flt.path):
        found = (r for r in found if fnmatch.fnmatchcase(r.path, flt.path))
        if flt.limit is not None:
            found = islice(found, flt.limit)
    yield from found


# --- labels for training on the library's own tags (train --from-library) -----------------------


@dataclass(frozen=True)
class LabelRow:
    """A track to train on: its file, its label, and the group (artist, else album) a split keeps together."""

    path: str
    label: str
    group: str


@dataclass(frozen=True)
class LibraryLabels:
    rows: list[LabelRow]
    dropped: dict[str, int]  # label -> tracks, for labels below the minimum (or unmapped, under "(unmapped)")


def group_of(artist: str | None, album_artist: str | None, album: str | None, path: str) -> str:
    """The split group of a track: its artist, else album artist, else album, else the file alone."""
    for kind, value in (("artist", artist), ("artist", album_artist), ("album", album)):
        if value and value.strip():
            return f"{kind}:{label_key(value)}"
    return f"file:{path}"


def library_labels(
    session: Session, roots: Sequence[str] = (), min_tracks: int = 5, genre_map: GenreMap | None = None
) -> LibraryLabels:
    """Training rows from the tracks' genre tags under ``roots`` (none: all), present and not failed.

    Without ``genre_map``: the label is the tag's first value, grouped by case and spacing (shown in
    its most common spelling), kept when at least ``min_tracks`` tracks carry it. With one: the
    mapped genre; unmapped tags are dropped (and genres under ``min_tracks`` too). Streams the tagged tracks; holds one small row each.
    """
    stmt = select(Track.path, Track.tag_genre, Track.tag_artist, Track.tag_album_artist, Track.tag_album).where(
        Track.tag_genre.is_not(None), Track.status.in_([TrackStatus.done.value, TrackStatus.pending.value])
    )
    if roots:
        stmt = stmt.where(or_(*(starts_with(Track.path, r.rstrip("/") + "/") for r in roots)))
    candidates: list[tuple[str, str, str]] = []  # path, label key or genre, group
    spellings: dict[str, Counter[str]] = {}
    dropped: Counter[str] = Counter()
    for path, tag, artist, album_artist, album in session.execute(stmt.order_by(Track.path).execution_options(
            yield_per=STREAM_BATCH)):
        if genre_map is not None:
            label = genre_map.lookup(tag)
            if label is None:
                dropped["(unmapped)"] += 1
                continue
            key = label
        else:
            value = first_value(tag)
            if value is None:
                continue
            key = label_key(value)
        spellings.setdefault(key, Counter())[tidy(value) if genre_map is None else key] += 1
        candidates.append((path, key, group_of(artist, album_artist, album, path)))
    shown = {key: min(c.items(), key=lambda kv: (-kv[1], kv[0]))[0] for key, c in spellings.items()}
    kept = {key for key, c in spellings.items() if sum(c.values()) >= min_tracks}
    for key, c in spellings.items():
        if key not in kept:
            dropped[shown[key]] += sum(c.values())
    rows = [LabelRow(path, shown[key], group) for path, key, group in candidates if key in kept]
    return LibraryLabels(rows, dict(sorted(dropped.items())))


# --- the tag writer's work ------------------------------------------------------------------------


@dataclass(frozen=True)
class TagCandidate:
    """A classified track whose predicted genre ``genretag tag`` may write into its file."""

    track_id: int
    path: str
    genre: str
    confidence: float
    uncertain: bool | None
    model_version: str
    tag_genre: str | None


def tag_candidates(
    session: Session, root: str | None, after: str | None, limit: int, model_version: str | None = None
) -> list[TagCandidate]:
    """The next ``limit`` done tracks under ``root`` (``None``: all) after path ``after``, with a prediction.

    Keyset pages in path order, so a writer that commits between pages never holds a cursor open.
    """
    stmt = _with_prediction(
        select(Track.id, Track.path, Prediction.genre, Prediction.confidence, Prediction.uncertain,
               Prediction.model_version, Track.tag_genre).select_from(Track),
        model_version,
    ).where(Track.status == TrackStatus.done.value, Prediction.id.is_not(None))
    if root is not None:
        stmt = stmt.where(starts_with(Track.path, root.rstrip("/") + "/"))
    if after is not None:
        stmt = stmt.where(Track.path > after)
    rows = session.execute(stmt.order_by(Track.path).limit(limit))
    return [TagCandidate(*row) for row in rows]


@dataclass(frozen=True)
class LoggedWrite:
    """A genre ``genretag tag --write`` wrote and ``--undo`` has not restored yet."""

    id: int
    track_id: int
    path: str
    written: str
    previous: list[str] | None


def writes_to_undo(session: Session, root: str | None) -> list[LoggedWrite]:
    """Logged writes under ``root`` (``None``: all) not undone yet, newest first (undone in that order)."""
    stmt = select(TagWrite.id, TagWrite.track_id, TagWrite.path, TagWrite.written, TagWrite.previous).where(
        TagWrite.undone_at.is_(None)
    )
    if root is not None:
        stmt = stmt.where(starts_with(TagWrite.path, root.rstrip("/") + "/"))
    return [LoggedWrite(*row) for row in session.execute(stmt.order_by(TagWrite.id.desc()))]


# --- statistics --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bucket:
    low: float
    high: float
    count: int


@dataclass(frozen=True)
class LibraryStats:
    """A summary of the library. Genre and confidence figures count tracks whose status is done."""

    tracks: int
    by_status: dict[str, int]
    by_genre: dict[str, int]
    confidence: list[Bucket]
    uncertain: int  # done tracks whose call is uncertain
    assessed: int  # done tracks whose prediction says whether it is uncertain (not rows from before 0003)
    failures: list[tuple[str, int]]  # (reason, tracks), most common first
    scans: list[dict[str, Any]]  # the latest scan runs, newest first
    model_version: str | None  # None: each track's latest prediction
    agreement: Agreement | None = None  # prediction vs the files' own genre tags

    def to_dict(self) -> dict[str, Any]:
        return {
            "tracks": self.tracks,
            "model_version": self.model_version,
            "by_status": self.by_status,
            "by_genre": self.by_genre,
            "confidence": [asdict(b) for b in self.confidence],
            "uncertain": self.uncertain,
            "uncertain_share": round(self.uncertain / self.assessed, 4) if self.assessed else None,
            "failures": [{"reason": r, "tracks": n} for r, n in self.failures],
            "scans": self.scans,
            "tag_agreement": self.agreement.to_dict() if self.agreement else None,
        }


def done_predictions(model_version: str | None) -> Select:
    """Done tracks joined to their prediction (``model_version``'s, or the current one): the base of every aggregate."""
    return _with_prediction(select().select_from(Track), model_version).where(
        Track.status == TrackStatus.done.value, Prediction.id.is_not(None)
    )


@dataclass(frozen=True)
class Tally:
    """The done tracks sharing a prediction's model version, genre and uncertain flag, and a genre tag."""

    model_version: str
    genre: str
    uncertain: bool | None
    tag_genre: str | None
    tracks: int
    histogram: tuple[int, ...]  # tracks per confidence bin, ``edges[i] <= confidence < edges[i+1]`` (last closed)


def done_tallies(session: Session, model_version: str | None, edges: tuple[float, ...] = CONFIDENCE_EDGES) -> list[Tally]:
    """Every count ``stats`` and ``report`` make of the done tracks, from one pass over them and their predictions.

    Grouped by (model version, genre, uncertain, tag): a few hundred rows. The confidence bins are
    counts filtered by each inner edge ("below 0.2", "below 0.4", ...), not a grouping key: grouped
    by an expression of the confidence, PostgreSQL expects one group per distinct confidence (about
    one per track) and sorts the whole join on disk where hashing a few hundred groups does.
    """
    keys = (Prediction.model_version, Prediction.genre, Prediction.uncertain, Track.tag_genre)
    below = [func.count().filter(Prediction.confidence < edge) for edge in edges[1:-1]]
    rows = session.execute(done_predictions(model_version).add_columns(*keys, func.count(), *below).group_by(*keys))
    out = []
    for version, genre, uncertain, tag, tracks, *cumulative in rows:
        cuts = (0, *cumulative, tracks)
        out.append(Tally(version, genre, uncertain, tag, tracks, tuple(b - a for a, b in zip(cuts, cuts[1:]))))
    return out


def status_counts(session: Session) -> dict[str, int]:
    """Tracks per status (an index-only scan of ``ix_tracks_status_current``)."""
    return dict(session.execute(select(Track.status, func.count()).group_by(Track.status)).tuples().all())


def library_stats(
    session: Session, model_version: str | None = None, top_failures: int = 10, last_scans: int = 5,
    genre_map: GenreMap | None = None, labels: Sequence[str] = (),
) -> LibraryStats:
    by_status = status_counts(session)
    tallies = done_tallies(session, model_version)  # genres, confidence, uncertain and tags in one pass
    by_genre: Counter[str] = Counter()
    per_bucket = [0] * (len(CONFIDENCE_EDGES) - 1)
    uncertain = assessed = 0
    for t in tallies:
        by_genre[t.genre] += t.tracks
        per_bucket = [a + b for a, b in zip(per_bucket, t.histogram)]
        uncertain += t.tracks if t.uncertain else 0
        assessed += t.tracks if t.uncertain is not None else 0
    buckets = [Bucket(low, high, n) for low, high, n in zip(CONFIDENCE_EDGES, CONFIDENCE_EDGES[1:], per_bucket)]
    tracks = func.count().label("tracks")
    failures = session.execute(
        select(Track.error, tracks)
        .where(Track.status == TrackStatus.failed.value)
        .group_by(Track.error)
        .order_by(tracks.desc(), Track.error)
        .limit(top_failures)
    ).tuples().all()
    scans = session.scalars(select(ScanRun).order_by(ScanRun.started_at.desc(), ScanRun.id.desc()).limit(last_scans))
    return LibraryStats(
        tracks=sum(by_status.values()),
        by_status=by_status,
        by_genre=dict(sorted(by_genre.items(), key=lambda kv: (-kv[1], kv[0]))),
        confidence=buckets,
        uncertain=uncertain,
        assessed=assessed,
        failures=[(reason or "(no reason recorded)", n) for reason, n in failures],
        scans=[scan_dict(run) for run in scans],
        model_version=model_version,
        agreement=tag_agreement(tallies, genre_map, labels),
    )


# --- agreement with the files' own genre tags --------------------------------------------------


@dataclass(frozen=True)
class Agreement:
    """How often predictions agree with the files' mapped genre tags, over done tracks with a mapped tag.

    Predictions flagged uncertain are counted apart (``uncertain_*``), not in the main figures.
    ``confusion[tag_genre][predicted]`` counts the confident tracks.
    """

    tracks: int
    agree: int
    per_genre: dict[str, dict[str, Any]]  # mapped tag genre -> tracks, agree, rate
    confusion: dict[str, dict[str, int]]
    uncertain_tracks: int
    uncertain_agree: int
    unmapped: int  # done tracks whose genre tag maps to none of the labels
    unmapped_spellings: list[tuple[str, int]]  # the most common unmapped tag texts, (tag, tracks)

    @property
    def rate(self) -> float | None:
        return self.agree / self.tracks if self.tracks else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "tracks": self.tracks, "agree": self.agree, "rate": self.rate, "per_genre": self.per_genre,
            "confusion": self.confusion,
            "uncertain": {"tracks": self.uncertain_tracks, "agree": self.uncertain_agree},
            "unmapped_tags": self.unmapped, "unmapped_spellings": self.unmapped_spellings,
        }


def tag_target(tag: str, labels: dict[str, str], genre_map: GenreMap) -> str | None:
    """The label a genre tag stands for: a model label it spells (case and spacing aside), else its mapped genre.

    ``labels`` maps :func:`label_key` of each label predicted to the label, so a model trained on
    a library's own taxonomy ("Smooth") is measured against the tags it learnt from.
    """
    for value in (tag, *values_of(tag)):
        if label_key(value) in labels:
            return labels[label_key(value)]
    genre = genre_map.lookup(tag)
    if genre is None:
        return None
    return labels.get(label_key(genre), genre)


def tag_agreement(
    tallies: Sequence[Tally], genre_map: GenreMap | None = None, labels: Sequence[str] = (), top_unmapped: int = 15,
) -> Agreement:
    """:class:`Agreement` of the done tracks' :func:`done_tallies`: a few rows per tag spelling, mapped here.

    Tags are mapped after the aggregate (:func:`tag_target`), so the mapping table stays in Python
    and the library in SQL. A tag spelling a label counts as that label: the labels predicted, and
    ``labels`` (the model's own, so a label no track was given still matches its tags). The
    ``top_unmapped`` commonest unmapped tag texts are kept: they show what the mapping table misses.
    """
    genre_map = genre_map or load_map()
    groups = [(t.tag_genre, t.genre, t.uncertain, t.tracks) for t in tallies if t.tag_genre is not None]
    known = {label_key(label): label for label in labels}
    known.update({label_key(genre): genre for _, genre, _, _ in groups})
    tracks = agree = uncertain_tracks = uncertain_agree = unmapped = 0
    per_genre: dict[str, dict[str, Any]] = {}
    confusion: dict[str, dict[str, int]] = {}
    unmapped_spellings: Counter[str] = Counter()
    for tag, predicted, uncertain, count in groups:
        target = tag_target(tag, known, genre_map)
        if target is None:
            unmapped += count
            unmapped_spellings[tag] += count
            continue
        hit = predicted == target
        if uncertain:
            uncertain_tracks += count
            uncertain_agree += count * hit
            continue
        tracks += count
        agree += count * hit
        row = per_genre.setdefault(target, {"tracks": 0, "agree": 0})
        row["tracks"] += count
        row["agree"] += count * hit
        cells = confusion.setdefault(target, {})
        cells[predicted] = cells.get(predicted, 0) + count
    for row in per_genre.values():
        row["rate"] = row["agree"] / row["tracks"]
    order = sorted(per_genre)
    return Agreement(
        tracks=tracks, agree=agree, per_genre={g: per_genre[g] for g in order},
        confusion={g: dict(sorted(confusion[g].items())) for g in order},
        uncertain_tracks=uncertain_tracks, uncertain_agree=uncertain_agree, unmapped=unmapped,
        unmapped_spellings=sorted(unmapped_spellings.items(), key=lambda kv: (-kv[1], kv[0]))[:top_unmapped],
    )


SCAN_FIELDS = (
    "id", "root", "model_version", "mode", "started_at", "finished_at",
    "found", "new", "changed", "unchanged", "missing", "queued", "done", "failed",
)


def scan_dict(run: ScanRun) -> dict[str, Any]:
    row = {name: getattr(run, name) for name in SCAN_FIELDS}
    for name in ("started_at", "finished_at"):
        row[name] = row[name].isoformat() if row[name] else None
    return row
