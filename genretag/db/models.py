"""The library database: tracks found on disk, their genre predictions, and scan runs.

One ``tracks`` row per file path. ``predictions`` holds one row per (track, model version), so a
re-tag by the same model overwrites and a new model adds a row beside the old one.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# Paths compare byte-wise on both databases, so "everything under /music/" is an index range scan
# (see ``store.under_root``) whatever the PostgreSQL database's default collation is.
PathText = Text().with_variant(Text(collation="C"), "postgresql")
JSONDoc = JSON().with_variant(JSONB(), "postgresql")


def utcnow() -> datetime:
    return datetime.now(UTC)


class TrackStatus(str, enum.Enum):
    pending = "pending"  # to be classified (new, changed, or tagged by an older model)
    done = "done"  # has a prediction from the model that last classified it
    failed = "failed"  # could not be classified; ``error`` says why
    missing = "missing"  # was under a scanned root, is no longer there


class Base(DeclarativeBase):
    pass


class Track(Base):
    __tablename__ = "tracks"

    id: Mapped[int] = mapped_column(primary_key=True)
    path: Mapped[str] = mapped_column(PathText, unique=True)
    size: Mapped[int] = mapped_column(BigInteger)
    mtime: Mapped[float] = mapped_column(Float)
    content_hash: Mapped[str | None] = mapped_column(String(64))
    duration: Mapped[float | None] = mapped_column(Float)
    format: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default=TrackStatus.pending.value)
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_seen_scan_id: Mapped[int | None] = mapped_column(Integer)  # the scan that last found the file
    queued_scan_id: Mapped[int | None] = mapped_column(Integer)  # the scan that last queued it
    # The file's own tags as read (mutagen), verbatim; None where absent or unreadable.
    tag_genre: Mapped[str | None] = mapped_column(Text)
    tag_artist: Mapped[str | None] = mapped_column(Text)
    tag_album_artist: Mapped[str | None] = mapped_column(Text)
    tag_album: Mapped[str | None] = mapped_column(Text)
    tag_title: Mapped[str | None] = mapped_column(Text)
    # The prediction written last (store.record_prediction), so aggregates join one prediction per track.
    # No foreign key (see migration 0004): predictions are deleted only with their track.
    current_prediction_id: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)

    predictions: Mapped[list[Prediction]] = relationship(
        back_populates="track", cascade="all, delete-orphan", passive_deletes=True
    )

    __table_args__ = (
        Index("ix_tracks_queued", "queued_scan_id", "status"),
        Index("ix_tracks_tag_genre", "tag_genre"),
        Index("ix_tracks_status_current", "status", "current_prediction_id"),  # also serves status alone
    )

    def __repr__(self) -> str:
        return f"Track({self.path!r}, {self.status})"


class Prediction(Base):
    __tablename__ = "predictions"

    id: Mapped[int] = mapped_column(primary_key=True)
    track_id: Mapped[int] = mapped_column(ForeignKey("tracks.id", ondelete="CASCADE"))
    model_version: Mapped[str] = mapped_column(String(128))
    genre: Mapped[str] = mapped_column(String(128))  # a label of the model: any taxonomy, not only GTZAN's
    confidence: Mapped[float] = mapped_column(Float)  # calibrated probability of ``genre`` (vote share before 0003)
    vote_share: Mapped[float | None] = mapped_column(Float)  # fraction of segments won by ``genre``
    uncertain: Mapped[bool | None] = mapped_column(Boolean)  # below min_confidence; None: not assessed
    runner_up: Mapped[str | None] = mapped_column(String(128))  # second most probable genre (a label, as genre)
    mean_probability: Mapped[float] = mapped_column(Float)  # mean segment probability of ``genre``
    probabilities: Mapped[dict[str, Any]] = mapped_column(JSONDoc)  # genre -> mean probability
    votes: Mapped[dict[str, Any]] = mapped_column(JSONDoc)  # genre -> segments won
    segments_used: Mapped[int] = mapped_column(Integer)
    segment_mode: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    track: Mapped[Track] = relationship(back_populates="predictions")

    __table_args__ = (
        UniqueConstraint("track_id", "model_version", name="uq_predictions_track_model"),
        Index("ix_predictions_genre_confidence", "genre", "confidence"),
        Index("ix_predictions_confidence", "confidence"),
        Index("ix_predictions_model_version", "model_version"),
        Index("ix_predictions_uncertain", "uncertain"),
        # What the aggregates read of the current prediction: they merge-join it with ix_tracks_status_current,
        # both index-only, instead of reading the wide rows (probabilities, votes).
        Index("ix_predictions_current", "id", "genre", "confidence", "uncertain", "model_version"),
    )

    def __repr__(self) -> str:
        return f"Prediction(track={self.track_id}, {self.genre} {self.confidence:.2f}, {self.model_version})"


class TagWrite(Base):
    """A genre ``genretag tag --write`` put into a file, with the raw values it replaced (for ``--undo``)."""

    __tablename__ = "tag_writes"

    id: Mapped[int] = mapped_column(primary_key=True)
    track_id: Mapped[int] = mapped_column(ForeignKey("tracks.id", ondelete="CASCADE"))
    path: Mapped[str] = mapped_column(PathText)
    written: Mapped[str] = mapped_column(Text)  # the genre written
    previous: Mapped[list[str] | None] = mapped_column(JSONDoc)  # stored values before; None: no genre tag
    model_version: Mapped[str | None] = mapped_column(String(128))
    written_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    undone_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # restored by --undo

    __table_args__ = (Index("ix_tag_writes_track", "track_id"), Index("ix_tag_writes_path", "path"))


class ScanRun(Base):
    __tablename__ = "scan_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    root: Mapped[str] = mapped_column(PathText)
    model_version: Mapped[str | None] = mapped_column(String(128))
    mode: Mapped[str] = mapped_column(String(16))  # "local" or "celery"
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    found: Mapped[int] = mapped_column(Integer, default=0)
    new: Mapped[int] = mapped_column(Integer, default=0)
    changed: Mapped[int] = mapped_column(Integer, default=0)
    unchanged: Mapped[int] = mapped_column(Integer, default=0)
    missing: Mapped[int] = mapped_column(Integer, default=0)
    queued: Mapped[int] = mapped_column(Integer, default=0)
    done: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)

    __table_args__ = (Index("ix_scan_runs_root_started", "root", "started_at"),)

    def __repr__(self) -> str:
        return f"ScanRun({self.id}, {self.root!r}, queued={self.queued})"
