"""What the review console shows and does, decided here and not in its pages.

Every page and every action is one operation the policy decides (a role lists it, as for the API),
run through the gate and so written to the ledger, with who looked at what: a reviewer opening a
search's faces is recorded as much as a decision on them. The console's pages only render what
these methods return. Operations (docs/console.md):

- reviewer: ReviewQueue (the queue), ReviewCandidates (one search's probe and candidates), Review
  (the gate's own decision, with separation of duties);
- auditor: ReadLedger, VerifyLedger, ReadAudits, ReadPolicy;
- operator: ListCollections, ListKeys, CreateKey, RevokeKey, ReadHealth.
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from faceledger.errors import AccessDeniedError, InvalidParameterError, ResourceNotFoundError
from faceledger.governance.gate import Gate, ReviewResult
from faceledger.governance.ledger import Entry, HeadLog, public_key_hex, verify_ledger
from faceledger.governance.ledger_index import FILTERS, LedgerIndex
from faceledger.governance.policy import IDENTIFICATION, Context, Policy
from faceledger.governance.sessions import SessionStore
from faceledger.service.scope import DEFAULT_ACCOUNT

#: Each section of the console and the operation the policy must allow to open it.
SECTIONS = {"queue": "ReviewQueue", "ledger": "ReadLedger", "audits": "ReadAudits", "policy": "ReadPolicy",
            "collections": "ListCollections", "keys": "ListKeys", "health": "ReadHealth"}
PAGE_SIZE = 50
_REPORT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,200}")
_REPORT_KINDS = (".html", ".md", ".json")


@dataclass(frozen=True)
class QueueItem:
    seq: int
    time: str
    principal: str
    purpose: str | None
    case_reference: str | None
    collection: str | None
    candidates: int
    undecided: int
    best_similarity: float | None


@dataclass(frozen=True)
class QueuePage:
    items: list[QueueItem]
    next_before: int | None
    open_total: int


@dataclass(frozen=True)
class Candidate:
    id: str
    kind: str  # face or user
    similarity: float
    false_match_rate: float | None
    expected_false_candidates: float | None
    external_image_id: str | None = None
    image: str | None = None  # a data: URL when the collection stores images
    decisions: list = field(default_factory=list)


@dataclass(frozen=True)
class ReviewItem:
    seq: int
    body: dict
    candidates: list[Candidate]
    probe: str | None  # a data: URL of the kept probe; None: not kept, reviewed or expired
    probe_matches_ledger: bool | None
    probe_note: str
    may_decide: bool
    refusal: str
    gallery: dict  # the search's Identification (gallery size, threshold, expected false candidates)


@dataclass(frozen=True)
class LedgerRow:
    seq: int
    time: str
    operation: str
    principal: str | None
    purpose: str | None
    case_reference: str | None
    outcome: str | None
    detail: str


@dataclass(frozen=True)
class LedgerPage:
    rows: list[LedgerRow]
    next_before: int | None
    end: int
    verification: dict | None  # the last recorded VerifyLedger result, with its entry


@dataclass(frozen=True)
class CreatedKey:
    access_key_id: str
    secret: str  # shown once, never written to the ledger (summarize keeps the id only)
    principal: str
    roles: tuple


class Console:
    def __init__(self, gate: Gate, keys, settings) -> None:
        self.gate = gate
        self.keys = keys
        self.settings = settings
        state = settings.console_state
        self.index = LedgerIndex(state / "index.sqlite", gate.ledger)
        self.sessions = SessionStore(state / "sessions.sqlite", keys, settings.console_session_seconds,
                                     max_seconds=settings.console_session_max_seconds)
        self.reports_dir = Path(settings.reports_dir or state / "reports")

    # --- who may open what ---------------------------------------------------------------------------

    def sections(self, ctx: Context) -> list[str]:
        """The sections this principal's roles open, for the navigation (each page checks again)."""
        return [name for name, op in SECTIONS.items() if self.gate.policy.decide(ctx, op).allowed]

    def _account_entry(self, ctx: Context, seq: int) -> Entry:
        """An entry of the caller's account (the default account's auditors also read entries of no account)."""
        entry = self.gate.ledger.get(seq)
        account = entry.body.get("account")
        if account != ctx.acting_account and not (account is None and ctx.acting_account == DEFAULT_ACCOUNT):
            raise ResourceNotFoundError(f"no ledger entry {seq}")
        return entry

    # --- sessions ---------------------------------------------------------------------------------------

    def signed_in(self, ctx: Context, key_id: str) -> None:
        """A session began: who, with which key, when (a ledger entry, as every page view)."""
        self.gate.event(ctx, "ConsoleSignIn", {"access_key_id": key_id})

    def signed_out(self, ctx: Context, key_id: str) -> None:
        self.gate.event(ctx, "ConsoleSignOut", {"access_key_id": key_id})

    # --- reviewer --------------------------------------------------------------------------------------

    def queue(self, ctx: Context, *, case: str | None = None, purpose: str | None = None,
              before: int | None = None) -> QueuePage:
        def run(**_) -> QueuePage:
            self.index.catch_up()
            page = self.index.queue(ctx.acting_account, case_ref=case or None, purpose=purpose or None, before=before,
                                    limit=PAGE_SIZE)
            items = []
            for seq in page.seqs:
                b = self.gate.ledger.get(seq).body
                cands = b.get("result", {}).get("candidates", [])
                decided = self.index.decided(seq)
                items.append(QueueItem(seq, b.get("time", ""), b.get("principal") or "", b.get("purpose"),
                                       b.get("case_reference"), b.get("collection"), len(cands),
                                       len({c.get("id") for c in cands} - decided),
                                       max((c.get("similarity", 0) for c in cands), default=None)))
            return QueuePage(items, page.next_before, self.index.open_count(ctx.acting_account))

        return self.gate.call(ctx, "ReviewQueue", run, record={"filters": {"case": case, "purpose": purpose}})

    def item(self, ctx: Context, seq: int) -> ReviewItem:
        """One search: its probe (if still kept) and each candidate side by side, with what the
        ledger says of them and the decisions already made."""
        target = self.gate.ledger.get(seq)

        def run(**_) -> ReviewItem:
            b = self._account_entry(ctx, seq).body
            if b.get("operation") not in IDENTIFICATION or b.get("outcome") != "ok" or b.get("phase") != "outcome":
                raise InvalidParameterError(f"ledger entry {seq} is not a served identification: nothing to review")
            reviews = self.gate.reviews_of(seq)
            collection = b.get("collection")
            kind = "user" if b["operation"].startswith("SearchUsers") else "face"
            raw = b.get("result", {}).get("candidates", [])
            stored, store_images = self._stored(collection, [c["id"] for c in raw] if kind == "face" else [])
            candidates = []
            for c in raw:
                face = stored.get(c["id"])
                image = None
                if face is not None and store_images:
                    data = self.gate.service.collections.stored_image(collection, face.image_id)
                    image = _data_url(data) if data else None
                candidates.append(Candidate(
                    c["id"], kind, c.get("similarity", 0.0), c.get("false_match_rate"), c.get("expected_false_candidates"),
                    face.external_image_id if face else None, image,
                    [r for r in reviews if not r.get("face_ids") or c["id"] in r["face_ids"]]))
            probe = self.gate.probes.get(seq) if self.gate.probes is not None else None
            matches = None if probe is None else hashlib.sha256(probe).hexdigest() in b.get("image_sha256", [])
            if probe is not None:
                note = "kept for review; deleted when every candidate has a decision"
            elif not b.get("image_sha256"):
                note = "this search named a stored face, not an image"
            elif self.settings.probe_retention_seconds == 0:
                note = "probes are not kept (probe_retention_seconds = 0)"
            else:
                note = "no longer kept: every candidate was decided, or it passed probe_retention_seconds"
            verdict = self.gate.may_review(ctx, seq)
            return ReviewItem(seq, b, candidates, _data_url(probe) if probe else None, matches, note, verdict.allowed,
                              "" if verdict.allowed else verdict.reason, b.get("result", {}).get("identification") or {})

        own = self.gate.in_account(target, ctx)  # another account's collection never enters this one's entry
        return self.gate.call(ctx, "ReviewCandidates", run, collection=target.body.get("collection") if own else None,
                              record={"views": seq})

    def _stored(self, collection: str | None, ids: list[str]):
        if not collection or not ids:
            return {}, False
        try:
            info = self.gate.service.collections.get_collection(collection, counts=False)
            return self.gate.service.collections.get_faces(collection, ids), info.store_images
        except ResourceNotFoundError:  # the collection was deleted since: the ledger's metadata remains
            return {}, False

    def decide(self, ctx: Context, seq: int, candidate: str, decision: str, reason: str) -> ReviewResult:
        """One candidate's decision: the gate's Review (separation of duties, a ledger entry), which
        deletes the kept probe once every candidate has one."""
        result = self.gate.review(ctx, seq, decision, reason, [candidate] if candidate else [])
        self.index.catch_up()
        return result

    # --- auditor ---------------------------------------------------------------------------------------

    def ledger(self, ctx: Context, *, since: str | None = None, until: str | None = None, before: int | None = None,
               **filters: str | None) -> LedgerPage:
        unknown = set(filters) - set(FILTERS)
        if unknown:
            raise InvalidParameterError(f"no ledger filter {', '.join(sorted(unknown))} (filters: {', '.join(FILTERS)})")
        wanted = {k: v for k, v in filters.items() if v}

        def run(**_) -> LedgerPage:
            self.index.catch_up()
            page = self.index.search(ctx.acting_account, since=since or None, until=until or None, before=before,
                                     limit=PAGE_SIZE, **wanted)
            rows = [_row(self.gate.ledger.get(seq)) for seq in page.seqs]
            return LedgerPage(rows, page.next_before, self.gate.ledger.end()[0], self._last_verification(ctx))

        return self.gate.call(ctx, "ReadLedger", run, record={"filters": {**wanted, "since": since, "until": until}})

    def entry(self, ctx: Context, seq: int) -> Entry:
        return self.gate.call(ctx, "ReadLedger", lambda **_: self._account_entry(ctx, seq), record={"views": seq})

    def _last_verification(self, ctx: Context) -> dict | None:
        page = self.index.search(ctx.acting_account, operation="VerifyLedger", outcome="ok", limit=1)
        if not page.seqs:
            return None
        e = self.gate.ledger.get(page.seqs[0])
        return {"entry": e.seq, "time": e.body.get("time"), "principal": e.body.get("principal"),
                **e.body.get("result", {}).get("verification", {})}

    def verify(self, ctx: Context) -> dict:
        """Re-check the chain and, when the signer's public key is configured, every signed head
        and published tip (governance.ledger.verify_ledger); the result enters the ledger."""

        def run(**_) -> dict:
            spec = self.settings.ledger_public_key
            public = public_key_hex(spec) if spec else None
            heads = HeadLog(self.settings.heads_dir)
            started = time.perf_counter()
            if public is None:
                found, _ = heads.read_heads()
                count, problems = self.gate.ledger.verify()
                report = {"entries": count, "heads_checked": False, "heads": len(found), "last_head": 0,
                          "unsigned": None, "problems": [p.__dict__ for p in problems[:20]]}
            else:
                r = verify_ledger(self.gate.ledger, heads, public, require_heads=False)
                report = {"entries": r.entries, "heads_checked": True, "heads": r.heads, "last_head": r.last_head,
                          "unsigned": r.unsigned, "problems": [p.__dict__ for p in r.problems[:20]]}
            report["intact"] = not report["problems"]
            report["seconds"] = round(time.perf_counter() - started, 3)
            return {"verification": report}

        return self.gate.call(ctx, "VerifyLedger", run)["verification"]

    def audits(self, ctx: Context) -> list[dict]:
        def run(**_) -> list[dict]:
            if not self.reports_dir.is_dir():
                return []
            found = [p for p in self.reports_dir.iterdir() if p.is_file() and p.suffix in _REPORT_KINDS]
            found.sort(key=lambda p: p.stat().st_mtime, reverse=True)
            return [{"name": p.name, "kind": p.suffix[1:], "bytes": p.stat().st_size,
                     "modified": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(p.stat().st_mtime))} for p in found]

        return self.gate.call(ctx, "ReadAudits", run)

    def audit_report(self, ctx: Context, name: str) -> tuple[bytes, str]:
        def run(**_) -> tuple[bytes, str]:
            path = self.reports_dir / name
            if not _REPORT_NAME.fullmatch(name) or path.suffix not in _REPORT_KINDS or not path.is_file():
                raise ResourceNotFoundError(f"no audit report {name!r} in {self.reports_dir}")
            return path.read_bytes(), path.suffix[1:]

        return self.gate.call(ctx, "ReadAudits", run, record={"report": name[:200]})

    def policy(self, ctx: Context) -> dict:
        def run(**_) -> dict:
            p: Policy = self.gate.policy
            text = None
            try:
                source, origin = Policy.source(self.settings.policy)
                if hashlib.sha256(source.encode()).hexdigest() == p.digest:
                    text = source
            except InvalidParameterError:
                origin = "the shared database"
            return {"name": p.name, "digest": p.digest, "origin": origin, "text": text,
                    "roles": {r: list(ops) for r, ops in p.roles.items()},
                    "allowed_purposes": list(p.allowed_purposes), "denied_purposes": list(p.denied_purposes),
                    "max_fpir": p.max_fpir, "separate_duties": p.separate_duties,
                    "review_required_before_export": p.review_required_before_export}

        return self.gate.call(ctx, "ReadPolicy", run)

    # --- operator --------------------------------------------------------------------------------------

    def collections(self, ctx: Context) -> list[dict]:
        def run(**_) -> list[dict]:
            store = self.gate.service.collections
            out, after = [], None
            while True:
                items, after = store.list_collections(after, 1000)
                for i in items:
                    full = store.get_collection(i.name)
                    out.append({"name": i.name, "model": i.model, "faces": full.face_count, "users": full.user_count,
                                "store_images": i.store_images,
                                "created": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(i.created))})
                if not after:
                    return out

        return self.gate.call(ctx, "ListCollections", run)

    def list_keys(self, ctx: Context) -> list:
        return self.gate.call(ctx, "ListKeys", lambda **_: [k for k in self.keys.list()
                                                            if k.account == ctx.acting_account])

    def create_key(self, ctx: Context, *, description: str, principal: str, roles: list[str], purposes: list[str],
                   case: str = "") -> CreatedKey:
        """A key of the caller's account. Roles must be the policy's; only an admin (a role with every
        operation, "*", whatever its name) may grant such a role."""
        roles = [r.strip() for r in roles if r.strip()]
        purposes = [p.strip() for p in purposes if p.strip()]

        def run(**_) -> CreatedKey:
            unknown = [r for r in roles if r not in self.gate.policy.roles]
            if not roles or unknown:
                raise InvalidParameterError(f"roles must be among the policy's ({', '.join(self.gate.policy.roles)})"
                                            + (f", not {', '.join(unknown)}" if unknown else ""))
            if self._opens_everything(roles) and not self._opens_everything(ctx.principal.roles):
                raise AccessDeniedError(f"{ctx.principal.name} is not an admin and may not make an admin key "
                                        f"(a role that opens every operation: {', '.join(self._opens_everything(roles))})")
            key, secret = self.keys.create(description, principal=principal or None, roles=tuple(roles),
                                           purposes=tuple(purposes), account=ctx.acting_account, case=case)
            return CreatedKey(key.access_key_id, secret, key.principal, key.roles)

        return self.gate.call(ctx, "CreateKey", run, record={
            "key": {"principal": principal, "roles": roles, "purposes": purposes, "description": description[:200]}})

    def _opens_everything(self, roles) -> list[str]:
        """The roles among ``roles`` that the policy lets call every operation ("*"): admin in the
        presets, whatever a policy file names it."""
        return [r for r in roles if "*" in self.gate.policy.roles.get(r, ())]

    def revoke_key(self, ctx: Context, key_id: str) -> None:
        """Revoke a key of the caller's account. Only an admin may revoke an admin key, as only an
        admin may make one: an operator cannot lock the admins out."""
        def run(**_) -> None:
            key = self.keys.get(key_id)
            if key.account != ctx.acting_account:
                raise ResourceNotFoundError(f"no access key {key_id}")
            if self._opens_everything(key.roles) and not self._opens_everything(ctx.principal.roles):
                raise AccessDeniedError(f"{ctx.principal.name} is not an admin and may not revoke an admin key")
            self.keys.revoke(key_id)

        self.gate.call(ctx, "RevokeKey", run, record={"access_key_id": key_id})

    def health(self, ctx: Context) -> dict:
        def run(**_) -> dict:
            self.index.catch_up()
            end, _ = self.gate.ledger.end()
            # this account's kept probes only: the machine's count would tell any tenant's operator
            # how many identifications the others ran (ledger_entries: entry numbers are global anyway)
            probes = self.gate.probes.kept(self.index.open_seqs(ctx.acting_account)) if self.gate.probes is not None else 0
            return {"status": "ok", "model": self.gate.service.model, "store_backend": self.settings.store_backend,
                    "ledger": self.gate.ledger.where, "ledger_entries": end, "policy": self.gate.policy.name,
                    "probes_kept": probes, "probe_retention_seconds": self.settings.probe_retention_seconds,
                    "open_reviews": self.index.open_count(ctx.acting_account)}

        return self.gate.call(ctx, "ReadHealth", run)


def _data_url(data: bytes) -> str:
    kind = "png" if data[:8] == b"\x89PNG\r\n\x1a\n" else "webp" if data[8:12] == b"WEBP" else "jpeg"
    return f"data:image/{kind};base64,{base64.b64encode(data).decode()}"


def _row(e: Entry) -> LedgerRow:
    b = e.body
    outcome = b.get("outcome") or (b.get("phase") if b.get("phase") == "intent" else None)
    bits = []
    if b.get("collection"):
        bits.append(f"collection {b['collection']}")
    if b.get("verdict"):
        bits.append(f"{b['verdict']} entry {b.get('reviews')}" + (f" ({', '.join(b['face_ids'])})" if b.get("face_ids") else ""))
    cands = b.get("result", {}).get("candidates")
    if cands is not None:
        bits.append(f"{len(cands)} candidate(s)")
    if b.get("views"):
        bits.append(f"viewed entry {b['views']}")
    if b.get("message") and outcome != "ok":
        bits.append(str(b["message"])[:160])
    if b.get("operation") == "PolicyChange":
        bits.append(f"policy {b.get('policy', {}).get('name')}")
    return LedgerRow(e.seq, b.get("time", ""), b.get("operation", ""), b.get("principal"), b.get("purpose"),
                     b.get("case_reference"), outcome, "; ".join(bits))
