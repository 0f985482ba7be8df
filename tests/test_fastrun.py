"""Per-run overhead (#17): the activation probes read the training step's own forward pass
where that pass is the probe pass, and the optimizers' multi-tensor updates; both give
the numbers the slow way gives (bit for bit where the operations are the same), checked
on the machine that runs the test (#34)."""

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

from ablab.config import parse_run
from ablab.probes import base as probe_base
from ablab.probes import gradients as probe_gradients
from ablab.probes import units as probe_units
from ablab.train import callbacks as train_callbacks
from ablab.train import fit
from ablab.train.optimizers import FOREACH_OPTIMIZERS, build_optimizer
from ablab.train.state import start_run

EPOCHS = 12
PROBES = ["dead_units", {"name": "activations", "every": 2}, "gradients"]


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: torch at one thread


def full_batch(**over):
    data = tiny_run(
        epochs=EPOCHS, batch_size="full", probes=PROBES,
        dataset={"name": "moons", "n_samples": 200, "noise": 0.3, "val_fraction": 0.0},
        model={"name": "mlp", "hidden": [32, 16], "init": "normal(0, 0.01)"},
        optimizer={"name": "adamw", "lr": 0.01},
    )
    data.update(over)
    return parse_run(data)


def counted_fit(cfg, monkeypatch, *, tap: bool):
    """``fit`` with the training-forward tap on or off, counting the probes' own passes."""
    passes = []
    real = probe_base.forward_with_hooks

    def counting(*args, **kwargs):
        passes.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(probe_base, "forward_with_hooks", counting)
    if not tap:
        monkeypatch.setattr(train_callbacks, "training_forward_is_probe_pass", lambda run: False)
    result = fit(cfg)
    monkeypatch.undo()
    return without_timings(result.to_dict()), len(passes)


@pytest.mark.parametrize(
    "activation, early_stopping",
    [("relu", None), ("leaky_relu", None), ("relu", {"patience": 1})],
)
def test_dead_units_from_the_training_forward_equal_a_pass_of_their_own(
    monkeypatch, activation, early_stopping
):
    """Epoch e's dead units and zero-activation fraction, taken from epoch e + 1's training
    forward pass (same weights, same samples in another order), are those of a separate
    eval-mode pass after epoch e, bit for bit; so is source 001's "dead ReLU %" scalar
    (``zero_activation_fraction_mean``: the fraction on every training forward pass, averaged
    over layers and epochs). The activations probe's histograms and float sums too: it reads
    the step's rows put back in the probe batch's order. The last measured epoch, which no
    step follows, still gets a pass of its own, and early stopping ends the taps where it
    ends training."""
    over = {"model": {"name": "mlp", "hidden": [32, 16], "init": "normal(0, 0.01)",
                      "activation": activation}}
    if early_stopping:
        over["early_stopping"] = early_stopping
        over["dataset"] = {"name": "moons", "n_samples": 200, "noise": 0.3, "val_fraction": 0.2}
        over["epochs"] = 40
    cfg = full_batch(**over)
    tapped, tapped_passes = counted_fit(cfg, monkeypatch, tap=True)
    separate, separate_passes = counted_fit(cfg, monkeypatch, tap=False)
    assert tapped == separate
    dead = tapped["probes"]["dead_units"]
    epochs_run = tapped["final"]["epochs_run"]
    assert dead["epochs"] == list(range(epochs_run + 1))
    assert dead["zero_activation_fraction_mean"] is not None
    assert 0.0 < dead["zero_activation_fraction_mean"] < 1.0
    if early_stopping:
        assert tapped["final"]["stopped_early"] and epochs_run < cfg.epochs
    # Epoch 0 (one pass for each probe, as they are built), then only the last measured
    # epoch, which no step follows (one pass shared by both probes when both are due).
    assert tapped_passes == 3
    assert separate_passes == 2 + epochs_run


@pytest.mark.parametrize(
    "over, expected",
    [
        ({}, True),
        ({"batch_size": 64}, False),  # several steps an epoch: no step sees the whole split
        ({"probe_batch_size": 50}, False),  # the probe batch is a sample of the split
        ({"model": {"name": "mlp", "hidden": [32, 16], "dropout": 0.2}}, False),
        ({"model": {"name": "mlp", "hidden": [32, 16], "batch_norm": True}}, False),
        ({"precision": "bf16"}, False),
    ],
)
def test_the_training_forward_is_the_probe_pass_only_where_it_computes_the_same(over, expected):
    run = start_run(full_batch(**over), torch.device("cpu"))
    assert not train_callbacks.training_forward_is_probe_pass(run)  # fit_seeds: a copy trains
    run.steps_call_model = True  # as fit sets it
    assert train_callbacks.training_forward_is_probe_pass(run) is expected


def test_minibatch_runs_measure_dead_units_with_their_own_pass(monkeypatch):
    cfg = full_batch(batch_size=64)
    _, passes = counted_fit(cfg, monkeypatch, tap=True)
    assert passes == 2 + EPOCHS  # epoch 0 for each probe, then one pass per epoch


@pytest.mark.parametrize("name", FOREACH_OPTIMIZERS)
def test_multi_tensor_optimizer_updates_are_bit_for_bit_the_default_ones(name):
    options = {"sgd": {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-4},
               "adam": {"lr": 0.01, "weight_decay": 0.01},
               "adamw": {"lr": 0.01}}[name]
    default = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[name]

    def train(make_optimizer, foreach):
        torch.manual_seed(0)
        model = torch.nn.Sequential(
            torch.nn.Linear(2, 32), torch.nn.ReLU(), torch.nn.Linear(32, 2)
        )
        optimizer = make_optimizer(model.parameters())
        assert optimizer.param_groups[0]["foreach"] is foreach
        x = torch.randn(64, 2)
        y = (x[:, 0] * x[:, 1] > 0).long()
        for _ in range(20):
            loss = torch.nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        return [p.detach() for p in model.parameters()]

    ours = train(lambda params: build_optimizer(name, options, params), True)
    theirs = train(lambda params: default(params, **options, foreach=False), False)
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs, strict=True))


# ---- #17, per-run probe cost: the probes' numbers, checked on the machine that runs them

ALL_PROBES = ["dead_units", {"name": "activations", "every": 2}, "gradients", "weights",
              {"name": "boundary", "grid": 20, "epochs": [0, 3]}]


def study_like(activation, **over):
    """A small copy of the moons study's runs (full batch, every probe)."""
    data = tiny_run(
        epochs=6, batch_size="full", probes=ALL_PROBES,
        dataset={"name": "moons", "n_samples": 200, "noise": 0.3, "val_fraction": 0.0},
        model={"name": "mlp", "hidden": [32, 16], "init": "normal(0, 0.01)",
               "activation": activation},
        optimizer={"name": "adamw", "lr": 0.01, "weight_decay": 0.01},
    )
    data.update(over)
    return data


#: Runs whose probes take every path the per-run work was cut into (numpy counters,
#: outputs-only reordering, probes summarised at finish): the training-forward tap (full
#: batch), separate passes (minibatches), the saturation counts (sigmoid, tanh), early
#: stopping and a diverged run. Until #34 each was pinned by a digest of its whole result
#: recorded on one CPU, which another CPU's kernels (other summation orders) cannot give.
PROBE_CASES = {
    "relu": study_like("relu"),
    "leaky_relu": study_like("leaky_relu"),
    "sigmoid": study_like("sigmoid"),
    "tanh": study_like("tanh"),
    "gelu_minibatch": study_like("gelu", batch_size=48, probe_batch_size=64),
    "relu_early_stop": study_like(
        "relu", epochs=30, early_stopping={"patience": 1},
        dataset={"name": "moons", "n_samples": 200, "noise": 0.3, "val_fraction": 0.2}),
    "diverged": study_like("relu", optimizer={"name": "sgd", "lr": 1e12}, batch_size=64),
}


def same_bits(a, b) -> bool:
    """Two results, timings aside, equal to the last bit of every float (JSON's repr of a
    float is exact, and tells -0.0 from 0.0)."""
    return (json.dumps(without_timings(a.to_dict()), sort_keys=True)
            == json.dumps(without_timings(b.to_dict()), sort_keys=True))


@pytest.mark.parametrize("case", list(PROBE_CASES))
def test_probes_equal_a_direct_computation_and_a_second_run_bit_for_bit(case):
    """Each probe (dead units, activation histograms and moments, gradient and weight
    norms, the decision boundary) as a plain loop computes it the slow, direct way on
    this machine (tests/reference_fit.py, within the tolerances stated there), the
    training under them bit for bit that loop's, and a second run the same bits."""
    cfg = parse_run(PROBE_CASES[case])
    result = fit(cfg)
    assert same_bits(result, fit(cfg))
    reference = reference_fit(cfg)
    assert_trains_as_reference(result, reference)
    assert_probes_match(result.probes, reference["probes"])
    if case == "diverged":
        assert result.status == "diverged" and result.probes["weights"]["non_finite"]
    if case == "relu_early_stop":
        assert result.final["stopped_early"]


@pytest.mark.parametrize(
    "probe, change",
    [
        ("gradients", lambda real: lambda tensors: real(tensors) * 1.001),  # 0.1 % off
        ("activations", lambda real: lambda y, lo, hi, bins, scratch=None:
            real(y * 1.01, lo, hi, bins, scratch)),  # a histogram of 1.01 y
        ("dead_units", lambda real: lambda values, bound, scratch:
            real(values, 1e-3, scratch)),  # "off" up to 1e-3 instead of 0
    ],
)
def test_the_direct_computation_tells_a_probe_that_changed(monkeypatch, probe, change):
    """The tolerances of the comparison above are tight enough to catch a small change."""
    module, name = {"gradients": (probe_gradients, "tensor_norms"),
                    "activations": (probe_units, "histogram"),
                    "dead_units": (probe_units, "count_at_most")}[probe]
    monkeypatch.setattr(module, name, change(getattr(module, name)))
    cfg = parse_run(PROBE_CASES["gelu_minibatch"] if probe != "dead_units"
                    else PROBE_CASES["relu"])
    result = fit(cfg)
    reference = reference_fit(cfg)
    assert_trains_as_reference(result, reference)  # probes only watch
    with pytest.raises(AssertionError):
        assert_probes_match(result.probes, reference["probes"])


@pytest.mark.parametrize("case", ["relu", "gelu_minibatch", "relu_early_stop"])
def test_gradients_summarised_in_several_flushes_give_the_same_bits(monkeypatch, case):
    """The gradients probe summarises its waiting epochs every ``_FLUSH_STEPS`` steps:
    where that cuts the run changes no bit."""
    cfg = parse_run(PROBE_CASES[case])
    at_the_end = fit(cfg)
    monkeypatch.setattr(probe_gradients, "_FLUSH_STEPS", 2)
    flushed = fit(cfg)
    assert same_bits(at_the_end, flushed)
    assert len(flushed.probes["gradients"]["epochs"]) == flushed.final["epochs_run"] > 2


def edge_values(dtype):
    """Values at and next to every bound the counters compare with, in ``dtype``, plus
    NaN, infinities, signed zeros and ordinary values."""
    bounds = torch.tensor([0.0, 0.01, 0.99, -0.99], dtype=dtype)
    near = torch.cat([bounds, torch.nextafter(bounds, bounds + 1),
                      torch.nextafter(bounds, bounds - 1)])
    special = torch.tensor([float("nan"), float("inf"), -float("inf"), -0.0, 0.0], dtype=dtype)
    ordinary = torch.randn(997, generator=torch.Generator().manual_seed(0), dtype=dtype)
    values = torch.cat([near, special, ordinary, torch.sigmoid(ordinary), torch.tanh(ordinary)])
    return values[torch.randperm(values.numel(), generator=torch.Generator().manual_seed(1))]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cpu_counters_count_what_torch_counts(monkeypatch, dtype):
    """The CPU counters (numpy) give the torch path's exact counts, bounds rounded to the
    values' dtype alike, NaN counted on neither side of a bound."""
    values = edge_values(dtype)
    cases = [("at_most", (0,)), ("outside", (0.01, 0.99)), ("outside", (-0.99, 0.99))]

    def counts():
        scratch = probe_base.Scratch()
        return [getattr(probe_base, f"count_{kind}")(values, *bounds, scratch)
                for kind, bounds in cases]

    host = counts()
    monkeypatch.setattr(probe_base, "_host_view", lambda values: None)
    device = counts()
    for a, b in zip(host, device, strict=True):
        assert a.dtype == b.dtype == torch.float64 and a.item() == b.item()
    expected = [(values <= 0).sum(), ((values < 0.01) | (values > 0.99)).sum(),
                (values.abs() > 0.99).sum()]
    assert [int(c.item()) for c in host] == [int(e) for e in expected]
