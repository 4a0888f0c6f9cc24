"""The library database: models, engines and sessions, and the store functions every writer uses."""

from genretag.db.engine import get_engine, session_factory, session_scope
from genretag.db.models import Base, Prediction, ScanRun, Track, TrackStatus

__all__ = ["Base", "Prediction", "ScanRun", "Track", "TrackStatus", "get_engine", "session_factory", "session_scope"]
