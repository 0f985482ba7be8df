"""The report's "Against the source" section: each figure a source reported (a study
file's ``[[reference]]`` tables) beside ablab's mean and 95 % CI over seeds, and each
verdict it drew (``[[reference_claim]]``) re-judged over the seeds.

    >>> section = against_source(analysis)                        # doctest: +SKIP
    >>> section["figures"]["rows"][0]["cells"]                     # doctest: +SKIP
    ['loss=cross_entropy, dataset=digits', 'final test accuracy', '98.33', '98.06', ...]
"""

from __future__ import annotations

import math
from typing import Any

from ablab.analysis import StudyAnalysis, Variant
from ablab.analysis.stats import TwoSample, compare_samples, describe
from ablab.analysis.verdicts import MINUS, format_p
from ablab.references import (
    REFERENCE_METRICS,
    Reference,
    ReferenceClaim,
    references_from_text,
)

#: History keys of the per-epoch record behind the ``final_*`` metrics.
_LAST_EPOCH = {
    "final_train_loss": "train_loss",
    "final_train_accuracy": "train_accuracy",
    "final_val_loss": "val_loss",
    "final_val_accuracy": "val_accuracy",
}


def _lookup(config: dict[str, Any], path: str) -> Any:
    node: Any = config
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


_MISSING = object()


def _same(expected: Any, actual: Any) -> bool:
    if isinstance(actual, dict) and isinstance(expected, str):
        return actual.get("name") == expected  # a component given by name
    if isinstance(actual, dict) and isinstance(expected, dict):
        return all(_same(v, actual.get(k, _MISSING)) for k, v in expected.items())
    if isinstance(expected, bool) or isinstance(actual, bool):
        return expected is actual
    if isinstance(expected, (int, float)) and isinstance(actual, (int, float)):
        return math.isclose(float(expected), float(actual), rel_tol=1e-9, abs_tol=1e-12)
    return expected == actual


def matches(levels: dict[str, Any], variant: Variant) -> bool:
    """Whether ``variant`` has every level ``levels`` names: a key that is a column of the
    study's tables (a factor's name or ``_name``) is compared with the variant's value
    there (so a labelled level, ``optimizer = "sgd_momentum"``, matches its label); any
    other key is a dotted path into the variant's resolved config."""
    for key, expected in levels.items():
        if key in variant.values:
            if str(variant.values[key]) != str(expected):
                return False
            continue
        actual = _lookup(variant.config, key)
        if actual is _MISSING or not _same(expected, actual):
            return False
    return True


def find_variants(levels: dict[str, Any], variants: list[Variant]) -> list[Variant]:
    return [v for v in variants if matches(levels, v)]


def metric_by_seed(variant: Variant, metric: str) -> dict[int, float]:
    """Seed → value of a reference metric over the variant's finished (done) runs."""
    out: dict[int, float] = {}
    for row in variant.done:
        run_id = row["run_id"]
        if metric in _LAST_EPOCH:
            value = (variant.curves.last_epoch.get(run_id) or {}).get(_LAST_EPOCH[metric])
        elif metric == "zero_activation_fraction_mean":
            value = (variant.curves.scalars.get(run_id) or {}).get(metric)
        else:
            value = variant.run_metrics.get(run_id, {}).get(metric)
        if isinstance(value, (int, float)) and math.isfinite(value):
            out[row["seed"]] = float(value)
    return out


def format_metric(value: float | None, metric: str, approximate: bool = False) -> str:
    if value is None or not math.isfinite(value):
        return "–"
    if REFERENCE_METRICS[metric][1] == "fraction":
        text = f"{value * 100:.2f}"
    else:
        text = f"{value:.4f}"
    return ("≈ " if approximate else "") + text.replace("-", MINUS)


def metric_label(metric: str) -> str:
    """``final test accuracy (%)``: the metric's description and the unit it is shown in."""
    unit = " (%)" if REFERENCE_METRICS[metric][1] == "fraction" else ""
    return REFERENCE_METRICS[metric][0] + unit


def compare_reference(ref: Reference, variants: list[Variant]) -> dict[str, Any]:
    """One reference figure against ablab's runs: plain data (the numbers and a verdict
    word), for the report and for ``benchmarks/reproduce.py``."""
    found = find_variants(ref.levels, variants)
    out: dict[str, Any] = {
        "levels": dict(ref.levels),
        "metric": ref.metric,
        "value": ref.value,
        "approximate": ref.approximate,
        "source": ref.source,
        "note": ref.note,
        "variant": None,
        "n": 0,
        "runs": 0,
        "not_done": 0,
        "mean": math.nan,
        "std": math.nan,
        "ci_low": math.nan,
        "ci_high": math.nan,
        "inside": None,
    }
    levels = ", ".join(f"{k}={v}" for k, v in ref.levels.items()) or "(the one variant)"
    if len(found) != 1:
        out["verdict"] = (
            f"matches no variant of this study ({levels})"
            if not found
            else f"matches {len(found)} variants ({levels}); name more levels"
        )
        return out
    variant = found[0]
    values = list(metric_by_seed(variant, ref.metric).values())
    d = describe(values)
    out.update(
        variant=variant.label,
        n=d["n"],
        runs=len(variant.runs),
        not_done=len(variant.runs) - len(variant.done),
        mean=d["mean"],
        std=d["std"],
        ci_low=d["ci_low"],
        ci_high=d["ci_high"],
    )
    if d["n"] == 0:
        out["verdict"] = "no finished run"
    elif d["n"] == 1 or not math.isfinite(d["ci_low"]):
        out["verdict"] = f"no CI from {d['n']} seed"
    elif d["ci_low"] <= ref.value <= d["ci_high"]:
        out["inside"] = True
        out["verdict"] = "inside"
    else:
        out["inside"] = False
        out["verdict"] = "above the CI" if ref.value > d["ci_high"] else "below the CI"
    if out["not_done"]:
        out["verdict"] += (
            f"; {out['not_done']} of {out['runs']} runs not done (diverged, failed or pending)"
        )
    return out


def _test_by_seed(better: Variant, worse: Variant, metric: str) -> TwoSample:
    """A paired t-test by seed where both variants ran the same seeds (≥ 2) on the same
    data, else Welch's."""
    a, b = metric_by_seed(better, metric), metric_by_seed(worse, metric)
    paired = (
        set(a) == set(b)
        and len(a) >= 2
        and better.config.get("dataset") == worse.config.get("dataset")
    )
    if paired:
        seeds = sorted(a)
        return compare_samples([a[s] for s in seeds], [b[s] for s in seeds], paired=True)
    return compare_samples(list(a.values()), list(b.values()), paired=False)


def _claim_word(r: TwoSample, higher_is_better: bool) -> str:
    """"holds" / "is reversed" need p < 0.05 and a 95 % CI that excludes 0."""
    excludes = math.isfinite(r.ci_low) and (r.ci_low > 0 or r.ci_high < 0)
    if not (r.p < 0.05 and excludes):
        return "is not distinguishable"
    sign = 1.0 if higher_is_better else -1.0
    return "holds" if sign * r.diff > 0 else "is reversed"


def _difference_text(r: TwoSample, metric: str) -> tuple[str, str]:
    """The difference and its 95 % CI as the claim's sentence prints them."""
    scale = 100.0 if REFERENCE_METRICS[metric][1] == "fraction" else 1.0
    unit = " pp" if scale == 100.0 else ""
    diff = f"{r.diff * scale:+.2f}{unit}".replace("-", MINUS)
    if math.isfinite(r.ci_low) and math.isfinite(r.ci_high):
        ci = f"95 % CI [{r.ci_low * scale:.2f}, {r.ci_high * scale:.2f}]".replace("-", MINUS)
    else:
        # constant per-seed differences: the exact test that decides then cannot give a
        # 95 % interval from this few seeds (ScaledT.floor_p); say that, no interval
        ci = "the same difference in every seed, too few seeds for an exact 95 % interval"
    return diff, ci


def judge_claim(
    claim: ReferenceClaim, variants: list[Variant], comparisons: list | None = None
) -> dict[str, Any]:
    """A source's verdict ("``better`` beats ``worse``") re-judged over the seeds. Where
    the study itself compares the two variants on the claim's outcome (``comparisons``:
    the analysis' verdicts, e.g. on the zero-activation fraction), that verdict decides
    (Holm-adjusted within its family, equivalence and all); else a paired t-test by seed
    where both variants ran the same seeds on the same data, or Welch's: "holds" /
    "reversed" need p < 0.05 and a 95 % CI of the difference that excludes 0 (one claim at
    a time, not adjusted for multiplicity)."""
    better, worse = find_variants(claim.better, variants), find_variants(claim.worse, variants)
    out: dict[str, Any] = {"claim": claim.claim, "source": claim.source, "metric": claim.metric}
    head = f"The source's \u201c{claim.claim}\u201d (one run each; {claim.source})"
    if len(better) != 1 or len(worse) != 1:
        out["judgement"] = "unmatched"
        out["text"] = f"{head}: its variants do not match exactly one variant each here."
        return out
    pair = {better[0].label, worse[0].label}
    found = next((c for c in comparisons or () if c.metric == claim.metric
                  and {c.variant_a, c.variant_b} == pair), None)
    if found is not None:
        return _judged_by_verdict(found, better[0].label, head, out)
    r = _test_by_seed(better[0], worse[0], claim.metric)
    n = f"{r.n_a} / {r.n_b} seeds"
    if not math.isfinite(r.p):
        out["judgement"] = "untestable"
        out["text"] = f"{head} cannot be judged here: too few finished runs ({n})."
        return out
    word = _claim_word(r, higher_is_better=REFERENCE_METRICS[claim.metric][2])
    diff, ci = _difference_text(r, claim.metric)
    out["judgement"] = word.removeprefix("is ")
    out["text"] = (
        f"{head} {word} over {n} here: {REFERENCE_METRICS[claim.metric][0]} "
        f"{better[0].label} minus {worse[0].label} = {diff} ({ci}, {r.test}, "
        f"p {_p(r.p)})."
    )
    return out


def _judged_by_verdict(c, better: str, head: str, out: dict[str, Any]) -> dict[str, Any]:
    """The claim judged by the study's own comparison ``c`` of its two variants."""
    from ablab.analysis.verdicts import verdict

    better_level = c.level_a if c.variant_a == better else c.level_b
    if c.significant:
        word = "holds" if c.winner == better_level else "is reversed"
    elif c.outcome == "equivalent":
        word = "is not borne out (the two are equivalent)"
    elif c.outcome == "not applicable":
        word = "cannot be judged (the figure does not apply)"
    else:
        word = "is not distinguishable"
    out["judgement"] = {"holds": "holds", "is reversed": "reversed"}.get(
        word, "equivalent" if "equivalent" in word else (
            "not applicable" if "apply" in word else "not distinguishable"))
    seeds = f"{c.result.n_a} / {c.result.n_b} seeds"
    out["text"] = f"{head} {word} over {seeds} here, by the study's own verdict: {verdict(c)}"
    return out


def _p(p: float) -> str:
    text = format_p(p)
    return text if text.startswith("<") else f"= {text}"


def against_source(a: StudyAnalysis) -> dict[str, Any]:
    """The section's content: a table of the reference figures, the re-judged claims, and
    the plain-data rows (``figures_data``, ``claims_data``). Empty lists when the study
    file states no reference."""
    refs, claims = references_from_text(a.study_text)
    rows = [compare_reference(r, a.variants) for r in refs]
    table_rows = []
    for row in rows:
        metric = row["metric"]
        ci = (
            f"[{format_metric(row['ci_low'], metric)}, {format_metric(row['ci_high'], metric)}]"
            if math.isfinite(row["ci_low"])
            else "–"
        )
        mean = format_metric(row["mean"], metric)
        if math.isfinite(row["std"]):
            mean += f" ± {format_metric(row['std'], metric)}"
        table_rows.append({
            "cells": [
                row["variant"] or ", ".join(f"{k}={v}" for k, v in row["levels"].items()),
                metric_label(metric),
                format_metric(row["value"], metric, row["approximate"]),
                mean,
                ci,
                str(row["n"]),
                row["verdict"],
                row["source"] + (f" — {row['note']}" if row["note"] else ""),
            ],
            "bad": row["inside"] is False,
        })
    judged = [judge_claim(c, a.variants, a.comparisons) for c in claims]
    return {
        "figures": {
            "header": ["variant", "metric", "source", "ablab mean ± std", "95 % CI (t)",
                       "seeds", "source figure vs CI", "where the figure comes from"],
            "rows": table_rows,
        },
        "claims": [c["text"] for c in judged],
        "figures_data": rows,
        "claims_data": judged,
    }
