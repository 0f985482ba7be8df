"""One training loop: fit trains what a plain loop written out step by step trains, bit for
bit, on the machine that runs the test (#34); fit_seeds trains each seed as fit does (up
to batched matmuls' rounding); both store the same record keys in the same order, give
the same bits run twice, and call the callbacks in order."""

import json

import pytest
import torch
from conftest import tiny_run
from reference_fit import (
    assert_probes_match,
    assert_trains_as_reference,
    reference_fit,
    without_timings,
)

from ablab.config import EarlyStoppingConfig, parse_run
from ablab.train import Callback, fit
from ablab.train import state as train_state
from ablab.train.batched import can_batch, fit_seeds
from ablab.train.callbacks import EarlyStopping
from ablab.train.result import EpochRecord, FinalMetrics

PROBES = ["gradients", "dead_units", "weights"]


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: torch at one thread


#: Runs through every path of the loop: probes and a cosine schedule, a plateau schedule
#: with best weights restored and kept, early stopping, divergence, and a conv net trained
#: channels-last. Until #34 each was pinned by a digest of its whole result recorded on
#: one CPU; now each is compared with ``reference_fit`` on the machine that runs the test.
FIT_CASES = {
    "probes_cosine": tiny_run(epochs=4, probes=PROBES, schedule={"name": "cosine"}),
    "plateau_restore_keep_best": tiny_run(
        epochs=8,
        early_stopping={"patience": 2, "restore_best_weights": True},
        schedule={"name": "reduce_on_plateau", "patience": 1},
        keep="best",
    ),
    "stops_early_keep_best": tiny_run(epochs=20, early_stopping={"patience": 1}, keep="best"),
    "diverged_keep_last": tiny_run(epochs=5, optimizer={"name": "sgd", "lr": 1e12},
                                   keep="last"),
    "digits_cnn_channels_last": dict(tiny_run(epochs=1, keep="last"),
                                     dataset={"name": "digits"}, model={"name": "mnist_cnn3"}),
}

HISTORY_KEYS = ["epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy",
                "val_cross_entropy", "lr", "seconds"]
FINAL_HEAD = ["epochs_run", "stopped_early", "best_val_accuracy", "best_val_epoch",
              "chance_accuracy"]
TESTED = ["weights_epoch", "test_loss", "test_cross_entropy", "test_accuracy",
          "test_precision", "test_recall", "test_f1", "confusion", "at_chance"]


def same_bits(a, b) -> bool:
    """Two results, timings aside, equal to the last bit of every float (JSON's repr of a
    float is exact, and tells -0.0 from 0.0)."""
    return (json.dumps(without_timings(a.to_dict()), sort_keys=True)
            == json.dumps(without_timings(b.to_dict()), sort_keys=True))


def seeds_config(seed: int, **over):
    data = {
        "epochs": 12, "seed": seed, "batch_size": 32, "device": "cpu",
        "dataset": {"name": "moons", "n_samples": 240, "noise": 0.25},
        "model": {"name": "mlp", "hidden": [16, 8]},
        "optimizer": {"name": "adam", "lr": 0.01},
        "probes": PROBES, "early_stopping": {"patience": 2},
    }
    data.update(over)
    return parse_run(data)


def conv_config(seed: int, memory_format: str = "auto"):
    data = tiny_run(epochs=1, seed=seed, memory_format=memory_format)
    data.update(dataset={"name": "digits"}, model={"name": "keras_conv1", "dropout": 0.0})
    return parse_run(data)  # no dropout: batched seeds draw other masks than fit


@pytest.mark.parametrize("case", list(FIT_CASES))
def test_fit_trains_what_a_plain_loop_trains_and_the_same_bits_twice(case):
    """Batch losses, history, test figures and kept weights bit for bit a plain loop's
    (the same operations on the same machine: tests/reference_fit.py), probes as that
    loop computes them directly (within its stated tolerances), and a second run the
    same bits."""
    cfg = parse_run(FIT_CASES[case])
    result = fit(cfg)
    assert same_bits(result, fit(cfg))
    reference = reference_fit(cfg)
    assert_trains_as_reference(result, reference)
    assert_probes_match(result.probes, reference["probes"])
    expected = {"diverged_keep_last": "diverged"}.get(case, "done")
    assert result.status == expected
    if case.startswith(("plateau", "stops_early")):
        assert result.final["kept_epoch"] is not None and result.weights is not None


def test_fit_seeds_trains_each_seed_as_fit_does_and_the_same_bits_twice():
    """Seeds trained as one batched model: each as ``fit`` trains it alone, up to the
    rounding of batched matmuls (another summation order: per batch loss within 1e-4
    relative, test loss within 1e-4, after 10 epochs of Adam on a 16-8 MLP; a seed
    trained on another seed's data or init is off by far more), with the same epochs
    run and best weights restored; run again, the same bits."""
    configs = [seeds_config(s) for s in (0, 1)]
    assert can_batch(configs)
    results = fit_seeds(configs)
    # The batched program steps its own stacked optimizer (per-run hyper-parameters as
    # tensors, #33): torch.optim's arithmetic, rounded apart from its foreach kernels, so
    # the seeds equal ``fit`` within rounding (and themselves bit for bit).
    assert all(same_bits(a, b) for a, b in zip(results, fit_seeds(configs), strict=True))
    for together, alone in zip(results, [fit(c) for c in configs], strict=True):
        assert together.run_id == alone.run_id
        for key in ("epochs_run", "weights_epoch", "stopped_early", "best_val_epoch"):
            assert together.final[key] == alone.final[key], key
        assert together.batch_losses == pytest.approx(alone.batch_losses, rel=1e-4)
        assert together.final["test_loss"] == pytest.approx(alone.final["test_loss"], abs=1e-4)
        assert together.final["weights_epoch"] < together.final["epochs_run"]  # restored
    assert results[0].batch_losses != results[1].batch_losses  # the seeds differ


def test_records_keep_their_keys_in_order():
    kept = fit(parse_run(FIT_CASES["stops_early_keep_best"]))
    assert list(kept.history[0]) == HISTORY_KEYS
    assert list(kept.final) == FINAL_HEAD + TESTED + ["kept_epoch", "seconds"]
    assert kept.final["stopped_early"] is True and kept.weights is not None
    diverged = fit(parse_run(FIT_CASES["diverged_keep_last"]))
    assert list(diverged.final) == FINAL_HEAD + ["at_chance", "weights_epoch", "seconds"]
    assert diverged.weights is None
    batched = fit_seeds([seeds_config(0, epochs=2)])[0]
    assert list(batched.final) == FINAL_HEAD + TESTED + ["seconds", "batched_seeds"]


def test_typed_records_serialize_as_stored():
    record = EpochRecord(epoch=2, train_loss=float("nan"), train_accuracy=0.5, lr=0.1,
                         val_loss=float("inf"), val_accuracy=0.25, val_cross_entropy=1.0)
    assert not record.is_finite()
    record.drop_non_finite()
    assert record.is_finite()
    assert record.to_dict() == {"epoch": 2, "train_loss": None, "train_accuracy": 0.5,
                                "val_loss": None, "val_accuracy": 0.25,
                                "val_cross_entropy": 1.0, "lr": 0.1, "seconds": 0.0}
    untested = FinalMetrics(epochs_run=1, stopped_early=False, best_val_accuracy=None,
                            best_val_epoch=None, chance_accuracy=0.5)
    assert "test_accuracy" not in untested.to_dict() and not untested.tested


class Recorder(Callback):
    """Writes down every hook it gets."""

    def __init__(self, stop_after: int | None = None, gradients: bool = False):
        self.calls: list = []
        self.backward = 0
        self.stop_after = stop_after
        self.wants_gradients = gradients

    def on_train_begin(self, run):
        self.calls.append(("train_begin", run.optimizer is not None))

    def on_epoch_begin(self, run, epoch):
        self.calls.append(("epoch_begin", epoch))

    def on_backward_end(self, run):
        self.backward += 1

    def on_epoch_end(self, run, record):
        self.calls.append(("epoch_end", record.epoch, record.seconds > 0))
        if record.epoch == self.stop_after:
            run.stop_training = True

    def on_train_end(self, run):
        self.calls.append(("train_end", len(run.result.history)))


def test_a_user_callback_gets_the_hooks_in_order_and_changes_nothing():
    cfg = parse_run(FIT_CASES["probes_cosine"])
    recorder = Recorder(gradients=True)
    result = fit(cfg, callbacks=[recorder])
    assert recorder.calls == [
        ("train_begin", True),
        *[call for e in (1, 2, 3, 4) for call in (("epoch_begin", e), ("epoch_end", e, True))],
        ("train_end", 4),
    ]
    assert recorder.backward == len(result.batch_losses)  # once per training batch
    assert same_bits(result, fit(cfg))  # what the run gives without the callback


def test_a_callback_can_stop_training():
    recorder = Recorder(stop_after=2)
    result = fit(parse_run(tiny_run(epochs=5)), callbacks=[recorder])
    assert result.final["epochs_run"] == 2 and result.final["stopped_early"] is False
    assert recorder.calls[-1] == ("train_end", 2)


def test_early_stopping_callback_stops_where_its_rule_says():
    cfg = EarlyStoppingConfig(patience=2, monitor="val_accuracy", min_delta=0.01)
    result = fit(parse_run(tiny_run(epochs=30, early_stopping=cfg.model_dump())))
    replay = EarlyStopping(cfg)
    stops = [replay.update(h["epoch"], h, None) for h in result.history]
    assert stops.index(True) + 1 == result.final["epochs_run"] < 30
    assert result.final["stopped_early"] is True
    assert result.final["weights_epoch"] == replay.best_epoch  # best weights restored


def test_on_epoch_reaches_every_path():
    batched = [seeds_config(s, epochs=2) for s in (0, 1)]
    alone = [seeds_config(s, epochs=2, keep="last") for s in (0, 1)]  # kept weights: fit
    assert can_batch(batched) and not can_batch(alone)
    for configs in (batched, alone):
        seen: list = []
        results = fit_seeds(configs, on_epoch=lambda i, record, seen=seen: seen.append((i, record)))
        assert sorted((i, r["epoch"]) for i, r in seen) == [(0, 1), (0, 2), (1, 1), (1, 2)]
        for i, record in seen:
            assert record == results[i].history[record["epoch"] - 1]


def test_the_batched_path_trains_in_the_runs_memory_format(monkeypatch):
    formats = []
    original = train_state.BatchLoader

    def loader(*args, **kwargs):
        formats.append(kwargs["memory_format"])
        return original(*args, **kwargs)

    monkeypatch.setattr(train_state, "BatchLoader", loader)
    configs = [conv_config(s, "channels_last") for s in (0, 1)]
    assert can_batch(configs)
    together = fit_seeds(configs)
    assert formats == [torch.channels_last] * 2
    for a, b in zip(together, [fit(c) for c in configs], strict=True):
        assert a.final["test_accuracy"] == b.final["test_accuracy"]
        assert a.final["test_loss"] == pytest.approx(b.final["test_loss"], abs=1e-5)
