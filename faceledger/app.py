"""Wiring: the default engine, store and service from one Settings object."""

from __future__ import annotations

from .accountable import Gate
from .engine import FaceEngine
from .ledger import Signer
from .ledger_pg import open_ledger
from .policy import Policy
from .service import FaceService
from .settings import Settings
from .store import SQLiteStore


def open_gate(settings: Settings | None = None, service: FaceService | None = None) -> Gate:
    """The service behind its policy and ledger: what every interface calls."""
    s = settings or Settings.load()
    signer = Signer.load(s.ledger_key) if s.ledger_key.is_file() else None
    return Gate(service or open_service(s), Policy.load(s.policy), open_ledger(s.ledger, s.ledger_database, signer))


def open_service(settings: Settings | None = None, *, engine: FaceEngine | None = None) -> FaceService:
    s = settings or Settings.load()
    return FaceService(engine or FaceEngine(s), SQLiteStore(s.store, region=s.region))
