"""The training loop: determinism, divergence, chance, losses, optimizers, schedules,
early stopping, metrics."""

import math

import numpy as np
import pytest
import torch
from conftest import tiny_run
from sklearn.metrics import precision_recall_fscore_support

from ablab.config import EarlyStoppingConfig, parse_run
from ablab.registry import LOSSES, OPTIMIZERS, SCHEDULES
from ablab.train import fit
from ablab.train.callbacks import EarlyStopping
from ablab.train.losses import build_loss
from ablab.train.metrics import classification_metrics, confusion_matrix, is_at_chance
from ablab.train.schedules import build_schedule


def test_same_config_and_seed_give_identical_results():
    cfg = parse_run(tiny_run(epochs=4))
    a, b = fit(cfg), fit(cfg)
    assert a.history == [dict(h, seconds=a.history[i]["seconds"]) for i, h in enumerate(b.history)]
    assert a.batch_losses == b.batch_losses
    assert a.final["test_accuracy"] == b.final["test_accuracy"]
    assert a.final["confusion"] == b.final["confusion"]
    other = fit(parse_run(tiny_run(epochs=4, seed=1)))
    assert other.batch_losses != a.batch_losses


def test_moons_mlp_learns_and_records_everything():
    result = fit(parse_run(tiny_run(epochs=30)))
    assert result.status == "done"
    assert result.final["test_accuracy"] >= 0.8  # chance is 0.5
    assert result.final["at_chance"] is False
    assert len(result.history) == 30
    assert result.sizes == {"train": 192, "val": 48, "test": 60}
    assert len(result.batch_losses) == 30 * math.ceil(192 / 64)
    first = result.history[0]
    assert set(first) >= {
        "epoch",
        "train_loss",
        "train_accuracy",
        "val_loss",
        "val_accuracy",
        "val_cross_entropy",
        "lr",
        "seconds",
    }
    final = result.final
    assert np.array(final["confusion"]).sum() == 60
    assert 0 < final["test_f1"] <= 1 and final["best_val_epoch"] >= 1
    assert final["weights_epoch"] == 30 and final["epochs_run"] == 30


def test_full_batch_is_one_step_per_epoch():
    result = fit(parse_run(tiny_run(epochs=5, batch_size="full")))
    assert len(result.batch_losses) == 5


def test_non_finite_loss_marks_the_run_diverged():
    result = fit(parse_run(tiny_run(epochs=10, optimizer={"name": "sgd", "lr": 1e12})))
    assert result.status == "diverged"
    assert result.diverged_epoch is not None and result.diverged_epoch <= 10
    assert len(result.history) == result.diverged_epoch
    assert "test_accuracy" not in result.final  # no figure from non-finite weights
    for record in result.history:  # missing, never NaN
        for key in ("train_loss", "val_loss"):
            assert record[key] is None or math.isfinite(record[key])


def test_a_run_that_does_not_learn_is_flagged_at_chance():
    data = tiny_run(epochs=2, optimizer={"name": "sgd", "lr": 1e-9})
    data["dataset"] = {"name": "circles", "n_samples": 400}
    data["model"] = {
        "name": "mlp",
        "hidden": [8],
        "activation": "sigmoid",
        "init": "normal(0, 1e-4)",
    }
    result = fit(parse_run(data))
    assert result.status == "done"
    assert result.final["at_chance"] is True
    assert result.final["chance_accuracy"] == pytest.approx(0.5, abs=0.05)


def test_at_chance_margin():
    assert is_at_chance(0.1000, 0.1, 10000)
    assert not is_at_chance(0.2, 0.1, 10000)
    assert is_at_chance(0.55, 0.5, 100)  # within two standard errors of 0.5 on 100 samples


@pytest.mark.parametrize("loss", [n for n in LOSSES.names()
                                  if LOSSES.get(n).meta.get("task") != "regression"])
def test_every_classification_loss_trains(loss):  # regression ones: test_regression.py
    result = fit(parse_run(tiny_run(epochs=15, loss=loss)))
    assert result.status == "done"
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert result.final["test_accuracy"] > 0.75


def test_loss_values():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.0]])
    target = torch.tensor([0, 2])
    onehot = torch.nn.functional.one_hot(target, 3).float()
    mse = build_loss("mse_softmax", {})(logits, target)
    assert mse.item() == pytest.approx(((logits.softmax(1) - onehot) ** 2).mean().item())
    bce = build_loss("bce_onehot", {})(logits, target)
    expected = -(
        onehot * torch.log(torch.sigmoid(logits))
        + (1 - onehot) * torch.log(1 - torch.sigmoid(logits))
    ).mean()
    assert bce.item() == pytest.approx(expected.item(), rel=1e-5)
    plain = build_loss("cross_entropy", {"label_smoothing": 0.0})(logits, target)
    smooth = build_loss("cross_entropy", {"label_smoothing": 0.2})(logits, target)
    assert smooth.item() != pytest.approx(plain.item())


@pytest.mark.parametrize("optimizer", OPTIMIZERS.names())
def test_every_optimizer_trains(optimizer):
    lr = {"sgd": 0.1}.get(optimizer, 0.01)
    result = fit(parse_run(tiny_run(epochs=15, optimizer={"name": optimizer, "lr": lr})))
    assert result.status == "done" and result.final["test_accuracy"] > 0.75


def test_sgd_nesterov_momentum_reaches_the_optimizer(monkeypatch):
    groups = []
    step = torch.optim.SGD.step

    def spy(self, *args, **kwargs):  # what the optimizer that trains holds
        groups.append({k: self.param_groups[0][k] for k in ("nesterov", "momentum", "lr")})
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.SGD, "step", spy)
    opt = {"name": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": True}
    nesterov = fit(parse_run(tiny_run(epochs=2, optimizer=opt)))
    assert nesterov.status == "done" and groups
    assert all(g == {"nesterov": True, "momentum": 0.9, "lr": 0.05} for g in groups)
    groups.clear()
    plain = fit(parse_run(tiny_run(epochs=2, optimizer={**opt, "nesterov": False})))
    assert groups and not any(g["nesterov"] for g in groups)
    assert nesterov.history[-1]["train_loss"] != plain.history[-1]["train_loss"]


def _lrs(schedule: dict, epochs: int, lr: float = 0.1) -> list[float]:
    result = fit(
        parse_run(tiny_run(epochs=epochs, schedule=schedule, optimizer={"name": "sgd", "lr": lr}))
    )
    return [h["lr"] for h in result.history]


def test_schedules_follow_their_formulas():
    assert _lrs({"name": "none"}, 3) == [0.1, 0.1, 0.1]
    assert _lrs({"name": "exponential", "gamma": 0.5}, 4) == pytest.approx(
        [0.1, 0.05, 0.025, 0.0125]
    )
    assert _lrs({"name": "step", "step_size": 2, "gamma": 0.1}, 5) == pytest.approx(
        [0.1, 0.1, 0.01, 0.01, 0.001]
    )
    cosine = _lrs({"name": "cosine", "eta_min": 0.0}, 5)
    assert cosine[0] == 0.1 and cosine[2] == pytest.approx(
        0.1 * (1 + math.cos(math.pi * 2 / 5)) / 2
    )
    assert set(SCHEDULES.names()) >= {"none", "exponential", "step", "cosine", "reduce_on_plateau"}


def test_reduce_on_plateau_has_keras_patience():
    model = torch.nn.Linear(1, 1)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    sched = build_schedule(
        "reduce_on_plateau",
        {
            "monitor": "val_loss",
            "factor": 0.5,
            "patience": 2,
            "min_delta": 0.0,
            "cooldown": 0,
            "min_lr": 0.3,
        },
        opt,
        10,
    )
    lrs = []
    for value in [1.0, 0.9, 0.95, 0.95, 0.95, 0.95, 0.95, 0.95]:
        sched.step({"val_loss": value})
        lrs.append(opt.param_groups[0]["lr"])
    # Keras: two epochs without improvement (epochs 3 and 4) → reduce after epoch 4.
    assert lrs == [1.0, 1.0, 1.0, 0.5, 0.5, 0.3, 0.3, 0.3]


def test_reduce_on_plateau_in_a_run():
    sched = {
        "name": "reduce_on_plateau",
        "monitor": "val_accuracy",
        "patience": 1,
        "factor": 0.5,
        "min_delta": 10.0,
    }
    lrs = _lrs(sched, 4)
    assert lrs == pytest.approx([0.1, 0.1, 0.05, 0.025])


def test_early_stopping_semantics():
    stopper = EarlyStopping(EarlyStoppingConfig(monitor="val_accuracy", patience=2, min_delta=0.01))
    seq = [0.5, 0.6, 0.605, 0.7, 0.69, 0.705]
    stops = [stopper.update(e, {"val_accuracy": v}, None) for e, v in enumerate(seq, 1)]
    assert stops == [False, False, False, False, False, True]
    assert stopper.best_epoch == 4 and stopper.stopped_epoch == 6


def test_early_stopping_restores_best_weights_in_a_run():
    # min_delta so large that nothing after epoch 1 counts as an improvement.
    stop = {"monitor": "val_loss", "patience": 2, "min_delta": 100.0, "restore_best_weights": True}
    result = fit(parse_run(tiny_run(epochs=20, early_stopping=stop)))
    assert result.final["epochs_run"] == 3 and result.final["stopped_early"] is True
    assert result.final["weights_epoch"] == 1
    keep_last = dict(stop, restore_best_weights=False)
    last = fit(parse_run(tiny_run(epochs=20, early_stopping=keep_last)))
    assert last.final["weights_epoch"] == 3


def test_metrics_match_scikit_learn():
    rng = np.random.default_rng(0)
    target = rng.integers(0, 4, 500)
    pred = np.where(rng.random(500) < 0.6, target, rng.integers(0, 3, 500))  # class 3 rarely hit
    confusion = confusion_matrix(torch.tensor(pred), torch.tensor(target), 4)
    ours = classification_metrics(confusion)
    p, r, f, _ = precision_recall_fscore_support(target, pred, average="macro", zero_division=0)
    assert ours["precision"] == pytest.approx(p)
    assert ours["recall"] == pytest.approx(r)
    assert ours["f1"] == pytest.approx(f)
    assert ours["accuracy"] == pytest.approx((pred == target).mean())


def test_a_prediction_that_is_no_class_counts_as_wrong():
    """Source report 003's pooled channels are the logits: an argmax on channel 200 of a
    10-class problem is a wrong prediction, in one extra column, and no class's figure."""
    from ablab.train.metrics import classification_metrics, confusion_matrix

    target = torch.tensor([0, 1, 1, 2])
    pred = torch.tensor([0, 1, 200, 2])
    confusion = confusion_matrix(pred, target, 3)
    assert confusion.shape == (3, 4) and confusion[1, 3] == 1
    scores = classification_metrics(confusion)
    assert scores["accuracy"] == 0.75
    assert scores["precision"] == 1.0  # every class predicted was right
    assert scores["recall"] == pytest.approx((1 + 0.5 + 1) / 3)
    assert confusion_matrix(torch.tensor([0, 1]), torch.tensor([0, 1]), 3).shape == (3, 3)
