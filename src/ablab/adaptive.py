"""Adaptive seeds: ``ablab run STUDY --until-decided [--max-seeds N]``.

The study runs with its own seeds; then, in rounds, seeds are added only to the variants
of comparisons that are still undecided, up to planned looks (``Design.plan``: e.g. 3, 5,
8, 10 seeds), until every comparison on test accuracy is decided ("beats" or "equivalent
within ±Δ") or the budget is spent. Error control across the looks: a group-sequential
design with the Lan–DeMets O'Brien–Fleming-type alpha-spending function
(:mod:`ablab.analysis.sequential`; Lan & DeMets 1983).

Resumable: each round's seeds are a deterministic function of what is stored — round 1
is the study's own seeds, and round r + 1 is planned from the runs of round r, whose
verdicts depend only on the first n_k seeds of each comparison. A study killed mid-round
and run again replays the earlier rounds from the stored runs (nothing is re-trained) and
reaches the same seeds and verdicts.

The pure pieces (:func:`sequential_outcome`, :func:`sequential_outcomes`,
:func:`plan_next_round`) need no training and are what the simulation tests exercise.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ablab.analysis.sequential import (
    Design,
    load_design,
    save_design,
    sequential_outcome,
    sequential_outcomes,
)
from ablab.errors import UserError
from ablab.execution_options import ExecutionOptions

if TYPE_CHECKING:
    from ablab.study import Study

__all__ = [
    "Design",
    "load_design",
    "plan_next_round",
    "run_until_decided",
    "seed_sequence",
    "with_seeds",
    "sequential_outcome",
    "sequential_outcomes",
]

DEFAULT_MAX_SEEDS = 10
#: The primary outcome when a study declares none (``analysis.primary`` otherwise).
PRIMARY_METRIC = "test_accuracy"


def seed_sequence(study_seeds: list[int], max_seeds: int) -> list[int]:
    """The study's seeds, then the next unused integers, ``max_seeds`` long in all: a
    variant with n seeds always has the first n of this sequence.

    >>> seed_sequence([0, 1, 2], 6)
    [0, 1, 2, 3, 4, 5]
    >>> seed_sequence([7, 3], 4)
    [7, 3, 8, 9]
    """
    out = list(study_seeds)
    nxt = max(out) + 1 if out else 0
    while len(out) < max_seeds:
        out.append(nxt)
        nxt += 1
    return out


def plan_next_round(analysis: Any, design: Design | None = None) -> dict[str, int]:
    """{variant label: seeds to add} for the next round: for every comparison on the
    study's primary outcome (test accuracy unless it declares one) that is still
    undecided (and testable), both of its variants are brought to the next planned look
    above its current seeds. Variants that need nothing are left out; an empty dict means
    the study is decided or its budget spent.

    ``analysis`` is a :class:`ablab.analysis.StudyAnalysis` (its comparisons already
    decided under ``design``, which defaults to ``analysis.design``)."""
    design = design or analysis.design
    if design is None:
        raise ValueError("plan_next_round needs a sequential design")
    planned = {v.label: len(v.runs) for v in analysis.variants}
    target: dict[str, int] = {}
    for c in analysis.comparisons_on(getattr(analysis, "primary", PRIMARY_METRIC)):
        if c.outcome != "undecided":
            continue
        nxt = design.next_look(min(c.result.n_a, c.result.n_b))
        if nxt is None:
            continue
        for label in (c.variant_a, c.variant_b):
            target[label] = max(target.get(label, 0), nxt)
    return {
        label: n - planned.get(label, 0)
        for label, n in target.items()
        if n > planned.get(label, 0)
    }


def _subset(full, seeds_per_variant: dict[str, int], sequence: list[int]):
    """The study ``full`` (expanded with every seed of ``sequence``) cut to the first
    ``seeds_per_variant[variant_id]`` seeds of each variant."""
    keep = []
    for run in full.runs:
        n = seeds_per_variant[run.variant_id]
        if run.seed in sequence[:n]:
            keep.append(run)
    return dataclasses.replace(full, runs=keep)


def with_seeds(study: Study, sequence: list[int]) -> Study:
    """``study`` with every variant run at each seed of ``sequence`` (the planned runs it
    already has kept as they are; the others derived from them with another seed), so
    the study file is parsed once per command, not once per seed list."""
    from ablab.config import RunConfig, run_id
    from ablab.study import PlannedRun, variant_id

    runs = []
    for variant_runs in study.variants().values():
        have = {r.seed: r for r in variant_runs}
        first = variant_runs[0]
        for seed in sequence:
            if seed in have:
                runs.append(have[seed])
                continue
            data = first.config.resolved()
            data["seed"] = seed
            cfg = RunConfig.model_validate(data)
            runs.append(PlannedRun(run_id(cfg), variant_id(cfg), first.variant,
                                   first.variant_label, seed, cfg))
    config = study.config.model_copy(update={"seeds": list(sequence)})
    return dataclasses.replace(study, config=config, runs=runs)


@dataclass
class _Rounds:
    """What the rounds of one ``run_until_decided`` share: the study at every seed of
    ``sequence``, the directory, the design, and the seeds each variant has so far
    (``per_variant``, variant id → n, updated as rounds add seeds)."""

    full: Study
    root: Path
    design: Design
    sequence: list[int]
    max_seeds: int
    per_variant: dict[str, int]
    labels: dict[str, str]  # variant id → label

    def seeds_by_label(self) -> dict[str, int]:
        return {self.labels[v]: n for v, n in self.per_variant.items()}

    def grow(self, extra: dict[str, int]) -> bool:
        """Add ``extra`` seeds (by variant label) within the budget; whether any grew."""
        by_label = {label: vid for vid, label in self.labels.items()}
        grew = False
        for label, k in extra.items():
            vid = by_label[label]
            new = min(self.max_seeds, self.per_variant[vid] + k)
            if new > self.per_variant[vid]:
                self.per_variant[vid] = new
                grew = True
        return grew


def run_until_decided(
    source: Study | str | Path,
    out: str | Path,
    *,
    execution: ExecutionOptions | None = None,
    max_seeds: int = DEFAULT_MAX_SEEDS,
    seeds: int | None = None,
    sets: list[str] | tuple[str, ...] = (),
    rounds: int = 3,
    progress: Callable[[str], Any] | None = None,
    on_round: Callable[[int, dict[str, int]], None] | None = None,
    report: bool = True,
    svg: bool = False,
    allow_plugins: bool | None = None,
    on_line: Callable[[str], Any] | None = None,
    **options: Any,
):
    """Run the study ``source`` (a loaded study, or a file or built-in name with
    ``seeds`` / ``sets`` as on the command line) into ``out``, adding seeds in rounds
    where comparisons are undecided. ``progress(title)`` makes a progress display per
    round; ``on_round(r, seeds per variant label)`` is told each round's plan; ``report``
    writes the report at the end (``svg``: its figures as SVG too). How runs execute is
    ``execution`` or its fields as keywords (workers, threads, executor, address,
    retry_failed, ...; see :class:`~ablab.execution_options.ExecutionOptions`).
    ``allow_plugins``: consent to import plugin code the study names. ``on_line`` is told
    what each round decided (as :func:`ablab.runner.run_study`). Returns (the last
    round's StudyOutcome, {variant label: seeds})."""
    from ablab.execute import kept_workers
    from ablab.report import write_report
    from ablab.store import StudyStore
    from ablab.study import Study, load_study

    execution = ExecutionOptions.of(execution, **options)
    base = source if isinstance(source, Study) else load_study(
        source, seeds=seeds, sets=list(sets), allow_plugins=allow_plugins)
    plan = _plan_rounds(base, Path(out), max_seeds, rounds)
    with kept_workers():  # one worker pool for every round
        outcome = _run_rounds(plan, execution, progress, on_round, on_line)
    if report:
        with StudyStore.existing(plan.root) as store:
            write_report(store, svg=svg, analysis=outcome.analysis)
    return outcome, plan.seeds_by_label()


def _plan_rounds(base: Study, root: Path, max_seeds: int, rounds: int) -> _Rounds:
    """Check the study and the directory against the design; save the design."""
    start = list(base.config.seeds)
    if base.config.variance is not None:
        # each round would expand the nested design again over its seeds (k³ runs a
        # variant), and the design's extra runs never enter the verdicts it decides on
        raise UserError(
            f"--until-decided: {base.name} asks for variance = {base.config.variance!r}; "
            "run it without --until-decided, or leave variance out of the study"
        )
    if max_seeds < len(start):
        raise UserError(
            f"--max-seeds: {max_seeds} is fewer than the study's {len(start)} seeds"
        )
    sequence = seed_sequence(start, max_seeds)
    full = with_seeds(base, sequence)
    design = Design.plan(len(start), max_seeds, rounds)
    existing = load_design(root) if root.exists() else None
    if existing is not None and existing != design:
        raise UserError(
            f"{root}: was run with --until-decided looks {list(existing.looks)}; this "
            f"command plans {list(design.looks)} (another --max-seeds or seed count); "
            "use the same options or another --out"
        )
    info_path = root / "study.json"
    if info_path.exists():
        stored_name = json.loads(info_path.read_text()).get("name")
        if stored_name not in (None, full.name):
            raise UserError(f"{root}: holds study '{stored_name}', not '{full.name}'")
    root.mkdir(parents=True, exist_ok=True)
    save_design(root, design)
    labels = {vid: runs[0].variant_label for vid, runs in full.variants().items()}
    return _Rounds(full, root, design, sequence, max_seeds, dict.fromkeys(labels, len(start)),
                   labels)


def _run_rounds(plan: _Rounds, execution: ExecutionOptions,
                progress: Callable[[str], Any] | None,
                on_round: Callable[[int, dict[str, int]], None] | None,
                on_line: Callable[[str], Any] | None = None):
    """Run rounds until nothing is left to add (``plan.per_variant`` grows in place);
    returns the last round's StudyOutcome, its ``analysis`` that of the final directory."""
    from ablab.analysis import analyze
    from ablab.runner import run_study
    from ablab.store import StudyStore

    round_no = 0
    while True:
        round_no += 1
        if on_round is not None:
            on_round(round_no, plan.seeds_by_label())
        display = progress(f"{plan.full.name} round {round_no}") if progress else None
        outcome = run_study(
            _subset(plan.full, plan.per_variant, plan.sequence), plan.root, report=False,
            execution=execution.but(force_new_variants=True, progress=display), on_line=on_line,
        )
        with StudyStore.existing(plan.root) as store:
            analysis = analyze(store)
        if not plan.grow(plan_next_round(analysis, plan.design)):
            outcome.analysis = analysis  # of the final directory: the report's and the CLI's
            return outcome
