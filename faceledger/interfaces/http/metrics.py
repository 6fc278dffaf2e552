"""Request counts and latency by operation and outcome, in Prometheus' text format.

Per process: with several workers, scrape each (or put them behind one scrape target per worker).
Label values come from fixed sets, never from the request: the operation is one the server
implements (anything else counts under ``unknown``) and the outcome an error code of faceledger's
own (a name of letters). So the series are bounded (operations x codes) whatever clients send,
and every value is escaped as the text format requires all the same.
"""

from __future__ import annotations

import re
import threading
from collections import defaultdict
from typing import Iterable

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
UNKNOWN = "unknown"
_CODE = re.compile(r"[A-Za-z][A-Za-z0-9]{0,63}")


def escape(value: str) -> str:
    """A label value in the text exposition format: backslash, double quote and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Metrics:
    def __init__(self, operations: Iterable[str] = ()) -> None:
        self.operations = frozenset(operations)
        self._lock = threading.Lock()
        self._count: dict[tuple[str, str], int] = defaultdict(int)
        self._sum: dict[tuple[str, str], float] = defaultdict(float)
        self._buckets: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0] * len(BUCKETS))

    def label(self, operation: str | None) -> str:
        return operation if operation in self.operations else UNKNOWN

    def observe(self, operation: str | None, outcome: str, seconds: float) -> None:
        key = (self.label(operation), outcome if _CODE.fullmatch(outcome or "") else "other")
        with self._lock:
            self._count[key] += 1
            self._sum[key] += seconds
            buckets = self._buckets[key]
            for i, bound in enumerate(BUCKETS):
                if seconds <= bound:
                    buckets[i] += 1

    def render(self) -> str:
        lines = [
            "# HELP faceledger_requests_total Requests by operation and outcome (an error code or 'ok').",
            "# TYPE faceledger_requests_total counter",
        ]
        with self._lock:
            keys = sorted(self._count)
            for op, outcome in keys:
                lines.append(f'faceledger_requests_total{{operation="{escape(op)}",outcome="{escape(outcome)}"}} '
                             f'{self._count[(op, outcome)]}')
            lines += [
                "# HELP faceledger_request_seconds Request latency by operation and outcome.",
                "# TYPE faceledger_request_seconds histogram",
            ]
            for op, outcome in keys:
                labels = f'operation="{escape(op)}",outcome="{escape(outcome)}"'
                for bound, n in zip(BUCKETS, self._buckets[(op, outcome)]):
                    lines.append(f'faceledger_request_seconds_bucket{{{labels},le="{bound}"}} {n}')
                lines.append(f'faceledger_request_seconds_bucket{{{labels},le="+Inf"}} {self._count[(op, outcome)]}')
                lines.append(f"faceledger_request_seconds_sum{{{labels}}} {self._sum[(op, outcome)]:.6f}")
                lines.append(f"faceledger_request_seconds_count{{{labels}}} {self._count[(op, outcome)]}")
        return "\n".join(lines) + "\n"
