"""Request counts and latency by operation and outcome, in Prometheus' text format.

Per process: with several workers, scrape each (or put them behind one scrape target per worker).
"""

from __future__ import annotations

import threading
from collections import defaultdict

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count: dict[tuple[str, str], int] = defaultdict(int)
        self._sum: dict[tuple[str, str], float] = defaultdict(float)
        self._buckets: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0] * len(BUCKETS))

    def observe(self, operation: str, outcome: str, seconds: float) -> None:
        key = (operation, outcome)
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
                lines.append(f'faceledger_requests_total{{operation="{op}",outcome="{outcome}"}} {self._count[(op, outcome)]}')
            lines += [
                "# HELP faceledger_request_seconds Request latency by operation and outcome.",
                "# TYPE faceledger_request_seconds histogram",
            ]
            for op, outcome in keys:
                labels = f'operation="{op}",outcome="{outcome}"'
                for bound, n in zip(BUCKETS, self._buckets[(op, outcome)]):
                    lines.append(f'faceledger_request_seconds_bucket{{{labels},le="{bound}"}} {n}')
                lines.append(f'faceledger_request_seconds_bucket{{{labels},le="+Inf"}} {self._count[(op, outcome)]}')
                lines.append(f"faceledger_request_seconds_sum{{{labels}}} {self._sum[(op, outcome)]:.6f}")
                lines.append(f"faceledger_request_seconds_count{{{labels}}} {self._count[(op, outcome)]}")
        return "\n".join(lines) + "\n"
