"""Wiring: the default engine, store and service from one Settings object."""

from __future__ import annotations

import functools

from faceledger.governance.gate import Gate
from faceledger.vision.engine import FaceEngine
from faceledger.errors import InvalidParameterError
from faceledger.governance.ledger import HeadLog, Ledger
from faceledger.governance.ledger_pg import open_ledger
from faceledger.governance.policy import Policy
from faceledger.governance.probes import ProbeStore
from faceledger.service.operations import FaceService
from faceledger.settings import Settings
from faceledger.store import SQLiteStore


def open_gate(settings: Settings | None = None, service: FaceService | None = None) -> Gate:
    """The service behind its policy and ledger: what every interface calls."""
    s = settings or Settings.load()
    ledger = ledger_of(s)
    if s.database:
        from faceledger.governance.policy_store import PolicyStore

        source = PolicyStore(shared_database(s), s.policy).current
        gate = Gate(service or open_service(s), source(), ledger, source)
    else:
        gate = Gate(service or open_service(s), Policy.load(s.policy), ledger)
    gate.probes = ProbeStore(s.console_state / "probes", s.probe_retention_seconds)
    return gate


def ledger_of(s: Settings, *, create: bool = True) -> Ledger:
    """The ledger the settings name (ledger_database, else the shared database, else SQLite),
    publishing its tips into the heads directory. The service holds no signing key: heads are
    signed by `faceledger ledger sign-heads` with a key the service never reads.
    ``create``: False for readers that must never create a missing ledger (verify, the signer)."""
    return open_ledger(s.ledger, s.ledger_database or shared_database(s) or "", HeadLog(s.heads_dir), create=create,
                       busy_ms=s.ledger_busy_ms)


def shared_database(s: Settings):
    """The PostgreSQL database replicas share (pg.Database), or None: state stays in local files.
    One per URL in a process: the ledger, keys, policy and catalog share its connections."""
    return _database(s.database) if s.database else None


@functools.lru_cache(maxsize=None)
def _database(url: str):
    from faceledger.pg import Database

    return Database(url)


def open_store(s: Settings):
    """The store the settings name: the embedded SQLite one, or Milvus (its catalog in the
    shared database when there is one)."""
    if s.store_backend == "sqlite":
        return SQLiteStore(s.store, region=s.region)
    if s.store_backend == "milvus":
        import json

        from faceledger.store.milvus import MilvusStore

        params = {}
        for name in ("milvus_index_params", "milvus_search_params"):
            try:
                params[name] = json.loads(getattr(s, name))
            except ValueError:
                params[name] = None
            if not isinstance(params[name], dict):
                raise InvalidParameterError(f"{name} must be a JSON object") from None
        uri = s.milvus_uri or str(s.store.with_suffix(".milvus.db"))
        return MilvusStore(uri, region=s.region, index_type=s.milvus_index, index_params=params["milvus_index_params"],
                           search_params=params["milvus_search_params"], catalog_database=shared_database(s))
    raise InvalidParameterError(f"store_backend must be sqlite or milvus, not {s.store_backend!r}")


def open_service(settings: Settings | None = None, *, engine: FaceEngine | None = None) -> FaceService:
    s = settings or Settings.load()
    from faceledger.service.video_jobs import VideoService  # FaceService with the stored-video jobs

    return VideoService(engine or FaceEngine(s), open_store(s), normalisation=s.score_normalisation, settings=s)
