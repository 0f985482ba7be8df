"""The scales a metric's values live on, and how they are mapped to an unbounded one.

An accuracy lives in [0, 1] (``"unit"``: logit), a loss in (0, ∞) (``"positive"``: log),
a difference of accuracies in [−1, 1] (``"difference"``: atanh); intervals and tests are
made on the transformed values and mapped back, so they stay inside the bounds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# ---------------------------------------------------------------- intervals inside a scale
#
# A bounded metric gets its interval on a scale where it is unbounded: the t-interval of
# the transformed values (``scipy.stats.ttest_1samp(...).confidence_interval()``), mapped
# back. So an accuracy's interval lies in [0, 1], a loss's in (0, ∞) and a difference of
# accuracies in [−1, 1] by construction, never by clipping.

#: Values at a bound of [0, 1] (or ±1 for differences) are moved this far inside before
#: the logit / atanh transform (a continuity correction: 0.1 percentage point).
BOUND_CORRECTION = 1e-3


@dataclass(frozen=True)
class Scale:
    """A metric's range and the transform that makes it unbounded."""

    name: str
    low: float
    high: float
    forward: object  # callable: values → transformed values (array in, array out)
    inverse: object  # callable: transformed → values
    method: str  # how its intervals are made, for the methods note

    def to_z(self, x) -> np.ndarray:
        return np.asarray(self.forward(np.asarray(x, dtype=float)), dtype=float)

    def from_z(self, z) -> np.ndarray:
        return np.asarray(self.inverse(np.asarray(z, dtype=float)), dtype=float)


def _logit(x):
    from scipy.special import logit

    return logit(np.clip(x, BOUND_CORRECTION, 1 - BOUND_CORRECTION))


def _expit(z):
    from scipy.special import expit

    return expit(z)


def _log_positive(x):
    x = np.asarray(x, dtype=float)
    positive = x[x > 0]
    floor = positive.min() / 2 if positive.size else 1e-12
    return np.log(np.where(x > 0, x, floor))


def _atanh(x):
    return np.arctanh(np.clip(x, -1 + BOUND_CORRECTION, 1 - BOUND_CORRECTION))


def _identity(x):
    return np.asarray(x, dtype=float)


SCALES: dict[str, Scale] = {
    "unit": Scale(
        "unit", 0.0, 1.0, _logit, _expit,
        "t-interval on the logit scale, back-transformed (values at 0 or 1 moved 0.001 inside)",
    ),
    "positive": Scale(
        "positive", 0.0, math.inf, _log_positive, np.exp,
        "t-interval on the log scale, back-transformed (zeros replaced by half the smallest "
        "positive value)",
    ),
    "difference": Scale(
        "difference", -1.0, 1.0, _atanh, np.tanh,
        "paired t on the atanh (Fisher z) scale of the per-seed differences, "
        "back-transformed with tanh (differences at ±1 moved 0.001 inside)",
    ),
    "real": Scale("real", -math.inf, math.inf, _identity, _identity, "t-interval"),
}

#: The scale of a difference between two values on a scale.
DIFFERENCE_SCALES = {"unit": "difference", "positive": "real", "difference": "real", "real": "real"}
#: The named scales by their range.
_BY_RANGE = {(0.0, 1.0): "unit", (0.0, math.inf): "positive", (-1.0, 1.0): "difference",
             (-math.inf, math.inf): "real"}


def _bounded(low: float, high: float) -> Scale:
    """[low, high]: atanh of the value mapped onto [−1, 1] (values at a bound moved
    0.1 % of the width inside)."""
    mid, half = (low + high) / 2, (high - low) / 2

    def forward(x):
        return _atanh((np.asarray(x, dtype=float) - mid) / half)

    def inverse(z):
        return mid + half * np.tanh(z)

    return Scale(
        f"[{low:g}, {high:g}]", low, high, forward, inverse,
        f"t-interval on the atanh scale of the values mapped from [{low:g}, {high:g}] onto "
        "[−1, 1], back-transformed",
    )


def _above(low: float) -> Scale:
    """[low, ∞): log of the value above ``low``."""

    def forward(x):
        return _log_positive(np.asarray(x, dtype=float) - low)

    def inverse(z):
        return low + np.exp(z)

    return Scale(f"[{low:g}, ∞)", low, math.inf, forward, inverse,
                 f"t-interval on the log scale of the value above {low:g}, back-transformed")


def _below(high: float) -> Scale:
    """(−∞, high]: −log of the distance to ``high`` (increasing, so intervals keep order)."""

    def forward(x):
        return -_log_positive(high - np.asarray(x, dtype=float))

    def inverse(z):
        return high - np.exp(-np.asarray(z, dtype=float))

    return Scale(f"(−∞, {high:g}]", -math.inf, high, forward, inverse,
                 f"t-interval on the −log scale of the distance to {high:g}, back-transformed")


def scale_for_range(low: float, high: float) -> Scale:
    """The scale of values in [``low``, ``high``] (either end may be infinite): accuracies
    [0, 1] use the logit, [0, ∞) the log, other ranges their own transform, so that every
    interval made there stays inside the range.

    >>> scale_for_range(0, 1).name, scale_for_range(-math.inf, 1).high
    ('unit', 1.0)
    """
    low, high = float(low), float(high)
    if not low < high:
        raise ValueError(f"a range needs low < high, got [{low:g}, {high:g}]")
    name = _BY_RANGE.get((low, high))
    if name is None:
        if math.isfinite(low) and math.isfinite(high):
            scale = _bounded(low, high)
        elif math.isfinite(low):
            scale = _above(low)
        else:
            scale = _below(high)
        name = scale.name
        SCALES.setdefault(name, scale)  # ScaledT finds its scale by name
    return SCALES[name]


def difference_scale_for(scale: Scale) -> Scale:
    """The scale of a difference of two values on ``scale``: a range of width w gives
    differences in [−w, w]; a half-open or open range unbounded differences."""
    if scale.name in DIFFERENCE_SCALES and scale.name != "difference":
        return SCALES[DIFFERENCE_SCALES[scale.name]]
    width = scale.high - scale.low
    if math.isfinite(width):
        return scale_for_range(-width, width)
    return SCALES["real"]
