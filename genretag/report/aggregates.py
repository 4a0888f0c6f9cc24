"""The library report's figures: each a grouped SQL query, the same on SQLite and PostgreSQL.

Nothing here reads one row per track into Python: every query returns at most a few hundred
aggregate rows (model x genre x uncertain flag x tag with their confidence bins, top folders x genre,
top failure reasons, the last scans). The genre figures and the tag agreement
(:func:`genretag.db.queries.tag_agreement`, shared with ``stats``) come from one pass,
:func:`genretag.db.queries.done_tallies`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import ColumnElement, Select, and_, func, or_, select
from sqlalchemy.orm import Session

from genretag.db.models import Prediction, ScanRun, Track, TrackStatus
from genretag.db.queries import Tally, done_predictions, status_counts
from genretag.db.store import under_root

HISTOGRAM_EDGES = tuple(i / 20 for i in range(21))  # confidence bins of 0.05
LOW_CONFIDENCE = 0.5  # the low-confidence share counts predictions below this where no uncertain flag is set
NO_FOLDER = ""  # files directly in a scanned root


@dataclass
class GenreFigures:
    """One predicted genre over the done tracks: confidence histogram and the uncertain flags."""

    genre: str
    tracks: int = 0
    histogram: list[int] = field(default_factory=lambda: [0] * (len(HISTOGRAM_EDGES) - 1))
    assessed: int = 0  # predictions whose uncertain flag is set (True or False)
    uncertain: int = 0  # of those, flagged uncertain
    unassessed_low: int = 0  # not assessed, and confidence below LOW_CONFIDENCE


@dataclass(frozen=True)
class Summary:
    tracks: int
    by_status: dict[str, int]
    by_model: dict[str, int]  # done tracks per model version of their prediction
    roots: int
    last_scan: datetime | None


@dataclass(frozen=True)
class FolderTable:
    """Genres in the top-level folders of one scanned root (artist or album folders)."""

    root: str
    folders: int  # distinct top-level folders holding done tracks
    tracks: int
    top: list[tuple[str, int, dict[str, int]]]  # (folder, tracks, genre -> tracks), largest first


@dataclass(frozen=True)
class FailureReason:
    reason: str
    tracks: int
    examples: list[str]


@dataclass(frozen=True)
class ScanPoint:
    id: int
    root: str
    mode: str
    started_at: datetime
    finished_at: datetime | None
    found: int
    done: int
    failed: int


def summary(session: Session, by_model: dict[str, int]) -> Summary:
    by_status = status_counts(session)
    roots, last = session.execute(select(func.count(func.distinct(ScanRun.root)), func.max(ScanRun.started_at))).one()
    return Summary(sum(by_status.values()), by_status, by_model, roots, last)


def genre_figures(tallies: list[Tally]) -> tuple[list[GenreFigures], dict[str, int]]:
    """Per genre (most tracks first) its histogram and uncertain counts; and done tracks per model version.

    ``tallies``: :func:`done_tallies` with ``HISTOGRAM_EDGES`` (the pass the tag agreement shares).
    """
    genres: dict[str, GenreFigures] = {}
    by_model: dict[str, int] = {}
    low_bins = sum(edge < LOW_CONFIDENCE for edge in HISTOGRAM_EDGES[:-1])
    for t in tallies:
        g = genres.setdefault(t.genre, GenreFigures(t.genre))
        g.tracks += t.tracks
        g.histogram = [a + b for a, b in zip(g.histogram, t.histogram)]
        by_model[t.model_version] = by_model.get(t.model_version, 0) + t.tracks
        if t.uncertain is None:
            g.unassessed_low += sum(t.histogram[:low_bins])
        else:
            g.assessed += t.tracks
            g.uncertain += t.tracks if t.uncertain else 0
    return sorted(genres.values(), key=lambda g: (-g.tracks, g.genre)), by_model


def _find(session: Session, needle: str, haystack: ColumnElement[str]) -> ColumnElement[int]:
    """1-based position of ``needle`` in ``haystack``, 0 when absent (SQLite ``instr``, PostgreSQL ``strpos``)."""
    if session.get_bind().dialect.name == "postgresql":
        return func.strpos(haystack, needle)
    return func.instr(haystack, needle)


def top_folder(session: Session, root: str) -> ColumnElement[str]:
    """The first path component under ``root`` of ``tracks.path`` with its slash (``NO_FOLDER`` for files in the root).

    One ``substr`` up to the first slash, which is empty when there is none: per row, a third cheaper
    than a CASE that also cuts the slash off (0.56 s against 0.87 s for 882k paths on PostgreSQL).
    """
    start = len(root.rstrip("/")) + 2
    return func.substr(Track.path, start, _find(session, "/", func.substr(Track.path, start)))


def scanned_roots(session: Session) -> list[str]:
    """Roots of the scan runs, the most recently scanned first."""
    latest = func.max(ScanRun.started_at)
    return list(session.scalars(select(ScanRun.root).group_by(ScanRun.root).order_by(latest.desc(), ScanRun.root)))


def done_tracks(model_version: str | None) -> Select:
    """Done tracks that have a prediction (``model_version``'s, or a current one), joining only when it must."""
    if model_version is not None:
        return done_predictions(model_version)
    return select().select_from(Track).where(Track.status == TrackStatus.done.value,
                                             Track.current_prediction_id.is_not(None))


def folder_table(session: Session, root: str, model_version: str | None, top: int = 15) -> FolderTable:
    """Genres of the ``top`` top-level folders of ``root`` with the most done tracks.

    One pass groups the root's done tracks by folder (sizes, and by window functions the number of
    folders and tracks); a second reads only the largest folders' path ranges, by genre.
    """
    folder = top_folder(session, root).label("folder")
    size = func.count().label("size")
    largest = session.execute(
        done_tracks(model_version).add_columns(folder, size, func.count().over().label("folders"),
                                                    func.sum(func.count()).over().label("tracks"))
        .where(under_root(Track.path, root)).group_by(folder).order_by(size.desc(), folder).limit(top)
    ).all()
    if not largest:
        return FolderTable(root, 0, 0, [])
    base = root.rstrip("/")
    ranges = [under_root(Track.path, f"{base}/{row.folder}") if row.folder != NO_FOLDER
              else and_(under_root(Track.path, base), _find(session, "/", func.substr(Track.path, len(base) + 2)) == 0)
              for row in largest]
    mix: dict[str, dict[str, int]] = {row.folder: {} for row in largest}
    for name, genre, n in session.execute(
        done_predictions(model_version).add_columns(folder, Prediction.genre, func.count())
        .where(or_(*ranges)).group_by(folder, Prediction.genre)
    ):
        mix[name][genre] = n
    return FolderTable(root, largest[0].folders, int(largest[0].tracks),
                       [(row.folder.removesuffix("/"), row.size, mix[row.folder]) for row in largest])


def failure_reasons(session: Session, top: int = 10, examples: int = 3) -> list[FailureReason]:
    """The most common failure reasons, each with a few example paths."""
    n = func.count().label("n")
    failed = Track.status == TrackStatus.failed.value
    reasons = session.execute(
        select(Track.error, n).where(failed).group_by(Track.error).order_by(n.desc(), Track.error).limit(top)
    ).tuples().all()
    out = []
    for reason, count in reasons:
        same = Track.error.is_(None) if reason is None else Track.error == reason
        paths = session.scalars(select(Track.path).where(failed, same).order_by(Track.path).limit(examples)).all()
        out.append(FailureReason(reason or "(no reason recorded)", count, list(paths)))
    return out


def scan_history(session: Session, last: int = 30) -> list[ScanPoint]:
    """The last scan runs, oldest first."""
    runs = session.scalars(select(ScanRun).order_by(ScanRun.started_at.desc(), ScanRun.id.desc()).limit(last)).all()
    return [ScanPoint(r.id, r.root, r.mode, r.started_at, r.finished_at, r.found, r.done, r.failed)
            for r in reversed(runs)]
