"""Verifying AWS Signature Version 4 on incoming requests.

The server rebuilds the canonical request from what it received (method, path, query, the
headers the client says it signed, the body's SHA-256), derives the signing key from the key's
secret and the credential scope, and compares signatures in constant time. Written from the
SigV4 specification; botocore's signer is what the tests check it against.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable, Mapping, Sequence
from urllib.parse import quote

from faceledger.errors import InvalidSignatureError, MissingAuthenticationTokenError, UnrecognizedClientError

MAX_SKEW_SECONDS = 300
_AUTH = re.compile(
    r"AWS4-HMAC-SHA256\s+Credential=(?P<credential>[^,\s]+),\s*SignedHeaders=(?P<signed>[^,\s]+),\s*Signature=(?P<signature>[0-9a-f]{64})"
)


#: Headers the signature must cover whenever the request carries them: they choose what the
#: request does (the operation, how the body is read, the purpose and case it is made for).
#: Covering only ``host`` let a captured DescribeCollection be replayed as DeleteCollection.
#: botocore (and so boto3 and the AWS CLI) signs every header but user-agent, expect,
#: transfer-encoding and x-amzn-trace-id, so unchanged SDK clients pass; the rule is by prefix,
#: so a header added after signing (X-Faceledger-Purpose) is refused rather than ignored.
ALWAYS_SIGNED = ("host", "x-amz-date")
SIGNED_IF_PRESENT = ("content-type",)
SIGNED_PREFIXES = ("x-amz-", "x-faceledger-")


@dataclass(frozen=True)
class Caller:
    access_key_id: str


@dataclass(frozen=True)
class Signed:
    """A request's signature parts, checked in everything but the body (see :func:`precheck`)."""

    key_id: str
    secret: str
    date: str
    amz_date: str
    region: str
    service: str
    signed: tuple[str, ...]
    signature: str


def unsigned_headers(headers: Mapping[str, Sequence[str]], signed: Sequence[str]) -> list[str]:
    """Headers the request carries (or must carry) that its signature does not cover."""
    covered = set(signed)
    must = set(ALWAYS_SIGNED) | {h for h in headers if h in SIGNED_IF_PRESENT or h.startswith(SIGNED_PREFIXES)}
    return sorted(must - covered)


def precheck(
    *,
    headers: Mapping[str, Sequence[str]],
    secret_for: Callable[[str], str | None],
    region: str,
    service: str = "rekognition",
    now: datetime | None = None,
) -> Signed:
    """Everything that can be checked before the body is read: the Authorization header's form,
    a known key, the scope, a fresh date and the signed-header set. Unsigned or badly signed
    requests are refused here, so an anonymous client never makes the server read its body."""
    auth = _one(headers, "authorization")
    if not auth:
        raise MissingAuthenticationTokenError("the request is not signed: sign it with AWS Signature Version 4")
    m = _AUTH.fullmatch(auth.strip())
    if not m:
        raise InvalidSignatureError("the Authorization header is not an AWS4-HMAC-SHA256 signature")
    try:
        key_id, date, scope_region, scope_service, terminator = m["credential"].split("/")
    except ValueError:
        raise InvalidSignatureError(f"malformed credential {m['credential']!r}") from None
    secret = secret_for(key_id)
    if secret is None:
        raise UnrecognizedClientError("The security token included in the request is invalid (unknown or revoked access key)")
    if scope_service != service:
        raise InvalidSignatureError(f"Credential should be scoped to correct service: '{service}'")
    if scope_region != region:
        raise InvalidSignatureError(f"Credential should be scoped to a valid region, not '{scope_region}' (this server is '{region}')")
    if terminator != "aws4_request":
        raise InvalidSignatureError("Credential should end with 'aws4_request'")
    amz_date = _one(headers, "x-amz-date")
    if not amz_date:
        raise InvalidSignatureError("the request has no X-Amz-Date header")
    try:
        when = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
    except ValueError:
        raise InvalidSignatureError(f"X-Amz-Date {amz_date!r} is not of the form YYYYMMDDTHHMMSSZ") from None
    if not amz_date.startswith(date):
        raise InvalidSignatureError("the credential's date does not match X-Amz-Date")
    now = now or datetime.now(timezone.utc)
    if abs((now - when).total_seconds()) > MAX_SKEW_SECONDS:
        raise InvalidSignatureError(
            f"Signature expired: {amz_date} is more than {MAX_SKEW_SECONDS // 60} minutes from the server's time "
            f"{now.strftime('%Y%m%dT%H%M%SZ')}; check the client's clock"
        )
    signed = m["signed"].split(";")
    missing = unsigned_headers(headers, signed)
    if missing:
        raise InvalidSignatureError(
            f"the signature does not cover {', '.join(missing)}: sign host, x-amz-date, content-type and every "
            "x-amz-* and x-faceledger-* header the request carries (SigV4 signers such as botocore do so when the "
            "headers are added before signing, e.g. in a before-sign event handler)"
        )
    return Signed(key_id, secret, date, amz_date, scope_region, scope_service, tuple(signed), m["signature"])


def verify(
    *,
    method: str,
    path: str,
    query: str,
    headers: Mapping[str, Sequence[str]],
    body: bytes,
    secret_for: Callable[[str], str | None],
    region: str,
    service: str = "rekognition",
    now: datetime | None = None,
    checked: Signed | None = None,
) -> Caller:
    """Check the request's signature; return who signed it. ``headers``: lower-case name -> values;
    ``checked``: the request's :func:`precheck`, when it was run before the body was read."""
    p = checked or precheck(headers=headers, secret_for=secret_for, region=region, service=service, now=now)
    signed = list(p.signed)
    payload_hash = hashlib.sha256(body).hexdigest()
    declared = _one(headers, "x-amz-content-sha256")
    if declared and declared != payload_hash:
        raise InvalidSignatureError("X-Amz-Content-SHA256 does not match the body")
    canonical = "\n".join([
        method.upper(),
        quote(path or "/", safe="/~"),
        _canonical_query(query),
        "".join(f"{h}:{','.join(' '.join(v.split()) for v in headers.get(h, []))}\n" for h in signed),
        ";".join(signed),
        payload_hash,
    ])
    scope = f"{p.date}/{p.region}/{p.service}/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", p.amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = f"AWS4{p.secret}".encode()
    for part in (p.date, p.region, p.service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, p.signature):
        raise InvalidSignatureError(
            "The request signature we calculated does not match the signature you provided. "
            "Check your AWS Secret Access Key and signing method."
        )
    return Caller(p.key_id)


def _one(headers: Mapping[str, Sequence[str]], name: str) -> str | None:
    values = headers.get(name)
    return values[0] if values else None


def _canonical_query(query: str) -> str:
    if not query:
        return ""
    pairs = sorted(tuple(p.partition("=")[::2]) for p in query.split("&"))
    return "&".join(f"{k}={v}" for k, v in pairs)
