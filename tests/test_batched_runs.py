"""Runs that differ in more than their seed, trained as one batched program
(``ablab.train.batched``): each member gives what it gives trained alone by ``fit``,
within float tolerance, for every factor that may be batched; programs are split to fit
memory and out-of-memory programs are split and retried."""

from __future__ import annotations

import math

import pytest
import torch

from ablab.config import parse_run
from ablab.execute import Task, run_group
from ablab.execute.base import plan_units
from ablab.train import batched, fit
from ablab.train.batched import (
    StackedOptimizer,
    can_batch,
    fit_batched,
    member_bytes,
    program_key,
    split_by_memory,
)
from ablab.train.optimizers import build_optimizer
from ablab.train.state import start_run

#: batched matmuls round differently from single ones; losses agree to this
TOL = 2e-5


def tiny(seed: int = 0, **over):
    data = {
        "epochs": 3, "seed": seed, "batch_size": 32, "device": "cpu",
        "dataset": {"name": "moons", "n_samples": 200, "noise": 0.25},
        "model": {"name": "mlp", "hidden": [12, 8]},
        "optimizer": {"name": "adam", "lr": 0.01},
    }
    data.update(over)
    return parse_run(data)


def assert_same_run(a, b, tol=TOL):
    assert a.run_id == b.run_id and a.config == b.config and a.status == b.status
    assert a.sizes == b.sizes and len(a.history) == len(b.history)
    assert a.batch_losses == pytest.approx(b.batch_losses, abs=tol)
    for ha, hb in zip(a.history, b.history, strict=True):
        assert ha["lr"] == pytest.approx(hb["lr"], rel=1e-6)
        for key in ("train_loss", "val_loss", "val_cross_entropy"):
            assert ha[key] == pytest.approx(hb[key], abs=tol)
        assert ha["val_accuracy"] == pytest.approx(hb["val_accuracy"], abs=0.011)
    for key in ("test_loss", "test_cross_entropy"):
        assert a.final[key] == pytest.approx(b.final[key], abs=tol)
    assert a.final["test_accuracy"] == pytest.approx(b.final["test_accuracy"], abs=0.011)
    assert a.final["epochs_run"] == b.final["epochs_run"]


def check_against_fit(configs, tol=TOL):
    assert can_batch(configs)
    together = fit_batched(configs)
    assert all(r.final["batched_seeds"] == len(configs) for r in together)
    for a, c in zip(together, configs, strict=True):
        assert_same_run(a, fit(c), tol)
    return together


MEMBERS = {  # per optimizer family: members differing in every numeric setting
    "sgd": [{"lr": 0.1}, {"lr": 0.02, "momentum": 0.9}, {"lr": 0.05, "momentum": 0.8,
            "nesterov": True, "weight_decay": 0.01}],
    "adam": [{"lr": 0.01}, {"lr": 0.003, "beta1": 0.8, "weight_decay": 0.001},
             {"lr": 0.02, "beta2": 0.99, "eps": 1e-6}],
    "adamw": [{"lr": 0.01}, {"lr": 0.005, "weight_decay": 0.1}],
    "nadam": [{"lr": 0.01}, {"lr": 0.002, "beta1": 0.95, "weight_decay": 0.01}],
    "rmsprop": [{"lr": 0.01}, {"lr": 0.003, "momentum": 0.9, "alpha": 0.9,
                "weight_decay": 0.001}],
}


@pytest.mark.parametrize("family", sorted(MEMBERS))
def test_optimizer_settings_batched_equal_alone(family):
    configs = [tiny(k, optimizer={"name": family, **opts})
               for k, opts in enumerate(MEMBERS[family])]
    together = check_against_fit(configs)
    # the members really trained differently
    assert len({tuple(r.batch_losses) for r in together}) == len(configs)


def test_stacked_optimizer_step_matches_torch():
    """One step of each family on random weights and gradients equals torch.optim's."""
    torch.manual_seed(0)
    for family, members in MEMBERS.items():
        weights = [torch.randn(5, 3) for _ in members]
        grads = [torch.randn(5, 3) for _ in members]
        stacked = torch.stack(weights).requires_grad_()
        opt = StackedOptimizer(family, members, [stacked])
        for _ in range(3):
            stacked.grad = torch.stack(grads)
            opt.step()
        for k, opts in enumerate(members):
            alone = weights[k].clone().requires_grad_()
            ref = build_optimizer(family, {**opts}, [alone])
            for _ in range(3):
                alone.grad = grads[k].clone()
                ref.step()
            assert torch.allclose(stacked[k].detach(), alone.detach(), atol=1e-6), family


def test_init_loss_schedule_and_early_stopping_batched_equal_alone():
    configs = [
        tiny(0),
        tiny(1, model={"name": "mlp", "hidden": [12, 8], "init": "normal(0, 0.1)"}),
        tiny(2, loss="bce_onehot", schedule={"name": "exponential", "gamma": 0.5}),
        tiny(3, loss="mse_softmax", optimizer={"name": "adam", "lr": 0.03}),
        tiny(4, loss={"name": "cross_entropy", "label_smoothing": 0.1},
             schedule={"name": "reduce_on_plateau", "patience": 1, "factor": 0.5}),
        tiny(5, epochs=3, early_stopping={"patience": 1, "monitor": "val_accuracy",
                                          "min_delta": 0.5}),
        tiny(0, init_seed=7, order_seed=9),
    ]
    together = check_against_fit(configs)
    assert together[5].final["stopped_early"] and together[5].final["epochs_run"] < 3
    assert together[2].history[1]["lr"] == pytest.approx(0.005)


def test_probes_stay_per_run():
    probes = ["gradients", "dead_units", "weights"]
    configs = [tiny(0, probes=probes), tiny(1, probes=probes,
                                             optimizer={"name": "adam", "lr": 0.002})]
    together = fit_batched(configs)
    for a, c in zip(together, configs, strict=True):
        b = fit(c)
        ga, gb = a.probes["gradients"], b.probes["gradients"]
        assert ga["global_grad_norm"] == pytest.approx(gb["global_grad_norm"], rel=1e-4)
        assert a.probes["dead_units"]["dead_unit_fraction"] == (
            b.probes["dead_units"]["dead_unit_fraction"])


def test_a_member_is_bit_identical_whatever_its_program():
    configs = [tiny(k, optimizer={"name": "sgd", **o}) for k, o in enumerate(MEMBERS["sgd"])]
    program = fit_batched(configs)
    single = fit_batched([configs[1]])[0]
    assert single.batch_losses == program[1].batch_losses
    assert single.final["test_loss"] == program[1].final["test_loss"]


def test_a_diverging_member_is_marked_alone():
    configs = [tiny(0, optimizer={"name": "sgd", "lr": 0.1}),
               tiny(1, optimizer={"name": "sgd", "lr": 1e6, "momentum": 0.9})]
    results = fit_batched(configs)
    assert results[1].status == "diverged" and results[0].status == "done"
    assert math.isfinite(results[0].final["test_loss"])
    assert_same_run(results[0], fit(configs[0]))


def test_program_key_says_what_must_be_shared():
    a = tiny(0)
    same = [tiny(1, optimizer={"name": "adam", "lr": 0.1, "weight_decay": 0.1}),
            tiny(2, loss="bce_onehot", schedule={"name": "cosine"}),
            tiny(3, model={"name": "mlp", "hidden": [12, 8], "init": "normal(0, 0.1)"}),
            tiny(4, dataset={"name": "moons", "n_samples": 200, "noise": 0.25,
                             "split_seed": 3})]
    assert all(program_key(c) == program_key(a) for c in same)
    other = [tiny(0, optimizer={"name": "sgd"}),  # another optimizer family
             tiny(0, model={"name": "mlp", "hidden": [12, 8], "dropout": 0.3}),
             tiny(0, model={"name": "mlp", "hidden": [12, 4]}),
             tiny(0, batch_size=16), tiny(0, epochs=4),
             tiny(0, dataset={"name": "moons", "n_samples": 300, "noise": 0.25})]
    assert all(program_key(c) != program_key(a) for c in other)
    assert not can_batch([a, tiny(1, batch_size=16)])
    assert not can_batch([a, tiny(0)])  # the same run twice


def test_plan_units_on_a_gpu_groups_programs(monkeypatch):
    monkeypatch.setattr(batched, "worth_batching", lambda configs: True)
    configs = [tiny(0), tiny(1, optimizer={"name": "adam", "lr": 0.1}),
               tiny(0, optimizer={"name": "sgd"}), tiny(0, loss="bce_onehot"),
               tiny(0, model={"name": "mlp", "hidden": [4]})]
    tasks = [Task(f"r{i}", f"r{i}", c.resolved()) for i, c in enumerate(configs)]
    units = plan_units(tasks)
    assert [[t.run_id for t in u] for u, _ in units] == [["r0", "r1", "r3"], ["r2"], ["r4"]]
    assert all(flag for _, flag in units)
    monkeypatch.undo()
    # on the CPU: today's behaviour, one run per unit, unbatched
    assert [len(u) for u, flag in plan_units(tasks) if not flag] == [1] * 5


def test_split_by_memory():
    assert split_by_memory(90, 10, None) == [90]
    assert split_by_memory(90, 10, 1000) == [90]
    assert split_by_memory(90, 10, 300) == [30, 30, 30]
    assert split_by_memory(7, 10, 25) == [2, 2, 2, 1]
    assert split_by_memory(5, 10, 3) == [1] * 5  # never fewer than one member
    assert sum(split_by_memory(91, 7, 200)) == 91


def test_member_bytes_is_measured_from_the_run():
    small, wide = tiny(0), tiny(0, model={"name": "mlp", "hidden": [512, 512]})
    b_small = member_bytes(start_run(small, torch.device("cpu")))
    b_wide = member_bytes(start_run(wide, torch.device("cpu")))
    n_wide = sum(p.numel() for p in start_run(wide, torch.device("cpu")).model.parameters())
    assert b_wide > b_small > 0
    assert b_wide >= n_wide * 4 * 4  # weights, gradients, two Adam moments at least


def test_a_small_budget_splits_the_program(monkeypatch):
    configs = [tiny(k, optimizer={"name": "adam", "lr": 0.01 * (k + 1)}) for k in range(5)]
    per = member_bytes(start_run(configs[0], torch.device("cpu")))
    monkeypatch.setattr(batched, "memory_budget", lambda device: 2 * per)
    results = fit_batched(configs)
    assert [r.final["batched_seeds"] for r in results] == [2, 2, 2, 2, 1]
    monkeypatch.undo()
    for a, c in zip(results, configs, strict=True):
        assert_same_run(a, fit(c))


def test_out_of_memory_splits_and_retries(monkeypatch):
    real = batched._fit_program
    sizes = []

    def limited(configs, on_epoch, offset=0):
        if len(configs) > 2 or any(c.seed == 4 for c in configs):  # seed 4 never fits
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        sizes.append(len(configs))
        return real(configs, on_epoch, offset)

    monkeypatch.setattr(batched, "_fit_program", limited)
    configs = [tiny(k, optimizer={"name": "adam", "lr": 0.01 * (k + 1)}) for k in range(5)]
    outcomes = run_group([c.resolved() for c in configs], batched=True)
    assert sorted(sizes) == [1, 1, 2]  # [0, 1] | [2] [3] trained; [4] alone failed
    statuses = [s for s, _ in outcomes]
    assert statuses == ["done", "done", "done", "done", "failed"]
    assert "out of memory" in outcomes[4][1]
    # the others trained as they do alone
    monkeypatch.undo()
    from ablab.train.result import RunResult
    assert_same_run(RunResult.from_dict(outcomes[0][1]), fit(configs[0]))


def digits_conv(seed: int, **over):
    data = {
        "epochs": 2, "seed": seed, "batch_size": 64, "device": "cpu",
        "dataset": {"name": "digits"},
        "model": {"name": "keras_conv1", "dropout": 0.0},  # no dropout: other masks than fit
        "optimizer": {"name": "sgd", "lr": 0.05},
    }
    data.update(over)
    return parse_run(data)


def test_a_conv_program_with_mixed_settings_equals_alone():
    configs = [digits_conv(0), digits_conv(1, optimizer={"name": "sgd", "lr": 0.02,
                                                          "momentum": 0.9}),
               digits_conv(0, loss="bce_onehot", memory_format="contiguous")]
    check_against_fit(configs, tol=1e-4)


def test_augmenting_members_use_their_own_loaders():
    augment = {"name": "digits", "augment": {"flip": True, "translate": 1}}
    configs = [digits_conv(0, dataset=augment),
               digits_conv(1, dataset=augment, optimizer={"name": "sgd", "lr": 0.01})]
    check_against_fit(configs, tol=1e-4)


def test_bf16_members_equal_alone_within_bf16_rounding():
    configs = [tiny(0, precision="bf16"), tiny(1, precision="bf16",
                                               optimizer={"name": "adam", "lr": 0.003})]
    together = fit_batched(configs)
    for a, c in zip(together, configs, strict=True):
        b = fit(c)
        assert a.final["test_loss"] == pytest.approx(b.final["test_loss"], abs=0.02)
        assert a.final["test_accuracy"] == pytest.approx(b.final["test_accuracy"], abs=0.05)


def test_members_sharing_a_split_share_its_data():
    same_split = {"name": "moons", "n_samples": 200, "noise": 0.25, "split_seed": 5}
    configs = [tiny(k, dataset=same_split, optimizer={"name": "adam", "lr": 0.01 * (k + 1)})
               for k in range(3)] + [tiny(9)]
    runs = [start_run(c, torch.device("cpu")) for c in configs]
    train = batched._StackedSplit(runs, "train")
    assert train.x.shape[0] == 2  # split seed 5 once, seed 9's own split once
    assert train.member_data.flatten().tolist() == [0, 0, 0, 1]
    check_against_fit(configs)


def test_memory_budget_is_a_share_of_the_free_memory(monkeypatch):
    assert batched.memory_budget(torch.device("cpu")) is None  # no bound on a CPU
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (10_000, 80_000))
    cuda = torch.device("cuda")
    assert batched.memory_budget(cuda) == int(10_000 * batched.MEMORY_SHARE)
    monkeypatch.setenv("ABLAB_GPU_SHARERS", "4")  # four workers on this GPU
    assert batched.memory_budget(cuda) == int(10_000 * batched.MEMORY_SHARE / 4)


def test_plan_units_for_a_clusters_gpus():
    """The Ray executor plans for its cluster's GPUs, not the driver's device."""
    configs = [tiny(0), tiny(1, optimizer={"name": "adam", "lr": 0.1})]
    tasks = [Task(f"r{i}", f"r{i}", c.resolved()) for i, c in enumerate(configs)]
    assert plan_units(tasks, on_gpu=True) == [(tasks, True)]
    assert plan_units(tasks, on_gpu=False) == [([tasks[0]], False), ([tasks[1]], False)]


def test_dropout_rates_share_a_program_where_the_layers_are_the_same():
    mlp = {"name": "mlp", "hidden": [12, 8]}
    a, b = tiny(0, model={**mlp, "dropout": 0.2}), tiny(1, model={**mlp, "dropout": 0.6})
    assert program_key(a) == program_key(b) and can_batch([a, b])
    assert program_key(a) != program_key(tiny(0, model=mlp))  # no dropout layer at all
    conv = [digits_conv(0, model={"name": "keras_conv1", "dropout": 0.5}),
            digits_conv(1, model={"name": "keras_conv1", "dropout": 0.25})]
    assert program_key(conv[0]) == program_key(conv[1])


def test_each_member_drops_at_its_own_rate():
    """The stacked forward's dropout layers drop each member's share of units."""
    layer = batched._MemberDropout(channels=False).train()
    x = torch.ones(2, 20_000)
    p = torch.tensor([0.2, 0.7])
    out = torch.func.vmap(lambda pk, xk: torch.func.functional_call(layer, {"p": pk}, (xk,)),
                          randomness="different")(p, x)
    dropped = (out == 0).float().mean(dim=1)
    assert dropped.tolist() == pytest.approx([0.2, 0.7], abs=0.02)
    assert out.mean(dim=1).tolist() == pytest.approx([1.0, 1.0], abs=0.05)  # rescaled
    channels = batched._MemberDropout(channels=True).train()
    y = torch.func.vmap(lambda pk, xk: torch.func.functional_call(channels, {"p": pk}, (xk,)),
                        randomness="different")(p, torch.ones(2, 64, 32, 3, 3))
    per_channel = y.flatten(3)  # a whole channel is kept or dropped
    assert bool(((per_channel == 0).all(-1) | (per_channel != 0).all(-1)).all())
    assert (per_channel[:, :, :, 0] == 0).float().mean(dim=(1, 2)).tolist() == pytest.approx(
        [0.2, 0.7], abs=0.05)
    assert torch.equal(layer.eval()(x[0]), x[0])  # no dropout in evaluation


def test_members_with_other_dropout_rates_train_together():
    mlp = {"name": "mlp", "hidden": [32, 16]}
    configs = [tiny(k, epochs=4, model={**mlp, "dropout": p})
               for k, p in enumerate((0.1, 0.5, 0.9))]
    together = fit_batched(configs)
    assert all(r.final["batched_seeds"] == 3 and r.status == "done" for r in together)
    # the masks are not fit's, so only what dropout does is compared: training with more
    # dropout fits the training data worse, at rates far apart
    losses = [r.history[-1]["train_loss"] for r in together]
    assert losses[0] < losses[2]
    # evaluation has no dropout: the final test metrics are each member's own weights'
    for r, c in zip(together, configs, strict=True):
        assert 0.0 <= r.final["test_accuracy"] <= 1.0 and r.config == c.resolved()
