"""Bulk indexing's writes: prepared images stored in batches, each image with its own ledger entries.

One image a transaction cost `faceledger index` three synced commits an image (its intent, its
faces, its outcome): the one writer process spent more time waiting on syncs than the workers spent
computing templates. A batch keeps every promise of ``Gate.call`` (the policy decides first; every
image's intent entry is committed before any face of the batch is stored; every image's outcome
follows) with three commits a batch (``Gate.call_batch``). A batch is stored when it holds
``size`` images or when its oldest image has waited ``seconds`` (checked as each image arrives), so
the progress and the JSON lines stay at most a batch or about a second behind the workers; an image
is reported only once it is stored, so an interrupted or killed run keeps every image it reported.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from faceledger.governance.gate import Gate
from faceledger.governance.policy import Context

#: Images a batch holds at most, and how long its oldest waits at most (seconds).
BATCH_IMAGES = 32
BATCH_SECONDS = 1.0


@dataclass
class BatchedIndex:
    """Collects (image, prepared image, ExternalImageId) and stores them through the gate in batches;
    ``add`` and ``flush`` return the images stored by that call, each with its IndexFacesResult or
    the FaceledgerError that kept it out (already in the ledger)."""

    gate: Gate
    ctx: Context
    collection: str
    size: int = BATCH_IMAGES
    seconds: float = BATCH_SECONDS
    _pending: list = field(default_factory=list)
    _since: float = 0.0

    def add(self, image: str, prepared: Any, external_image_id: str | None) -> list[tuple[str, Any]]:
        if not self._pending:
            self._since = time.monotonic()
        self._pending.append((image, prepared, external_image_id))
        if len(self._pending) >= self.size or time.monotonic() - self._since >= self.seconds:
            return self.flush()
        return []

    def flush(self) -> list[tuple[str, Any]]:
        batch, self._pending = self._pending, []
        if not batch:
            return []
        service = self.gate.service
        results = self.gate.call_batch(
            self.ctx, "IndexFaces", [{"collection": self.collection, "digests": [p.sha256]} for _, p, _ in batch],
            lambda: service.commit_index_many(self.collection, [(p, ext) for _, p, ext in batch]))
        return [(image, r) for (image, _, _), r in zip(batch, results)]
