"""A polite, cost-aware, resumable client for auditing a Rekognition-compatible endpoint.

An audit of someone else's service spends their capacity and, on Amazon's, the auditor's money.
So every call is planned and priced before the first one is made, runs under a concurrency and a
rate limit, is retried with backoff when the endpoint throttles, fails with a 5xx or drops the
connection (botocore's ``standard`` retry mode first, then rounds of our own with jittered
exponential backoff, since the SDK's retry quota runs dry on a flaky endpoint), and its answer is
written to a journal (SQLite, one committed row per call) before it counts as done: an audit that is
interrupted, even by SIGKILL, resumes without repeating any call whose answer was received.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from faceledger.errors import EndpointError, InvalidParameterError

#: US dollars per call, Amazon Rekognition Image, group 1 APIs (CompareFaces, IndexFaces,
#: SearchFacesByImage), first 1 million images a month in us-east-1 (aws.amazon.com/rekognition/pricing,
#: 2024). Collection management is not charged per call. Override with a JSON file of the same shape.
DEFAULT_PRICES = {"CompareFaces": 0.001, "IndexFaces": 0.001, "SearchFacesByImage": 0.001, "SearchFaces": 0.001,
                  "DetectFaces": 0.001, "CreateCollection": 0.0, "DeleteCollection": 0.0}
#: Face metadata storage, per face per month (charged while the audit's collection exists).
FACE_STORAGE_PER_MONTH = 0.00001
#: Rekognition's limit on Image.Bytes.
MAX_IMAGE_BYTES = 5 * 1024 * 1024
#: Error codes worth retrying: the endpoint is busy or failed, not the request wrong.
RETRYABLE_CODES = {"ThrottlingException", "ProvisionedThroughputExceededException", "LimitExceededException",
                   "ServiceUnavailableException", "InternalServerError", "RequestTimeoutException",
                   "SlowDown", "RequestLimitExceeded", "TooManyRequestsException", "Throttling"}


def is_amazon(endpoint_url: str | None) -> bool:
    """Amazon's own endpoint: the SDK's default (no URL) or an amazonaws.com host."""
    if endpoint_url is None:
        return True
    host = endpoint_url.split("//", 1)[-1].split("/", 1)[0].rsplit("@", 1)[-1].split(":", 1)[0].lower()
    return host.endswith((".amazonaws.com", ".amazonaws.com.cn"))


def read_prices(path: Path | None) -> dict[str, float]:
    if path is None:
        return dict(DEFAULT_PRICES)
    try:
        table = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise InvalidParameterError(f"{path}: not a readable JSON price table ({exc})") from None
    if not isinstance(table, dict) or not all(isinstance(v, (int, float)) and v >= 0 for v in table.values()):
        raise InvalidParameterError(f"{path}: a price table maps operation names to non-negative prices per call")
    return {**DEFAULT_PRICES, **{str(k): float(v) for k, v in table.items()}}


@dataclass
class Plan:
    """What an audit will send before it sends anything: calls per operation, images, and what is
    already in the journal (not sent again)."""

    protocol: str
    endpoint: str
    images: int
    calls: dict[str, int]
    done: dict[str, int] = field(default_factory=dict)
    prices: dict[str, float] | None = None  # only for Amazon's endpoint
    stored_faces: int = 0

    @property
    def to_send(self) -> dict[str, int]:
        return {op: n - self.done.get(op, 0) for op, n in self.calls.items()}

    @property
    def cost(self) -> float | None:
        """Estimated US dollars for the calls still to send (None: not Amazon's endpoint)."""
        if self.prices is None:
            return None
        per_call = sum(n * self.prices.get(op, 0.0) for op, n in self.to_send.items())
        return per_call + self.stored_faces * FACE_STORAGE_PER_MONTH

    def text(self) -> str:
        lines = [f"Plan: {self.protocol} audit of {self.endpoint}", f"  images: {self.images:,}"]
        for op, n in self.calls.items():
            done = self.done.get(op, 0)
            lines.append(f"  {op}: {n:,} calls" + (f" ({done:,} already in the journal, {n - done:,} to send)" if done else ""))
        if self.cost is not None:
            shown = f"{self.cost:,.2f}" if self.cost >= 1 else f"{self.cost:.4f}"
            lines.append(f"  estimated charge: US${shown} (price table: "
                         + ", ".join(f"{op} {self.prices.get(op, 0):g}" for op in self.calls) + " per call)")
        else:
            lines.append("  estimated charge: none known (not Amazon's endpoint)")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"protocol": self.protocol, "endpoint": self.endpoint, "images": self.images, "calls": self.calls,
                "already_done": self.done, "to_send": self.to_send, "estimated_cost_usd": self.cost}


class Journal:
    """Every answered call, by a key naming what was asked (operation, parameters, image digests).

    One row is committed per answer, so a process killed at any moment loses at most the calls in
    flight; the next run reads the answers back instead of calling again."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS calls (key TEXT PRIMARY KEY, operation TEXT NOT NULL, "
                         "response TEXT NOT NULL, attempts INTEGER NOT NULL, at REAL NOT NULL)")

    def bind(self, endpoint: str) -> None:
        """The journal holds one endpoint's answers: a journal of another endpoint is refused, not
        read back as if this one had answered."""
        with self._lock:
            self._db.execute("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)")
            row = self._db.execute("SELECT value FROM meta WHERE name = 'endpoint'").fetchone()
            if row is None:
                self._db.execute("INSERT INTO meta VALUES ('endpoint', ?)", (endpoint,))
            elif row[0] != endpoint:
                raise InvalidParameterError(f"{self.path} is the journal of an audit of {row[0]}, not {endpoint}: "
                                            "give this audit another --out or --journal")

    def get(self, key: str) -> dict | None:
        with self._lock:
            row = self._db.execute("SELECT response FROM calls WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def keys(self) -> set[str]:
        with self._lock:
            return {k for (k,) in self._db.execute("SELECT key FROM calls")}

    def put(self, key: str, operation: str, response: dict, attempts: int) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO calls VALUES (?, ?, ?, ?, ?)",
                             (key, operation, json.dumps(response, default=str), attempts, time.time()))

    def forget(self, prefix: str) -> int:
        with self._lock:
            return self._db.execute("DELETE FROM calls WHERE key LIKE ?", (prefix.replace("%", "") + "%",)).rowcount

    def close(self) -> None:
        with self._lock:
            self._db.close()


class RateLimit:
    """At most ``per_second`` calls started per second, spaced evenly, across threads."""

    def __init__(self, per_second: float | None) -> None:
        if per_second is not None and per_second <= 0:
            raise InvalidParameterError("the rate limit is a positive number of calls per second")
        self.interval = 0.0 if not per_second else 1.0 / per_second
        self._next = time.monotonic()
        self._lock = threading.Lock()

    def wait(self) -> None:
        if not self.interval:
            return
        with self._lock:
            now = time.monotonic()
            at = max(now, self._next)
            self._next = at + self.interval
        if at > now:
            time.sleep(at - now)


def fit_image(data: bytes, max_bytes: int = MAX_IMAGE_BYTES) -> bytes:
    """The image as sent: unchanged when within the endpoint's byte limit (so scores match a local
    run on the same file), else re-encoded as JPEG, scaled down until it fits."""
    if len(data) <= max_bytes:
        return data
    from PIL import Image

    img = Image.open(io.BytesIO(data)).convert("RGB")
    scale = 1.0
    while True:
        scale *= 0.8
        out = io.BytesIO()
        img.resize((max(1, int(img.width * scale)), max(1, int(img.height * scale)))).save(out, "JPEG", quality=90)
        if out.tell() <= max_bytes:
            return out.getvalue()


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:32]


class Endpoint:
    """One Rekognition client (boto3, SigV4 with the user's usual credentials and region unless
    given), shared by worker threads; ``headers`` are added to every request before it is signed
    (faceledger reads the purpose and case reference of a call from X-Faceledger-* headers)."""

    def __init__(self, journal: Journal, *, endpoint_url: str | None = None, region: str | None = None,
                 headers: dict[str, str] | None = None, concurrency: int = 4, rate: float | None = None,
                 attempts: int = 4, rounds: int = 6, backoff: float = 0.5, max_backoff: float = 20.0,
                 read_timeout: float = 60.0, access_key: str | None = None, secret_key: str | None = None) -> None:
        import boto3
        from botocore.config import Config
        from botocore.exceptions import NoRegionError

        if concurrency < 1:
            raise InvalidParameterError("concurrency is at least 1")
        self.journal, self.endpoint_url = journal, endpoint_url
        self.rate = RateLimit(rate)
        self.rounds, self.backoff, self.max_backoff = max(1, rounds), backoff, max_backoff
        self.sent = 0  # calls answered by the endpoint in this run
        self._lock = threading.Lock()
        config = Config(retries={"mode": "standard", "max_attempts": attempts}, max_pool_connections=concurrency,
                        read_timeout=read_timeout, connect_timeout=10)
        try:
            self.client = boto3.session.Session().client(
                "rekognition", endpoint_url=endpoint_url, region_name=region, config=config,
                aws_access_key_id=access_key, aws_secret_access_key=secret_key)
        except NoRegionError:
            raise InvalidParameterError("no AWS region: pass --region or configure one (AWS_REGION, ~/.aws/config)") from None
        if headers:
            def add_headers(request, **_):
                for k, v in headers.items():
                    request.headers[k] = v
            self.client.meta.events.register("before-sign.rekognition", add_headers)

    def call(self, key: str, operation: str, *, permanent: Callable[[str], bool] = lambda code: False, **params) -> dict:
        """The endpoint's answer to ``operation(**params)``, from the journal when it was received
        before. A refusal the caller calls ``permanent`` (such as "no face in the image") is an
        answer too: journalled as ``{"Error": {...}}`` and returned, not raised."""
        found = self.journal.get(key)
        if found is not None:
            return found
        from botocore.exceptions import BotoCoreError, ClientError, ConnectionError as BotoConnectionError
        from botocore.exceptions import HTTPClientError

        method = getattr(self.client, _snake(operation))
        last = ""
        for attempt in range(self.rounds):
            self.rate.wait()
            try:
                response = method(**params)
            except ClientError as exc:
                error = exc.response.get("Error", {})
                code = str(error.get("Code", ""))
                status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
                if permanent(code):
                    answer = {"Error": {"Code": code, "Message": error.get("Message", "")}}
                    self.journal.put(key, operation, answer, attempt + 1)
                    return answer
                if code not in RETRYABLE_CODES and status < 500:
                    raise EndpointError(f"{operation} refused by the endpoint: {code}: {error.get('Message', '')}") from None
                last = f"{code or status}: {error.get('Message', '')}"
            except (BotoConnectionError, HTTPClientError) as exc:  # refused, dropped, closed early, timed out
                last = f"connection: {exc}"
            except BotoCoreError as exc:  # credentials, parameters: retrying cannot help
                raise EndpointError(f"{operation} could not be sent: {exc}") from None
            else:
                meta = response.pop("ResponseMetadata", {})
                response["_request"] = {"RequestId": meta.get("RequestId"), "RetryAttempts": meta.get("RetryAttempts", 0),
                                        "Rounds": attempt + 1}
                self.journal.put(key, operation, response, attempt + 1)
                with self._lock:
                    self.sent += 1
                return response
            time.sleep(min(self.max_backoff, self.backoff * 2**attempt) * random.uniform(0.5, 1.0))
        raise EndpointError(f"{operation} kept failing after {self.rounds} rounds of retries (last: {last}); "
                            "run the audit again later: every answer received so far is kept in its journal")


def _snake(operation: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in operation).lstrip("_")
