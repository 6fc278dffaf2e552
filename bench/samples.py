"""Real face samples the benches share. Imported by the bench scripts (``python bench/x.py`` puts
bench/ on the path)."""

from __future__ import annotations

import numpy as np


def first_chips(engine, paths, n: int) -> np.ndarray:
    """The engine's chips of the largest face of each image in ``paths``, in order, until ``n``
    (images where no face is found are skipped), stacked."""
    chips = []
    for p in paths:
        faces = engine.detect(p).faces
        if faces:
            chips.append(faces[0].chip)
        if len(chips) == n:
            break
    return np.stack(chips)
