"""What the governance layer grants one call, as the service sees it: the account the call acts
in, and how it may compare faces.

The gate sets the scope around every call it runs (``acting``) and the service reads it
(``current``), so no interface can forget to pass it. A call made without a gate (the Python API
used as a library) acts in the default local account and compares without limits.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Iterator, Protocol

from faceledger.errors import InvalidParameterError
from faceledger.service.limits import Limits

#: The account of single-user use (the CLI, keys made without an account): collections keep their
#: plain names and the ARN's account field reads as it always did.
DEFAULT_ACCOUNT = "000000000000"
ACCOUNT_ID = re.compile(r"[0-9]{12}")


def check_account(account: str) -> str:
    """An account id is 12 digits, as in an AWS ARN."""
    if not isinstance(account, str) or not ACCOUNT_ID.fullmatch(account):
        raise InvalidParameterError(f"an account id is 12 digits (as in an ARN), not {account!r}")
    return account


@dataclass(frozen=True)
class Admission:
    """What the gate granted one comparing call."""

    disclose_scores: bool  # the caller may identify: similarities of non-matches may be returned
    limits: Limits | None = None  # set when the call counts as identification: floor and FPIR bound apply


class Comparisons(Protocol):
    def admit(self, operation: str, faces: int) -> Admission:
        """Called before one face is compared with ``faces`` others (gallery or target faces,
        possibly as many people). Raises AccessDeniedError (identification refused) or
        ComparisonBudgetError (the caller's daily comparisons are spent)."""
        ...


class _Unlimited:
    """No gate: a library compares what it is asked to."""

    def admit(self, operation: str, faces: int) -> Admission:
        return Admission(True, None)


UNLIMITED: Comparisons = _Unlimited()


@dataclass(frozen=True)
class CallScope:
    account: str = DEFAULT_ACCOUNT
    comparisons: Comparisons = field(default=UNLIMITED)


_SCOPE: ContextVar[CallScope] = ContextVar("faceledger_call_scope", default=CallScope())


def current() -> CallScope:
    return _SCOPE.get()


@contextmanager
def acting(scope: CallScope) -> Iterator[CallScope]:
    """Run the block in ``scope`` (the gate's grant for one call)."""
    check_account(scope.account)
    token = _SCOPE.set(scope)
    try:
        yield scope
    finally:
        _SCOPE.reset(token)
