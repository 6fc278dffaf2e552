"""Wiring: the default engine, store and service from one Settings object."""

from __future__ import annotations

from .engine import FaceEngine
from .service import FaceService
from .settings import Settings
from .store import SQLiteStore


def open_service(settings: Settings | None = None, *, engine: FaceEngine | None = None) -> FaceService:
    s = settings or Settings.load()
    return FaceService(engine or FaceEngine(s), SQLiteStore(s.store, region=s.region))
