"""Issue #17 (study speed) and #14's leftovers: constant per-seed differences, warm worker
pools, compact run records."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats

from ablab.analysis.compare import Comparison, decide_family
from ablab.analysis.sequential import Design, sequential_outcomes
from ablab.analysis.stats import compare_samples, sign_test_floor

# ------------------------------------------------- zero variance is not certainty (#14)


def _comparison(a, b, paired=True):
    r = compare_samples(a, b, paired=paired, scale="difference")
    return Comparison("activation", "test_accuracy", "", "x", "y", "a", "b", r,
                      values_a=list(a), values_b=list(b))


def test_sign_test_floor_is_scipys_binomial_test():
    for n in (1, 3, 5, 6, 9):
        assert sign_test_floor(n) == pytest.approx(stats.binomtest(n, n).pvalue)


@pytest.mark.parametrize("n, outcome", [(3, "undecided"), (5, "undecided"), (6, "beats")])
def test_constant_differences_decide_by_the_sign_test(n, outcome):
    # every seed of A exactly 1 pp above B (a tiny test set): zero variance
    b = np.linspace(0.80, 0.90, n)
    c = _comparison(b + 0.01, b)
    decide_family([c], 0.05, 0.001)
    assert c.outcome == outcome
    assert c.result.p == pytest.approx(sign_test_floor(n))
    excludes = c.decision_low > 0 or c.decision_high < 0
    assert excludes == (outcome == "beats")  # the printed interval agrees
    if outcome == "undecided":
        assert math.isnan(c.decision_low) and math.isnan(c.decision_high)  # no interval


def test_constant_difference_inside_the_margin_is_equivalent_only_with_enough_seeds():
    for n, expected in ((3, "undecided"), (5, "equivalent")):
        b = np.full(n, 0.9)
        c = _comparison(b + 0.002, b)
        decide_family([c], 0.05, 0.01)
        assert c.outcome == expected, n


def test_two_constant_unpaired_samples_use_the_exact_rank_test():
    r = compare_samples([0.9] * 3, [0.8] * 3, paired=False, scale="difference")
    assert r.p == pytest.approx(stats.mannwhitneyu([0.9] * 3, [0.8] * 3, method="exact").pvalue)
    # p = 0.1 cannot resolve 95 %: no interval (not the whole scale, ±100 pp)
    assert all(math.isnan(x) for x in (*r.scaled.interval(0.95), r.ci_low, r.ci_high))
    assert r.scaled.interval(0.8) == pytest.approx((0.1, 0.1))  # it resolves 80 %


def test_sequential_outcomes_apply_the_same_floor():
    design = Design.plan(3, 10)
    b = np.tile(np.linspace(0.8, 0.9, 10), (2, 1))
    a = b + np.array([[0.01], [0.0]])
    outcome, used = sequential_outcomes(a, b, design, margin=0.005)
    # constant +1 pp: not at 3 seeds (sign test p = 0.25); later, when its look allows
    assert outcome[0] in ("beats", "undecided") and used[0] > 3
    assert outcome[1] == "equivalent" and used[1] > 3


# ------------------------------------------------------------- compact run records (#17)


def _record(n_epochs=40):
    rng = np.random.default_rng(0)
    f32 = [float(np.float32(v)) for v in rng.random(n_epochs)]  # what torch's .item() gives
    history = [
        {"epoch": i + 1, "train_loss": f32[i], "val_accuracy": float(rng.random()),
         "lr": 0.01, "note": None if i % 2 else "x"}
        for i in range(n_epochs)
    ]
    return {
        "run_id": "r1", "config": {"epochs": n_epochs, "dataset": {"name": "moons"}},
        "status": "done", "history": history, "batch_losses": f32 * 3,
        "final": {"test_accuracy": 0.9, "epochs_run": n_epochs}, "sizes": {"train": 3},
        "probes": {
            "hist": [[[int(v) for v in rng.integers(0, 300, 50)] for _ in range(2)]
                     for _ in range(5)],
            "ragged": [[1.5, 2.5], [3.5]], "mixed": [1, 2.5] * 8, "flags": [True, False] * 8,
            "big": [2**40 + i for i in range(10)], "short": [0.1, 0.2],
        },
    }


def test_packed_record_round_trips_bit_for_bit_and_is_smaller(tmp_path):
    from ablab.store.records import pack_record, read_record, record_text

    record = _record()
    path = tmp_path / "r1.json"
    path.write_text(record_text(record))
    back = read_record(path)
    assert back == record
    assert json.dumps(back) == json.dumps(record)  # types too: ints stay ints
    packed = pack_record(record)
    assert "__table__" in packed["history"] and "__array__" in packed["batch_losses"]
    assert packed["batch_losses"]["__array__"] == "<f4"  # exactly float32: no value lost
    assert packed["probes"]["hist"]["__array__"] == "<i2"
    assert packed["probes"]["mixed"] == record["probes"]["mixed"]  # int and float: a list
    assert packed["probes"]["flags"] == record["probes"]["flags"]
    assert len(path.read_text()) < len(json.dumps(record, indent=2)) / 2


def test_old_plain_records_still_read(tmp_path):
    from ablab.store.records import read_record

    record = _record()
    path = tmp_path / "r1.json"
    path.write_text(json.dumps(record, indent=2))  # how records were written before
    assert read_record(path) == record


def test_a_packed_array_that_does_not_decode_is_a_damaged_record(tmp_path):
    from ablab.store.records import DamagedRecord, read_record, record_text

    path = tmp_path / "r1.json"
    path.write_text(record_text(_record()).replace('"data":"', '"data":"@@', 1))
    with pytest.raises(DamagedRecord, match="packed array"):
        read_record(path)


def test_a_stored_run_reads_back_bit_for_bit(tmp_path):
    """A real run (probes on) through the packed record: every number read back is the
    one trained, to the last bit (JSON's repr of a float is exact), and the record read
    back makes the same result again."""
    from test_loop import FIT_CASES

    from ablab.config import parse_run
    from ablab.store.records import pack_record, read_record, record_text
    from ablab.train import RunResult, fit

    result = fit(parse_run(FIT_CASES["probes_cosine"]))
    record = result.to_dict()
    assert "__array__" in json.dumps(pack_record(record))  # the packed form is exercised
    path = tmp_path / f"{record['run_id']}.json"
    path.write_text(record_text(record))
    back = read_record(path)
    assert back == record
    assert json.dumps(back, sort_keys=True) == json.dumps(record, sort_keys=True)
    again = RunResult.from_dict(back).to_dict()
    assert json.dumps(again, sort_keys=True) == json.dumps(record, sort_keys=True)


# ------------------------------------------------- workers that start once (#17, #14)


def _tasks(n, epochs=1):
    from ablab.config import parse_run
    from ablab.execute import Task

    out = []
    for seed in range(n):
        cfg = parse_run({"epochs": epochs, "seed": seed, "device": "cpu", "batch_size": "full",
                         "dataset": {"name": "moons", "n_samples": 120},
                         "model": {"name": "mlp", "hidden": [4]}})
        out.append(Task(f"t{seed}", f"seed {seed}", cfg.resolved()))
    return out


def test_kept_workers_serve_the_next_run_call_and_stop_at_the_end():
    from ablab.execute import LocalExecutor, kept_workers, local

    events = []
    with kept_workers():
        LocalExecutor(1, 1, batch_seeds=False).run(_tasks(1), events.append)
        (pool,) = local._KEPT.values()
        first = pool[0].process
        LocalExecutor(1, 1, batch_seeds=False).run(_tasks(2), events.append)
        (pool,) = local._KEPT.values()
        assert pool[0].process is first and first.is_alive()  # no new process
    first.join(timeout=10)
    assert not first.is_alive() and local._KEPT is None
    assert [e.kind for e in events if e.kind in ("done", "failed")] == ["done"] * 3


@pytest.mark.slow
def test_until_decided_with_the_ray_executor_reaches_the_local_seeds_and_verdicts(tmp_path):
    pytest.importorskip("ray")
    from test_adaptive import STUDY, seeds_and_verdicts

    from ablab.adaptive import run_until_decided

    study = tmp_path / "tiny.toml"
    study.write_text(STUDY)
    ends = {}
    for executor in ("local", "ray"):
        outcome, per_variant = run_until_decided(
            study, tmp_path / executor, max_seeds=3, workers=2, threads=1, report=False,
            executor=executor,
        )
        assert outcome.exit_code == 0
        seeds, lines, _ = seeds_and_verdicts(tmp_path / executor)
        ends[executor] = (per_variant, seeds, lines)
    assert ends["ray"] == ends["local"]


def test_the_config_and_final_metrics_stay_readable_json():
    from ablab.store.records import pack_record

    record = _record()
    record["config"]["seeds"] = list(range(20))
    packed = pack_record(record)
    assert packed["config"] == record["config"] and packed["final"] == record["final"]
