"""The report's "Sources of variance" section (a study with ``variance = "sources"``):
each variant's share of the seed-to-seed variance from the data split, the
initialisation and the training order, with 95 % intervals, and what that means for the
verdicts (see :mod:`ablab.analysis.variance`).

    >>> section = variance_section(analysis)                     # doctest: +SKIP
    >>> section["table"]["header"][:2]                           # doctest: +SKIP
    ['variant', 'runs']
"""

from __future__ import annotations

import math
from typing import Any

from ablab.analysis import StudyAnalysis
from ablab.analysis.variance import (
    SOURCE_NAMES,
    SOURCES,
    Decomposition,
    NotEstimated,
    share_sentence,
)

NOTE = (
    "For each variant a nested design: the study's seeds as data splits (split_seed), as "
    "many initialisations inside each split (init_seed) and as many training orders "
    "inside each initialisation (order_seed: batch order, augmentation, dropout). Shares "
    "of the seed-to-seed variance of test accuracy (the variance of a run with all three "
    "seeds fresh); SDs in percentage points; 95 % generalized confidence intervals (see "
    "Methods). With 3 seeds a split share rests on 2 degrees of freedom: its interval is "
    "wide by nature. "
    "Every run of the design is in variance_runs.csv; the verdicts above use the "
    "study's own runs only (each seed's split, initialisation and order together)."
)


def _pct(x: float) -> str:
    return "–" if not math.isfinite(x) else f"{x * 100:.0f} %"


def _pp(x: float) -> str:
    return "–" if not math.isfinite(x) else f"{x * 100:.2f}"


def variance_section(a: StudyAnalysis) -> dict[str, Any] | None:
    """Table, sentences and notes of the section; None for a study without the design."""
    if not a.variance_sources:
        return None
    header = ["variant", "design (splits × inits × orders)", "SD, all seeds (pp)"]
    for s in SOURCES:
        name = SOURCE_NAMES[s].removeprefix("the ").split(" (")[0]
        header += [f"{name}: share [95 % interval]", f"{name}: SD (pp)"]
    rows, sentences, missing = [], [], []
    for d in a.variance_sources:
        if isinstance(d, NotEstimated):
            missing.append(f"{d.label or a.name}: not estimated — {d.reason}.")
            continue
        assert isinstance(d, Decomposition)
        cells = [d.label or a.name, " × ".join(map(str, d.levels)),
                 _pp(math.sqrt(d.total))]
        for s in SOURCES:
            low, high = d.share_ci[s]
            sd_low, sd_high = d.sd_ci(s)
            cells += [f"{_pct(d.shares[s])} [{_pct(low)}, {_pct(high)}]",
                      f"{_pp(d.sd(s))} [{_pp(sd_low)}, {_pp(sd_high)}]"]
        rows.append({"cells": cells})
        sentences.append(share_sentence(d))
    return {
        "note": NOTE,
        "table": {"header": header, "rows": rows},
        "sentences": sentences,
        "meaning": a.variance_sentences,
        "missing": missing,
    }
