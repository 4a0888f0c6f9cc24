"""The read side of the library database: filtered track listings, library statistics, export rows.

Every statement is built with ``select()`` and bound parameters; user text (genres, paths, globs)
never becomes SQL. Rows stream with ``yield_per``, so listing or exporting a large library does
not hold it in memory.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from itertools import islice
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, case, func, select, true
from sqlalchemy.orm import Session, aliased

from genretag.db.models import Prediction, ScanRun, Track, TrackStatus

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
            "error": self.error,
        }

    def full(self) -> dict[str, Any]:
        """Everything the store holds about the track (what ``genretag export`` writes)."""
        row = {f.name: getattr(self, f.name) for f in fields(self)}  # shallow: asdict deep-copies every dict
        row["predicted_at"] = self.predicted_at.isoformat() if self.predicted_at else None
        return row


SUMMARY_FIELDS = ("path", "status", "genre", "confidence", "uncertain", "runner_up", "vote_share", "mean_probability",
                  "top3", "model_version", "error")
EXPORT_FIELDS = tuple(TrackRow.__dataclass_fields__)

_ROW_COLUMNS = (
    Track.path, Track.status, Track.error, Track.size, Track.mtime, Track.duration, Track.format,
    Prediction.model_version, Prediction.genre, Prediction.confidence, Prediction.vote_share, Prediction.uncertain,
    Prediction.runner_up, Prediction.mean_probability,
    Prediction.probabilities, Prediction.votes, Prediction.segments_used, Prediction.segment_mode,
    Prediction.created_at.label("predicted_at"),
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
    """Outer-join each track to its prediction by ``model_version``, or to its latest one."""
    if model_version is not None:
        return stmt.outerjoin(
            Prediction, and_(Prediction.track_id == Track.id, Prediction.model_version == model_version)
        )
    newer = aliased(Prediction)
    latest_id = (
        select(newer.id)
        .where(newer.track_id == Track.id)
        .order_by(newer.created_at.desc(), newer.id.desc())
        .limit(1)
        .correlate(Track)
        .scalar_subquery()
    )
    return stmt.outerjoin(Prediction, Prediction.id == latest_id)


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
        }


def confidence_bucket(column: ColumnElement[float], edges: tuple[float, ...] = CONFIDENCE_EDGES):
    """Bucket index of ``column``: ``i`` for ``edges[i] <= value < edges[i+1]``, the last one closed."""
    inner = edges[1:-1]
    return case(*((column < edge, i) for i, edge in enumerate(inner)), else_=len(inner))


def library_stats(
    session: Session, model_version: str | None = None, top_failures: int = 10, last_scans: int = 5
) -> LibraryStats:
    by_status = dict(session.execute(select(Track.status, func.count()).group_by(Track.status)).tuples().all())
    done = _with_prediction(select(Track.id).select_from(Track), model_version).where(
        Track.status == TrackStatus.done.value, Prediction.id.is_not(None)
    )
    tagged = done.add_columns(
        Prediction.genre.label("genre"), confidence_bucket(Prediction.confidence).label("bucket"),
        Prediction.uncertain.label("uncertain"),
    ).subquery()
    uncertain, assessed = session.execute(
        select(func.count().filter(tagged.c.uncertain.is_(True)), func.count(tagged.c.uncertain))
    ).one()
    by_genre = dict(
        session.execute(
            select(tagged.c.genre, func.count()).group_by(tagged.c.genre).order_by(func.count().desc(), tagged.c.genre)
        ).tuples().all()
    )
    per_bucket = dict(session.execute(select(tagged.c.bucket, func.count()).group_by(tagged.c.bucket)).tuples().all())
    buckets = [
        Bucket(low, high, per_bucket.get(i, 0))
        for i, (low, high) in enumerate(zip(CONFIDENCE_EDGES, CONFIDENCE_EDGES[1:]))
    ]
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
        by_genre=by_genre,
        confidence=buckets,
        uncertain=uncertain,
        assessed=assessed,
        failures=[(reason or "(no reason recorded)", n) for reason, n in failures],
        scans=[scan_dict(run) for run in scans],
        model_version=model_version,
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
