"""The report's shortcuts keep its results: records are folded into per-variant
summaries one at a time and not kept; curves are summaries (median + quantile band, block
means), drawn at a bounded resolution; figures render the same in parallel as one after
another. No training: hand-built rows and records."""

from __future__ import annotations

import base64
import gc
import weakref

import numpy as np
import pytest

from ablab.analysis import analyze_runs
from ablab.analysis.curves import (
    MAX_CURVE_POINTS,
    batch_curve,
    display_grid,
    history_curve,
    probe_matrix,
)
from ablab.analysis.study_analysis import StoredRecords, analyze


class Record(dict):
    """A run record that can be watched with a weak reference."""


def make_record(seed: int, activation: str, epochs: int = 6, steps: int = 30,
                grid: int = 24) -> Record:
    rng = np.random.default_rng(seed + 100 * len(activation))
    acc = np.clip(0.5 + 0.08 * np.arange(1, epochs + 1) + rng.normal(0, 0.02, epochs), 0, 1)
    layers = ["features.1", "features.3"]
    probs = (np.add.outer(np.arange(grid), np.arange(grid)) * 255 // (2 * grid - 2))
    return Record(
        history=[
            {"epoch": e + 1, "train_loss": float(1 / (e + 1 + seed)),
             "val_loss": float(1.1 / (e + 1)), "train_accuracy": float(acc[e]) + 0.01,
             "val_accuracy": float(acc[e]), "lr": 0.01}
            for e in range(epochs)
        ],
        batch_losses=[float(2.0 / (i + 1) + 0.01 * seed) for i in range(steps)],
        probes={
            "dead_units": {
                "layers": layers, "kinds": [activation] * 2, "epochs": list(range(1, epochs + 1)),
                "dead_unit_fraction": [[0.1 * seed, 0.2] for _ in range(epochs)],
                "zero_activation_fraction": [[0.5, 0.4 + 0.01 * seed] for _ in range(epochs)],
                "zero_activation_fraction_mean": 0.45,
            },
            "gradients": {
                "layers": layers, "kinds": [activation] * 2, "epochs": list(range(1, epochs + 1)),
                "grad_norm": [[1.0 + seed, None] for _ in range(epochs)],
            },
            "activations": {
                "layers": layers, "kinds": [activation] * 2, "epochs": list(range(1, epochs + 1)),
                "bin_edges": [list(np.linspace(-1, 1, 5))] * 2,
                "hist": [[[1, 2, 3, seed], [4, 3, 2, 1]] for _ in range(epochs)],
            },
            "boundary": {
                "grid": grid, "x_range": [-1.0, 1.0], "y_range": [-1.0, 1.0], "num_classes": 2,
                "final": {"prob": base64.b64encode(probs.astype(np.uint8).tobytes()).decode()},
                "test_points": {"x": [0.0, 0.5], "y": [0.0, -0.5], "label": [0, 1]},
            },
        },
    )


def make_rows(seeds: int = 3) -> list[dict]:
    rows = []
    for activation in ("relu", "tanh"):
        for seed in range(seeds):
            rows.append({
                "run_id": f"{activation}{seed}", "variant_id": activation,
                "variant_label": f"activation={activation}",
                "variant": {"activation": activation}, "seed": seed,
                "config": {"dataset": {"name": "moons"}, "model": {"activation": activation}},
                "status": "done",
                "final": {"test_accuracy": 0.8 + 0.01 * seed + (0.05 if activation == "relu"
                                                                else 0.0),
                          "test_cross_entropy": 0.4, "test_loss": 0.4, "at_chance": False},
                "error": None, "diverged_epoch": None,
            })
    rows.append({**rows[0], "run_id": "pending0", "seed": 9, "status": "pending",
                 "final": None})
    return rows


INFO = {"name": "scale", "factors": [["model.activation"]],
        "columns": {"model.activation": "activation"}}


class FakeStore:
    """What ``analyze`` reads of a study directory, counting record reads."""

    def __init__(self, rows, records):
        self._rows, self._records, self.reads = rows, records, []
        self.root = "/nonexistent-ablab-study"

    def rows(self):
        return [dict(r) for r in self._rows]

    def load_record(self, run_id, arrays=False):
        self.reads.append(run_id)
        return self._records.get(run_id)

    def study_info(self):
        return INFO

    def study_text(self):
        return ""


def test_analysis_reads_each_record_once_and_keeps_none():
    rows = make_rows()
    records = {r["run_id"]: make_record(r["seed"], r["variant"]["activation"])
               for r in rows if r["status"] == "done"}
    watched = [weakref.ref(rec) for rec in records.values()]
    store = FakeStore(rows, records)
    a = analyze(store)
    assert sorted(store.reads) == sorted(records)  # once each; the pending run never
    del records, store
    gc.collect()
    assert all(ref() is None for ref in watched)  # the analysis holds no record
    assert not hasattr(a.variants[0], "records")
    assert len(StoredRecords(FakeStore(rows, {}), rows)) == len(rows) - 1


def test_summaries_equal_the_direct_computation():
    rows = make_rows(seeds=4)
    records = {r["run_id"]: make_record(r["seed"], r["variant"]["activation"])
               for r in rows if r["status"] == "done"}
    a = analyze_runs(INFO, rows, records)
    relu = a.variants[0]
    mine = [records[r["run_id"]] for r in relu.done]
    val = np.array([[h["val_accuracy"] for h in rec["history"]] for rec in mine])
    c = history_curve(relu, "val_accuracy")
    np.testing.assert_allclose(c["median"], np.median(val, axis=0), rtol=1e-6)
    np.testing.assert_allclose(c["low"], np.quantile(val, 0.25, axis=0), rtol=1e-6)
    np.testing.assert_allclose(c["high"], np.quantile(val, 0.75, axis=0), rtol=1e-6)
    assert list(c["n"]) == [4] * 6
    losses = np.array([rec["batch_losses"] for rec in mine])
    np.testing.assert_allclose(batch_curve(relu)["mean"], losses.mean(axis=0))
    dead = np.array([rec["probes"]["dead_units"]["dead_unit_fraction"] for rec in mine])
    m = probe_matrix(relu, "dead_units", "dead_unit_fraction")
    np.testing.assert_allclose(m["values"], dead.mean(axis=0).T)
    grads = probe_matrix(relu, "gradients", "grad_norm")["values"]
    assert np.isnan(grads[1]).all() and np.allclose(grads[0], 2.5)  # None: no value
    assert relu.curves.boundary["seed"] == 0  # the first done run's
    assert relu.curves.scalars["relu0"]["zero_activation_fraction_mean"] == 0.45


def test_long_batch_curves_and_big_grids_are_drawn_downsampled():
    rows = make_rows(seeds=2)[:2]
    steps = 5 * MAX_CURVE_POINTS + 3
    records = {r["run_id"]: make_record(r["seed"], "relu", steps=steps, grid=200)
               for r in rows}
    a = analyze_runs(INFO, rows, records)
    c = batch_curve(a.variants[0])
    assert len(c["steps"]) <= MAX_CURVE_POINTS and len(c["mean"]) == len(c["steps"])
    full = np.mean([records[r]["batch_losses"] for r in records], axis=0)
    assert c["mean"][0] == pytest.approx(full[:6].mean())  # blocks of 6 consecutive steps
    assert c["steps"][0] == pytest.approx(3.5)
    xs, ys, prob, classes = display_grid(a.variants[0].curves.boundary)
    assert prob.shape == (100, 100) and classes is None and len(xs) == len(ys) == 100
    assert xs[0] == pytest.approx(np.linspace(-1, 1, 200)[:2].mean())


def test_parallel_figures_equal_serial_ones(tmp_path, monkeypatch):
    from ablab.report import drawing

    rows = make_rows(seeds=2)
    records = {r["run_id"]: make_record(r["seed"], r["variant"]["activation"])
               for r in rows if r["status"] == "done"}
    a = analyze_runs(INFO, rows, records)
    names = ["final_metrics", "decision_boundaries", "dead_units"]
    monkeypatch.setattr(drawing, "_figure_workers", lambda n: 1)
    serial = drawing._draw_all(a, names, svg=False)
    monkeypatch.setattr(drawing, "_figure_workers", lambda n: 2)
    parallel = drawing._draw_all(a, names, svg=False)
    assert all(serial[n] is not None and serial[n][0][:4] == b"\x89PNG" for n in names)
    assert parallel == serial


def test_probability_of_improvement_by_ranks_equals_every_pair():
    """P(A > B) from pooled ranks (linear memory) is exactly the mean over every pair."""
    from ablab.analysis.stats import probability_of_improvement

    rng = np.random.default_rng(3)
    for n_a, n_b in ((3, 3), (7, 4), (40, 55)):
        a = np.round(rng.normal(0.9, 0.02, n_a), 2)  # rounded: ties between and within
        b = np.round(rng.normal(0.9, 0.02, n_b), 2)
        pairs = ((a[:, None] > b[None, :]) + 0.5 * (a[:, None] == b[None, :])).mean()
        estimate, low, high = probability_of_improvement(a, b)
        assert estimate == pairs and low <= estimate <= high
        lower = ((a[:, None] < b[None, :]) + 0.5 * (a[:, None] == b[None, :])).mean()
        assert probability_of_improvement(a, b, higher_is_better=False)[0] == lower


def _summaries(a):
    """Everything the figures and tables draw from an analysis, as plain comparable data."""
    out = {"summary": a.summary.to_dict("list"), "runs": a.runs.to_dict("list"),
           "verdicts": a.verdicts}
    for v in a.variants:
        c = v.curves
        out[v.label] = {
            "history": {k: [s.tolist() for s in x] for k, x in c.history.items()},
            "batch": [c.batch_sum.tolist(), c.batch_squares.tolist(), c.batch_n.tolist()],
            "probes": {str(k): {f: (x.tolist() if isinstance(x, np.ndarray) else x)
                                for f, x in slot.items()} for k, slot in c.probes.items()},
            "activations": {k: ([e.tolist() for e in x] if k in ("edges", "total") else x)
                            for k, x in c.activations.items()},
            "boundary": {k: x for k, x in c.boundary.items() if k != "test_points"},
            "points": {k: list(map(float, x)) for k, x in c.boundary["test_points"].items()},
            "last": c.last_epoch, "scalars": c.scalars,
        }
    import json

    return json.dumps(out, sort_keys=True, default=repr)  # NaN equal to NaN, exact floats


def test_records_read_as_arrays_give_the_same_analysis(tmp_path):
    """The analysis reads packed records as numpy arrays (no list per value); every
    summary it draws and tabulates equals the one from the same records read as lists,
    and equals the one from the records as they were before packing."""
    import json

    from ablab.store.records import read_record, record_text

    rows = make_rows(seeds=3)
    records = {r["run_id"]: Record(make_record(r["seed"], r["variant"]["activation"], steps=40),
                                   run_id=r["run_id"], config={}, status="done", final={},
                                   sizes={})
               for r in rows if r["status"] == "done"}
    for rid, rec in records.items():
        (tmp_path / f"{rid}.json").write_text(record_text(dict(rec)))
    as_lists = {rid: read_record(tmp_path / f"{rid}.json") for rid in records}
    as_arrays = {rid: read_record(tmp_path / f"{rid}.json", arrays=True) for rid in records}
    assert isinstance(as_arrays["relu0"]["batch_losses"], np.ndarray)
    assert isinstance(as_lists["relu0"]["batch_losses"], list)
    assert as_arrays["relu0"]["history"] == as_lists["relu0"]["history"]  # dicts of floats
    plain = {rid: json.loads(json.dumps(rec)) for rid, rec in records.items()}
    expected = _summaries(analyze_runs(INFO, rows, plain))
    assert _summaries(analyze_runs(INFO, rows, as_lists)) == expected
    assert _summaries(analyze_runs(INFO, rows, as_arrays)) == expected


def test_figures_drawn_from_the_same_inputs_are_reused(tmp_path, monkeypatch):
    """A second report of an unchanged study reuses the figures (the same files, none
    drawn); a changed record, index row or study file draws them again; a damaged
    figure file is drawn again."""
    import os
    import sqlite3

    from ablab.report import drawing

    class Store:
        root = tmp_path

        def __init__(self):
            self.db = sqlite3.connect(tmp_path / "index.sqlite")
            self.db.execute("CREATE TABLE IF NOT EXISTS runs (run_id, position, status)")

    rows = make_rows(seeds=2)
    records = {r["run_id"]: make_record(r["seed"], r["variant"]["activation"])
               for r in rows if r["status"] == "done"}
    a = analyze_runs(INFO, rows, records)
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "relu0.json").write_text("{}")
    (tmp_path / "study.json").write_text("{}")
    store, folder = Store(), tmp_path / drawing.FIGURE_DIR
    drawn = []
    real = drawing._draw_all
    monkeypatch.setattr(drawing, "_figure_workers", lambda n: 1)
    monkeypatch.setattr(drawing, "_draw_all", lambda *args: drawn.append(1) or real(*args))
    cheap = ("learning_rate", "interactions")  # one drawn, one the study has no data for
    monkeypatch.setattr(drawing, "FIGURES", [f for f in drawing.FIGURES if f.name in cheap])

    def report():
        figures = drawing.render_figures(a, folder, key=drawing.figures_key(store, False))
        return {f["name"]: f["data_uri"] for f in figures}

    first = report()
    assert drawn == [1] and (folder / drawing.FIGURE_CACHE).is_file()
    assert report() == first and drawn == [1]  # reused, the same figures
    (folder / "learning_rate.png").write_bytes(b"not a png")
    assert report() == first and drawn == [1, 1]  # a damaged file: drawn again
    record = tmp_path / "runs" / "relu0.json"
    record.write_text("{ }")
    os.utime(record, ns=(1, 1))
    assert report() == first and drawn == [1, 1, 1]  # a changed record
    store.db.execute("INSERT INTO runs VALUES ('x', 1, 'done')")
    assert report() == first and drawn == [1, 1, 1, 1]  # a changed index
    (tmp_path / "study.json").write_text('{"a": 1}')
    assert report() == first and drawn == [1, 1, 1, 1, 1]  # a changed study file
    assert report() == first and drawn == [1, 1, 1, 1, 1]
    assert drawing.render_figures(a, folder) and drawn == [1] * 6  # no key: always drawn


def test_probability_of_improvement_interval_equals_the_ranks_one():
    """The bootstrap interval of P(A > B) from counts at the pooled values is exactly the
    one from average ranks in every resample (the statistic before, same seed)."""
    import warnings

    from scipy import stats

    from ablab.analysis.stats import probability_of_improvement

    def by_ranks(u, v, axis=-1):
        n_u, n_v = u.shape[axis], v.shape[axis]
        ranks = stats.rankdata(np.concatenate([u, v], axis=axis), axis=axis)
        return (ranks[..., :n_u].sum(axis=-1) - n_u * (n_u + 1) / 2) / (n_u * n_v)

    rng = np.random.default_rng(5)
    for n_a, n_b in ((2, 3), (9, 6), (60, 45)):
        a = np.round(rng.normal(0.9, 0.02, n_a), 2)
        b = np.round(rng.normal(0.9, 0.02, n_b), 2)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ci = stats.bootstrap((a, b), by_ranks, vectorized=True, paired=False,
                                 n_resamples=2000, method="percentile",
                                 random_state=np.random.default_rng(0)).confidence_interval
        assert probability_of_improvement(a, b)[1:] == (ci.low, ci.high)


def test_heal_check_finds_exactly_the_records_reading_finds(tmp_path):
    """``check_record`` (heal: checks every record without unpacking) and ``read_record``
    (the analysis) call the same records damaged: damaged packed arrays and tables of
    every kind, each in turn."""
    import copy
    import json

    from ablab.store.records import DamagedRecord, check_record, pack_record, read_record

    record = dict(make_record(1, "relu"), run_id="r1", config={}, status="done", final={},
                  sizes={})
    base = pack_record(record)

    def packed(value, path=()):
        if isinstance(value, dict):
            if "__array__" in value or "__table__" in value:
                yield path
            for k, x in value.items():
                yield from packed(x, (*path, k))
        elif isinstance(value, list):
            for i, x in enumerate(value):
                yield from packed(x, (*path, i))

    damages = [
        lambda n: n.update(data=n["data"][:-4]), lambda n: n.update(data="!!!!" + n["data"]),
        lambda n: n.update(shape=[n["shape"][0] + 1, *n["shape"][1:]]),
        lambda n: n.update(shape=[-1]), lambda n: n.update(shape=[]),
        lambda n: n.update(__array__="<f8"), lambda n: n.update(__array__="zz"),
        lambda n: n.pop("data"),
    ]
    table_damages = [lambda n: n["columns"].pop(), lambda n: n["__table__"].pop(),
                     lambda n: n["columns"][0].pop(), lambda n: n.update(columns=5)]
    path = tmp_path / "r1.json"
    seen = set()
    for where in packed(base):
        node = base
        for k in where:
            node = node[k]
        for damage in table_damages if "__table__" in node else damages:
            data = copy.deepcopy(base)
            node = data
            for k in where:
                node = node[k]
            damage(node)
            path.write_text(json.dumps(data))
            outcomes = []
            for read in (read_record, check_record):
                try:
                    read(path, "r1")
                    outcomes.append("whole")
                except DamagedRecord:
                    outcomes.append("damaged")
            assert outcomes[0] == outcomes[1], (where, outcomes)
            seen.add(outcomes[0])
    assert seen == {"whole", "damaged"}  # both kinds met: the comparison can fail
    path.write_text(json.dumps(base))
    check_record(path, "r1")
