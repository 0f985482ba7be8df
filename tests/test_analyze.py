"""``ablab analyze`` / ``ablab.analyze``: verdicts, warnings and a report for runs produced
elsewhere, through the same analysis as a study directory (an adapter, not a second
statistics path)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from conftest import assert_one_line_error, run_cli

import ablab
from ablab.external import TableError, analyze_table

TINY_STUDY = """
name = "tiny-moons"
seeds = [0, 1, 2]
[base]
epochs = 4
batch_size = "full"
device = "cpu"
dataset = { name = "moons", n_samples = 200, noise = 0.3 }
model = { name = "mlp", hidden = [8] }
optimizer = { name = "adam", lr = 0.05 }
[[vary]]
"model.activation" = ["relu", "tanh"]
[[vary]]
"dataset.name" = ["moons", "circles"]
"dataset.noise" = [0.3, 0.1]
"""


def simulated(effect_sd: float, seeds: int = 10, seed: int = 0) -> pd.DataFrame:
    """Two factors x ``seeds`` seeds: ``width`` moves the score by ``effect_sd`` standard
    deviations of the seed noise, ``optimizer`` does nothing; each seed shares an offset
    across variants (what pairing by seed removes)."""
    rng = np.random.default_rng(seed)
    offsets = rng.normal(0, 1.0, seeds)
    rows = []
    for width in (8, 64):
        for optimizer in ("adam", "sgd"):
            for s in range(seeds):
                score = 70 + offsets[s] + (effect_sd if width == 64 else 0) + rng.normal(0, 1)
                rows.append({"width": width, "optimizer": optimizer, "seed": s, "score": score})
    return pd.DataFrame(rows)


def by_metric(a, metric):
    return [c for c in a.comparisons if c.metric == metric]


def test_a_known_effect_is_decided_in_its_direction_and_a_null_one_is_not():
    a = ablab.analyze(simulated(5.0), factors=["width", "optimizer"], metric="score",
                      seed="seed")
    width = [c for c in by_metric(a, "score") if c.factor == "width"]
    optimizer = [c for c in by_metric(a, "score") if c.factor == "optimizer"]
    assert len(width) == 2 and len(optimizer) == 2
    assert all(c.significant and c.winner == "64" for c in width)
    assert not any(c.significant for c in optimizer)
    assert any("width=64 beats width=8" in v for v in a.verdicts)
    # "lower is better" turns the same data around
    low = ablab.analyze(simulated(5.0), factors=["width", "optimizer"], metric="score",
                        seed="seed", goal="min")
    assert all(c.winner == "8" for c in by_metric(low, "score") if c.factor == "width")


def test_a_null_effect_is_not_decided():
    a = ablab.analyze(simulated(0.0, seed=1), factors=["width", "optimizer"], metric="score",
                      seed="seed")
    assert by_metric(a, "score")
    assert not any(c.significant for c in by_metric(a, "score"))
    assert not any(" beats " in v for v in a.verdicts)


def test_a_declared_range_keeps_intervals_inside_it():
    frame = simulated(0.3)
    frame["score"] = (frame["score"] - 60) / 20  # about 0.5, inside [0, 1]
    a = ablab.analyze(frame, factors=["width", "optimizer"], metric="score", seed="seed",
                      range=(0, 1))
    for _, row in a.summary.iterrows():
        assert 0 <= row["score_ci_low"] <= row["score_ci_high"] <= 1


def test_an_mlflow_table_works_as_it_is(tmp_path):
    frame = simulated(5.0).rename(columns={"width": "params.width", "seed": "params.seed",
                                           "optimizer": "params.optimizer",
                                           "score": "metrics.score"})
    frame["run_id"] = [f"r{i}" for i in range(len(frame))]
    frame["status"] = "FINISHED"
    frame.loc[0, "status"] = "FAILED"  # a failed run counts as failed, not as a value
    frame.loc[0, "metrics.score"] = np.nan
    path = tmp_path / "runs.parquet"
    frame.to_parquet(path)
    out = tmp_path / "report"
    a = ablab.analyze(path, factors=["width", "optimizer"], metric="score", out=out)
    assert a.counts["failed"] == 1 and a.counts["done"] == len(frame) - 1
    assert any("width=64 beats width=8" in v for v in a.verdicts)
    assert all(c.paired for c in by_metric(a, "score"))  # params.seed found and paired
    for name in ("report.html", "report.md", "results.csv", "summary.csv"):
        assert (out / name).is_file()
    report = (out / "report.md").read_text()
    assert "width=64 beats width=8" in report
    assert "Learning curves" not in report  # nothing a training run alone records


def test_ablab_results_csv_gives_the_comparisons_ablab_report_gives(tmp_path):
    from ablab.analysis import analyze as analyze_store
    from ablab.report import write_tables
    from ablab.runner import run_study
    from ablab.store import StudyStore
    from ablab.study import load_study

    study = tmp_path / "study.toml"
    study.write_text(TINY_STUDY)
    out = tmp_path / "out"
    run_study(load_study(study), out, workers=1, threads=1, report=False)
    with StudyStore.existing(out) as store:
        write_tables(store)  # results.csv, as `ablab report` writes it
        reported = analyze_store(store)
    again = ablab.analyze(out / "results.csv", factors=["activation", "dataset"],
                          metric="test_accuracy", seed="seed")
    key = lambda c: (c.metric, c.factor, c.stratum, c.level_a, c.level_b)  # noqa: E731
    mine = {key(c): c for c in again.comparisons}
    assert reported.comparisons
    for c in reported.comparisons:
        other = mine[key(c)]
        assert other.values_a == c.values_a and other.values_b == c.values_b
        for field in ("diff", "ci_low", "ci_high", "p", "effect"):
            x, y = getattr(c.result, field), getattr(other.result, field)
            assert x == y or (math.isnan(x) and math.isnan(y)), (key(c), field)
        for field in ("p_holm", "decision_low", "decision_high", "p_equivalence_holm"):
            x, y = getattr(c, field), getattr(other, field)
            assert x == y or (math.isnan(x) and math.isnan(y)), (key(c), field)
    assert again.verdicts == reported.verdicts


@pytest.mark.parametrize(("change", "fragments"), [
    (lambda f: f.drop(columns=["score"]), ("'score': no such column",)),
    (lambda f: f.iloc[:1], ("1 row(s)",)),
    (lambda f: f.assign(optimizer="adam").drop_duplicates(["width", "optimizer", "seed"]),
     ("'optimizer' has one level ('adam')",)),
    (lambda f: f.assign(score=f["score"].where(f.index != 3)), ("'score' has missing values",
                                                                "row 4")),
    (lambda f: f.assign(width=f["width"].astype(object).where(f.index != 5)),
     ("'width' has missing values",)),
    (lambda f: f.groupby(["width", "optimizer"]).head(1), ("too few finished runs",)),
    (lambda f: pd.concat([f, f.iloc[[0]]]), ("one row per run",)),
])
def test_bad_tables_are_one_line_naming_file_and_column(tmp_path, change, fragments):
    path = tmp_path / "runs.csv"
    change(simulated(1.0)).to_csv(path, index=False)
    proc = run_cli("analyze", path, "--factor", "width", "--factor", "optimizer",
                   "--metric", "score", "--seed", "seed", "--out", tmp_path / "out")
    assert_one_line_error(proc, str(path), *fragments)
    assert not (tmp_path / "out" / "report.html").exists()


def test_errors_from_python_are_user_errors():
    with pytest.raises(TableError, match="factor 'depth': no such column"):
        analyze_table(simulated(1.0), ["depth"], "score")
    with pytest.raises(TableError, match="--goal"):
        analyze_table(simulated(1.0), ["width"], "score", goal="up")
