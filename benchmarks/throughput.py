"""Training throughput of ablab against the hardware and an idiomatic baseline.

    .venv/bin/python benchmarks/throughput.py            # full (< 10 min on 2 cores)
    .venv/bin/python benchmarks/throughput.py --quick    # smoke run (< 60 s)

Everything is measured side by side in this one process (the OMP and workers × threads
sections start helper processes, since those settings are per process), with interleaved
repeats and the best repeat kept, so a busy machine slows both sides alike; quote the
ratios, not the absolute numbers. Writes ``benchmarks/results/throughput-<date>.json``.

Sections:

1. peak: fp32 matmul GFLOP/s (large square matmuls, best of several) with the threads
   training uses;
2. omp: a small training loop with ``OMP_WAIT_POLICY`` PASSIVE (ablab's setting) vs
   ACTIVE, 2 threads, on whatever else the machine is doing;
3. throughput: images/s of ablab's loop (``train_epoch`` over a ``BatchLoader`` of a
   synthetic uint8 ``DataBundle``; flip + crop(4) for the CIFAR models) against a
   torchvision-style ``Dataset`` of PIL images with per-image transforms behind a default
   ``DataLoader(shuffle=True)``; training FLOPs counted with ``FlopCounterMode``;
4. workers x threads: two runs as 2 processes × 1 thread vs 1 process × 2 threads;
5. seeds: S seeds trained together (``fit_seeds``) vs one seed (``fit``);
6. studies: ``run_study`` (workers/threads as ablab plans them, report off) vs the same
   runs one after another with ``fit`` (threads as for ``ablab train``), each side in a
   fresh process,
   and the study's FLOPs at the measured peak (the least time any schedule could take).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing as mp
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

import ablab  # noqa: F401  (sets OMP_WAIT_POLICY before torch's first parallel region)
from ablab.config import AugmentConfig, ModelConfig
from ablab.data import BatchLoader, DataBundle, Split
from ablab.models import build_model
from ablab.train.accel import memory_format_for
from ablab.train.loop import train_epoch
from ablab.train.losses import build_loss
from ablab.train.optimizers import build_optimizer

ROOT = Path(__file__).resolve().parent
MODELS = [  # name, options, input shape, augment
    ("mlp", {"hidden": [256, 128]}, (1, 8, 8), False),
    ("mnist_cnn3", {}, (1, 28, 28), False),
    ("simple_cnn", {}, (3, 32, 32), True),
    ("improved_cnn", {}, (3, 32, 32), True),
]
AUGMENT = AugmentConfig(flip=True, crop_padding=4)
#: Where the throughput section trains: a CUDA GPU when one is visible, else the CPU.
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


def sync() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


# ----------------------------------------------------------------------------- helpers


def best_of(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        sync()
        t = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - t)
    return best


def matmul_peak(n: int, repeats: int, dtype: torch.dtype = torch.float32) -> float:
    """Matmul GFLOP/s on DEVICE (fp32 by default: TF32 stays off, torch's default)."""
    a = torch.randn(n, n, device=DEVICE, dtype=dtype)
    b = torch.randn(n, n, device=DEVICE, dtype=dtype)
    a @ b
    return 2 * n**3 / best_of(lambda: a @ b, repeats) / 1e9


def synthetic_bundle(shape: tuple[int, ...], n: int, classes: int = 10) -> DataBundle:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, *shape), dtype=torch.uint8, generator=g)
    y = torch.randint(0, classes, (n,), generator=g)
    c = shape[0]
    split = Split(x, y)
    return DataBundle(
        name="synthetic", train=split, val=None, test=split, input_shape=shape,
        num_classes=classes, class_names=[str(i) for i in range(classes)],
        normalize_mode="standard", scale=1 / 255,
        mean=torch.full((1, c, 1, 1), 0.5), std=torch.full((1, c, 1, 1), 0.25),
    ).to(DEVICE)


def make_model(name: str, options: dict, shape):
    torch.manual_seed(0)
    return build_model(ModelConfig.model_validate({"name": name, **options}), shape, 10)


class AblabLoop:
    """ablab's own path, set up as ``fit`` sets it up: BatchLoader (device-resident,
    batched augmentation), the memory layout ``fit`` picks (``memory_format="auto"``:
    channels-last for conv nets), ``train_epoch``. ``memory_format`` / ``precision``
    override fit's defaults for the comparison columns."""

    def __init__(self, name, options, shape, augment, batch, n, memory_format="auto",
                 precision="fp32"):
        self.bundle = synthetic_bundle(shape, n)
        self.model = make_model(name, options, shape).to(DEVICE)
        layout = memory_format_for(self.model, memory_format)
        self.model = self.model.to(memory_format=layout)
        self.loss = build_loss("cross_entropy", {})
        self.opt = build_optimizer("adam", {}, self.model.parameters())
        self.loader = BatchLoader(
            self.bundle.train, self.bundle, batch, shuffle=True,
            augment=AUGMENT if augment else None,
            generator=torch.Generator(device=DEVICE).manual_seed(0), memory_format=layout,
        )
        self.precision = precision
        self.n = n

    def epoch(self) -> None:
        losses, correct, _ = train_epoch(self.model, self.loader, self.loss, self.opt,
                                         precision=self.precision)
        losses.sum().item()  # what fit reads back once per epoch


class BaselineLoop:
    """The way the source repositories train: PIL images, per-image transforms, a default
    DataLoader (shuffle=True, no workers), .to(device) per batch."""

    def __init__(self, name, options, shape, augment, batch, n):
        from PIL import Image
        from torchvision import transforms

        bundle = synthetic_bundle(shape, n)
        c = shape[0]
        arr = bundle.train.x.permute(0, 2, 3, 1).cpu().numpy()  # N×H×W×C uint8
        images = [Image.fromarray(a[:, :, 0] if c == 1 else a) for a in arr]
        labels = bundle.train.y.tolist()
        steps = []
        if augment:
            steps += [transforms.RandomCrop(shape[1], padding=4),
                      transforms.RandomHorizontalFlip()]
        steps += [transforms.ToTensor(), transforms.Normalize((0.5,) * c, (0.25,) * c)]
        tf = transforms.Compose(steps)

        class DS(torch.utils.data.Dataset):
            def __len__(self):
                return len(images)

            def __getitem__(self, i):
                return tf(images[i]), labels[i]

        self.loader = torch.utils.data.DataLoader(DS(), batch_size=batch, shuffle=True,
                                                  pin_memory=DEVICE.type == "cuda")
        self.model = make_model(name, options, shape).to(DEVICE)
        self.opt = torch.optim.Adam(self.model.parameters())
        self.crit = torch.nn.CrossEntropyLoss()
        self.n = n

    def epoch(self) -> None:
        self.model.train()
        total = 0.0
        for x, y in self.loader:
            x, y = x.to(DEVICE, non_blocking=True), y.to(DEVICE, non_blocking=True)
            self.opt.zero_grad()
            loss = self.crit(self.model(x), y)
            loss.backward()
            self.opt.step()
            total += loss.item()  # the usual running-loss print


def train_flops_per_image(name, options, shape, batch: int) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    model = make_model(name, options, shape).train()
    x = torch.randn(batch, *shape)
    y = torch.randint(0, 10, (batch,))
    with FlopCounterMode(display=False) as counter:
        torch.nn.functional.cross_entropy(model(x), y).backward()
    return counter.get_total_flops() / batch


# ----------------------------------------------------------------------------- sections


def section_omp(quick: bool) -> dict:
    """Digits-MLP steps at batch 512 (parallel regions in every op) in fresh processes,
    PASSIVE and ACTIVE interleaved, 2 threads."""
    code = f"""
import sys, time
sys.path.insert(0, {str(ROOT.parent / "src")!r})
import ablab, torch
torch.set_num_threads(2)
nn = torch.nn
m = nn.Sequential(nn.Flatten(), nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(),
                  nn.Linear(128, 10))
o = torch.optim.Adam(m.parameters())
x, y = torch.randn(512, 1, 8, 8), torch.randint(0, 10, (512,))
def step():
    loss = nn.functional.cross_entropy(m(x), y)
    o.zero_grad()
    loss.backward()
    o.step()
for _ in range(20):
    step()
t = time.perf_counter()
for _ in range({100 if quick else 300}):
    step()
print(time.perf_counter() - t)
"""
    times: dict[str, float] = {}
    for _ in range(2):
        for policy in ("PASSIVE", "ACTIVE"):
            env = {**os.environ, "OMP_WAIT_POLICY": policy}
            try:  # spinning threads beside a busy machine can take ~50x: bound it
                out = subprocess.run([sys.executable, "-c", code], env=env,
                                     capture_output=True, text=True, check=True,
                                     timeout=60).stdout
                seconds = float(out.strip())
            except subprocess.TimeoutExpired:
                seconds = float("inf")
            times[policy] = min(times.get(policy, float("inf")), seconds)
    return {"passive_s": times["PASSIVE"], "active_s": times["ACTIVE"],
            "passive_over_active": times["PASSIVE"] / times["ACTIVE"]}


def section_throughput(quick: bool, peak: float) -> list[dict]:
    rows = []
    batches = (64,) if quick else (64, 512)
    # images per timed pass, per model: about a second or two of training each
    target = {"mlp": 16384, "mnist_cnn3": 1024, "simple_cnn": 768, "improved_cnn": 128}
    for name, options, shape, augment in MODELS:
        for batch in batches:
            n = batch * 2 if quick else max(batch, target[name])
            heavy = name == "improved_cnn" and batch > 64 and not quick
            ours = AblabLoop(name, options, shape, augment, batch, n)
            base = BaselineLoop(name, options, shape, augment, batch, n)
            loops = {"ablab": ours, "baseline": base}
            if len(shape) == 3 and shape[1] > 8 and not heavy:
                loops["ablab_contiguous"] = AblabLoop(
                    name, options, shape, augment, batch, n, memory_format="contiguous")
                loops["ablab_bf16"] = AblabLoop(
                    name, options, shape, augment, batch, n, precision="bf16")
            if not heavy:
                for loop in loops.values():
                    loop.epoch()  # warm-up
            best = {k: float("inf") for k in loops}
            for _ in range(1 if quick or heavy else 2):
                for k, loop in loops.items():
                    best[k] = min(best[k], best_of(loop.epoch, 1))
            flops = train_flops_per_image(name, options, shape, batch)
            ips = {k: n / v for k, v in best.items()}
            row = {
                "model": name, "input": "x".join(map(str, shape)), "batch": batch,
                "ablab_img_s": ips["ablab"], "baseline_img_s": ips["baseline"],
                "speedup": ips["ablab"] / ips["baseline"],
                "train_mflop_per_img": flops / 1e6,
                "ablab_gflop_s": ips["ablab"] * flops / 1e9,
                "fraction_of_peak": ips["ablab"] * flops / 1e9 / peak,
            }
            if "ablab_contiguous" in ips:
                row["channels_last_over_contiguous"] = ips["ablab"] / ips["ablab_contiguous"]
                row["bf16_over_fp32"] = ips["ablab_bf16"] / ips["ablab"]
            rows.append(row)
            print(f"  {name} b{batch}: {row['speedup']:.2f}x baseline, "
                  f"{100 * row['fraction_of_peak']:.0f}% of peak", flush=True)
    return rows


def _job(args) -> float:
    """A fixed amount of training in a fresh process with ``threads`` threads."""
    name, options, shape, batch, steps, threads = args
    torch.set_num_threads(threads)
    loop = AblabLoop(name, options, shape, False, batch, batch * steps)
    loop.epoch()
    t = time.perf_counter()
    loop.epoch()
    return time.perf_counter() - t


def section_workers(quick: bool) -> list[dict]:
    """Two equal jobs: 2 processes × 1 thread at once vs 1 process × 2 threads, one then
    the other (what a 1-worker, 2-thread study does). Ratio > 1: processes win."""
    ctx = mp.get_context("spawn")
    cases = [("mlp", {"hidden": [256, 128]}, (1, 8, 8), 64, 60 if quick else 600),
             ("mlp", {"hidden": [256, 128]}, (1, 28, 28), 64, 40 if quick else 300),
             ("simple_cnn", {}, (3, 32, 32), 64, 6 if quick else 30)]
    rows = []
    with ctx.Pool(2) as pool:
        pool.map(_job, [("mlp", {"hidden": [8]}, (1, 8, 8), 8, 1, 1)] * 2)  # start-up
        for name, options, shape, batch, steps in cases:
            best = {"2x1": float("inf"), "1x2": float("inf")}
            for _ in range(1 if quick else 2):
                t = time.perf_counter()
                pool.map(_job, [(name, options, shape, batch, steps, 1)] * 2, chunksize=1)
                best["2x1"] = min(best["2x1"], time.perf_counter() - t)
                t = time.perf_counter()
                pool.apply(_job, ((name, options, shape, batch, steps, 2),))
                pool.apply(_job, ((name, options, shape, batch, steps, 2),))
                best["1x2"] = min(best["1x2"], time.perf_counter() - t)
            rows.append({"model": name, "input": "x".join(map(str, shape)), "batch": batch,
                         "steps": steps, "2x1_s": best["2x1"], "1x2_s": best["1x2"],
                         "1x2_over_2x1": best["1x2"] / best["2x1"]})
    return rows


def _moons_cfg(seed: int, epochs: int, hidden=(256, 128), probes=()):
    from ablab.config import parse_run

    return parse_run({
        "epochs": epochs, "seed": seed, "batch_size": "full", "device": DEVICE.type,
        "dataset": {"name": "moons", "n_samples": 1000, "noise": 0.3, "test_fraction": 0.3,
                    "val_fraction": 0.0},
        "model": {"name": "mlp", "hidden": list(hidden), "init": "normal(0, 0.01)"},
        "optimizer": {"name": "adam", "lr": 0.01}, "probes": list(probes),
    })


def _digits_cfg(seed: int, epochs: int):
    from ablab.config import parse_run

    return parse_run({
        "epochs": epochs, "seed": seed, "batch_size": 64, "device": DEVICE.type,
        "dataset": {"name": "digits", "val_fraction": 0.1, "test_fraction": 0.2},
        "model": {"name": "mlp", "hidden": [256, 128]}, "optimizer": {"name": "adam"},
    })


def section_seeds(quick: bool, peak: float) -> list[dict]:
    """S seeds together vs one seed, plus what the arithmetic alone allows: the training
    FLOPs of S seeds at the measured matmul peak, over the one-seed time (a ratio no
    implementation can beat on this device)."""
    from ablab.execute.estimate import _split_sizes, forward_flops
    from ablab.train import fit
    from ablab.train.batched import fit_seeds

    seeds = 5
    cases = [
        ("moons mlp 2-256-128-2, full batch 700", lambda s, e: _moons_cfg(s, e),
         30 if quick else 300),
        ("digits mlp 64-256-128-10, batch 64", _digits_cfg, 2 if quick else 10),
    ]
    rows = []
    for label, make, epochs in cases:
        fit(make(0, 1))
        fit_seeds([make(s, 1) for s in range(2)])
        one = many = float("inf")
        for _ in range(1 if quick else 2):
            one = min(one, best_of(lambda m=make, e=epochs: fit(m(0, e)), 1))
            many = min(many, best_of(
                lambda m=make, e=epochs: fit_seeds([m(s, e) for s in range(seeds)]), 1))
        cfg = make(0, epochs)
        train, _ = _split_sizes(cfg)
        train_flops = 3 * forward_flops(cfg) * train * epochs  # forward + backward
        rows.append({"case": label, "epochs": epochs, "seeds": seeds, "one_seed_s": one,
                     "seeds_together_s": many, "together_over_one": many / one,
                     "together_gflop_s": seeds * train_flops / many / 1e9,
                     "together_fraction_of_peak": seeds * train_flops / many / 1e9 / peak,
                     "arithmetic_bound_ratio": seeds * train_flops / (peak * 1e9) / one})
    return rows


_STUDY_SCRIPT = """
import sys, time, tempfile
from pathlib import Path
sys.path.insert(0, {src!r})
t = time.perf_counter()
from ablab.study import load_study
study = load_study({name!r}, seeds={seeds!r}, sets={sets!r})
if {mode!r} == "loop":  # each run with the threads `ablab train` would give it
    from ablab.execute import Task, plan_workers
    from ablab.execute.base import set_threads
    from ablab.train import fit
    for run in study.runs:
        set_threads(plan_workers([Task(run.run_id, "", run.config.resolved())], 1, None)[1])
        fit(run.config)
else:
    from ablab.runner import run_study
    with tempfile.TemporaryDirectory() as tmp:
        outcome = run_study(study, Path(tmp) / "out", report=False)
        assert outcome.counts.get("done") == len(study.runs), outcome.counts
print(time.perf_counter() - t)
"""


def _study_flops(runs) -> float:
    """Every FLOP a study's runs compute: training (forward + backward = 3 forwards per
    example), validation every epoch, the test set, and the activation-probe passes."""
    from ablab.execute.estimate import _split_sizes, forward_flops

    total = 0.0
    for cfg in runs:
        flops = forward_flops(cfg)
        train, evaluated = _split_sizes(cfg)
        passes = 0
        for probe in cfg.probes:
            if probe.name in ("dead_units", "activations"):
                every = int(probe.options.get("every", 1))
                passes = max(passes, cfg.epochs // every + 2)
        probe_examples = passes * min(cfg.probe_batch_size, train)
        total += flops * (3 * train * cfg.epochs + evaluated + probe_examples)
    return total


def section_studies(quick: bool, peak: float) -> list[dict]:
    """Whole studies, both sides in a fresh Python process (imports and data loading
    counted for both): a script that calls ``fit`` on each run in turn, each with the
    threads ``ablab train`` would give it (the same run done alone), against ``run_study``
    (workers and threads as ablab plans them, report off). Also the arithmetic bound:
    the study's FLOPs at the measured matmul peak, the least time any schedule needs."""
    from ablab.execute import Task, plan_workers
    from ablab.study import load_study

    if quick:
        cases = [("moons-circles-activations", 1, ["epochs=5"]),
                 ("fashion-digits-optimizers", 1,
                  ["epochs=1", "dataset.subset=300", "dataset.val_fraction=0.02"])]
    else:
        cases = [("moons-circles-activations", None, []),
                 ("fashion-digits-optimizers", 2, ["epochs=2", "dataset.subset=5000"])]
    rows = []
    for name, seeds, sets in cases:
        study = load_study(name, seeds=seeds, sets=sets)
        runs = [r.config for r in study.runs]
        if name.startswith("fashion"):
            try:
                from ablab.data.loading import load_raw
                load_raw("fashion_mnist")
            except Exception as exc:  # noqa: BLE001 - no local copy: skip, say why
                rows.append({"study": name, "skipped": str(exc).splitlines()[0]})
                continue
        tasks = [Task(r.run_id, r.label, r.config.resolved()) for r in study.runs]
        workers, threads = plan_workers(tasks, None, None)
        seconds = {"loop": float("inf"), "run_study": float("inf")}
        for _ in range(1 if quick else 2):  # interleaved; the best of each kept
            for mode in ("loop", "run_study"):
                code = _STUDY_SCRIPT.format(src=str(ROOT.parent / "src"), name=name,
                                            seeds=seeds, sets=list(sets), mode=mode)
                out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                                     text=True, check=True, timeout=300).stdout
                seconds[mode] = min(seconds[mode], float(out.strip().splitlines()[-1]))
        bound = _study_flops(runs) / (peak * 1e9)
        rows.append({
            "study": name, "runs": len(runs), "seeds": len(study.config.seeds), "overrides": sets,
            "sequential_fit_s": seconds["loop"], "run_study_s": seconds["run_study"],
            "workers": workers, "threads": threads,
            "speedup": seconds["loop"] / seconds["run_study"],
            "arithmetic_bound_s": bound, "max_speedup": seconds["loop"] / bound,
        })
        print(f"  {name}: {seconds['loop']:.1f} s one after another, "
              f"{seconds['run_study']:.1f} s run_study ({workers}x{threads}) -> "
              f"{seconds['loop'] / seconds['run_study']:.2f}x; FLOPs at peak "
              f"{bound:.1f} s", flush=True)
    return rows


# ----------------------------------------------------------------------------- output


def table(title: str, rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    """Plain-text table: columns are (key, header, format)."""
    head = [h for _, h, _ in columns]
    body = []
    for r in rows:
        body.append([("-" if r.get(k) is None else format(r[k], f) if f else str(r[k]))
                     for k, _, f in columns])
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h)
              for i, h in enumerate(head)]
    line = "  ".join(h.rjust(w) for h, w in zip(head, widths, strict=True))
    out = [title, line, "-" * len(line)]
    out += ["  ".join(c.rjust(w) for c, w in zip(b, widths, strict=True)) for b in body]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run, < 60 s")
    parser.add_argument("--out", type=Path, default=ROOT / "results")
    parser.add_argument("--skip", nargs="*", default=[],
                        help="sections to skip: omp throughput workers seeds studies")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    threads = torch.get_num_threads()
    report: dict = {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "quick": args.quick,
        "machine": {"cpu": platform.processor() or platform.machine(),
                    "cores": os.cpu_count(), "torch": torch.__version__,
                    "threads": threads, "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
                    "device": str(DEVICE) + (f" ({torch.cuda.get_device_name()})"
                                             if DEVICE.type == "cuda" else ""),
                    "load_avg_at_start": os.getloadavg()},
    }
    print("peak ...", flush=True)
    # The best over sizes: one size alone was seen to read low when the machine was busy.
    sizes = (1024, 2048) if args.quick else (1024, 2048, 4096)
    peak = max(matmul_peak(n, 3 if args.quick else 5) for n in sizes)
    report["peak_gflop_s"] = peak
    if DEVICE.type == "cuda":  # tensor-core rate, for the bf16 column
        report["peak_bf16_gflop_s"] = max(matmul_peak(n, 5, torch.bfloat16) for n in sizes)
    sections = [
        ("omp", section_omp), ("throughput", lambda q: section_throughput(q, peak)),
        ("workers", section_workers), ("seeds", lambda q: section_seeds(q, peak)),
        ("studies", lambda q: section_studies(q, peak)),
    ]
    for key, fn in sections:
        if key in args.skip:
            continue
        print(f"{key} ...", flush=True)
        report[key] = fn(args.quick)
    report["seconds"] = time.perf_counter() - started
    report["machine"]["load_avg_at_end"] = os.getloadavg()

    parts = [f"fp32 matmul peak: {peak:.1f} GFLOP/s ({threads} threads, "
             f"{report['machine']['device']})"]
    if "peak_bf16_gflop_s" in report:
        parts.append(f"bf16 matmul peak: {report['peak_bf16_gflop_s']:.1f} GFLOP/s")
    if "omp" in report:
        o = report["omp"]
        parts.append(f"OMP_WAIT_POLICY PASSIVE / ACTIVE time (2 threads, small MLP steps): "
                     f"{o['passive_over_active']:.2f} ({o['passive_s']:.2f} s vs "
                     f"{o['active_s']:.2f} s)")
    if "throughput" in report:
        parts.append(table("training throughput (images/s, best of interleaved repeats)",
                           report["throughput"], [
                               ("model", "model", ""), ("input", "input", ""),
                               ("batch", "batch", ""), ("ablab_img_s", "ablab", ".0f"),
                               ("baseline_img_s", "baseline", ".0f"),
                               ("speedup", "x baseline", ".2f"),
                               ("train_mflop_per_img", "MFLOP/img", ".2f"),
                               ("ablab_gflop_s", "GFLOP/s", ".1f"),
                               ("fraction_of_peak", "of peak", ".0%"),
                               ("channels_last_over_contiguous", "ch-last x", ".2f"),
                               ("bf16_over_fp32", "bf16 x", ".2f")]))
    if "workers" in report:
        parts.append(table("two runs: 2 workers x 1 thread vs 1 worker x 2 threads (s)",
                           report["workers"], [
                               ("model", "model", ""), ("input", "input", ""),
                               ("steps", "steps", ""), ("2x1_s", "2x1", ".2f"),
                               ("1x2_s", "1x2", ".2f"), ("1x2_over_2x1", "1x2 / 2x1", ".2f")]))
    if "seeds" in report:
        parts.append(table("seeds trained together (fit_seeds) vs one seed (fit)",
                           report["seeds"], [
                               ("case", "case", ""), ("epochs", "epochs", ""),
                               ("seeds", "seeds", ""), ("one_seed_s", "1 seed s", ".2f"),
                               ("seeds_together_s", "together s", ".2f"),
                               ("together_over_one", "ratio", ".2f"),
                               ("together_fraction_of_peak", "together of peak", ".0%"),
                               ("arithmetic_bound_ratio", "ratio at peak", ".2f")]))
    if "studies" in report:
        parts.append(table("whole studies, each side a fresh process: run_study vs a loop of "
                           "fit (report off); FLOPs at peak = the least time possible",
                           report["studies"], [
                               ("study", "study", ""), ("runs", "runs", ""),
                               ("overrides", "--set", ""),
                               ("sequential_fit_s", "sequential s", ".1f"),
                               ("run_study_s", "run_study s", ".1f"),
                               ("workers", "workers", ""), ("threads", "threads", ""),
                               ("speedup", "speedup", ".2f"),
                               ("arithmetic_bound_s", "FLOPs at peak s", ".1f"),
                               ("max_speedup", "max speedup", ".1f"),
                               ("skipped", "skipped", "")]))
    parts.append(f"total {report['seconds']:.0f} s; load average at start / end "
                 f"{report['machine']['load_avg_at_start'][0]:.1f} / "
                 f"{report['machine']['load_avg_at_end'][0]:.1f}")
    text = "\n\n".join(parts)
    print("\n" + text)
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = "-quick" if args.quick else ""
    path = args.out / f"throughput-{dt.date.today().isoformat()}{suffix}.json"
    report["table"] = text
    path.write_text(json.dumps(report, indent=2, default=str))
    print(f"\nwrote {path}")
    return report


if __name__ == "__main__":
    main()
