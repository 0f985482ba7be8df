"""Probe overhead: the same run with all probes on and off, interleaved in one process.

    .venv/bin/python benchmarks/probes_overhead.py [--repeats 3]

Cases: mlp on Fashion-MNIST (1 epoch, 54k images), simple_cnn on CIFAR-10-format random
data (1 epoch, 10k images, written to a temporary ABLAB_DATA), and the moons MLP of the
moons-circles-activations study (300 full-batch epochs, where an epoch is one small step,
so a fixed per-epoch probe cost weighs most). Prints per-case seconds and the overhead.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    tmp = tempfile.mkdtemp()
    from fixtures_data import write_cifar10

    write_cifar10(tmp, n_per_batch=2500, n_test=1000)  # 12.5k train images
    os.environ["ABLAB_DATA"] = tmp
    os.environ["ABLAB_DOWNLOAD"] = "0"

    import torch

    torch.set_num_threads(args.threads)
    from ablab.config import parse_run
    from ablab.train import fit

    all_probes = ["dead_units", "activations", "gradients", "weights"]
    cases = {
        "mlp / fashion_mnist, 1 epoch, batch 64": {
            "epochs": 1, "batch_size": 64, "device": "cpu",
            "dataset": {"name": "fashion_mnist", "val_fraction": 0.1, "eval_subset": 1000},
            "model": {"name": "mlp", "hidden": [256, 128]},
        },
        "simple_cnn / cifar10-format, 1 epoch, batch 64": {
            "epochs": 1, "batch_size": 64, "device": "cpu",
            "dataset": {"name": "cifar10", "val_fraction": 0.2, "eval_subset": 500},
            "model": {"name": "simple_cnn"},
        },
        "mlp 256-128 / moons, 300 full-batch epochs": {
            "epochs": 300, "batch_size": "full", "device": "cpu",
            "dataset": {"name": "moons", "test_fraction": 0.3},
            "model": {"name": "mlp", "hidden": [256, 128], "init": "normal(0, 0.01)"},
            "optimizer": {"name": "adam", "lr": 0.01},
            "_extra": ["boundary"],
        },
    }
    results = {}
    for name, case in cases.items():
        extra = case.pop("_extra", [])
        times = {"off": [], "on": []}
        for _ in range(args.repeats):
            for mode in ("off", "on"):
                data = dict(case, probes=(all_probes + extra) if mode == "on" else [])
                cfg = parse_run(data)
                start = time.perf_counter()
                fit(cfg)
                times[mode].append(time.perf_counter() - start)
        off, on = min(times["off"]), min(times["on"])
        results[name] = {"off_s": off, "on_s": on, "overhead": on / off - 1}
        overhead = 100 * (on / off - 1)
        print(f"{name:50s} off {off:7.2f} s   on {on:7.2f} s   overhead {overhead:+.1f} %")
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "probes_overhead.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
