"""Probe images kept for human review, and deleted after it.

A reviewer must see the probe beside each candidate, so a search's probe image is kept, keyed by
the search's ledger entry, for at most ``probe_retention_seconds`` (docs/configuration.md): it is
deleted as soon as every candidate has a decision (ReviewDesk.decide) or when it reaches that age
(``purge``, run on every keep and every read), whichever comes first. Retention 0 keeps nothing.
Files are mode 600 in a mode 700 folder; only searches that returned candidates keep a probe.
The ledger holds the probe's SHA-256, so a reviewer can see that the kept image is the one searched.
"""

from __future__ import annotations

import os
import time
from pathlib import Path


class ProbeStore:
    def __init__(self, directory: Path, retention_seconds: int, clock=time.time) -> None:
        self.directory = Path(directory)
        self.retention = max(0, int(retention_seconds))
        self.clock = clock

    def _path(self, seq: int) -> Path:
        return self.directory / f"{int(seq)}.probe"

    def keep(self, seq: int, image: bytes) -> bool:
        """Keep a search's probe for its review; False when retention is 0 (nothing kept)."""
        self.purge()
        if self.retention == 0:
            return False
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.directory, 0o700)
        path = self._path(seq)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(image)
        os.replace(tmp, path)
        now = self.clock()
        os.utime(path, (now, now))
        return True

    def get(self, seq: int) -> bytes | None:
        """The kept probe, or None: never kept, reviewed, or expired (then deleted now)."""
        path = self._path(seq)
        try:
            if self._expired(path.stat().st_mtime):
                self.discard(seq)
                return None
            return path.read_bytes()
        except FileNotFoundError:
            return None

    def discard(self, seq: int) -> None:
        self._path(seq).unlink(missing_ok=True)

    def _expired(self, kept_at: float) -> bool:
        return self.clock() - kept_at >= self.retention

    def purge(self) -> int:
        """Delete every probe past the retention; how many were deleted."""
        if not self.directory.is_dir():
            return 0
        gone = 0
        for path in self.directory.glob("*.probe"):
            try:
                if self._expired(path.stat().st_mtime):
                    path.unlink(missing_ok=True)
                    gone += 1
            except FileNotFoundError:
                continue
        return gone

    def kept(self, seqs) -> int:
        """How many of these searches' probes are still kept (expired ones are not counted)."""
        now = self.clock()
        n = 0
        for seq in seqs:
            try:
                n += now - self._path(seq).stat().st_mtime < self.retention
            except FileNotFoundError:
                continue
        return n

    def count(self) -> int:
        return sum(1 for _ in self.directory.glob("*.probe")) if self.directory.is_dir() else 0
