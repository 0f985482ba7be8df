"""Probes: constructed models with known answers, then the five probes through ``fit``."""

import json

import numpy as np
import pytest
import torch
from conftest import tiny_run
from torch import nn

from ablab.config import parse_run
from ablab.data import DataBundle, Split, load_data
from ablab.errors import ConfigError
from ablab.models import Activation, build_model
from ablab.probes import ProbeContext, decode_grid
from ablab.registry import PROBES
from ablab.train import fit

ALL = ["dead_units", "activations", "gradients", "weights", "boundary"]


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: torch at one thread


def bundle_of(x: torch.Tensor, y: torch.Tensor, num_classes: int) -> DataBundle:
    """A bundle whose normalize() is the identity, so probe batches are ``x`` itself."""
    split = Split(x, y)
    shape = tuple(x.shape[1:])
    stat_shape = (1, shape[0], 1, 1) if len(shape) == 3 else (1, shape[0])
    return DataBundle(
        name="constructed",
        train=split,
        val=None,
        test=split,
        input_shape=shape,
        num_classes=num_classes,
        class_names=[str(k) for k in range(num_classes)],
        normalize_mode="none",
        scale=1.0,
        mean=torch.zeros(stat_shape),
        std=torch.ones(stat_shape),
    )


def context(model: nn.Module, x: torch.Tensor, y=None, num_classes=2) -> ProbeContext:
    y = torch.zeros(len(x), dtype=torch.long) if y is None else y
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    return ProbeContext(model, bundle_of(x, y, num_classes), len(x), 0, 1, optimizer)


def probe(name: str, ctx: ProbeContext, **options):
    return PROBES.get(name).fn(ctx, **PROBES.get(name).validate_options(options))


# ---------------------------------------------------------------- dead units


def test_forced_dead_relu_layer_is_fully_dead():
    torch.manual_seed(0)
    first = nn.Linear(4, 8)
    with torch.no_grad():
        first.bias.fill_(-100.0)
        first.weight.uniform_(-1, 1)
    model = nn.Sequential(first, Activation("relu"), nn.Linear(8, 2))
    out = probe("dead_units", context(model, torch.randn(256, 4))).finish()
    assert out["layers"] == ["1"] and out["kinds"] == ["relu"] and out["units"] == [8]
    assert out["epochs"] == [0]
    assert out["dead_unit_fraction"] == [[1.0]]
    assert out["zero_activation_fraction"] == [[1.0]]


def test_fresh_relu_on_symmetric_input_is_half_zero_and_not_dead():
    torch.manual_seed(0)
    first = nn.Linear(16, 512)
    nn.init.zeros_(first.bias)
    model = nn.Sequential(first, Activation("relu"), nn.Linear(512, 2))
    p = probe("dead_units", context(model, torch.randn(1024, 16)))
    p.on_epoch_end(1)
    out = p.finish()
    assert out["epochs"] == [0, 1]
    for epoch in range(2):
        assert out["zero_activation_fraction"][epoch][0] == pytest.approx(0.5, abs=0.05)
        assert out["dead_unit_fraction"][epoch][0] <= 0.01


def test_dead_units_count_conv_channels_and_leaky_inputs():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 8, 3, padding=1)
    with torch.no_grad():
        conv.bias.zero_()
        conv.bias[:3] = -100.0  # 3 of 8 channels dead at every position
    model = nn.Sequential(
        conv, Activation("leaky_relu"), nn.Flatten(), nn.Linear(8 * 6 * 6, 4), Activation("tanh")
    )
    out = probe("dead_units", context(model, torch.randn(64, 3, 6, 6))).finish()
    assert out["kinds"] == ["leaky_relu", "tanh"]
    assert out["units"] == [8, None]
    dead, zero = out["dead_unit_fraction"][0], out["zero_activation_fraction"][0]
    assert dead[0] == pytest.approx(3 / 8)
    assert 3 / 8 < zero[0] < 3 / 8 + 5 / 8 * 0.7  # dead channels plus about half the rest
    assert dead[1] is None and zero[1] is None  # not meaningful for tanh


def test_probes_leave_no_hooks_and_restore_modes():
    model = nn.Sequential(nn.Linear(2, 8), Activation("relu"), nn.Dropout(0.5), nn.Linear(8, 2))
    model.train()
    model[2].eval()  # a mixed state must come back as it was
    ctx = context(model, torch.randn(32, 2))
    for name in ("dead_units", "activations"):
        probe(name, ctx).on_epoch_end(1)
    assert all(not m._forward_hooks for m in model.modules())
    assert model.training and model[1].training and not model[2].training


# ---------------------------------------------------------------- activations


@pytest.mark.parametrize("kind", ["sigmoid", "tanh"])
def test_large_weights_saturate_bounded_activations(kind):
    torch.manual_seed(0)
    first = nn.Linear(8, 64)
    nn.init.normal_(first.weight, 0.0, 10.0)
    model = nn.Sequential(first, Activation(kind), nn.Linear(64, 2))
    out = probe("activations", context(model, torch.randn(512, 8)), bins=20).finish()
    assert out["saturated_fraction"][0][0] > 0.5
    lo, hi = (0.0, 1.0) if kind == "sigmoid" else (-1.0, 1.0)
    edges = out["bin_edges"][0]
    assert len(edges) == 21 and edges[0] == lo and edges[-1] == hi
    assert sum(out["hist"][0][0]) == 512 * 64
    assert out["clipped_fraction"][0][0] == 0.0


def test_small_weights_do_not_saturate_and_stats_are_exact():
    torch.manual_seed(0)
    first = nn.Linear(8, 32)
    nn.init.normal_(first.weight, 0.0, 0.01)
    model = nn.Sequential(first, Activation("tanh"), nn.Linear(32, 2), Activation("relu"))
    x = torch.randn(300, 8)
    out = probe("activations", context(model, x), bins=10, limit=2.0).finish()
    assert out["saturated_fraction"][0][0] == 0.0
    assert out["saturated_fraction"][0][1] is None  # only defined for tanh / sigmoid
    with torch.no_grad():
        h = torch.tanh(first(x))
        r = torch.relu(model[2](h))
    assert out["mean"][0][0] == pytest.approx(h.mean().item(), abs=1e-6)
    assert out["std"][0][0] == pytest.approx(h.std(unbiased=False).item(), rel=1e-4)
    assert out["bin_edges"][1] == pytest.approx([0.2 * k for k in range(11)])
    expected = torch.histc(r.clamp(0, 2), 10, 0, 2).long().tolist()
    assert out["hist"][0][1] == expected


def test_histogram_slots_count_out_of_range_and_nan_apart():
    from ablab.probes.units import histogram

    y = torch.tensor([-7.0, -5.0, -0.1, 0.0, 0.1, 4.99, 5.0, 9.0, float("nan"), float("inf")])
    counts = histogram(y, -5.0, 5.0, 10).tolist()
    # slots: below -5, ten bins of width 1 on [-5, 5), at or above 5, NaN
    assert counts[0] == 1  # -7
    assert counts[1] == 1  # -5 is the first bin's left edge
    assert counts[5] == 1 and counts[6] == 2  # -0.1 in [-1, 0); 0 and 0.1 in [0, 1)
    assert counts[10] == 1  # 4.99
    assert counts[11] == 3  # 5, 9, inf
    assert counts[12] == 1  # NaN
    big = torch.randn(100_000) * 3
    slots = histogram(big, -5.0, 5.0, 10)
    inside = torch.histc(big.clamp(-5, 5 - 1e-6), 10, -5, 5).long()
    inside[0] -= (big < -5).sum()
    inside[-1] -= (big >= 5 - 1e-6).sum()
    assert slots[1:11].tolist() == inside.tolist()
    assert slots[0] == (big < -5).sum() and slots[11] == (big >= 5).sum()


def test_leaky_outputs_outside_the_range_are_counted_as_clipped():
    identity = nn.Linear(1, 1)
    nn.init.ones_(identity.weight)
    nn.init.zeros_(identity.bias)
    model = nn.Sequential(identity, Activation("leaky_relu"))
    x = torch.tensor([[-800.0], [-1.0], [0.5], [7.0]])  # leaky(-800) = -8 < -5; 7 > 5
    out = probe("activations", context(model, x), bins=10).finish()
    assert out["clipped_fraction"][0][0] == pytest.approx(0.5)
    assert out["hist"][0][0][0] == 1 and out["hist"][0][0][-1] == 1  # folded into the edges
    assert sum(out["hist"][0][0]) == 4


def test_conv_statistics_do_not_depend_on_memory_layout():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3), Activation("relu"), nn.Conv2d(8, 4, 3), Activation("leaky_relu")
    )
    x = torch.randn(40, 3, 9, 9)
    plain = {n: probe(n, context(model, x)).finish() for n in ("dead_units", "activations")}
    model = model.to(memory_format=torch.channels_last)
    x = x.contiguous(memory_format=torch.channels_last)
    last = {n: probe(n, context(model, x)).finish() for n in ("dead_units", "activations")}
    assert last["dead_units"]["units"] == [8, 4]
    assert last["dead_units"]["dead_unit_fraction"] == plain["dead_units"]["dead_unit_fraction"]
    assert last["dead_units"]["zero_activation_fraction"][0] == pytest.approx(
        plain["dead_units"]["zero_activation_fraction"][0], abs=1e-3
    )
    for layer in range(2):  # another conv kernel: a value on a bin edge may move
        a, b = last["activations"]["hist"][0][layer], plain["activations"]["hist"][0][layer]
        assert sum(a) == sum(b) and sum(abs(u - v) for u, v in zip(a, b, strict=True)) <= 4
    assert last["activations"]["mean"][0] == pytest.approx(
        plain["activations"]["mean"][0], rel=1e-4
    )


# ---------------------------------------------------------------- gradients and weights


def _mlp_and_batch():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(5, 16), nn.BatchNorm1d(16), Activation("relu"), nn.Linear(16, 3)
    )
    x, y = torch.randn(40, 5), torch.randint(0, 3, (40,))
    return model, x, y


def _backward(model, x, y):
    model.zero_grad(set_to_none=True)
    nn.functional.cross_entropy(model(x), y).backward()


def test_gradient_norms_match_clip_grad_norm_on_one_full_batch():
    model, x, y = _mlp_and_batch()
    p = probe("gradients", context(model, x, y, 3))
    _backward(model, x, y)
    p.after_backward()
    expected_layers = [model[k].weight.grad.norm().item() for k in (0, 1, 3)]
    expected_total = nn.utils.clip_grad_norm_(model.parameters(), float("inf")).item()
    p.on_epoch_end(1)
    out = p.finish()
    assert out["layers"] == ["0", "1", "3"]
    assert out["kinds"] == ["weight", "batch_norm", "weight"]
    assert out["epochs"] == [1]
    assert out["grad_norm"][0] == pytest.approx(expected_layers, rel=1e-5)
    assert out["global_grad_norm"][0] == pytest.approx(expected_total, rel=1e-5)
    assert out["global_grad_norm_max"][0] == pytest.approx(expected_total, rel=1e-5)
    assert out["non_finite"] is False
    s = out["summary"]
    assert s["epoch"] == 1
    assert s["ratio_to_first"] == pytest.approx(
        [1.0, *(n / expected_layers[0] for n in expected_layers[1:])], rel=1e-5
    )
    assert s["first_to_last_ratio"] == pytest.approx(expected_layers[0] / expected_layers[2])
    ranked = sorted([(expected_layers[0], "0"), (expected_layers[2], "3")])
    assert (s["vanishing_layer"], s["exploding_layer"]) == (ranked[0][1], ranked[1][1])


def test_gradient_norms_average_over_batches_and_reset_each_epoch():
    model, x, y = _mlp_and_batch()
    p = probe("gradients", context(model, x, y, 3))
    totals = []
    for half in (slice(0, 20), slice(20, 40)):
        _backward(model, x[half], y[half])
        p.after_backward()
        totals.append(nn.utils.clip_grad_norm_(model.parameters(), float("inf")).item())
    p.on_epoch_end(1)
    _backward(model, x, y)
    p.after_backward()
    p.on_epoch_end(2)
    out = p.finish()
    assert out["global_grad_norm"][0] == pytest.approx(sum(totals) / 2, rel=1e-5)
    assert out["global_grad_norm_max"][0] == pytest.approx(max(totals), rel=1e-5)
    full = nn.utils.clip_grad_norm_(model.parameters(), float("inf")).item()
    assert out["global_grad_norm"][1] == pytest.approx(full, rel=1e-5)


def test_non_finite_gradients_are_null_and_flagged():
    model, x, y = _mlp_and_batch()
    p = probe("gradients", context(model, x, y, 3))
    _backward(model, x, y)
    p.after_backward()
    p.on_epoch_end(1)
    _backward(model, x, y)
    model[0].weight.grad[0, 0] = float("nan")
    p.after_backward()
    p.on_epoch_end(2)
    out = p.finish()
    assert out["non_finite"] is True and out["non_finite_epochs"] == [2]
    assert out["grad_norm"][1][0] is None and out["global_grad_norm"][1] is None
    assert out["grad_norm"][1][2] is not None
    assert out["summary"]["epoch"] == 1  # the last epoch with every norm finite
    json.dumps(out, allow_nan=False)


def test_weight_norms_include_epoch_zero():
    model, x, y = _mlp_and_batch()
    p = probe("weights", context(model, x, y, 3))
    with torch.no_grad():
        model[0].weight.mul_(2)
    p.on_epoch_end(1)
    out = p.finish()
    assert out["epochs"] == [0, 1]
    assert out["weight_norm"][1][0] == pytest.approx(2 * out["weight_norm"][0][0], rel=1e-6)
    assert out["weight_norm"][1][2] == pytest.approx(model[3].weight.norm().item(), rel=1e-6)


# ---------------------------------------------------------------- boundary


def _trained_moons_model():
    cfg = parse_run(tiny_run(dataset={"name": "moons", "n_samples": 600, "noise": 0.1}))
    torch.manual_seed(0)
    bundle = load_data(cfg.dataset, cfg.seed, "cpu")
    model = build_model(cfg.model, bundle.input_shape, bundle.num_classes)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    x, y = bundle.normalize(bundle.train.x), bundle.train.y
    for _ in range(150):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    ctx = ProbeContext(model, bundle, 1024, 0, 1, optimizer)
    return model, bundle, ctx


def _nearest_cells(out, px, py):
    g = out["grid"]
    (x0, x1), (y0, y1) = out["x_range"], out["y_range"]
    cols = np.rint((np.asarray(px) - x0) / (x1 - x0) * (g - 1)).astype(int)
    rows = np.rint((np.asarray(py) - y0) / (y1 - y0) * (g - 1)).astype(int)
    return rows, cols


def test_boundary_grid_agrees_with_model_on_test_points():
    model, bundle, ctx = _trained_moons_model()
    p = probe("boundary", ctx, grid=200, epochs=[0, 3])
    p.on_epoch_end(3)
    out = p.finish()
    assert [s["epoch"] for s in out["snapshots"]] == [0, 3]
    pts = out["test_points"]
    assert pts["label"] == bundle.test.y.tolist()
    prob = decode_grid(out["final"]["prob"], out["grid"])
    assert prob.shape == (200, 200)
    rows, cols = _nearest_cells(out, pts["x"], pts["y"])
    with torch.no_grad():
        pred = model.eval()(bundle.normalize(bundle.test.x)).argmax(dim=1).numpy()
    agree = ((prob[rows, cols] > 0.5).astype(int) == pred).mean()
    assert agree >= 0.95
    assert (pred == bundle.test.y.numpy()).mean() >= 0.9  # the model did learn
    # The bytes decode back to the model's probabilities at the mesh points.
    g = out["grid"]
    xs = torch.linspace(*out["x_range"], g)
    ys = torch.linspace(*out["y_range"], g)
    probe_points = torch.stack([xs[[0, 50, 199]], ys[[10, 120, 199]]], dim=1)
    with torch.no_grad():
        p1 = torch.softmax(model(probe_points), dim=1)[:, 1].numpy()
    assert prob[[10, 120, 199], [0, 50, 199]] == pytest.approx(p1, abs=1 / 255 + 1e-6)
    # The mesh covers every point with the margin to spare.
    assert out["x_range"][0] <= min(pts["x"]) - 0.5 + 1e-5
    assert out["y_range"][1] >= max(pts["y"]) + 0.5 - 1e-5


def test_boundary_multiclass_stores_argmax_and_max_probability():
    torch.manual_seed(0)
    centers = torch.tensor([[-2.0, 0.0], [2.0, 0.0], [0.0, 2.0]])
    y = torch.arange(3).repeat(50)
    x = centers[y] + 0.3 * torch.randn(150, 2)
    model = nn.Sequential(nn.Linear(2, 16), Activation("tanh"), nn.Linear(16, 3))
    out = probe("boundary", context(model, x, y, 3), grid=30, margin=0.0).finish()
    g = out["grid"]
    cls = decode_grid(out["final"]["argmax"], g, scale=1)
    top = decode_grid(out["final"]["prob"], g)
    xs, ys = torch.linspace(*out["x_range"], g), torch.linspace(*out["y_range"], g)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    with torch.no_grad():
        probs = torch.softmax(model(torch.stack([gx.flatten(), gy.flatten()], 1)), 1)
    best, arg = probs.max(dim=1)
    assert (cls.reshape(-1) == arg.numpy()).mean() > 0.99  # ties aside
    assert top.reshape(-1) == pytest.approx(best.numpy(), abs=1 / 255 + 1e-6)
    assert out["x_range"] == pytest.approx([x[:, 0].min().item(), x[:, 0].max().item()])


def test_boundary_rejects_non_2d_input():
    cfg = parse_run(
        tiny_run(dataset="digits", model={"name": "mlp", "hidden": [16]}, probes=["boundary"])
    )
    with pytest.raises(ConfigError, match=r"probes\.boundary: needs 2-D input.*\(1, 8, 8\)"):
        fit(cfg)


def test_probe_options_are_validated():
    with pytest.raises(ConfigError, match="grid"):
        parse_run(tiny_run(probes=[{"name": "boundary", "grid": 5}]))
    with pytest.raises(ConfigError, match="unknown option"):
        parse_run(tiny_run(probes=[{"name": "weights", "bins": 5}]))


# ---------------------------------------------------------------- through fit


def test_all_probes_through_fit_are_json_and_do_not_change_training():
    cfg = parse_run(tiny_run(probes=[*ALL[:4], {"name": "boundary", "grid": 50, "epochs": [1]}]))
    result = fit(cfg)
    assert result.status == "done"
    assert set(result.probes) == set(ALL)
    text = json.dumps(result.probes, allow_nan=False)
    assert len(text) < 200_000
    p = result.probes
    assert p["dead_units"]["epochs"] == [0, 1, 2, 3]
    assert p["activations"]["epochs"] == [0, 1, 2, 3]
    assert p["weights"]["epochs"] == [0, 1, 2, 3]
    assert p["gradients"]["epochs"] == [1, 2, 3]
    assert len(p["gradients"]["grad_norm"][0]) == len(p["gradients"]["layers"]) == 2
    assert [s["epoch"] for s in p["boundary"]["snapshots"]] == [1]
    plain = fit(parse_run(tiny_run()))
    assert plain.probes == {}
    assert plain.batch_losses == result.batch_losses  # probes only watch
    assert plain.final["test_accuracy"] == result.final["test_accuracy"]


def test_diverged_run_probes_stay_json():
    cfg = parse_run(
        tiny_run(
            epochs=4,
            optimizer={"name": "sgd", "lr": 1e12},
            probes=ALL,
        )
    )
    result = fit(cfg)
    assert result.status == "diverged"
    json.dumps(result.probes, allow_nan=False)
    assert result.probes["gradients"]["non_finite"] is True
    assert result.probes["weights"]["non_finite"] is True
    assert result.probes["gradients"]["summary"]["vanishing_layer"] is None


def test_every_n_epochs_thins_the_activation_probes():
    from ablab.config import parse_run
    from ablab.train import fit

    cfg = parse_run({
        "epochs": 7, "batch_size": "full", "device": "cpu",
        "dataset": {"name": "moons", "n_samples": 200},
        "model": {"name": "mlp", "hidden": [8]},
        "probes": [{"name": "dead_units", "every": 3}, {"name": "activations", "every": 3}],
    })
    probes = fit(cfg).probes
    assert probes["dead_units"]["epochs"] == [0, 3, 6, 7]
    assert probes["activations"]["epochs"] == [0, 3, 6, 7]
    assert len(probes["dead_units"]["dead_unit_fraction"]) == 4
