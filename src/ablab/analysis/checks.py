"""Methodology warnings: each function returns a list of one-sentence warnings (empty
when the study is sound on that point).

    >>> warn_few_seeds([])
    []
"""

from __future__ import annotations

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


def warn_confounds(variants: list[Variant], factors: list[Factor]) -> list[str]:
    """(4) Variants compared with each other that differ in more than the varied factors."""
    varied = [p for f in factors for p in f.paths]
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
            f"{factor}: {len(items)} of {total[factor]} differences in test accuracy are "
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


def methodology_warnings(
    variants: list[Variant], factors: list[Factor], comparisons: list[Comparison]
) -> list[str]:
    """All warnings, in the order above."""
    return [
        *warn_few_seeds([c for c in comparisons if c.metric == "test_accuracy"]),
        *warn_loss_differs(variants),
        *warn_test_selection(variants),
        *warn_confounds(variants, factors),
        *warn_noise(comparisons),
    ]
