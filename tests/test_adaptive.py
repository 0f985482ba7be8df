"""--until-decided end to end on a tiny study: seeds only where undecided, the design and
its looks stored, resumable after a kill mid-round (same seeds, same verdicts)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from ablab.adaptive import run_until_decided
from ablab.analysis import analyze
from ablab.analysis.sequential import load_design
from ablab.analysis.verdicts import terminal_lines
from ablab.errors import UserError
from ablab.runner import StudyInterrupted
from ablab.store import StudyStore

STUDY = """
name = "tiny-adaptive"
seeds = [0, 1]
equivalence_margin = 0.001

[base]
epochs = 2
batch_size = "full"
device = "cpu"
dataset = { name = "moons", n_samples = 150, noise = 0.3 }
model = { name = "mlp", hidden = [8] }
optimizer = { name = "adam", lr = 0.02 }

[[vary]]                  # 2 epochs: too noisy to decide with 2 or 3 seeds
"optimizer.lr" = [0.01, 0.03]
"""


def seeds_and_verdicts(out: Path):
    with open(out / "results.csv") as handle:
        rows = list(csv.DictReader(handle))
    seeds = sorted((r["lr"], int(r["seed"]), r["status"]) for r in rows)
    store = StudyStore.existing(out)
    try:
        a = analyze(store)
    finally:
        store.close()
    return seeds, terminal_lines(a.comparisons), a


class StopInRound:
    """A progress display that stops the study (Ctrl-C) after one run of round 2."""

    def __init__(self, title: str):
        self.title = title

    def start(self, total, already_done, workers, threads):
        pass

    def on_event(self, event):
        if "round 2" in self.title and event.kind == "done":
            raise KeyboardInterrupt

    def stop(self):
        pass


@pytest.mark.slow
def test_until_decided_adds_seeds_in_rounds_and_resumes_to_the_same_end(tmp_path):
    study = tmp_path / "tiny.toml"
    study.write_text(STUDY)
    rounds: list[dict[str, int]] = []
    outcome, per_variant = run_until_decided(
        study, tmp_path / "a", max_seeds=3, workers=1, threads=1, report=False,
        on_round=lambda r, plan: rounds.append(plan),
    )
    assert outcome.exit_code == 0
    design = load_design(tmp_path / "a")
    assert design is not None and design.looks == (2, 3)
    seeds_a, lines_a, analysis = seeds_and_verdicts(tmp_path / "a")
    assert rounds == [{"lr=0.01": 2, "lr=0.03": 2}, {"lr=0.01": 3, "lr=0.03": 3}]
    c = analysis.comparisons_on("test_accuracy")[0]
    assert c.decided or per_variant == {"lr=0.01": 3, "lr=0.03": 3}
    assert c.look == len(rounds)  # the verdict is from the last look reached
    assert any("Lan & DeMets" in m for m in analysis.methods)

    # killed in round 2, then run again: the same seeds and the same verdicts
    with pytest.raises(StudyInterrupted):
        run_until_decided(study, tmp_path / "b", max_seeds=3, workers=1, threads=1,
                          report=False, progress=StopInRound)
    run_until_decided(study, tmp_path / "b", max_seeds=3, workers=1, threads=1, report=False)
    seeds_b, lines_b, _ = seeds_and_verdicts(tmp_path / "b")
    assert seeds_b == seeds_a
    assert lines_b == lines_a


def test_until_decided_refuses_another_budget_in_the_same_directory(tmp_path):
    from ablab.analysis.sequential import Design, save_design

    study = tmp_path / "tiny.toml"
    study.write_text(STUDY)
    (tmp_path / "a").mkdir()
    save_design(tmp_path / "a", Design.plan(2, 4))
    with pytest.raises(UserError, match="--until-decided looks"):
        run_until_decided(study, tmp_path / "a", max_seeds=6)
    with pytest.raises(UserError, match="--max-seeds"):
        run_until_decided(study, tmp_path / "c", max_seeds=1)


@pytest.mark.parametrize("sets", [[], ["epochs=1"], ["batch_size=32", "dataset.noise=0.2"]])
def test_more_seeds_without_parsing_the_study_again(tmp_path, sets):
    """--until-decided parses the study once: the runs at the added seeds, derived from
    the loaded study, are the runs a fresh parse with that seed list plans."""
    from ablab.adaptive import seed_sequence, with_seeds
    from ablab.study import load_study

    study = tmp_path / "tiny.toml"
    study.write_text(STUDY)
    sequence = seed_sequence([0, 1], 5)
    derived = with_seeds(load_study(study, sets=sets), sequence)
    parsed = load_study(study, sets=sets, seed_list=sequence)
    assert [(r.run_id, r.variant_id, r.label) for r in derived.runs] == [
        (r.run_id, r.variant_id, r.label) for r in parsed.runs
    ]
    assert derived.config.seeds == parsed.config.seeds == sequence
