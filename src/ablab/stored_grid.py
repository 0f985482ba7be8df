"""The stored form of a ``grid × grid`` array (the decision-boundary probe's
probabilities and classes): base64 of its row-major uint8 bytes, row = y going up,
column = x going right. Written by :mod:`ablab.probes.boundary`, read by the analysis;
here, below both, so reading a record needs no torch."""

from __future__ import annotations

import base64

import numpy as np


def encode_grid(values: np.ndarray) -> str:
    """A grid×grid array of bytes (probabilities × 255 rounded, or small class indices) as
    base64 of its row-major uint8 bytes."""
    return base64.b64encode(np.asarray(values, dtype=np.uint8).tobytes()).decode("ascii")


def decode_grid(data: str, grid: int, scale: float = 255.0) -> np.ndarray:
    """Inverse of :func:`encode_grid`: a ``grid × grid`` float array, ``[row][col]``.
    ``scale=255`` turns probability bytes back into probabilities (to within 1/510);
    pass ``scale=1`` for class indices."""
    raw = np.frombuffer(base64.b64decode(data), dtype=np.uint8).reshape(grid, grid)
    return raw.astype(np.float64) / scale
