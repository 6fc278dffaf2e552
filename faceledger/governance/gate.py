"""The gate every interface passes through: policy decision, then the service, then the ledger.

Every request, allowed or denied, failed or served, is in the ledger: an intent entry before it
runs and an outcome entry after (one entry when denied or refused before the policy): who (principal,
roles), why (purpose, case reference), what (operation, collection, SHA-256 of each input image,
never the image), the policy in force (name and digest) and its decision, and what came back
(face and user ids with similarity and false match rate, the identification's threshold and
gallery size). Identification runs under the policy's limits; its ledger entry number is returned
so that a reviewer's decision can be linked to it.

Each call runs in a scope the gate grants (service.scope): the account it acts in, so a key sees
only its account's collections, and a ComparisonGuard that the service asks before comparing a
face with many (governance.comparisons: the one rule for identification outside search, and the
daily budget of comparisons). Reviews and exports keep separation of duties: whoever ran a search
may neither review nor export its candidates.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from faceledger.errors import AccessDeniedError, BackendUnavailableError, FaceledgerError, InvalidParameterError
from faceledger.governance.comparisons import ComparisonBudget, ComparisonGuard
from faceledger.governance.ledger import Entry, Ledger
from faceledger.governance.policy import IDENTIFICATION, Context, Decision, Policy
from faceledger.service.scope import DEFAULT_ACCOUNT, CallScope, acting

REVIEW_DECISIONS = ("confirmed", "rejected", "inconclusive")


@dataclass(frozen=True)
class ReviewResult:
    ledger_entry: int
    reviews: int
    decision: str


@dataclass(frozen=True)
class CandidateExport:
    search_entry: int
    candidates: list
    reviews: list
    ledger_entry: int


class Gate:
    def __init__(self, service, policy: Policy, ledger: Ledger,
                 policy_source: Callable[[], Policy] | None = None) -> None:
        """``policy_source``: where a newer policy comes from while running (the shared
        database's PolicyStore.current); None: ``policy`` for the gate's life."""
        self.service = service
        self.policy = policy
        self.ledger = ledger
        self.policy_source = policy_source
        self.budget = ComparisonBudget(ledger)
        #: Where served identifications keep their probe for review (governance.probes.ProbeStore;
        #: open_gate sets it from the settings); None: no probe is kept.
        self.probes = None
        self._record_policy()

    def _refresh_policy(self) -> None:
        if self.policy_source is not None:
            newest = self.policy_source()
            if newest.digest != self.policy.digest:
                self.policy = newest
                self._record_policy()

    def _record_policy(self) -> None:
        """The policy in force enters the ledger whenever it differs from the last one recorded."""
        last = self.ledger.last("PolicyChange")
        if last is None or last.body.get("policy", {}).get("digest") != self.policy.digest:
            self.ledger.append({"operation": "PolicyChange", "policy": self._policy_ref(),
                                "previous": last.body.get("policy") if last else None})

    def _policy_ref(self) -> dict:
        return {"name": self.policy.name, "digest": self.policy.digest}

    def _base(self, ctx: Context, operation: str, collection: str | None, images: Sequence[bytes],
              digests: Sequence[str] = ()) -> dict:
        return {
            "operation": operation,
            "principal": ctx.principal.name,
            "account": ctx.acting_account,
            "roles": list(ctx.principal.roles),
            "purpose": ctx.purpose,
            "case_reference": ctx.case_reference,
            "interface": ctx.interface,
            "collection": collection,
            "image_sha256": [hashlib.sha256(b).hexdigest() for b in images] + list(digests),
            "policy": self._policy_ref(),
        }

    def call(self, ctx: Context, operation: str, run: Callable[..., Any], *, collection: str | None = None,
             images: Sequence[bytes] = (), record: dict | None = None, digests: Sequence[str] = ()) -> Any:
        """Decide, record the intent, run (``run(**extra)``; identification gets ``limits=``),
        record the outcome, return. Written ahead: nothing runs unless its intent entry is in the
        ledger (a ledger that cannot be written refuses the request with 503), so a crash can leave
        an intent without its change, never a change without its intent.
        ``record``: more fields for the entry (a review's decision and what it reviews);
        ``digests``: SHA-256 of images hashed elsewhere (bulk indexing's worker processes)."""
        self._refresh_policy()
        entry = {**self._base(ctx, operation, collection, images, digests), **(record or {})}
        decision = self.policy.decide(ctx, operation)
        entry["decision"] = {"allowed": decision.allowed, "reason": decision.reason}
        if not decision.allowed:
            self.ledger.append({**entry, "outcome": "AccessDeniedException"})
            raise _recorded(AccessDeniedError(decision.reason))
        extra = {"limits": self.policy.limits} if operation in IDENTIFICATION else {}
        guard = ComparisonGuard(self.policy, ctx, self.budget)
        intent = self.ledger.append({**entry, "phase": "intent"})
        outcome = {**entry, "phase": "outcome", "intent": intent.seq}
        try:
            with acting(CallScope(ctx.acting_account, guard)):
                result = run(**extra)
        except FaceledgerError as exc:
            self._record(guard, {**outcome, "outcome": exc.code, "message": exc.message})
            raise _recorded(exc)
        except Exception as exc:  # an unexpected failure is still an outcome; the interface reports it as a 500
            self._record(guard, {**outcome, "outcome": "InternalServerError", "message": type(exc).__name__})
            raise _recorded(exc)
        recorded = self._record(guard, {**outcome, "outcome": "ok", "result": summarize(result)})
        if (self.probes is not None and operation in IDENTIFICATION and images
                and recorded.body["result"].get("candidates")):
            self.probes.keep(recorded.seq, images[0])  # for its reviewer, until reviewed or expired
        if dataclasses.is_dataclass(result) and any(f.name == "ledger_entry" for f in dataclasses.fields(result)):
            result = dataclasses.replace(result, ledger_entry=recorded.seq)
        return result

    def call_batch(self, ctx: Context, operation: str, items: Sequence[dict], run: Callable[[], Sequence[Any]]) -> list[Any]:
        """``call`` for many requests of one operation stored together (bulk indexing). Each item
        (``collection``, ``digests``) has its own intent and outcome entries, as ``call`` writes
        them, but all intents are one ledger transaction committed before ``run`` starts, and all
        outcomes one after it: three synced commits a batch instead of three an image, and still a
        kill can leave intents without their change, never a change without its intent.
        ``run()`` returns one result or FaceledgerError per item; what it raises fails them all.
        Returns the results (each FaceledgerError marked recorded). Not for operations that
        compare faces: each of those needs its own comparison budget and probe."""
        if operation in IDENTIFICATION:
            raise InvalidParameterError(f"{operation} is not run in batches")
        self._refresh_policy()
        decision = self.policy.decide(ctx, operation)
        entries = [{**self._base(ctx, operation, item.get("collection"), (), item.get("digests", ())),
                    "decision": {"allowed": decision.allowed, "reason": decision.reason}} for item in items]
        if not decision.allowed:
            self.ledger.append_many([{**e, "outcome": "AccessDeniedException"} for e in entries])
            raise _recorded(AccessDeniedError(decision.reason))
        intents = self.ledger.append_many([{**e, "phase": "intent"} for e in entries])
        outcomes = [{**e, "phase": "outcome", "intent": i.seq} for e, i in zip(entries, intents)]
        guard = ComparisonGuard(self.policy, ctx, self.budget)
        try:
            with acting(CallScope(ctx.acting_account, guard)):
                results = list(run())
            if len(results) != len(items):
                raise RuntimeError(f"{len(results)} results for {len(items)} requests")
        except FaceledgerError as exc:
            self._record_batch(guard, [{**o, "outcome": exc.code, "message": exc.message} for o in outcomes])
            raise _recorded(exc)
        except Exception as exc:  # as in call: still an outcome, for every item
            self._record_batch(guard, [{**o, "outcome": "InternalServerError", "message": type(exc).__name__}
                                       for o in outcomes])
            raise _recorded(exc)
        recorded = self._record_batch(guard, [
            {**o, "outcome": r.code, "message": r.message} if isinstance(r, FaceledgerError)
            else {**o, "outcome": "ok", "result": summarize(r)} for o, r in zip(outcomes, results)])
        out = []
        for r, entry in zip(results, recorded):
            if isinstance(r, FaceledgerError):
                r = _recorded(r)
            elif dataclasses.is_dataclass(r) and any(f.name == "ledger_entry" for f in dataclasses.fields(r)):
                r = dataclasses.replace(r, ledger_entry=entry.seq)
            out.append(r)
        return out

    def _record_batch(self, guard: ComparisonGuard, bodies: list[dict]) -> list[Entry]:
        try:
            return self.ledger.append_many([{**body, **guard.record()} for body in bodies])
        finally:
            guard.settle()

    def _record(self, guard: ComparisonGuard, body: dict) -> Entry:
        """The call's outcome entry with what it compared; its budget charge is then counted from the ledger."""
        try:
            return self.ledger.append({**body, **guard.record()})
        finally:
            guard.settle()

    def event(self, ctx: Context, operation: str, record: dict | None = None) -> Entry:
        """Record something that happened to a principal outside any operation the policy decides
        (the console's sign-in and sign-out): one entry, outcome ok, in the principal's account."""
        return self.ledger.append({**self._base(ctx, operation, None, ()), "account": ctx.principal.account,
                                   "phase": "event", "outcome": "ok", **(record or {})})

    def refused(self, ctx: Context | None, operation: str, exc: Exception, *, interface: str = "http",
                body_sha256: str | None = None) -> Exception:
        """Record a request that failed before or outside ``call`` (unknown operation, failed
        authentication, invalid input): every request that reaches the server leaves an entry.
        Returns what to answer: ``exc``, or a 503 when the ledger could not record it."""
        if getattr(exc, "ledger_recorded", False):
            return exc
        code = getattr(exc, "code", "InternalServerError")
        entry = {"operation": str(operation)[:128], "phase": "refused", "interface": ctx.interface if ctx else interface,
                 "principal": ctx.principal.name if ctx else None,
                 # the key's own account: its auditors see the refusal, another account's never do
                 "account": ctx.principal.account if ctx else None, "roles": list(ctx.principal.roles) if ctx else [],
                 "purpose": ctx.purpose if ctx else None, "case_reference": ctx.case_reference if ctx else None,
                 "body_sha256": body_sha256, "policy": self._policy_ref(), "outcome": code,
                 "message": getattr(exc, "message", type(exc).__name__)[:1000]}
        try:
            self.ledger.append(entry)
        except BackendUnavailableError as lost:
            return lost
        return _recorded(exc)

    # --- human review ------------------------------------------------------------------------------

    def _search_entry(self, seq: int, ctx: Context, duty: str):
        """A served identification of the caller's account that the caller did not run itself."""
        entry = self.ledger.get(seq)
        b = entry.body
        if (b.get("operation") not in IDENTIFICATION or b.get("outcome") != "ok"
                or (b.get("account") or DEFAULT_ACCOUNT) != ctx.acting_account):
            raise InvalidParameterError(f"ledger entry {seq} is not a served identification: nothing to review")
        if self.policy.separate_duties and b.get("principal") == ctx.principal.name:
            raise AccessDeniedError(f"separation of duties (policy {self.policy.name}): {ctx.principal.name} ran the "
                                    f"search of entry {seq}, so another principal must {duty} its candidates: a reviewer's "
                                    "key (`faceledger keys create --role reviewer`) through the console (/console) or "
                                    "the API, or `faceledger review` run by another OS user "
                                    "(the command line acts as local:<user>)")
        return entry

    def review(self, ctx: Context, search_entry: int, decision: str, reason: str,
               face_ids: Sequence[str] = ()) -> ReviewResult:
        """A reviewer's decision on a candidate list, linked to its search's ledger entry."""
        if decision not in REVIEW_DECISIONS:
            raise InvalidParameterError(f"a review decision is one of {', '.join(REVIEW_DECISIONS)}, not {decision!r}")
        if not reason or not reason.strip():
            raise InvalidParameterError("a review needs a reason")

        target = self.ledger.get(search_entry)
        own = self.in_account(target, ctx)

        def run() -> ReviewResult:
            self._search_entry(search_entry, ctx, "review")
            listed = {c.get("id") for c in target.body.get("result", {}).get("candidates", [])}
            unknown = [f for f in face_ids if f not in listed]
            if unknown:
                raise InvalidParameterError(f"not candidates of entry {search_entry}: {', '.join(unknown)}")
            return ReviewResult(0, search_entry, decision)

        result = self.call(ctx, "Review", run, collection=target.body.get("collection") if own else None, record={
            "reviews": search_entry, "reviews_hash": target.hash if own else None, "verdict": decision, "reason": reason.strip(),
            "face_ids": list(face_ids)})
        if self.probes is not None and not self.undecided(search_entry):
            self.probes.discard(search_entry)  # every candidate has a decision: the probe is no longer kept
        return result

    @staticmethod
    def in_account(entry: Entry, ctx: Context) -> bool:
        """Whether a ledger entry is of the caller's account: only then may the caller's own entry
        copy its collection or hash (another account's names never enter this account's ledger)."""
        return (entry.body.get("account") or DEFAULT_ACCOUNT) == ctx.acting_account

    def undecided(self, search_entry: int) -> list[str]:
        """The candidates of a search that no review has decided yet (a review naming no candidate decides all)."""
        ids = [c.get("id") for c in self.ledger.get(search_entry).body.get("result", {}).get("candidates", [])]
        decided: set = set()
        for r in self.reviews_of(search_entry):
            decided |= set(r.get("face_ids") or ids)
        return [i for i in dict.fromkeys(ids) if i not in decided]

    def may_review(self, ctx: Context, search_entry: int) -> Decision:
        """Whether ``ctx`` may decide on this search's candidates (its role, the entry, separation of
        duties): what the console shows instead of the buttons; ``review`` enforces the same."""
        decision = self.policy.decide(ctx, "Review")
        if not decision.allowed:
            return decision
        try:
            self._search_entry(search_entry, ctx, "review")
        except (AccessDeniedError, InvalidParameterError) as exc:
            return Decision(False, exc.message)
        return Decision(True, "may review")

    def reviews_of(self, search_entry: int) -> list[dict]:
        return [dict(e.body, ledger_entry=e.seq) for e in self.ledger.entries_of("Review")
                if e.body.get("reviews") == search_entry and e.body.get("outcome") == "ok"]

    def export_candidates(self, ctx: Context, search_entry: int) -> CandidateExport:
        """A search's candidate list for a case file: only after a confirmed review, if the policy says so."""

        def run() -> CandidateExport:
            target = self._search_entry(search_entry, ctx, "export")
            reviews = self.reviews_of(search_entry)
            if self.policy.review_required_before_export and not any(r["verdict"] == "confirmed" for r in reviews):
                raise AccessDeniedError(f"policy {self.policy.name} requires a reviewer to confirm entry {search_entry}'s "
                                        "candidates before they leave faceledger (faceledger review)")
            return CandidateExport(search_entry, target.body["result"].get("candidates", []), reviews, 0)

        return self.call(ctx, "ExportCandidates", run, record={"exports": search_entry})


def _recorded(exc: Exception) -> Exception:
    """Mark an error as in the ledger already, so that the interface does not record it twice."""
    exc.ledger_recorded = True
    return exc


def summarize(result: Any) -> dict:
    """What the ledger keeps of a result: identifiers, scores and rates, never templates or images."""
    out: dict[str, Any] = {}
    if result is None:
        return out
    get = (lambda name: getattr(result, name, None)) if dataclasses.is_dataclass(result) else (
        lambda name: result.get(name) if isinstance(result, dict) else None)
    candidates = []
    for m in get("face_matches") or []:
        candidates.append({"id": getattr(m.face, "face_id", None), "similarity": round(m.similarity, 4),
                           "false_match_rate": m.false_match_rate,
                           "expected_false_candidates": getattr(m, "expected_false_candidates", None)})
        if candidates[-1]["id"] is None:  # CompareFaces: a face of the target image, named by its box
            candidates[-1]["box"] = dataclasses.asdict(m.face.bounding_box)
    for m in get("user_matches") or []:
        candidates.append({"id": m.user.user_id, "similarity": round(m.similarity, 4), "false_match_rate": m.false_match_rate,
                           "expected_false_candidates": m.expected_false_candidates})
    if get("face_matches") is not None or get("user_matches") is not None:
        out["candidates"] = candidates
    ident = get("identification")
    if ident is not None:
        out["identification"] = dataclasses.asdict(ident)
    for name in ("face_records",):
        if get(name):
            out["indexed_face_ids"] = [r.face.face_id for r in get(name)]
    if get("unsuccessful_face_associations") is not None:  # AssociateFaces: each face's outcome and score
        out["associated_face_ids"] = [a.face_id for a in get("associated_faces") or []]
        out["unsuccessful_associations"] = [
            {"id": u.face_id, "reasons": list(u.reasons),
             "confidence": None if u.confidence is None else round(u.confidence, 4)}
            for u in get("unsuccessful_face_associations")]
    if get("unindexed_faces"):
        out["unindexed"] = len(get("unindexed_faces"))
    if get("deleted_faces"):
        out["deleted_face_ids"] = list(get("deleted_faces"))
    for name in ("probe_quality", "verification", "access_key_id"):  # the console's: never a secret
        if get(name) is not None:
            out[name] = get(name)
    for name in ("collection_arn", "user_status", "job_id"):
        if get(name):
            out[name] = get(name)
    return out
