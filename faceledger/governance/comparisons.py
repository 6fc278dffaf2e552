"""The one rule for calls that compare a face with the faces of many people, and the daily
budget of comparisons for callers who may not identify.

Search is not the only way to identify someone: comparing a probe with a CompareFaces target that
is a mosaic of 49 gallery faces, or associating 100 gallery faces with a user holding the probe
and reading each one's Confidence, ranks a gallery as well as SearchFaces does. So the service
asks before it compares (``Comparisons.admit``) and the gate answers by the policy:

- more faces in one call than ``max_faces_without_identification``: identification, decided as a
  search is (role, purpose, case); refused, or served with the quality floor and the
  gallery-aware threshold;
- otherwise, for a caller who may not identify: similarities of faces that do not match are
  withheld, and the comparisons are charged to a daily budget per principal. The budget is counted
  from the ledger itself (each entry's ``comparisons``), so every replica and every restart sees
  the same spending, and an auditor can recount it.
"""

from __future__ import annotations

import threading
from collections import Counter
from datetime import datetime, timezone

from faceledger.errors import AccessDeniedError, ComparisonBudgetError
from faceledger.governance.ledger import Ledger
from faceledger.governance.policy import Context, Policy
from faceledger.service.scope import Admission


def _today() -> str:
    return datetime.now(timezone.utc).date().isoformat()


class ComparisonBudget:
    """Comparisons charged per (account, principal) per UTC day, read from the ledger.

    The ledger is read incrementally (entries after the last one seen), so each call costs only the
    entries written since; charges admitted in this process but not yet in the ledger are held as
    pending, so concurrent requests cannot each spend the same remainder."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self._lock = threading.Lock()
        self._seen = 0
        self._day = ""
        self._spent: Counter = Counter()
        self._pending: Counter = Counter()

    def _catch_up(self) -> None:
        day = _today()
        if day != self._day:
            self._day, self._spent = day, Counter()
        for e in self.ledger.entries(after_seq=self._seen):
            self._seen = e.seq
            b = e.body
            if b.get("budgeted") and str(b.get("time", "")).startswith(day):
                self._spent[(b.get("account") or "", b.get("principal") or "")] += int(b["budgeted"])

    def charge(self, who: tuple[str, str], n: int, allowance: int) -> int:
        """Hold ``n`` comparisons for ``who`` (pending until its ledger entry is written); refuse
        when today's spending would pass ``allowance``. Returns what is left after the charge."""
        with self._lock:
            self._catch_up()
            used = self._spent[who] + self._pending[who]
            if used + n > allowance:
                raise ComparisonBudgetError(
                    f"{who[1]} has run {used} of its {allowance} comparisons for today (UTC) without the identification "
                    f"purpose; this call needs {n}. A key that must compare more needs an identification purpose the "
                    "policy allows, or a policy with a larger daily_comparisons_without_identification")
            self._pending[who] += n
            return allowance - used - n

    def settle(self, who: tuple[str, str], n: int) -> None:
        """The charge is in the ledger now: no longer pending."""
        with self._lock:
            self._pending[who] -= n
            if self._pending[who] <= 0:
                del self._pending[who]


class ComparisonGuard:
    """The gate's answer to one call's comparisons (service.scope.Comparisons)."""

    def __init__(self, policy: Policy, ctx: Context, budget: ComparisonBudget) -> None:
        self.policy, self.ctx, self.budget = policy, ctx, budget
        self.who = (ctx.acting_account, ctx.principal.name)
        self.compared = 0  # faces compared in this call
        self.budgeted = 0  # of which charged to the budget
        self.identification: str | None = None  # why the call was treated as identification, if it was
        self.refused: str | None = None

    def admit(self, operation: str, faces: int) -> Admission:
        may = self.policy.may_identify(self.ctx, operation)
        if faces > self.policy.max_faces_without_identification:
            self.identification = (f"{operation} compared one face with {faces} faces (policy bound "
                                   f"{self.policy.max_faces_without_identification})")
            if not may.allowed:
                self.refused = may.reason
                raise AccessDeniedError(f"{self.identification}: identification. {may.reason}")
            self.compared += faces
            return Admission(True, self.policy.limits)
        if not may.allowed and self.policy.daily_comparisons and faces:
            self.budget.charge(self.who, faces, self.policy.daily_comparisons)
            self.budgeted += faces
        self.compared += faces
        return Admission(may.allowed, None)

    def record(self) -> dict:
        """What the call's ledger entry keeps of its comparisons (the budget is counted from these)."""
        out: dict = {}
        if self.compared or self.identification:
            out["comparisons"] = self.compared
            out["budgeted"] = self.budgeted  # charged to the principal's daily budget
        if self.identification:
            out["treated_as_identification"] = self.identification
        return out

    def settle(self) -> None:
        if self.budgeted:
            self.budget.settle(self.who, self.budgeted)
