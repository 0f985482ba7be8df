"""Regression in the built-in loop: a table with a numeric target (scikit-learn's diabetes
data as a CSV), the losses mse / mae / huber, RMSE / MAE / R² in the target's units, and
what a classification table shows of its classes (names in the confusion matrices)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import assert_one_line_error, run_cli, tiny_run

from ablab.config import parse_run
from ablab.data import clear_cache, load_data, split_indices
from ablab.errors import ConfigError
from ablab.train.loop import fit
from ablab.train.metrics import regression_metrics


@pytest.fixture(scope="module")
def diabetes(tmp_path_factory) -> Path:
    """scikit-learn's diabetes data (442 rows, 10 features, a numeric target) as a CSV."""
    from sklearn.datasets import load_diabetes

    path = tmp_path_factory.mktemp("diabetes") / "diabetes.csv"
    load_diabetes(as_frame=True).frame.to_csv(path, index=False)
    return path


def diabetes_run(path: Path, **over) -> dict:
    dataset = {"name": "csv", "path": str(path), "target": "target", "task": "regression"}
    dataset.update(over.pop("dataset", {}))
    return tiny_run(epochs=over.pop("epochs", 20), dataset=dataset,
                    model={"name": "mlp", "hidden": [32]},
                    optimizer={"name": "adam", "lr": 0.01}, **over)


DIABETES_STUDY = """
name = "diabetes-width"
seeds = [0, 1, 2]
{metric}
[base]
epochs = 25
batch_size = 64
device = "cpu"
dataset = {{ name = "csv", path = "diabetes.csv", target = "target", task = "regression" }}
model = {{ name = "mlp" }}
optimizer = {{ name = "adam", lr = 0.01 }}

[[vary]]
"model.hidden" = [[2], [64]]
"""


# ---------------------------------------------------------------- the metrics


def test_regression_metrics_agree_with_scikit_learn():
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    rng = np.random.default_rng(0)
    target = rng.normal(150, 70, 200)
    pred = target + rng.normal(10, 40, 200)
    got = regression_metrics(torch.tensor(pred), torch.tensor(target))
    assert got["mse"] == pytest.approx(mean_squared_error(target, pred), rel=1e-12)
    assert got["rmse"] == pytest.approx(math.sqrt(mean_squared_error(target, pred)), rel=1e-12)
    assert got["mae"] == pytest.approx(mean_absolute_error(target, pred), rel=1e-12)
    assert got["r2"] == pytest.approx(r2_score(target, pred), rel=1e-12)


# ---------------------------------------------------------------- data


def test_a_numeric_target_without_task_is_refused_naming_both_ways(diabetes, tmp_path):
    study = tmp_path / "study.toml"
    (tmp_path / "diabetes.csv").write_bytes(diabetes.read_bytes())
    study.write_text(DIABETES_STUDY.format(metric="").replace(', task = "regression"', ""))
    proc = run_cli("run", study, "--out", tmp_path / "out")
    line = assert_one_line_error(proc, "study.toml", "'target'", "214 distinct values",
                                 "task = 'regression' or 'classification'")
    assert "dataset" in line
    assert not (tmp_path / "out" / "results.csv").exists()


def test_a_fractional_target_asks_for_the_task(tmp_path):
    from ablab.data import load_raw
    from ablab.data.user_files import UserDataError

    path = tmp_path / "t.csv"
    path.write_text("a,y\n" + "".join(f"{i},{i * 0.5}\n" for i in range(20)))
    with pytest.raises(UserDataError, match="'y' holds fractional numbers.*set task = "
                                            "'regression' or 'classification'"):
        load_raw("csv", {"path": str(path), "target": "y"})
    # a few integer classes stay a classification without being told
    path.write_text("a,y\n" + "".join(f"{i},{i % 3}\n" for i in range(30)))
    assert load_raw("csv", {"path": str(path), "target": "y"}).task == "classification"


def test_regression_data_keep_a_float_target_split_over_its_range(diabetes):
    cfg = parse_run(diabetes_run(diabetes))
    bundle = load_data(cfg.dataset, seed=0)
    assert bundle.is_regression and bundle.output_dim == 1 and bundle.class_names == []
    assert bundle.train.y.dtype == torch.float32
    sizes = bundle.sizes()
    assert sum(sizes.values()) == 442
    # stratified on quantile bins: every split spans the target's range (bottom and top
    # fifth of the targets both present), and the split is the same for the same seed
    raw_y = torch.cat([bundle.train.y, bundle.val.y, bundle.test.y])
    low, high = torch.quantile(raw_y, 0.2), torch.quantile(raw_y, 0.8)
    for split in (bundle.train, bundle.val, bundle.test):
        assert (split.y <= low).any() and (split.y >= high).any()
    again = load_data(cfg.dataset, seed=0)
    assert torch.equal(again.test.y, bundle.test.y)
    other = load_data(cfg.dataset, seed=1)
    assert not torch.equal(other.test.y, bundle.test.y)
    # the target is standardised for training, with the training split's moments
    assert bundle.target_mean == pytest.approx(float(bundle.train.y.double().mean()), rel=1e-6)
    trained_on = bundle.training_target(bundle.train.y)
    assert float(trained_on.mean()) == pytest.approx(0.0, abs=1e-4)
    assert float(trained_on.std(unbiased=False)) == pytest.approx(1.0, abs=1e-4)


def test_split_indices_of_a_float_target_are_deterministic_and_disjoint():
    y = np.random.default_rng(3).gamma(2.0, 10.0, 300).astype(np.float32)
    def split(seed):
        return split_indices(y, has_test=False, val_fraction=0.2, test_fraction=0.2,
                             subset=None, seed=seed)

    ids = split(5)
    assert all(np.array_equal(ids[k], v) for k, v in split(5).items())
    assert not np.array_equal(ids["test"], split(6)["test"])
    together = np.concatenate([ids["train"], ids["val"], ids["test"]])
    assert sorted(together.tolist()) == list(range(300))


def test_npz_regression_with_an_n_by_1_target(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3)).astype(np.float32)
    y = (x @ np.array([1.0, -2.0, 0.5]) + 0.1 * rng.normal(size=200))[:, None]
    np.savez(tmp_path / "d.npz", x=x, y=y)
    data = tiny_run(epochs=30, dataset={"name": "npz", "path": str(tmp_path / "d.npz"),
                                        "task": "regression"},
                    loss={"name": "huber", "delta": 1.0})
    result = fit(parse_run(data))
    assert result.status == "done"
    assert result.final["test_r2"] > 0.8  # a linear target an MLP learns in 30 epochs


# ---------------------------------------------------------------- training


@pytest.mark.parametrize("loss", ["mse", "mae", "huber"])
def test_each_regression_loss_trains_and_reports_in_the_targets_units(diabetes, loss):
    result = fit(parse_run(diabetes_run(diabetes, loss=loss, keep="last")))
    final = result.final
    assert result.status == "done"
    for key in ("test_rmse", "test_mae", "test_r2", "test_mse", "best_val_rmse"):
        assert math.isfinite(final[key]), key
    assert final["test_rmse"] == pytest.approx(math.sqrt(final["test_mse"]))
    for key in ("test_accuracy", "confusion", "class_names"):
        assert key not in final
    assert final["chance_accuracy"] is None and final["at_chance"] is None
    assert {"val_rmse", "val_mae", "val_r2", "val_mse"} <= set(result.history[-1])
    assert result.history[-1]["train_accuracy"] is None
    # in the target's units (diabetes: std ~77): a trained model is far better than the
    # mean (R² > 0.2) and its RMSE is on the target's scale, not on the standardised one
    assert final["test_r2"] > 0.2
    assert 30 < final["test_rmse"] < 90
    # the kept weights give back the recorded metrics
    cfg = parse_run(diabetes_run(diabetes, loss=loss))
    bundle = load_data(cfg.dataset, seed=0)
    from ablab.models import build_model

    model = build_model(cfg.model, bundle.input_shape, bundle.output_dim)
    model.load_state_dict(result.weights)
    model.eval()
    with torch.no_grad():
        pred = bundle.to_target_units(model(bundle.normalize(bundle.test.x)))
    again = regression_metrics(pred, bundle.test.y)
    assert again["rmse"] == pytest.approx(final["test_rmse"], rel=1e-5)
    assert again["r2"] == pytest.approx(final["test_r2"], rel=1e-5)


def test_standardising_the_target_is_optional_and_metrics_stay_in_its_units(diabetes):
    on = fit(parse_run(diabetes_run(diabetes, epochs=40)))
    off = fit(parse_run(diabetes_run(diabetes, epochs=40,
                                     dataset={"standardize_target": False})))
    # the same data and seeds: both figures are RMSEs of the same target, so they are
    # comparable; standardised, the loss is on the unit scale, raw on the target's
    assert on.final["test_loss"] < 5 < off.final["test_loss"]
    assert abs(on.final["test_rmse"] ** 2 - on.final["test_mse"]) < 1e-6 * on.final["test_mse"]
    assert 30 < on.final["test_rmse"] < 120 and 30 < off.final["test_rmse"] < 200


def test_early_stopping_and_keep_best_follow_val_rmse(diabetes):
    run = diabetes_run(diabetes, epochs=60, keep="best",
                       early_stopping={"monitor": "val_rmse", "patience": 3})
    result = fit(parse_run(run))
    rmse = [h["val_rmse"] for h in result.history]
    best = int(np.argmin(rmse)) + 1
    assert result.final["best_val_epoch"] == best
    assert result.final["best_val_rmse"] == pytest.approx(min(rmse))
    assert result.final["kept_epoch"] == best
    if result.final["stopped_early"]:
        assert len(rmse) == best + 3


@pytest.mark.parametrize(("over", "fragments"), [
    ({"loss": "cross_entropy"}, ("loss.name", "classification loss", "mse, mae, huber")),
    ({"early_stopping": {"monitor": "val_accuracy"}}, ("early_stopping.monitor",
                                                       "no accuracy")),
    ({"probes": ["boundary"]}, ("probes[0]", "needs classes")),
    ({"dataset": {"augment": {"flip": True}}}, ("dataset.augment", "is a table")),
])
def test_what_means_nothing_for_a_regression_table_is_refused(diabetes, over, fragments):
    with pytest.raises(ConfigError) as err:
        parse_run(diabetes_run(diabetes, **over))
    text = str(err.value)
    assert "\n" not in text
    for fragment in fragments:
        assert fragment in text


def test_a_regression_loss_on_classes_is_refused():
    with pytest.raises(ConfigError, match="loss.name: 'mse' is a regression loss but the "
                                          "dataset's task is classification"):
        parse_run(tiny_run(loss="mse"))


def test_old_csv_configs_keep_their_run_ids(tmp_path):
    from ablab.config import run_id

    path = tmp_path / "t.csv"
    path.write_text("a,label\n" + "".join(f"{i},{i % 2}\n" for i in range(20)))
    cfg = parse_run(tiny_run(dataset={"name": "csv", "path": str(path)}))
    assert "task" not in cfg.resolved()["dataset"]
    assert "standardize_target" not in cfg.resolved()["dataset"]
    same = parse_run(tiny_run(dataset={"name": "csv", "path": str(path), "task": None}))
    assert run_id(same) == run_id(cfg)


# ---------------------------------------------------------------- a study


@pytest.mark.slow  # 6 runs of 25 epochs and a report, in a subprocess: ~45 s on 2 cores
def test_diabetes_study_with_mlp_width_gets_verdicts_on_r2_and_rmse(diabetes, tmp_path):
    (tmp_path / "diabetes.csv").write_bytes(diabetes.read_bytes())
    study = tmp_path / "study.toml"
    study.write_text(DIABETES_STUDY.format(metric=""))
    out = tmp_path / "out"
    proc = run_cli("run", study, "--out", out, "--workers", "1", timeout=600)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "at chance" not in proc.stdout + proc.stderr
    import pandas as pd

    runs = pd.read_csv(out / "results.csv")
    assert len(runs) == 6 and set(runs["status"]) == {"done"}
    index = json.loads((out / "study.json").read_text())
    assert index["name"] == "diabetes-width"
    from ablab.store import StudyStore

    with StudyStore.existing(out) as store:
        finals = [row["final"] for row in store.rows()]
    for final in finals:
        assert math.isfinite(final["test_r2"]) and math.isfinite(final["test_rmse"])
        assert final["test_r2"] <= 1 and final["test_rmse"] > 0
        assert not final.get("at_chance")
    report = (out / "report.md").read_text()
    assert "runs at chance" not in report  # no chance level without classes
    # verdicts on R² (the primary outcome of a regression study that declares none) and
    # RMSE, with intervals inside their ranges (R² at most 1, RMSE above 0)
    assert "verdicts (test R²):" in proc.stdout
    assert "hidden=[2] vs hidden=[64]" in proc.stdout or "beats hidden=" in proc.stdout
    from ablab.analysis import analyze
    from ablab.analysis.verdicts import verdict

    with StudyStore.existing(out) as store:
        a = analyze(store)
    assert a.primary == "test_r2"
    for metric, label in (("test_r2", "test R²"), ("test_rmse", "test RMSE")):
        compared = a.comparisons_on(metric)
        assert len(compared) == 1 and compared[0].result.n_a == 3
        assert label in verdict(compared[0])
    assert all("test R²" in v for v in a.verdicts)
    rmse = [sentences for name, _, _, sentences in a.outcome_verdicts if name == "test_rmse"]
    assert rmse and len(rmse[0]) == 1 and "test RMSE" in rmse[0][0], a.outcome_verdicts
    summary = pd.read_csv(out / "summary.csv")
    assert (summary["test_r2_ci_high"] <= 1).all()
    assert (summary["test_rmse_ci_low"] > 0).all()
    assert "test R²" in report and "test RMSE" in report
    assert (out / "figures" / "final_metrics.png").is_file()


# ---------------------------------------------------------------- classes by name


def test_class_names_a_csv_gives_are_recorded_and_drawn(tmp_path):
    rng = np.random.default_rng(0)
    names = ["cat", "dog", "fox"]
    rows = ["a,b,animal"] + [f"{rng.normal() + i},{rng.normal() - i},{names[i]}"
                             for i in rng.integers(0, 3, 150)]
    path = tmp_path / "animals.csv"
    path.write_text("\n".join(rows) + "\n")
    clear_cache()
    result = fit(parse_run(tiny_run(dataset={"name": "csv", "path": str(path),
                                             "target": "animal"})))
    assert result.final["class_names"] == names
    assert np.asarray(result.final["confusion"]).shape == (3, 3)
    # the report's confusion matrices and per-class figure name the classes
    from ablab.analysis.study_analysis import analyze_runs
    from ablab.report.figures import fig_confusion_matrices, fig_per_class

    row = {"run_id": "r0", "variant_id": "v", "variant_label": "", "variant": {}, "seed": 0,
           "config": {}, "status": "done", "final": result.final}
    a = analyze_runs({"name": "animals", "factors": [], "columns": {}}, [row])
    for fig in (fig_confusion_matrices(a), fig_per_class(a)):
        labels = {t.get_text() for ax in fig.axes for t in ax.get_xticklabels()}
        assert set(names) <= labels


def test_npz_classes_array_names_the_classes(tmp_path):
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 120)
    x = (rng.normal(size=(120, 2)) + y[:, None] * 2).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x, y=y, classes=np.array(["benign", "malignant"]))
    clear_cache()
    result = fit(parse_run(tiny_run(dataset={"name": "npz", "path": str(tmp_path / "d.npz")})))
    assert result.final["class_names"] == ["benign", "malignant"]


def test_numbered_classes_record_no_names():
    result = fit(parse_run(tiny_run(epochs=1)))
    assert "class_names" not in result.final
