"""Methodology warnings: each function returns a list of one-sentence warnings (empty
when the study is sound on that point).

    >>> warn_few_seeds([])
    []
"""

from __future__ import annotations

import math
from typing import Any

from ablab.analysis.compare import Comparison, strata
from ablab.analysis.runs import Factor, Variant, flatten
from ablab.identity import outside_identity

MIN_SEEDS = 3


def _names(items: list[str], limit: int = 4) -> str:
    items = list(dict.fromkeys(items))
    shown = "; ".join(items[:limit])
    return shown + (f"; and {len(items) - limit} more" if len(items) > limit else "")


def warn_few_seeds(comparisons: list[Comparison], min_seeds: int = MIN_SEEDS) -> list[str]:
    """(1) Verdicts resting on fewer than ``min_seeds`` finished runs per variant."""
    out = []
    by_factor: dict[str, list[Comparison]] = {}
    for c in comparisons:
        if min(c.result.n_a, c.result.n_b) < min_seeds:
            by_factor.setdefault(c.factor, []).append(c)
    for factor, items in by_factor.items():
        pairs = {(c.stratum, c.level_a, c.level_b): c for c in items}
        smallest = min(min(c.result.n_a, c.result.n_b) for c in items)
        out.append(
            f"{factor}: {len(pairs)} comparison(s) rest on fewer than {min_seeds} finished "
            f"seeds per variant (as few as {smallest}), too few to tell an effect from "
            "seed-to-seed noise; run more seeds before trusting them."
        )
    return out


def warn_loss_differs(variants: list[Variant]) -> list[str]:
    """(2) Variants trained with different loss functions: their own losses are on
    different scales, so ranking by loss compares nothing (source report 002's mistake)."""
    losses = {}
    for v in variants:
        loss = v.config.get("loss") or {}
        if isinstance(loss, dict):
            options = ", ".join(f"{k}={x}" for k, x in loss.items() if k != "name" and x)
            name = f"{loss.get('name', '?')}({options})" if options else loss.get("name", "?")
        else:
            name = str(loss)
        losses.setdefault(name, []).append(v.label)
    if len(losses) < 2:
        return []
    return [
        f"Variants use different loss functions ({', '.join(losses)}), whose values are on "
        "different scales, so this report compares variants by test accuracy and test "
        "softmax cross-entropy, never by each run's own loss."
    ]


def _monitors_test(config: dict[str, Any]) -> list[str]:
    what = []
    if config.get("early_stopping"):
        what.append("early stopping")
    schedule = config.get("schedule") or {}
    if isinstance(schedule, dict) and (
        schedule.get("name") == "reduce_on_plateau" or "monitor" in schedule
    ):
        what.append("ReduceLROnPlateau")
    return what


def warn_test_selection(variants: list[Variant]) -> list[str]:
    """(3) Model selection on the test set: ``dataset.validate_on = "test"`` with early
    stopping or a plateau schedule, and "best validation" figures that are test figures."""
    selecting: dict[str, list[str]] = {}
    peeking = []
    for v in variants:
        dataset = v.config.get("dataset") or {}
        if dataset.get("validate_on") != "test":
            continue
        peeking.append(v.label)
        for what in _monitors_test(v.config):
            selecting.setdefault(what, []).append(v.label)
    out = [
        f"{what} watches the test set (dataset.validate_on = \"test\") in {_names(labels)}, "
        "so the model is selected on the test set and its test figures are optimistic; "
        "hold out a validation split instead."
        for what, labels in selecting.items()
    ]
    if peeking:
        out.append(
            f"The \"validation\" curves and best-validation accuracy of {_names(peeking)} are "
            "measured on the test set (dataset.validate_on = \"test\"), so the best epoch "
            "is picked with hindsight on test data; read them as test figures, not "
            "held-out results."
        )
    return out


def _allowed(path: str, varied: list[str]) -> bool:
    for key in varied:
        if path == key or path.startswith(key + "."):
            return True
        # A varied component name (dataset.name) brings that component's own options.
        if key.endswith(".name") and path.startswith(key[: -len("name")]):
            return True
    return outside_identity(path)


def config_differences(
    a: dict[str, Any], b: dict[str, Any], varied: list[str]
) -> list[str]:
    """Dotted paths where two resolved configs differ, other than the varied keys."""
    fa, fb = flatten(a), flatten(b)
    return sorted(
        p for p in set(fa) | set(fb) if fa.get(p) != fb.get(p) and not _allowed(p, varied)
    )


def warn_confounds(
    variants: list[Variant], factors: list[Factor], also_varied: list[str] = ()
) -> list[str]:
    """(4) Variants compared with each other that differ in more than the varied factors
    (``also_varied``: paths set per variant on purpose, e.g. tuned ones)."""
    varied = [p for f in factors for p in f.paths] + list(also_varied)
    out = []
    seen = set()
    for factor in factors:
        for _, members in strata(factor, factors, variants):
            vs = list(members.values())
            for i, a in enumerate(vs):
                for b in vs[i + 1 :]:
                    diff = config_differences(a.config, b.config, varied)
                    key = (a.variant_id, b.variant_id)
                    if diff and key not in seen:
                        seen.add(key)
                        out.append(
                            f"{a.label} and {b.label} also differ in "
                            f"{', '.join(diff[:5])}{' …' if len(diff) > 5 else ''}, which "
                            "is not a varied factor, so their difference cannot be "
                            "credited to the factor alone."
                        )
    return out


def warn_noise(comparisons: list[Comparison], metric: str = "test_accuracy") -> list[str]:
    what = next((c.spec.label for c in comparisons if c.metric == metric), "test accuracy")
    """(5) Differences inside the run-to-run noise: smaller than the seed-to-seed std,
    or with a CI that includes 0."""
    by_factor: dict[str, list[Comparison]] = {}
    total: dict[str, int] = {}
    for c in comparisons:
        if c.metric != metric or not c.testable:
            continue
        total[c.factor] = total.get(c.factor, 0) + 1
        if c.in_noise:
            by_factor.setdefault(c.factor, []).append(c)
    out = []
    for factor, items in by_factor.items():
        pairs = [
            f"{c.level_a} vs {c.level_b}" + (f" on {c.stratum}" if c.stratum else "")
            for c in items
        ]
        out.append(
            f"{factor}: {len(items)} of {total[factor]} differences in {what} are "
            f"inside the run-to-run noise (smaller than the seed-to-seed std or with a CI "
            f"that includes 0) — {_names(pairs)} — so they are no evidence of an effect."
        )
    return out


#: Final figures that say how long a run took, not what it computed.
_TIMING = ("seconds",)


def _finals(v: Variant) -> dict[int, dict[str, Any]]:
    """Seed → the run's final figures (timing left out), over finished runs."""
    return {
        row["seed"]: {k: x for k, x in (row.get("final") or {}).items() if k not in _TIMING}
        for row in v.done
        if row.get("final")
    }


def inert_factors(variants: list[Variant], factors: list[Factor]) -> dict[str, str]:
    """Factors whose levels trained bit-identical runs: two variants that differ in the
    factor gave exactly the same final figures for every seed both finished. The varied
    field never reached the computation (a builder that ignores it), so a verdict on it
    would answer a question never asked. Factor name → one-sentence warning."""
    out: dict[str, str] = {}
    for factor in factors:
        for _, members in strata(factor, factors, variants):
            vs = list(members.values())
            for i, a in enumerate(vs):
                for b in vs[i + 1 :]:
                    fa, fb = _finals(a), _finals(b)
                    seeds = sorted(set(fa) & set(fb))
                    if seeds and all(fa[s] == fb[s] for s in seeds) and factor.name not in out:
                        out[factor.name] = (
                            f"{factor.name}: {a.label} and {b.label} gave bit-identical "
                            f"final metrics for every seed ({len(seeds)}), so the varied "
                            f"field ({', '.join(factor.paths)}) never reached the computation "
                            "(a builder ignores it); no verdict is given for this factor."
                        )
    return out


#: Varied paths whose best learning rate differs from level to level: comparing their
#: levels at one shared rate judges the rate as much as the choice (DeepOBS, AlgoPerf).
LR_SENSITIVE = ("optimizer", "batch_size", "schedule", "loss")
#: A tuned value this close to an end of its range (a fraction of the range, on a log
#: scale for loguniform) lies "at the edge": the optimum may be outside the range.
EDGE_FRACTION = 0.05


def _lr_sensitive(path: str) -> bool:
    head = path.split(".")[0]
    return head in LR_SENSITIVE and path != "optimizer.lr"


def warn_untuned_learning_rate(
    variants: list[Variant], factors: list[Factor], tuning: dict[str, Any] | None = None
) -> list[str]:
    """(6) Optimizers (or other learning-rate-sensitive choices) compared at one shared
    learning rate without ``[tune]``: the verdict is about that rate as much as about the
    choice."""
    if tuning is not None:
        return []
    varied = [p for f in factors for p in f.paths if _lr_sensitive(p)]
    if not varied or any(p == "optimizer.lr" for f in factors for p in f.paths):
        return []
    rates = {flatten(v.config).get("optimizer.lr") for v in variants}
    if len(rates) != 1:
        return []
    rate = next(iter(rates))
    return [
        f"{', '.join(dict.fromkeys(varied))} vary at one shared learning rate ({rate}), so "
        "each comparison judges that rate as much as the choice (each optimizer has its own "
        "best rate); give every variant the same tuning budget with a [tune] table "
        '(e.g. params = { "optimizer.lr" = "loguniform(1e-4, 1.0)" }).'
    ]


def _position(value: float, kind: str, low: float, high: float) -> float:
    if kind == "loguniform":
        return (math.log(value) - math.log(low)) / (math.log(high) - math.log(low))
    return (value - low) / (high - low)


def warn_tuned_at_edge(tuning: dict[str, Any] | None) -> list[str]:
    """(7) A variant whose best tuned value lies at the edge of its search range."""
    if not tuning:
        return []
    out = []
    for v in tuning.get("variants", []):
        for path, value in (v.get("best_params") or {}).items():
            dist = (tuning.get("distributions") or {}).get(path) or {}
            if dist.get("kind") not in ("loguniform", "uniform", "int"):
                continue
            low, high = dist["args"]
            pos = _position(float(value), dist["kind"], float(low), float(high))
            if EDGE_FRACTION < pos < 1 - EDGE_FRACTION:
                continue
            end = "lower" if pos <= EDGE_FRACTION else "upper"
            out.append(
                f"{v.get('label') or 'the study'}: its best {path} ({value:.4g}) lies at the "
                f"{end} edge of the search range {tuning['params'][path]}, so the best "
                "setting may lie outside it; widen the range."
            )
    return out


def methodology_warnings(
    variants: list[Variant],
    factors: list[Factor],
    comparisons: list[Comparison],
    tuning: dict[str, Any] | None = None,
    primary: str = "test_accuracy",
) -> list[str]:
    """All warnings, in the order above. ``tuning``: the study's tuning summary
    (``DIR/tuning.json``), whose tuned parameters may differ between variants;
    ``primary``: the outcome the verdicts are about."""
    tuned = list((tuning or {}).get("params") or {})
    return [
        *warn_few_seeds([c for c in comparisons if c.metric == primary]),
        *warn_loss_differs(variants),
        *warn_test_selection(variants),
        *warn_confounds(variants, factors, also_varied=tuned),
        *warn_noise(comparisons, primary),
        *warn_untuned_learning_rate(variants, factors, tuning),
        *warn_tuned_at_edge(tuning),
    ]
