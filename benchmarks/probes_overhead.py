"""Probe overhead: the same run with all probes on and off, interleaved in one process.

    .venv/bin/python benchmarks/probes_overhead.py [--repeats 2] [--threads 2] [--quick]

Cases (each trained as ``fit`` trains it, probes = dead_units, activations, gradients,
weights; boundary too on moons):

- mlp on Fashion-MNIST, 1 epoch of 54k images, batch 64;
- simple_cnn on CIFAR-10-format random data at CIFAR-10's size (50k training images, 45k
  after the validation split), 1 epoch, batch 64 (written to a temporary ABLAB_DATA);
- the moons MLP of moons-circles-activations (300 full-batch epochs, where an epoch is one
  small step, so a fixed per-epoch probe cost weighs most), with probes every epoch and
  with the study's own settings (dead units and activations every 3rd epoch).

A probe pass happens before training (epoch 0) and after every epoch, so a 1-epoch run
pays two; the table also gives the cost of one pass as a share of one epoch, which is the
per-epoch overhead of a long run. Writes ``benchmarks/results/probes_overhead.json``.
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

ALL = ["dead_units", "activations", "gradients", "weights"]
STUDY = [{"name": "dead_units", "every": 3}, {"name": "activations", "every": 3},
         "gradients", "weights", "boundary"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="small CIFAR fixture, 30 epochs")
    args = parser.parse_args()
    tmp = tempfile.mkdtemp()
    from fixtures_data import write_cifar10

    write_cifar10(tmp, n_per_batch=1000 if args.quick else 10000, n_test=1000)
    os.environ["ABLAB_DATA"] = tmp
    os.environ["ABLAB_DOWNLOAD"] = "0"

    import torch

    torch.set_num_threads(args.threads)
    from ablab.config import parse_run
    from ablab.train import fit

    moons = {
        "epochs": 30 if args.quick else 300, "batch_size": "full", "device": "cpu",
        "dataset": {"name": "moons", "n_samples": 1000, "noise": 0.3, "test_fraction": 0.3,
                    "val_fraction": 0.2, "normalize": "standard"},
        "model": {"name": "mlp", "hidden": [256, 128], "init": "normal(0, 0.01)"},
        "optimizer": {"name": "adam", "lr": 0.01},
    }
    cases = {
        "mlp / fashion_mnist, 1 epoch, batch 64": ({
            "epochs": 1, "batch_size": 64, "device": "cpu",
            "dataset": {"name": "fashion_mnist", "val_fraction": 0.1, "eval_subset": 1000},
            "model": {"name": "mlp", "hidden": [256, 128]},
        }, ALL),
        "simple_cnn / cifar10-format, 1 epoch, batch 64": ({
            "epochs": 1, "batch_size": 64, "device": "cpu",
            "dataset": {"name": "cifar10", "val_fraction": 0.1, "eval_subset": 1000},
            "model": {"name": "simple_cnn"},
        }, ALL),
        "moons mlp, probes every epoch": (moons, [*ALL, "boundary"]),
        "moons mlp, the study's probes": (moons, STUDY),
    }
    results = {}
    for name, (case, probes) in cases.items():
        times: dict[str, list[float]] = {"off": [], "on": []}
        passes = 0
        for _ in range(args.repeats):
            for mode in ("off", "on"):
                cfg = parse_run(dict(case, probes=probes if mode == "on" else []))
                start = time.perf_counter()
                result = fit(cfg)
                times[mode].append(time.perf_counter() - start)
                if mode == "on":
                    passes = len(result.probes.get("dead_units", {}).get("epochs", []))
        off, on = min(times["off"]), min(times["on"])
        epochs = case["epochs"]
        per_pass = (on - off) / passes if passes else float("nan")
        results[name] = {
            "off_s": off, "on_s": on, "overhead": on / off - 1, "epochs": epochs,
            "activation_passes": passes, "epoch_s": off / epochs,
            "one_pass_over_epoch": per_pass / (off / epochs),
        }
        overhead = 100 * (on / off - 1)
        print(f"{name:48s} off {off:7.2f} s  on {on:7.2f} s  overhead {overhead:+6.1f} %"
              f"  ({passes} passes; one pass = {100 * per_pass / (off / epochs):.1f} % of an "
              "epoch)", flush=True)
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    suffix = "-quick" if args.quick else ""
    (out / f"probes_overhead{suffix}.json").write_text(json.dumps(
        {"threads": args.threads, "cases": results}, indent=2))


if __name__ == "__main__":
    main()
