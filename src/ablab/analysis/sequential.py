"""Group-sequential verdicts for studies that add seeds in rounds (``--until-decided``).

A study that looks at its comparisons after every round of seeds and stops where they
are decided would, with fixed-sample tests, say "beats" far more often than 5 % when
nothing differs. Here the total error level α is spent over the planned looks with the
Lan–DeMets O'Brien–Fleming-type spending function (Lan & DeMets 1983; O'Brien & Fleming
1979)::

    α(t) = 2 − 2 Φ(z_{1−α/2} / √t),   t = seeds at the look / maximum seeds

Look k tests at the alpha spent since the previous look, α(t_k) − α(t_{k−1}); by the
union bound the chance of any false "beats" (or false "equivalent") over all looks is at
most Σ_k (α(t_k) − α(t_{k−1})) = α, whatever the correlation between looks — a
conservative (Bonferroni-type) use of the spending function that needs no joint
distribution of the t-statistics. Inside a look, the comparisons of one factor are
Holm-corrected at that look's level. A comparison's verdict is the first look at which it
was decided, computed from its first n_k seeds in seed order, so the verdicts are a
deterministic function of the stored runs.

    >>> d = Design.plan(3, 10); d.looks
    (3, 5, 8, 10)
    >>> [round(x, 4) for x in d.increments()]
    [0.0003, 0.0052, 0.0229, 0.0216]
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ablab.analysis.comparison import Comparison, add_power, decide_family
from ablab.analysis.stats import ALPHA, CONSTANT_TOL, difference_scale, sign_test_floor

DESIGN_FILE = "sequential.json"
METHOD = (
    "Group-sequential design: alpha spent over the planned looks with the Lan–DeMets "
    "O'Brien–Fleming-type spending function (Lan & DeMets 1983, Biometrika 70:659; "
    "O'Brien & Fleming 1979, Biometrics 35:549); each look tests at the alpha spent since "
    "the previous one (a conservative Bonferroni-type allocation), Holm within a look."
)


def obrien_fleming(t: float, alpha: float) -> float:
    """Lan–DeMets O'Brien–Fleming-type spending: α(t) = 2 − 2Φ(z_{1−α/2}/√t)."""
    from scipy import stats  # here: scipy.stats takes a second to import (see stats.py)

    if t <= 0:
        return 0.0
    return float(2 - 2 * stats.norm.cdf(stats.norm.ppf(1 - alpha / 2) / math.sqrt(min(t, 1.0))))


def pocock(t: float, alpha: float) -> float:
    """Lan–DeMets Pocock-type spending: α(t) = α ln(1 + (e − 1) t)."""
    if t <= 0:
        return 0.0
    return float(alpha * math.log(1 + (math.e - 1) * min(t, 1.0)))


SPENDING = {"obrien_fleming": obrien_fleming, "pocock": pocock}


@dataclass(frozen=True)
class Design:
    """The planned looks (seeds per variant at each, ascending; the last is the budget),
    the total alpha and the spending function's name."""

    looks: tuple[int, ...]
    alpha: float = ALPHA
    spending: str = "obrien_fleming"

    @classmethod
    def plan(cls, start: int, max_seeds: int, rounds: int = 3, alpha: float = ALPHA,
             spending: str = "obrien_fleming") -> Design:
        """Looks from ``start`` seeds to ``max_seeds`` in at most ``rounds`` more rounds,
        evenly spaced: Design.plan(3, 10).looks == (3, 5, 8, 10)."""
        start = max(2, int(start))
        max_seeds = max(start, int(max_seeds))
        raw = np.linspace(start, max_seeds, rounds + 1)
        looks = tuple(sorted({int(math.floor(x + 0.5)) for x in raw}))
        return cls(looks, alpha, spending)

    def spent(self) -> list[float]:
        """Cumulative alpha spent at each look."""
        f = SPENDING[self.spending]
        return [f(n / self.looks[-1], self.alpha) for n in self.looks]

    def increments(self) -> list[float]:
        """The level each look tests at: alpha spent since the previous look."""
        spent = self.spent()
        return [b - a for a, b in zip([0.0, *spent[:-1]], spent, strict=True)]

    def next_look(self, n: int) -> int | None:
        """The first planned look above ``n`` seeds (None at or past the budget)."""
        return next((k for k in self.looks if k > n), None)

    def to_dict(self) -> dict:
        return {"looks": list(self.looks), "alpha": self.alpha, "spending": self.spending}

    @classmethod
    def from_dict(cls, data: dict) -> Design:
        return cls(tuple(int(x) for x in data["looks"]), float(data.get("alpha", ALPHA)),
                   str(data.get("spending", "obrien_fleming")))


def save_design(root: str | Path, design: Design) -> Path:
    path = Path(root) / DESIGN_FILE
    path.write_text(json.dumps(design.to_dict(), indent=1) + "\n")
    return path


def load_design(root: str | Path) -> Design | None:
    """The study directory's design, None for a fixed-seed study."""
    path = Path(root) / DESIGN_FILE
    if not path.exists():
        return None
    return Design.from_dict(json.loads(path.read_text()))


def _n(c: Comparison) -> int:
    return min(c.result.n_a, c.result.n_b)


def _decide_look_by_look(
    members: list[Comparison], design: Design, margin: float | None
) -> dict[int, Comparison]:
    """One family's comparisons as the looks decided them: index → the comparison on the
    seeds of the first look that decided it, or of the last look it reached (those below
    the first look are absent). Each look Holm-corrects, at its spent alpha, the family's
    comparisons still open that have the look's seeds."""
    final: dict[int, Comparison] = {}
    open_ = [i for i, c in enumerate(members) if c.testable]
    for k, (n_k, level) in enumerate(zip(design.looks, design.increments(), strict=True)):
        here = [i for i in open_ if _n(members[i]) >= n_k]
        if not here:
            continue
        at_look = [members[i].on_first_seeds(n_k) for i in here]
        decide_family(at_look, level, margin, power=False)
        for i, seen in zip(here, at_look, strict=True):
            seen.look, seen.looks = k + 1, len(design.looks)
            final[i] = seen
            if seen.decided:
                open_.remove(i)
    return final


def apply_design(
    comparisons: list[Comparison], design: Design, margin: float | None
) -> list[Comparison]:
    """``comparisons`` re-decided look by look under ``design`` (a new list, same order):
    each family (factor × metric) is Holm-corrected at each look's spent alpha over its
    comparisons still undecided that have that look's seeds; a comparison keeps the first
    look that decided it, or the last look it reached. Below the first look nothing is
    decided: such a comparison is decided alone at the first look's level."""
    families: dict[tuple[str, str], list[int]] = {}
    for i, c in enumerate(comparisons):
        families.setdefault((c.factor, c.metric), []).append(i)
    out = list(comparisons)
    first_level = design.increments()[0]
    for indices in families.values():
        members = [comparisons[i] for i in indices]
        final = _decide_look_by_look(members, design, margin)
        for j, (i, c) in enumerate(zip(indices, members, strict=True)):
            if j in final:
                decided = final[j]
                add_power(decided)  # undecided: what the last look reached would take
            else:
                decided = dataclasses.replace(c)
                if c.testable:  # below the first look: nothing decided
                    decide_family([decided], first_level, margin)
                    decided.look, decided.looks = None, len(design.looks)
            out[i] = decided
    return out


def sequential_outcomes(
    a, b, design: Design, margin: float = 0.01, metric: str = "test_accuracy"
) -> tuple[np.ndarray, np.ndarray]:
    """The group-sequential procedure on many paired comparisons at once (one per row of
    ``a`` and ``b``, a value per seed in the columns): at each look the paired t-interval
    of the transformed per-seed differences on the first n_k seeds, at the look's spent
    alpha ("beats" when it excludes 0), and the (1 − 2·level) interval for equivalence
    ("equivalent" when inside ±margin). The same intervals as :class:`ScaledT` (the tests
    check that it agrees with :func:`apply_design`), vectorised for simulations.
    Returns (outcomes: array of "beats" / "equivalent" / "undecided", seeds used)."""
    from scipy import stats

    a, b = np.atleast_2d(np.asarray(a, dtype=float)), np.atleast_2d(np.asarray(b, dtype=float))
    scale = difference_scale(metric)
    rows = a.shape[0]
    outcome = np.full(rows, "undecided", dtype=object)
    used = np.zeros(rows, dtype=int)
    open_ = np.ones(rows, dtype=bool)
    z_all = scale.to_z(a - b)
    raw_all = a - b
    margin_z = float(scale.to_z([margin])[0])
    for n_k, level in zip(design.looks, design.increments(), strict=True):
        if n_k > z_all.shape[1]:
            break
        z = z_all[:, :n_k]
        est = z.mean(axis=1)
        se = z.std(axis=1, ddof=1) / math.sqrt(n_k)
        constant = np.ptp(z, axis=1) <= CONSTANT_TOL
        q = float(stats.t.ppf(1 - level / 2, n_k - 1))
        q2 = float(stats.t.ppf(1 - level, n_k - 1))
        diff = raw_all[:, :n_k].mean(axis=1)
        # constant differences: the sign test decides (ScaledT.floor_p), not p = 0
        floor = sign_test_floor(n_k)
        beats = np.where(
            constant, (diff != 0) & (floor < level), (est - q * se > 0) | (est + q * se < 0)
        )
        inside = np.where(
            constant, (np.abs(diff) < margin) & (floor / 2 < level),
            (est - q2 * se > -margin_z) & (est + q2 * se < margin_z),
        )
        now_beats = open_ & beats
        now_equal = open_ & ~beats & inside
        outcome[now_beats], outcome[now_equal] = "beats", "equivalent"
        used[open_] = n_k
        open_ &= ~(now_beats | now_equal)
    return outcome, used


def sequential_outcome(
    a, b, design: Design, margin: float = 0.01, metric: str = "test_accuracy"
) -> tuple[str, int]:
    """:func:`sequential_outcomes` for one paired comparison: (outcome, seeds used)."""
    outcome, used = sequential_outcomes([a], [b], design, margin, metric)
    return str(outcome[0]), int(used[0])
