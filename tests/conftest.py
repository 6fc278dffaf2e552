"""Shared fixtures: real face data from $FACELEDGER_DATA and one engine per session.

Tests never write to the user's files: cache, store and key file point into a temporary folder.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import platformdirs
import pytest

#: The user's cache, where `make test` downloads the pinned model packages (`faceledger models
#: download`) before the suite runs: tests read them from there and never download.
USER_CACHE = Path(os.environ.get("FACELEDGER_CACHE_DIR") or platformdirs.user_cache_dir("faceledger"))
_CACHE = tempfile.mkdtemp(prefix="faceledger-test-cache-")
os.environ["FACELEDGER_CACHE_DIR"] = _CACHE
os.environ["FACELEDGER_STORE"] = os.path.join(_CACHE, "store.sqlite")
os.environ["FACELEDGER_KEYS_FILE"] = os.path.join(_CACHE, "keys.json")
os.environ["FACELEDGER_LEDGER"] = os.path.join(_CACHE, "ledger.sqlite")
os.environ["FACELEDGER_LEDGER_KEY"] = os.path.join(_CACHE, "ledger-key.pem")
os.environ["FACELEDGER_MODELS_DIR"] = os.path.join(_CACHE, "models")
os.environ["FACELEDGER_PACKAGE_CACHE"] = str(USER_CACHE)  # the face mesh's package, read from there
os.environ["FACELEDGER_ALLOW_DOWNLOADS"] = "false"  # and never downloaded by a test
os.environ.pop("FACELEDGER_HOME", None)
os.environ.pop("FACELEDGER_MODEL", None)
os.environ.pop("FACELEDGER_POLICY", None)  # the default policy: the moratorium preset
os.environ.pop("FACELEDGER_LEDGER_DATABASE", None)  # the SQLite ledger unless a test starts PostgreSQL
os.environ.pop("FACELEDGER_CONFIG", None)

from faceledger import FaceEngine, Settings
from faceledger.evaluation.datasets import LFW, FairFace


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings.load()


@pytest.fixture(scope="session")
def lfw(settings: Settings) -> LFW:
    return LFW.locate(settings)  # DatasetError (a test error, not a skip) when the data is missing


@pytest.fixture(scope="session")
def fairface(settings: Settings) -> FairFace:
    return FairFace.locate(settings)


@pytest.fixture(scope="session")
def engine(settings: Settings) -> FaceEngine:
    return FaceEngine(settings)


@pytest.fixture(scope="session")
def pg_url():
    """A real PostgreSQL server for the session (tests/postgres.py), stopped afterwards."""
    from .postgres import postgres_server

    with postgres_server() as url:
        yield url


@pytest.fixture
def fresh_db(pg_url) -> str:
    """A new, empty database on the session's server."""
    import uuid

    import psycopg

    name = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(pg_url, autocommit=True) as db:
        db.execute(f"CREATE DATABASE {name}")
    return pg_url.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(scope="session")
def zoo_cache(settings: Settings) -> Path:
    """The test cache, holding the pinned zoo packages found in the user's cache (no download)."""
    from faceledger.models import zoo

    packages = settings.cache_dir / "packages"
    packages.mkdir(parents=True, exist_ok=True)
    for package in {m.package for m in zoo.ZOO.values()}:
        found = USER_CACHE / "packages" / package.file_name
        if not found.is_file():
            pytest.fail(f"{found} is missing: `make test` downloads it first (`faceledger models download`)")
        target = packages / package.file_name
        if not target.exists():
            target.symlink_to(found)
    return settings.cache_dir


@pytest.fixture(scope="session")
def fold1(lfw: LFW):
    return lfw.pairs()[0]


def encode(img, fmt: str = "PNG", **params) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **params)
    return buf.getvalue()


@pytest.fixture
def face_path(lfw: LFW) -> Path:
    return lfw.image("Aaron_Eckhart", 1)
