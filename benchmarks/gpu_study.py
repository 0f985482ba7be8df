"""A study on one GPU (#33): what the device can do, what a hand-written loop gets, and
what ablab gets, per run and for whole studies, side by side.

    python benchmarks/gpu_study.py                 # on a CUDA machine: <= 8 minutes
    python benchmarks/gpu_study.py --smoke         # anywhere: tiny subsets, 1 epoch, CPU

Printed, and written to ``benchmarks/results/gpu_study.json`` (``--json``):

1. the device's measured dense matmul peak (8192² fp32 without TF32, TF32, bf16);
2. an idiomatic PyTorch loop (``DataLoader`` with worker processes and pinned memory,
   ``.to(device)`` per batch, ``torch.optim``) for one run of each of the 18
   configurations of source 002 (``fashion-cnn-losses-optimizers``): timed over
   ``--loop-steps`` steps after a warm-up, extrapolated to the run's 10 epochs (the
   per-run time a user would get by hand; evaluation left out, which favours the loop);
3. ablab's per-run path (``fit``, one run of each architecture, one epoch, extrapolated
   to 10);
4. ablab's batched path: one program of each study timed alone for one epoch, then the
   WHOLE source-002 study (90 runs: 5 seeds, 10 epochs, report included) and the
   Fashion-MNIST half of ``fashion-digits-optimizers`` (45 runs, 100 epochs) at full
   settings, through ``ablab.run_study`` (the ``ablab run`` path: plan, workers, store,
   report);
5. operations dispatched per training step (about one kernel launch each), the
   largest program's runs one after another vs. as one program (a count: the same on
   any machine);
6. images per second, achieved TFLOP/s (forward + backward = 3 x forward FLOPs per
   training image, forward FLOPs per evaluated image) and its share of the peak of the
   arithmetic the runs use (fp32 unless ``--tf32``);
7. each study's reference figures beside the CPU path's 95 % CIs in
   ``docs/reproductions.md`` (the same recipe must give the same answers).

Targets (issue #33, one H100): source-002 study <= 60 s and >= 10x the idiomatic loop
run after run; the 45 MLP runs <= 30 s; >= 20 % of the peak over the source-002 study;
no accuracy outside the CPU path's CIs. The JSON says which were met.

Without a CUDA device and without ``--smoke`` it says so in one line and exits (status 0,
nothing measured). ``--smoke`` runs every section on the CPU with tiny subsets (128
training images, 1 epoch, 1 seed, 5 loop steps, one loop configuration per architecture):
a check of the script, not a measurement.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import re
import shutil
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE002 = "fashion-cnn-losses-optimizers"
MLP_STUDY = "fashion-digits-optimizers"
FULL_SEEDS = 5
TARGETS = {"source002_wall_s": 60.0, "fashion_mlp_wall_s": 30.0, "share_of_peak": 0.20,
           "speedup_vs_loop": 10.0}


def log(*parts) -> None:
    print(*parts, flush=True)


# ---------------------------------------------------------------- 1. the device's peak


def matmul_peak(device, n: int, seconds: float) -> dict[str, float]:
    """Dense matmul TFLOP/s of an n x n product: fp32 (TF32 off), TF32, bf16 (the last
    two on CUDA only)."""
    import torch

    kinds = [("fp32", torch.float32, False)]
    if device.type == "cuda":
        kinds += [("tf32", torch.float32, True), ("bf16", torch.bfloat16, False)]
    before = torch.backends.cuda.matmul.allow_tf32
    out = {}
    try:
        for name, dtype, tf32 in kinds:
            torch.backends.cuda.matmul.allow_tf32 = tf32
            a = torch.randn(n, n, device=device, dtype=dtype)
            b = torch.randn(n, n, device=device, dtype=dtype)
            for _ in range(3):
                a @ b
            sync(device)
            reps, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds:
                for _ in range(5):
                    a @ b
                reps += 5
                sync(device)
            elapsed = time.perf_counter() - start
            out[name] = 2.0 * n**3 * reps / elapsed / 1e12
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before
    return out


def sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---------------------------------------------------------------- the studies' runs


def study_runs(name: str, seeds: int, sets: list[str], dataset: str | None = None):
    """The study at these settings, with only the runs on ``dataset`` when given."""
    from ablab.study import load_study

    study = load_study(name, seeds=seeds, sets=sets)
    if dataset is not None:
        study = replace(study, runs=[r for r in study.runs if r.config.dataset.name == dataset])
    return study


def one_per_variant(study) -> list:
    """The first run (seed) of every variant."""
    seen, runs = set(), []
    for run in study.runs:
        if run.variant_id not in seen:
            seen.add(run.variant_id)
            runs.append(run)
    return runs


def train_flops(cfg, sizes: dict[str, int], epochs: int) -> float:
    """FLOPs of one run: 3 x forward per training image and epoch, forward per validation
    image and epoch and per test image."""
    from ablab.models.flops import forward_flops

    fwd = forward_flops(cfg)
    return fwd * (3 * sizes["train"] * epochs + sizes["val"] * epochs + sizes["test"])


def run_sizes(cfg) -> dict[str, int]:
    from ablab.data import load_data

    return load_data(cfg.dataset, cfg.seed, "cpu").sizes()


# ---------------------------------------------------------------- 2. the idiomatic loop


def idiomatic_loop(cfg, device, steps: int, warmup: int, loader_workers: int) -> dict:
    """What a user writes by hand: a TensorDataset in host memory, a shuffling DataLoader
    with worker processes and pinned memory, a batch moved to the device per step,
    ``torch.optim``; timed over ``steps`` steps after ``warmup``."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from ablab.data import load_data
    from ablab.models import build_model
    from ablab.train.losses import build_loss
    from ablab.train.optimizers import build_optimizer

    torch.manual_seed(cfg.seed)
    bundle = load_data(cfg.dataset, cfg.seed, "cpu")
    x = bundle.normalize(bundle.train.x)  # float images, as torchvision's ToTensor gives
    data = TensorDataset(x, bundle.train.y)
    loader = DataLoader(data, batch_size=int(cfg.batch_size), shuffle=True,
                        num_workers=loader_workers, pin_memory=device.type == "cuda",
                        persistent_workers=loader_workers > 0)
    model = build_model(cfg.model, bundle.input_shape, bundle.num_classes).to(device)
    optimizer = build_optimizer(cfg.optimizer.name, cfg.optimizer.options, model.parameters())
    loss_fn = build_loss(cfg.loss.name, cfg.loss.options)
    model.train()
    done, start = 0, None
    while True:
        for xb, yb in loader:
            if done == warmup:
                sync(device)
                start = time.perf_counter()
            xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
            loss = loss_fn(model(xb), yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            done += 1
            if done == warmup + steps:
                break
        if done == warmup + steps:
            break
    sync(device)
    per_step = (time.perf_counter() - start) / steps
    steps_per_run = len(loader) * cfg.epochs
    return {"per_step_s": per_step, "steps_per_run": steps_per_run,
            "run_s_estimate": per_step * steps_per_run}


# ---------------------------------------------------------------- 3. the per-run path


def per_run_path(cfg, epochs_run: int = 1) -> dict:
    """``fit`` on ``epochs_run`` epochs, extrapolated to the run's epochs."""
    from ablab.train import fit

    short = cfg.model_copy(update={"epochs": epochs_run})
    start = time.perf_counter()
    result = fit(short)
    wall = time.perf_counter() - start
    epoch_s = sum(h["seconds"] for h in result.history) / len(result.history)
    setup_s = max(0.0, wall - epoch_s * len(result.history))
    return {"epoch_s": epoch_s, "setup_s": setup_s,
            "run_s_estimate": setup_s + epoch_s * cfg.epochs}


# ---------------------------------------------------------------- 4. the batched path


def one_program(study, epochs_run: int = 1) -> dict:
    """The largest batched program of the study (``plan_units`` as on this device), its
    first ``epochs_run`` epochs through ``fit_batched``: seconds per epoch, images/s."""
    from ablab.config import RunConfig
    from ablab.execute import Task
    from ablab.execute.base import plan_units
    from ablab.train.batched import can_batch, fit_batched

    tasks = [Task(r.run_id, r.label, r.config.resolved()) for r in study.runs]
    unit = max((u for u, _ in plan_units(tasks)), key=len)
    configs = [RunConfig.model_validate(t.config).model_copy(update={"epochs": epochs_run})
               for t in unit]
    start = time.perf_counter()
    results = fit_batched(configs)
    wall = time.perf_counter() - start
    epoch_s = sum(h["seconds"] for h in results[0].history) * len(results) / epochs_run
    images = results[0].sizes["train"] * len(results)
    return {"members": len(configs), "batched": can_batch(configs), "wall_s": wall,
            "epoch_s": epoch_s, "train_images_per_s": images / epoch_s if epoch_s else None,
            "statuses": sorted({r.status for r in results})}


def whole_study(study, out: Path, workers: int | None) -> dict:
    """The study through ``run_study`` (plan, workers, store, report), from an empty
    directory: wall time, counts, FLOPs, images."""
    from ablab.runner import run_study

    if out.exists():
        shutil.rmtree(out)
    start = time.perf_counter()
    outcome = run_study(study, out, workers=workers, progress=False, report=True)
    wall = time.perf_counter() - start
    sizes_of: dict[str, dict[str, int]] = {}
    flops = images = 0.0
    for run in study.runs:
        key = json.dumps(run.config.dataset.model_dump(mode="json"), sort_keys=True) + str(
            run.config.dataset.split_seed if run.config.dataset.split_seed is not None
            else run.config.seed)
        sizes = sizes_of.setdefault(key, run_sizes(run.config))
        flops += train_flops(run.config, sizes, run.config.epochs)
        images += sizes["train"] * run.config.epochs
    return {"runs": len(study.runs), "counts": dict(outcome.counts), "wall_s": wall,
            "flops": flops, "train_images": images,
            "train_images_per_s": images / wall, "achieved_tflops": flops / wall / 1e12}


def ops_per_step(study, subset: int | None) -> dict:
    """Operations dispatched (aten ops: about one kernel launch each on a GPU) per
    training step of one epoch, validation and probes included, for the study's largest
    program: its S runs one after another through ``fit`` vs. together through
    ``fit_batched``. Counted as the difference between 2 epochs and 1, so setup and the
    final test are left out; machine-independent (a count, not a time)."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    from ablab.config import RunConfig
    from ablab.execute import Task
    from ablab.execute.base import plan_units
    from ablab.train import fit
    from ablab.train.batched import fit_batched

    class Count(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.n = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.n += 1
            return func(*args, **(kwargs or {}))

    tasks = [Task(r.run_id, r.label, r.config.resolved()) for r in study.runs]
    unit = max((u for u, _ in plan_units(tasks, on_gpu=True)), key=len)
    base = [RunConfig.model_validate(t.config) for t in unit]
    if subset is not None:
        base = [c.model_copy(update={"dataset": c.dataset.model_copy(
            update={"subset": subset, "eval_subset": subset})}) for c in base]

    def count(train, epochs: int) -> int:
        configs = [c.model_copy(update={"epochs": epochs}) for c in base]
        with Count() as counter:
            train(configs)
        return counter.n

    def one_by_one(configs):
        return [fit(c) for c in configs]

    steps = len(fit(base[0].model_copy(update={"epochs": 1})).batch_losses)
    per_run = (count(one_by_one, 2) - count(one_by_one, 1)) / steps
    together = (count(fit_batched, 2) - count(fit_batched, 1)) / steps
    torch.manual_seed(0)
    return {"runs": len(base), "steps_per_epoch": steps, "subset": subset,
            "per_run_path_ops_per_step": per_run, "batched_ops_per_step": together,
            "ratio": per_run / together}


# ---------------------------------------------------------------- 6. accuracies


def _floats(text: str) -> list[float]:
    return [float(v) for v in re.findall(r"-?\d+(?:\.\d+)?", text.replace("\u2212", "-"))]


def cpu_reference_cis(study: str) -> dict[tuple[str, str], tuple[float, float]]:
    """(variant, metric label) -> the 95 % CI docs/reproductions.md gives for ``study``."""
    page = (ROOT / "docs" / "reproductions.md").read_text(encoding="utf-8")
    out = {}
    for line in page.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 7 and cells[0] == study and cells[5].startswith("["):
            low, high = _floats(cells[5])[:2]
            out[(cells[1], cells[2])] = (low, high)
    return out


def accuracies_against_cpu(name: str, out: Path) -> list[dict]:
    """Each reference figure of the study run into ``out``: ablab's mean here (shown as
    the page shows it) beside the CPU path's CI on docs/reproductions.md."""
    from ablab.analysis import analyze
    from ablab.report.against_source import against_source, format_metric, metric_label
    from ablab.store import StudyStore

    cis = cpu_reference_cis(name)
    rows = []
    for row in against_source(analyze(StudyStore.existing(out)))["figures_data"]:
        if row["variant"] is None:
            continue
        label = metric_label(row["metric"])
        here = format_metric(row["mean"], row["metric"])
        ci = cis.get((row["variant"], label))
        value = _floats(here)[0] if _floats(here) else math.nan
        rows.append({
            "variant": row["variant"], "metric": label, "here": here, "n": row["n"],
            "here_ci": [format_metric(row["ci_low"], row["metric"]),
                        format_metric(row["ci_high"], row["metric"])],
            "cpu_ci": list(ci) if ci else None,
            "inside_cpu_ci": None if ci is None else bool(ci[0] <= value <= ci[1]),
        })
    return rows


# ---------------------------------------------------------------- main


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--smoke", action="store_true",
                   help="CPU, tiny subsets, 1 epoch, 1 seed: checks the script, measures nothing")
    p.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "gpu_study.json"))
    p.add_argument("--workdir", default=str(ROOT / "out" / "gpu_study"),
                   help="where the studies are run (emptied first)")
    p.add_argument("--workers", type=int, default=None, help="ablab's workers (default: planned)")
    p.add_argument("--tf32", action="store_true",
                   help="train with tf32 = true (TF32 tensor cores; other run ids)")
    p.add_argument("--compile", choices=["default", "reduce-overhead", "max-autotune"],
                   help="ablab's runs with compile = MODE (torch.compile of the batched "
                        "forward on CUDA; reduce-overhead: CUDA graphs); untested without a GPU")
    p.add_argument("--loop-steps", type=int, default=200)
    p.add_argument("--loop-workers", type=int, default=2, help="the DataLoader's workers")
    p.add_argument("--skip", nargs="*", default=[],
                   choices=["peak", "loop", "per_run", "program", "ops", "source002", "mlp"])
    p.add_argument("--ops-subset", type=int, default=2048,
                   help="training images for the operation count (default 2048)")
    return p.parse_args(argv)


def settings(args) -> tuple[int, list[str], dict]:
    """Seeds, ``--set`` overrides and the sections' sizes for this call."""
    sets = ["tf32=true"] if args.tf32 else []
    if args.compile:
        sets.append(f"compile={args.compile}")
    if args.smoke:
        sets += ["device=cpu", "dataset.subset=128", "dataset.eval_subset=128", "epochs=1"]
        return 1, sets, {"matmul_n": 256, "peak_s": 0.2, "loop_steps": 5, "loop_warmup": 2,
                         "loop_workers": 0}
    return FULL_SEEDS, sets, {"matmul_n": 8192, "peak_s": 2.0, "loop_steps": args.loop_steps,
                              "loop_warmup": 20, "loop_workers": args.loop_workers}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    import torch

    if not args.smoke and not torch.cuda.is_available():
        log("gpu_study: no CUDA device here, nothing measured; run it on a GPU machine, or "
            "with --smoke for a CPU check of the script")
        return 0
    device = torch.device("cpu" if args.smoke else "cuda")
    seeds, sets, size = settings(args)
    name = "cpu (smoke)" if args.smoke else torch.cuda.get_device_name(device)
    log(f"gpu_study on {name}; torch {torch.__version__}; seeds {seeds}; sets {sets}")
    report: dict = {
        "device": name, "smoke": args.smoke, "tf32": args.tf32, "compile": args.compile,
        "torch": torch.__version__,
        "machine": f"{platform.machine()}, {platform.node()}",
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "seeds": seeds,
        "sets": sets, "targets": TARGETS,
    }
    started = time.perf_counter()
    workdir = Path(args.workdir)

    cnn = study_runs(SOURCE002, seeds, sets)
    mlp = study_runs(MLP_STUDY, seeds, sets, dataset="fashion_mnist")

    if "peak" not in args.skip:
        report["peak_tflops"] = matmul_peak(device, size["matmul_n"], size["peak_s"])
        log("dense matmul peak (TFLOP/s): " + ", ".join(
            f"{k} {v:.1f}" for k, v in report["peak_tflops"].items()))

    from ablab.train.accel import use_tf32

    use_tf32(args.tf32)  # the hand-written loop computes as ablab's runs do
    if "loop" not in args.skip:
        loops = {}
        loop_runs = one_per_variant(cnn)
        if args.smoke:  # one configuration per architecture
            loop_runs = [r for r in loop_runs if "optimizer=adam" in r.variant_label
                         and "cross_entropy" in r.variant_label]
        for run in loop_runs:
            cfg = run.config
            loops[run.variant_label] = idiomatic_loop(
                cfg, device, size["loop_steps"], size["loop_warmup"], size["loop_workers"])
            log(f"idiomatic loop  {run.variant_label:55s} "
                f"{loops[run.variant_label]['per_step_s'] * 1e3:7.2f} ms/step, "
                f"run ~{loops[run.variant_label]['run_s_estimate']:7.1f} s")
        report["idiomatic_loop"] = loops
        report["idiomatic_source002_s"] = sum(v["run_s_estimate"] for v in loops.values()) * (
            len(cnn.runs) / max(1, len(loops)))
        log(f"idiomatic loop, the {len(cnn.runs)} runs one after another: "
            f"~{report['idiomatic_source002_s']:.0f} s (extrapolated)")
        save(report, args.json)

    if "per_run" not in args.skip:
        per_run, seen_models = {}, set()
        for run in one_per_variant(cnn):
            model = run.config.model.model_dump_json()
            if model in seen_models:
                continue
            seen_models.add(model)
            per_run[run.variant_label] = per_run_path(run.config)
            log(f"ablab per-run   {run.variant_label:55s} "
                f"{per_run[run.variant_label]['epoch_s']:7.2f} s/epoch, "
                f"run ~{per_run[run.variant_label]['run_s_estimate']:7.1f} s")
        report["per_run_path"] = per_run
        save(report, args.json)

    if "program" not in args.skip:
        report["batched_program"] = {}
        for label, study in (("source002", cnn), ("fashion_mlp", mlp)):
            prog = one_program(study)
            report["batched_program"][label] = prog
            log(f"ablab batched program ({label}): {prog['members']} runs together "
                f"(batched: {prog['batched']}), {prog['epoch_s']:.2f} s/epoch, "
                f"{prog['train_images_per_s'] or 0:,.0f} training images/s")
        save(report, args.json)

    if "ops" not in args.skip:
        report["ops_per_step"] = {}
        subset = 64 if args.smoke else args.ops_subset
        for label, study in (("source002", cnn), ("fashion_mlp", mlp)):
            ops = ops_per_step(study, subset)
            report["ops_per_step"][label] = ops
            log(f"operations per training step ({label}, {ops['runs']} runs): one after "
                f"another {ops['per_run_path_ops_per_step']:,.0f}, as one program "
                f"{ops['batched_ops_per_step']:,.0f} ({ops['ratio']:.1f}x fewer)")
        save(report, args.json)

    peak_kind = "tf32" if args.tf32 else "fp32"
    for key, label, study in (("source002", SOURCE002, cnn), ("fashion_mlp", MLP_STUDY, mlp)):
        if key in args.skip or (key == "fashion_mlp" and "mlp" in args.skip):
            continue
        out = workdir / label
        if device.type == "cuda":
            torch.cuda.empty_cache()  # this process's cached blocks, for the workers
        whole = whole_study(study, out, args.workers)
        peak = (report.get("peak_tflops") or {}).get(peak_kind)
        whole["share_of_peak"] = whole["achieved_tflops"] / peak if peak else None
        whole["accuracies"] = accuracies_against_cpu(label, out)
        report[key] = whole
        report[f"{key}_wall_s"] = whole["wall_s"]
        outside = [a for a in whole["accuracies"] if a["inside_cpu_ci"] is False]
        share = f"{whole['share_of_peak']:.1%}" if whole["share_of_peak"] is not None else "–"
        log(f"ablab batched study {label}: {whole['runs']} runs {whole['counts']} in "
            f"{whole['wall_s']:.1f} s (report included); "
            f"{whole['train_images_per_s']:,.0f} training images/s; "
            f"{whole['achieved_tflops']:.2f} TFLOP/s = {share} of the {peak_kind} peak")
        verdicts = {True: "inside", False: "OUTSIDE", None: "–"}
        for a in whole["accuracies"]:
            cpu = "–" if a["cpu_ci"] is None else f"[{a['cpu_ci'][0]}, {a['cpu_ci'][1]}]"
            log(f"    {a['variant']:55s} {a['metric']:34s} here {a['here']:>8s} "
                f"(n {a['n']})  CPU path CI {cpu}  {verdicts[a['inside_cpu_ci']]}")
        log(f"    {len(outside)} of {len(whole['accuracies'])} figures outside the CPU CIs")
        save(report, args.json)

    if "source002" in report:
        report["share_of_peak"] = report["source002"]["share_of_peak"]
        if "idiomatic_source002_s" in report:
            report["speedup_vs_loop"] = (report["idiomatic_source002_s"]
                                         / report["source002_wall_s"])
    met = {}
    if not args.smoke:
        for key, bound in TARGETS.items():
            value = report.get(key)
            if value is not None:
                met[key] = value >= bound if key in ("share_of_peak", "speedup_vs_loop") \
                    else value <= bound
        accs = [a for k in ("source002", "fashion_mlp") for a in report.get(k, {}).get(
            "accuracies", [])]
        if accs:
            met["accuracies_inside_cpu_ci"] = all(a["inside_cpu_ci"] is not False for a in accs)
    report["targets_met"] = met
    report["benchmark_wall_s"] = time.perf_counter() - started
    log("targets met: " + (", ".join(f"{k} {v}" for k, v in met.items()) or "– (smoke)"))
    log(f"whole benchmark: {report['benchmark_wall_s']:.0f} s")
    log(f"wrote {save(report, args.json)}")
    return 0


def save(report: dict, path: str) -> Path:
    """Write what is measured so far (a call cut off by a time limit keeps its sections)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1, default=str))
    return out


if __name__ == "__main__":
    sys.exit(main())
