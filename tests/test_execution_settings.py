"""How runs are executed: memory layout, bf16, torch.compile, FLOP counts and the thread
plan. Each setting must keep what a run computes (or, for bf16, say it changed it)."""

import shutil

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from ablab.config import parse_run, run_id
from ablab.data import BatchLoader, load_data
from ablab.execute import Task, plan_workers
from ablab.execute.base import available_cores
from ablab.execute.estimate import forward_flops, model_shape
from ablab.models import build_model
from ablab.registry import MODELS
from ablab.train import fit
from ablab.train.accel import memory_format_for


def digits(**over):
    data = {
        "epochs": 3, "batch_size": 64, "device": "cpu", "dataset": {"name": "digits"},
        "model": {"name": "mlp", "hidden": [64]},
    }
    data.update(over)
    return parse_run(data)


def fashion_cnn(**over):
    data = {
        "epochs": 2, "batch_size": 64, "device": "cpu",
        "dataset": {"name": "fashion_mnist", "subset": 1024, "eval_subset": 500,
                    "val_fraction": 0.1},
        "model": {"name": "mnist_cnn3"},
        "probes": ["dead_units", "activations"],
    }
    data.update(over)
    return parse_run(data)


@pytest.mark.parametrize("name", sorted(MODELS.names()))
def test_flop_estimate_equals_torch_flop_counter(name):
    dataset = "fashion_mnist" if name in ("mnist_cnn3", "mnist_net", "keras_cnn3") else "cifar10"
    cfg = parse_run({"epochs": 1, "dataset": dataset, "model": name})
    if name == "mlp":
        cfg = parse_run({"epochs": 1, "dataset": "moons", "model": name})
    shape = model_shape(cfg)
    model = build_model(cfg.model, shape, 10).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(2, *shape))
    assert forward_flops(cfg) == counter.get_total_flops() / 2


def test_conv_nets_train_channels_last_and_mlps_do_not(tmp_path, monkeypatch):
    from fixtures_data import write_cifar10

    conv = build_model(fashion_cnn().model, (1, 28, 28), 10)
    mlp = build_model(digits().model, (1, 8, 8), 10)
    assert memory_format_for(conv, "auto") == torch.channels_last
    assert memory_format_for(mlp, "auto") == torch.contiguous_format
    assert memory_format_for(conv, "contiguous") == torch.contiguous_format
    write_cifar10(tmp_path, n_per_batch=20)
    monkeypatch.setenv("ABLAB_DATA", str(tmp_path))
    cifar = parse_run({"epochs": 1, "dataset": {"name": "cifar10", "val_fraction": 0.1},
                       "model": "simple_cnn"})
    bundle = load_data(cifar.dataset, 0, torch.device("cpu"))
    loader = BatchLoader(bundle.train, bundle, 32, shuffle=True,
                         generator=torch.Generator().manual_seed(0),
                         memory_format=torch.channels_last)
    x, _ = next(iter(loader))
    assert x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    plain = BatchLoader(bundle.train, bundle, 32, shuffle=True,
                        generator=torch.Generator().manual_seed(0))
    assert torch.equal(next(iter(plain))[0], x)  # same values, another layout


def test_channels_last_gives_the_same_run_as_contiguous():
    from fixtures_data import require_dataset

    require_dataset("fashion_mnist")
    fast, plain = fit(fashion_cnn()), fit(fashion_cnn(memory_format="contiguous"))
    assert run_id(fashion_cnn()) == run_id(fashion_cnn(memory_format="contiguous"))
    # channels-last kernels sum in another order: measured 0.15-0.19 % apart after 32 steps
    assert fast.history[-1]["train_loss"] == pytest.approx(plain.history[-1]["train_loss"],
                                                           rel=5e-3)
    # other kernels round differently; 32 steps later a few of 500 test predictions differ
    assert abs(fast.final["test_accuracy"] - plain.final["test_accuracy"]) <= 0.02
    assert fast.final["test_accuracy"] > 0.5  # above chance (0.1) after 2 x 1,024 images
    dead_fast = fast.probes["dead_units"]["zero_activation_fraction"][-1]
    dead_plain = plain.probes["dead_units"]["zero_activation_fraction"][-1]
    assert dead_fast == pytest.approx(dead_plain, abs=0.01)


def test_bf16_trains_is_recorded_in_the_run_id_and_changes_numbers_only_slightly():
    fp32, bf16 = fit(digits()), fit(digits(precision="bf16"))
    assert run_id(digits()) != run_id(digits(precision="bf16"))
    assert bf16.status == "done" and bf16.final["test_accuracy"] > 0.5
    loss32, loss16 = fp32.history[-1]["train_loss"], bf16.history[-1]["train_loss"]
    assert loss16 != loss32  # autocast was on
    assert loss16 == pytest.approx(loss32, rel=0.05)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("cc") is None, reason="torch.compile needs a C compiler")
def test_compiled_run_equals_eager():
    eager, compiled = fit(digits(epochs=1)), fit(digits(epochs=1, compile=True))
    assert run_id(digits(compile=True)) == run_id(digits())
    assert compiled.history[-1]["train_loss"] == pytest.approx(
        eager.history[-1]["train_loss"], rel=1e-5
    )
    assert compiled.final["test_accuracy"] == pytest.approx(eager.final["test_accuracy"],
                                                            abs=0.01)


def test_thread_plan_follows_the_step_size():
    def plan(**over):
        cfg = digits(model={"name": "mlp", "hidden": [256, 128]}, **over)
        return plan_workers([Task(run_id(cfg), "r", cfg.resolved())], 1, None)

    # digits MLP at batch 64: a 6 MFLOP step, too small to split; a full batch (over
    # 100 MFLOP) makes every core a thread of the one worker
    assert plan() == (1, 1)
    assert plan(batch_size="full") == (1, available_cores())
