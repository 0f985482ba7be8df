"""Where runs train when GPUs exist (#33), tested without one: the local executor gives
each worker one visible GPU (round robin), the Ray executor asks for GPUs where runs want
CUDA and each task gets its own CUDA_VISIBLE_DEVICES (Ray's logical GPUs), and TF32 is
part of a run's identity, off unless asked for."""

from __future__ import annotations

import pytest
import torch

import ablab.execute.base as base
from ablab.config import parse_run, run_id
from ablab.execute import Task, plan_workers
from ablab.execute.base import gpu_for_worker, visible_gpus, wants_cuda
from ablab.execute.local import worker_environ
from ablab.train.state import start_run


def tiny(seed: int = 0, **over):
    data = {
        "epochs": 1, "seed": seed, "batch_size": 32, "device": "auto",
        "dataset": {"name": "moons", "n_samples": 120, "noise": 0.25},
        "model": {"name": "mlp", "hidden": [8]},
    }
    data.update(over)
    return parse_run(data)


def test_workers_get_the_visible_gpus_round_robin():
    gpus = ["0", "1", "2"]
    assert [gpu_for_worker(i, gpus) for i in range(7)] == ["0", "1", "2", "0", "1", "2", "0"]
    assert gpu_for_worker(4, []) is None
    assert worker_environ(4, gpus, {"PATH": "/bin"}, workers=6) == {
        "PATH": "/bin", "CUDA_VISIBLE_DEVICES": "1", "ABLAB_GPU_SHARERS": "2"}
    assert worker_environ(0, gpus, {}, workers=4)["ABLAB_GPU_SHARERS"] == "2"  # 0 and 3
    assert worker_environ(2, gpus, {}, workers=4)["ABLAB_GPU_SHARERS"] == "1"
    # no GPUs for these runs: the environment as it is (a CUDA_VISIBLE_DEVICES untouched)
    assert worker_environ(4, [], {"CUDA_VISIBLE_DEVICES": "5"}) == {"CUDA_VISIBLE_DEVICES": "5"}


def test_visible_gpus_follow_cuda_visible_devices(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,5,7")
    assert visible_gpus() == ["2", "5", "7"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,-1,4")  # CUDA stops at an invalid entry
    assert visible_gpus() == ["3"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert visible_gpus() == []
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert visible_gpus() == [str(i) for i in range(torch.cuda.device_count())]


def test_which_runs_want_cuda():
    assert wants_cuda([{"device": "cuda"}], False)
    assert wants_cuda([{"device": "auto"}], True) and not wants_cuda([{"device": "auto"}], False)
    assert not wants_cuda([{"device": "cpu"}], True)


def test_worker_plan_on_gpus(monkeypatch):
    tasks = [Task(f"r{i}", f"r{i}", tiny(i, model={"name": "mlp", "hidden": [4 + i]}).resolved())
             for i in range(20)]
    monkeypatch.setattr(base, "available_cores", lambda: 16)
    monkeypatch.setattr(base, "visible_gpus", lambda: ["0", "1", "2", "3"])
    assert plan_workers(tasks, None, None) == (8, 2)  # two workers per GPU
    assert plan_workers(tasks[:3], None, None) == (3, 5)  # no more workers than units
    monkeypatch.setattr(base, "visible_gpus", lambda: [str(i) for i in range(32)])
    assert plan_workers(tasks, None, None)[0] == 20  # one per GPU at least, units allowing
    cpu_tasks = [Task(t.run_id, t.label, {**t.config, "device": "cpu"}) for t in tasks]
    assert plan_workers(cpu_tasks, None, None) == (16, 1)  # CPU runs: the CPU rule


def test_tf32_is_in_the_identity_and_off_unless_asked():
    plain, off, on = tiny(), tiny(tf32=False), tiny(tf32=True)
    assert run_id(plain) == run_id(off) != run_id(on)
    start_run(on, torch.device("cpu"))
    assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    start_run(off, torch.device("cpu"))
    assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32


@pytest.mark.slow  # starting Ray: about 50 s on the 2-core machine
def test_ray_gives_each_task_its_own_gpus():
    ray = pytest.importorskip("ray", reason="Ray is not installed")
    from ablab.execute.ray_executor import RayExecutor, gpus_per_task

    assert gpus_per_task([{"device": "auto"}], 2, None) == 1.0
    assert gpus_per_task([{"device": "auto"}], 2, 0.5) == 0.5
    assert gpus_per_task([{"device": "auto"}], 0, None) == 0.0  # CPU cluster: CPUs only
    assert gpus_per_task([{"device": "cpu"}], 2, None) == 0.0
    # Two logical GPUs (no CUDA here: the runs train on the CPU, "auto"); each task reports
    # the GPU ids Ray gave it and the CUDA_VISIBLE_DEVICES its process saw.
    ray.init(num_cpus=2, num_gpus=2, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    try:
        configs = [tiny(i, model={"name": "mlp", "hidden": [4 + i]}) for i in range(4)]
        tasks = [Task(run_id(c), f"r{i}", c.resolved()) for i, c in enumerate(configs)]
        for per_run in (1.0, 0.5):
            events = []
            RayExecutor(threads=1, gpus_per_run=per_run).run(tasks, events.append)
            done = [e for e in events if e.kind == "done"]
            assert len(done) == 4
            for event in done:
                ids = event.placement["gpu_ids"]
                assert len(ids) == 1 and ids[0] in {"0", "1"}
                assert event.placement["cuda_visible_devices"] == ids[0]
    finally:
        ray.shutdown()


@pytest.mark.parametrize("args, fragments", [
    (["--gpus-per-run", "0.5"], ["--gpus-per-run", "only with --executor ray"]),
    (["--gpus-per-run", "0", "--executor", "ray"], ["--gpus-per-run", "give a number > 0"]),
])
def test_gpus_per_run_refused_where_it_means_nothing(tmp_path, args, fragments):
    from conftest import assert_one_line_error, run_cli

    proc = run_cli("run", "moons-circles-activations", "--out", tmp_path / "out", *args)
    assert_one_line_error(proc, *fragments)
    assert not (tmp_path / "out").exists()
