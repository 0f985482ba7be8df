"""Everything the report says, computed once from what a study directory holds.

    >>> from ablab.store import StudyStore                          # doctest: +SKIP
    >>> a = analyze(StudyStore.existing("out/moons"))               # doctest: +SKIP
    >>> print("\\n".join(a.verdicts + a.ranking_sentences))           # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from ablab.analysis.checks import inert_factors, methodology_warnings
from ablab.analysis.compare import DEFAULT_MARGIN, Comparison, Ranking, compare_all, rank_factor
from ablab.analysis.interactions import Interaction, find_interactions, interaction_sentence
from ablab.analysis.methods import methods_used
from ablab.analysis.outcomes import Outcome, Outcomes, study_outcomes
from ablab.analysis.pooled import (
    Pooled,
    TradeOff,
    pool_all,
    pooled_sentence,
    tradeoff_sentence,
    tradeoffs,
)
from ablab.analysis.runs import Factor, Variant, build_factors, build_variants
from ablab.analysis.sequential import load_design
from ablab.analysis.summaries import (
    extra_outcomes,
    regression_default,
    runs_table,
    summary_table,
)
from ablab.analysis.variance import (
    Decomposition,
    decompose_study,
    meaning_sentences,
    without_design_runs,
)
from ablab.analysis.verdicts import (
    ranking_sentence,
    status_line,
    variant_status_sentences,
    verdict,
)
from ablab.outcome_catalogue import DEFAULT_SECONDARY

STATUS_ORDER = ("done", "diverged", "failed", "running", "pending")


@dataclass
class StudyAnalysis:
    name: str
    description: str
    study_text: str
    factors: list[Factor]
    columns: list[str]
    variants: list[Variant]
    counts: dict[str, int]
    summary: pd.DataFrame  # one row per variant
    runs: pd.DataFrame  # one row per run
    comparisons: list[Comparison]
    rankings: list[Ranking]
    verdicts: list[str]  # one per test-accuracy comparison, in ``comparisons_on`` order
    ranking_sentences: list[str]  # one per ranking
    status_sentences: list[str]  # diverged / failed / at-chance variants
    warnings: list[str]
    status: str  # "12 of 18 runs done; 6 pending"
    overrides: list[str] = field(default_factory=list)
    #: pairs of factors tested for an interaction on test accuracy; sentences for the
    #: found ones (said before the verdicts)
    interactions: list[Interaction] = field(default_factory=list)
    interaction_sentences: list[str] = field(default_factory=list)
    #: every statistical procedure used, with its reference (the report's methods section)
    methods: list[str] = field(default_factory=list)
    equivalence_margin: float = DEFAULT_MARGIN
    design: Any = None  # ablab.analysis.sequential.Design for --until-decided studies
    #: factor name → warning, for factors whose levels trained bit-identical runs (shown
    #: at the top of the report and in the terminal; these factors get no verdict)
    inert: dict[str, str] = field(default_factory=dict)
    #: the tuning summary (DIR/tuning.json, written by ablab.tune) of a study with [tune]
    tuning: dict[str, Any] | None = None
    #: ``variance = "sources"``: each variant's decomposition (or why it has none), and
    #: what it means for the verdicts (see ablab.analysis.variance)
    variance_sources: list[Any] = field(default_factory=list)
    variance_sentences: list[str] = field(default_factory=list)
    #: the outcomes judged: the primary one (verdicts above) and the others
    outcomes: Outcomes | None = None
    #: per outcome beyond the primary one (diagnostics, dynamics, cost): (its name, label,
    #: family, its verdict sentences in ``comparisons_on(name)`` order), in report order
    outcome_verdicts: list[tuple[str, str, str, list[str]]] = field(default_factory=list)
    #: a treatment's effect pooled over the contexts it was compared in (random effects)
    pooled: list[Pooled] = field(default_factory=list)
    pooled_sentences: list[str] = field(default_factory=list)
    #: equivalent on the primary outcome and decided on cost, or decided both ways
    tradeoffs: list[TradeOff] = field(default_factory=list)
    tradeoff_sentences: list[str] = field(default_factory=list)

    @property
    def primary(self) -> str:
        """The name of the outcome the verdicts are about."""
        return self.outcomes.primary.name if self.outcomes else "test_accuracy"

    @property
    def headline(self) -> str:
        """``2 decided, 4 undecided, 1 interaction``: the primary verdicts at a glance."""
        outcomes = [c.outcome for c in self.comparisons_on(self.primary)]
        decided = sum(o in ("beats", "equivalent") for o in outcomes)
        undecided = sum(o in ("undecided", "untestable") for o in outcomes)
        found = len(self.interaction_sentences)
        parts = [f"{decided} decided", f"{undecided} undecided"]
        if found:
            parts.append(f"{found} interaction{'' if found == 1 else 's'}")
        label = self.outcomes.primary.label if self.outcomes else "test accuracy"
        return f"{', '.join(parts)} (on {label})"

    @property
    def tuned_note(self) -> str:
        """"Each variant tuned with N trials ..." for a tuned study, else ""."""
        t = self.tuning
        if not t:
            return ""
        params = ", ".join(f"{p} ~ {d}" for p, d in t["params"].items())
        return (
            f"Each variant tuned with {t['trials']} trials ({t['sampler']} sampler over "
            f"{params}; {t['metric']} on validation data, tuning seeds "
            f"{', '.join(map(str, t['seeds']))}); the verdicts compare every variant at its "
            "own best setting, on test data, over the evaluation seeds."
        )

    @property
    def complete(self) -> bool:
        return self.counts.get("pending", 0) + self.counts.get("running", 0) == 0

    def comparisons_on(self, metric: str) -> list[Comparison]:
        return [c for c in self.comparisons if c.metric == metric]


def _run_counts(rows: list[dict[str, Any]]) -> dict[str, int]:
    """Runs by status, every status named (a variance design's runs too)."""
    counts = dict.fromkeys(STATUS_ORDER, 0)
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    return counts


def _judged_outcomes(info: dict[str, Any], variants: list[Variant]) -> Outcomes:
    """The study's outcomes; once a run finished, an outcome no run recorded is not
    judged at all."""
    outcomes = study_outcomes(regression_default(info, variants), _probes_of(variants))
    if not any(v.done for v in variants):
        return outcomes
    recorded = [o for o in outcomes.others if any(v.values_of(o.name) for v in variants)]
    return Outcomes(outcomes.primary, tuple(recorded))


def _judged_comparisons(
    factors: list[Factor], variants: list[Variant], outcomes: Outcomes, margin: float,
    design: Any,
) -> tuple[list[Comparison], dict[str, str]]:
    """Every comparison on every outcome, and the inert factors (levels that trained
    identical runs: no verdict on them) with the warning that says so."""
    comparisons = compare_all(
        factors, variants, metrics=outcomes.all, margin=margin, design=design
    )
    inert = inert_factors(variants, factors)
    return [c for c in comparisons if c.factor not in inert], inert


def _rankings(
    factors: list[Factor], variants: list[Variant], comparisons: list[Comparison],
    inert: Mapping[str, str], primary: Outcome,
) -> list[Ranking]:
    return [
        r
        for f in factors
        if not f.is_context and f.name not in inert
        for r in rank_factor(f, factors, variants, comparisons, primary)
    ]


def _sentences(
    comparisons: list[Comparison], rankings: list[Ranking], variants: list[Variant],
    interactions: list[Interaction], pooled: list[Pooled], found_tradeoffs: list[TradeOff],
    sources: list, outcomes: Outcomes, judged_others: list[Outcome],
) -> dict[str, Any]:
    """The analysis' sentences, by the StudyAnalysis field that holds them."""
    accuracy = [c for c in comparisons if c.metric == outcomes.primary.name]
    estimated = [d for d in sources if isinstance(d, Decomposition)]
    return {
        "verdicts": [verdict(c) for c in accuracy],
        "ranking_sentences": [ranking_sentence(r) for r in rankings],
        "status_sentences": [s for v in variants for s in variant_status_sentences(v)],
        "interaction_sentences": [
            interaction_sentence(i, comparisons) for i in interactions if i.found
        ],
        "variance_sentences": meaning_sentences(estimated, accuracy),
        "outcome_verdicts": [
            (o.name, o.label, o.family,
             [verdict(c) for c in comparisons if c.metric == o.name])
            for o in judged_others
        ],
        "pooled_sentences": [pooled_sentence(p) for p in pooled],
        "tradeoff_sentences": [tradeoff_sentence(t) for t in found_tradeoffs],
    }


def _methods(
    margin: float, comparisons: list[Comparison], interactions: list[Interaction],
    design: Any, primary: Outcome, judged_others: list[Outcome], pooled: list[Pooled],
    sources: list,
) -> list[str]:
    """The methods section for what this analysis computed."""
    return methods_used(
        margin,
        any(c.result.test == "paired t" for c in comparisons),
        any(c.result.test == "Welch t" for c in comparisons),
        bool(interactions),
        design.looks if design is not None else None,
        primary_label=primary.label,
        other_outcomes=tuple(o.label for o in judged_others),
        pooled=bool(pooled),
        variance_sources=bool(sources),
    )


def _others_and_pooled(
    outcomes: Outcomes, comparisons: list[Comparison]
) -> tuple[list[Outcome], list[Pooled]]:
    """The outcomes besides the primary that get verdicts of their own (every one but the
    built-in loop's secondary cross-entropy, a comparison in the table as it always was),
    and the pooled comparisons of the outcomes judged."""
    judged_others = [o for o in outcomes.others if o.name not in DEFAULT_SECONDARY]
    pooled = [p for p in pool_all(comparisons) if p.metric in
              {outcomes.primary.name, *(o.name for o in judged_others)}]
    return judged_others, pooled


def analyze_runs(
    info: dict[str, Any],
    rows: list[dict[str, Any]],
    records: dict[str, dict[str, Any]] | None = None,
    study_text: str = "",
    design: Any = None,
    tuning: dict[str, Any] | None = None,
) -> StudyAnalysis:
    """The whole analysis from plain data: ``info`` as in ``study.json`` (name,
    description, factors, columns), index rows, and run records by run id; ``tuning``
    the tuning summary of a study with [tune]."""
    counts = _run_counts(rows)
    sources = decompose_study(info, rows)
    rows = without_design_runs(info, rows)  # the verdicts use the study's own runs
    factors = build_factors(info, rows)
    columns = [c for f in factors for c in f.columns]
    variants = build_variants(rows, records)
    margin = float(info.get("equivalence_margin") or DEFAULT_MARGIN)
    outcomes = _judged_outcomes(info, variants)
    primary = outcomes.primary
    comparisons, inert = _judged_comparisons(factors, variants, outcomes, margin, design)
    interactions = find_interactions(factors, variants, primary)
    rankings = _rankings(factors, variants, comparisons, inert, primary)
    judged_others, pooled = _others_and_pooled(outcomes, comparisons)
    found_tradeoffs = tradeoffs(comparisons, primary.name)
    methods = _methods(margin, comparisons, interactions, design, primary, judged_others,
                       pooled, sources)
    extra = extra_outcomes(info, variants)
    return StudyAnalysis(
        name=info.get("name", ""),
        description=(info.get("description") or "").strip(),
        study_text=study_text,
        factors=factors,
        columns=columns,
        variants=variants,
        counts=counts,
        summary=summary_table(variants, columns, extra),
        runs=runs_table(variants, columns, tuple(o.name for o in extra)),
        comparisons=comparisons,
        rankings=rankings,
        warnings=[*inert.values(),
                  *methodology_warnings(variants, factors, comparisons, tuning, primary.name)],
        status=status_line(counts, sum(len(v.at_chance) for v in variants)),
        overrides=list(info.get("overrides") or []),
        interactions=interactions,
        methods=methods,
        equivalence_margin=margin,
        design=design,
        tuning=tuning,
        inert=inert,
        variance_sources=sources,
        outcomes=outcomes,
        pooled=pooled,
        tradeoffs=found_tradeoffs,
        **_sentences(comparisons, rankings, variants, interactions, pooled, found_tradeoffs,
                     sources, outcomes, judged_others),
    )


def _probes_of(variants: list[Variant]) -> set[str]:
    """The probes any variant's runs recorded (their names)."""
    out: set[str] = set()
    for v in variants:
        for p in v.config.get("probes") or []:
            name = p.get("name") if isinstance(p, dict) else p
            if isinstance(name, str):
                out.add(name)
    return out


def load_tuning(root) -> dict[str, Any] | None:
    """A study directory's tuning summary (``tuning.json``), or None."""
    import json
    from pathlib import Path

    path = Path(root) / "tuning.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("variants") else None


def load_runs(store) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """A study directory's (a ``StudyStore``'s) index rows and the records of its
    finished runs, by run id."""
    rows = store.rows()
    records = {}
    for row in rows:
        if row["status"] in ("done", "diverged"):
            record = store.load_record(row["run_id"])
            if record is not None:
                records[row["run_id"]] = record
    return rows, records


class StoredRecords(Mapping):
    """The records of a study directory's finished (done, diverged) runs by run id, each
    read from disk when looked up and not kept: :func:`analyze` folds them in one at a
    time, so its memory does not grow with the number of runs' records."""

    def __init__(self, store, rows: list[dict[str, Any]]):
        self._store = store
        self._ids = [r["run_id"] for r in rows if r["status"] in ("done", "diverged")]
        self._known = set(self._ids)

    def __getitem__(self, run_id: str) -> dict[str, Any]:
        known = run_id in self._known
        record = self._store.load_record(run_id, arrays=True) if known else None
        if record is None:
            raise KeyError(run_id)
        return record

    def __iter__(self):
        return iter(self._ids)

    def __len__(self) -> int:
        return len(self._ids)


def analyze(store) -> StudyAnalysis:
    """Analyze a study directory (a ``StudyStore``): reads the index, and every record
    once (folded into the figures' summaries, not kept)."""
    rows = store.rows()
    return analyze_runs(
        store.study_info(), rows, StoredRecords(store, rows), store.study_text(),
        design=load_design(store.root), tuning=load_tuning(store.root),
    )
