"""Verdict sentences: what each comparison shows, and no more.

Three outcomes per comparison, each naming its factor: "activation=relu beats
activation=sigmoid" (Holm rejects "no difference"; the interval printed is the one at the
Holm step's level, which excludes 0 exactly then), "equivalent within ±Δ" (two one-sided
tests, the printed interval is the (1 − 2α) one that lies inside ±Δ), and "undecided"
(with the smallest difference the seeds can detect and the seeds needed). Variants that
diverged, failed or did not learn get their own sentences.

    >>> format_p(0.0496), format_p(0.0504), format_p(0.00001)
    ('0.0496', '0.0504', '< 0.001')
"""

from __future__ import annotations

import math
from typing import Any

from ablab.analysis.comparison import Comparison, Ranking
from ablab.analysis.outcomes import DEFAULT_PRIMARY, Outcome, outcome_of
from ablab.analysis.runs import Variant
from ablab.analysis.stats import ALPHA

MINUS = "\u2212"


def format_p(p: float) -> str:
    """Two significant digits, more where rounding would cross 0.05; "< 0.001" below."""
    if not math.isfinite(p):
        return "n/a"
    if p < 0.001:
        return "< 0.001"
    for digits in range(2, 7):
        text = f"{p:.{digits}g}"
        if (float(text) < ALPHA) == (p < ALPHA) and float(text) != ALPHA:
            break
    if "e" in text:
        text = f"{p:.{digits + 2}f}"
    return text


def _num(value: float, metric: str | Outcome, signed: bool) -> str:
    if math.isinf(value):
        return ("+" if value > 0 and signed else "") + ("∞" if value > 0 else f"{MINUS}∞")
    o = outcome_of(metric)
    if o.percent:
        text = f"{value * 100:{'+' if signed else ''}.1f}"
    elif o.unit == "s":  # seconds: hundredths, the same in a value and its interval
        text = f"{value:{'+' if signed else ''}.2f}"
    else:
        text = f"{value:{'+' if signed else ''}.3f}"
    return text.replace("-", MINUS)


def unit(metric: str | Outcome) -> str:
    """`` pp`` for fractions (a difference of accuracies in percentage points), `` s``
    for seconds, the outcome's own unit, or nothing."""
    o = outcome_of(metric)
    if o.percent:
        return " pp"
    return f" {o.unit}" if o.unit else ""


def format_diff(value: float, metric: str, signed: bool = True) -> str:
    """``+1.2 pp`` for accuracies (percentage points), ``−0.034`` for losses."""
    return _num(value, metric, signed) + unit(metric)


def format_ci(low: float, high: float, metric: str, signed: bool = True) -> str:
    if not (math.isfinite(low) and math.isfinite(high)):
        return "95 % CI n/a"
    return f"95 % CI {_num(low, metric, signed)} to {_num(high, metric, signed)}"


def format_effect(value: float, name: str) -> str:
    if math.isnan(value):
        return f"{name} n/a"
    if math.isinf(value):  # zero spread: the ratio is not a size
        return f"{name} undefined (zero spread)"
    return f"{name} = {value:.1f}".replace("-", MINUS)


def _n(c: Comparison) -> str:
    r = c.result
    return f"n = {r.n_a}" if r.n_a == r.n_b else f"n = {r.n_a} and {r.n_b}"


def _p(c: Comparison) -> str:
    text = format_p(c.p_holm)
    text = f"p {text}" if text.startswith("<") else f"p = {text}"
    return text + (" after Holm" if c.family_size > 1 else "")


def format_level_ci(low: float, high: float, confidence: float, metric: str, signed=True) -> str:
    """``95 % CI +1.0 to +5.0``; another level is printed as it is (``98.3 % CI``)."""
    text = format_ci(low, high, metric, signed)
    digits = 1 if confidence < 0.995 else 2  # 99.87 %, not a rounded 99.9 %
    pct = f"{confidence * 100:.{digits}f}".rstrip("0").removesuffix(".")
    return text.replace("95 % CI", f"{pct} % CI", 1)


def _decision_ci(c: Comparison, low: float, high: float, signed: bool = True) -> str:
    text = format_level_ci(low, high, 1 - c.level, c.spec, signed)
    if c.look is not None:
        return f"{text}, look {c.look} of {c.looks}"
    if c.family_size > 1:
        return f"{text}, Holm-adjusted"
    return text


def format_poi(c: Comparison, a_first: bool = True) -> str:
    """``P(a > b) = 0.89 [0.56, 1.00]``: probability that a run of a is better."""
    if not math.isfinite(c.poi):
        return ""
    est, low, high = c.poi, c.poi_low, c.poi_high
    if not a_first:
        est, low, high = 1 - est, 1 - high, 1 - low
    ci = f" [{low:.2f}, {high:.2f}]" if math.isfinite(low) else ""
    return f"P(better) = {est:.2f}{ci}, "


def factor_level(c: Comparison, level: str) -> str:
    """``activation=relu``: a level named with its factor."""
    return f"{c.factor}={level}"


def _power(c: Comparison) -> str:
    """What an undecided comparison would take."""
    n = min(c.result.n_a, c.result.n_b)
    parts = []
    if math.isfinite(c.detectable):
        parts.append(
            f"{n} seeds detect {format_diff(c.detectable, c.spec, signed=False)} at 80 % power"
        )
    if c.seeds_needed is not None:
        parts.append(
            f"deciding {format_diff(abs(c.result.diff), c.spec, signed=False)} needs "
            f"~{c.seeds_needed} seeds per variant"
        )
    elif math.isfinite(c.result.diff) and c.result.diff == 0:
        parts.append("the observed difference is 0")
    elif c.testable:
        parts.append("no affordable number of seeds decides the observed difference")
    return "; ".join(parts)


def _where(c: Comparison) -> str:
    """The sentence's opening: the stratum, and whether the levels saw different data."""
    where = f"On {c.stratum}, " if c.stratum else ""
    if c.different_data:
        where = f"{where}tested on different data, " if where else "Tested on different data, "
    return where


def _test(c: Comparison) -> str:
    return "paired by seed" if c.result.test == "paired t" else "Welch"


def _levels(c: Comparison) -> tuple[str, str]:
    return factor_level(c, c.level_a), factor_level(c, c.level_b)


def _not_applicable_sentence(c: Comparison) -> str:
    a, b = _levels(c)
    lacking = " and ".join(factor_level(c, lv) for lv in c.not_applicable)
    return (
        f"{a} vs {b}: not applicable — {lacking} records no {c.spec.label} "
        "(it has no layer the figure is defined for), which is not a value of 0."
    )


def _untestable_sentence(c: Comparison) -> str:
    r, (a, b) = c.result, _levels(c)
    shown = "no finished runs" if min(r.n_a, r.n_b) == 0 else "fewer than 2 finished runs"
    diff = f"{format_diff(r.diff, c.spec)} {c.spec.label}, " if math.isfinite(r.diff) else ""
    return f"{a} vs {b}: {diff}{shown} on a side ({_n(c)}): no test possible, undecided."


def _beats_sentence(c: Comparison) -> str:
    r, (a, b) = c.result, _levels(c)
    winner_is_a = c.winner == c.level_a
    win, lose = (a, b) if winner_is_a else (b, a)
    sign = 1.0 if r.diff > 0 else -1.0  # the CI of |difference|
    low, high = sorted((sign * c.decision_low, sign * c.decision_high))
    by = format_diff(abs(r.diff), c.spec, signed=False)
    lower = "" if c.higher_is_better else "lower "
    return (
        f"{win} beats {lose} by {by} {lower}{c.spec.label} "
        f"({_decision_ci(c, low, high, signed=False)}, {_p(c)}, "
        f"{format_effect(abs(r.effect), r.effect_name)}, "
        f"{format_poi(c, winner_is_a)}{_n(c)}, {_test(c)})."
    )


def _equivalent_sentence(c: Comparison) -> str:
    a, b = _levels(c)
    if c.identical:
        return (
            f"{a} and {b} gave identical results in every seed ({_n(c)}): "
            f"{c.spec.label} the same in each of the {len(c.values_a)} seeds, judged "
            "equivalent."
        )
    margin = format_diff(c.margin, c.spec, signed=False)
    ci = format_level_ci(c.equivalence_low, c.equivalence_high, 1 - 2 * c.equivalence_level, c.spec)
    p = format_p(c.p_equivalence_holm)
    p = f"TOST p {p}" if p.startswith("<") else f"TOST p = {p}"
    if c.family_size > 1:
        p += " after Holm"
    look = f", look {c.look} of {c.looks}" if c.look is not None else ""
    return (
        f"{a} and {b} are equivalent within ±{margin} {c.spec.label}: "
        f"{format_diff(c.result.diff, c.spec)} ({ci} inside ±{margin}{look}, {p}, "
        f"{format_poi(c)}{_n(c)}, {_test(c)})."
    )


def _zero_spread_sentence(c: Comparison) -> str:
    """An undecided comparison whose per-seed differences (or values) do not vary: the
    difference is stated as the seeds gave it; no interval and no effect size, which have
    no spread to be measured in; what the exact test would need."""
    r, (a, b) = c.result, _levels(c)
    diff, what = format_diff(r.diff, c.spec), c.spec.label
    if c.paired:
        same = f"the same difference in each of the {len(c.values_a)} seeds"
        exact = "sign test"
    else:
        same = "each level the same value in every run"
        exact = "exact rank test"
    needs = (
        f"; {c.seeds_needed} seeds per variant would decide it if every seed agreed again"
        if c.seeds_needed is not None else ""
    )
    return (
        f"{a} vs {b}: {diff} {what}, {same} — zero spread, so no confidence interval or "
        f"effect size ({exact} {_p(c)}, {format_poi(c)}{_n(c)}, {_test(c)}): "
        f"undecided{needs}."
    )


def _undecided_sentence(c: Comparison) -> str:
    if c.zero_spread:
        return _zero_spread_sentence(c)
    r, (a, b) = c.result, _levels(c)
    power = _power(c)
    return (
        f"{a} vs {b}: {format_diff(r.diff, c.spec)} {c.spec.label} "
        f"({_decision_ci(c, c.decision_low, c.decision_high)}, {_p(c)}, "
        f"{format_effect(r.effect, r.effect_name)}, {format_poi(c)}{_n(c)}, {_test(c)}): "
        f"undecided{' — ' + power if power else ''}."
    )


#: One sentence builder per :attr:`Comparison.outcome`.
SENTENCES = {
    "not applicable": _not_applicable_sentence,
    "untestable": _untestable_sentence,
    "beats": _beats_sentence,
    "equivalent": _equivalent_sentence,  # identical results too
    "undecided": _undecided_sentence,
}


def verdict(c: Comparison) -> str:
    """One sentence for one comparison; the numbers say exactly what the words say, and
    the interval printed is the one that decided. A sentence that starts with a factor's
    name is never capitalised."""
    return _where(c) + SENTENCES[c.outcome](c)


def terminal_lines(comparisons: list[Comparison], metric: str = DEFAULT_PRIMARY) -> list[str]:
    """Verdict lines for a terminal, like a test summary: decided comparisons first
    ("BEATS", "EQUIVALENT"), then the undecided ones, one line each."""
    order = {"beats": 0, "equivalent": 1, "undecided": 2, "untestable": 3,
             "not applicable": 4}
    tags = {"beats": "BEATS     ", "equivalent": "EQUIVALENT", "undecided": "UNDECIDED ",
            "untestable": "UNDECIDED ", "not applicable": "N/A       "}
    chosen = [c for c in comparisons if c.metric == metric]
    chosen.sort(key=lambda c: order[c.outcome])  # stable: plan order within an outcome
    return [f"{tags[c.outcome]} {verdict(c)}" for c in chosen]


def _pct(x: float) -> str:
    return f"{x * 100:.0f} %"


def variant_status_sentences(v: Variant) -> list[str]:
    """Sentences for a variant whose runs diverged, failed or ended at chance."""
    out = []
    total = len(v.runs)
    chance = v.at_chance
    label = v.label or "The base recipe"
    if chance:
        level = (chance[0].get("final") or {}).get("chance_accuracy")
        at = f" ({_pct(level)})" if level is not None else ""
        if len(chance) == len(v.done):
            out.append(
                f"{label} did not learn: {len(chance)} of {total} runs at chance{at}."
            )
        else:
            out.append(
                f"{label}: {len(chance)} of {total} runs at chance{at}; they are kept in "
                "its means and counted in the at-chance column."
            )
    diverged = v.with_status("diverged")
    if diverged:
        epochs = ", ".join(str(r.get("diverged_epoch")) for r in diverged)
        out.append(
            f"{label}: {len(diverged)} of {total} runs diverged (at epoch {epochs}); they "
            "are left out of its means."
        )
    failed = v.with_status("failed")
    if failed:
        reason = (failed[0].get("error") or "unknown error").strip().splitlines()[-1][:120]
        out.append(
            f"{label}: {len(failed)} of {total} runs failed ({reason}); they are left out "
            "of its means."
        )
    return out


def ranking_sentence(r: Ranking) -> str:
    """``On dataset=moons, activation by test accuracy: a (a) 84.8 %, ...``."""
    where = f"On {r.stratum}, " if r.stratum else ""
    parts = []
    for level, mean, letters in zip(r.levels, r.means, r.letters, strict=True):
        o = outcome_of(r.metric)
        shown = f"{mean * 100:.1f} %" if o.percent else f"{mean:.3f}{unit(o)}"
        parts.append(f"{level} {shown} ({letters})")
    groups = r.groups()
    tail = (
        "all tied" if len(groups) == 1
        else "levels sharing a letter are not distinguishable"
    )
    text = f"{where}{r.factor} by {outcome_of(r.metric).label}: {', '.join(parts)}; {tail}."
    return text  # "batch_norm by test accuracy", the factor as the study file names it


def status_line(counts: dict[str, Any], at_chance: int = 0) -> str:
    """``12 of 18 runs done; 6 pending`` (diverged, failed, at-chance added when any)."""
    total = sum(counts.get(k, 0) for k in ("pending", "running", "done", "diverged", "failed"))
    parts = [f"{counts.get('done', 0)} of {total} run{'' if total == 1 else 's'} done"]
    for key in ("running", "pending", "diverged", "failed"):
        if counts.get(key):
            parts.append(f"{counts[key]} {key}")
    if at_chance:
        parts.append(f"{at_chance} of the done runs at chance")
    return "; ".join(parts)
