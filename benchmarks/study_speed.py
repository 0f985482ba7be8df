"""Whole-study speed (#17): a plain-PyTorch script of the 30 moons/circles runs vs
``ablab run moons-circles-activations --seeds 5``, side by side in one process tree.

The plain script (``plain`` below) is what a student would write for source 001's
experiment B: full batch without a DataLoader, one run after another, the same recipe
(make_moons / make_circles n=1000, standardized, stratified 70/30 split, 20 % of the
training split for validation, MLP 2-256-128-2 with N(0, 0.01) weights and zero biases,
Adam lr 0.01, 300 epochs; per-epoch losses and accuracies and the dead-ReLU share), plots at
the end. It runs in a subprocess with torch's default threads (both cores). ablab runs
the built-in study with its probes and report on 2 workers.

Printed: both wall times, per-run times and their ratio, ``ablab report`` alone,
``python -c "import ablab"`` alone, and the share of the arithmetic bound: the study's
floating-point work (forward + backward of every full-batch step, 3 x 2 x weights x rows)
at the measured peak of this machine (a 1-thread float32 matmul, both cores) over
ablab's wall time. Then where ablab's wall time went (start-up until the first run
starts, training, tables + report + exit, from the index's run times) and the floor
that identical numbers allow here: the imports no worker can train without, plus 30 x
300 bare training steps (forward, loss, backward, AdamW; no probe, no record) on 2 cores.
Last, ablab's CPU seconds by process (parent, fork server, workers, report drawing),
read from /proc while it runs, beside the floor's CPU seconds: on a shared machine, where
wall times say more about the other load than about ablab, these say where its work goes.
Both comparisons end in ablab's ratio to the floor (wall time, CPU time).

    python benchmarks/study_speed.py [--json benchmarks/results/study_speed.json] [--seeds N]

``--seeds N`` (default 5) runs both sides with N seeds (a quicker check on a loaded
machine; the issue's figures are for 5).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SEEDS = 5
EPOCHS = 300
ACTIVATIONS = ("relu", "leaky_relu", "sigmoid")
DATASETS = (("moons", 0.3), ("circles", 0.2))
HIDDEN = (256, 128)
N_SAMPLES = 1000


def plain(out: Path) -> None:
    """The student's script: 30 runs one after another, then the plots."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    import torch
    from sklearn.datasets import make_circles, make_moons
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler
    from torch import nn

    acts = {"relu": nn.ReLU, "leaky_relu": lambda: nn.LeakyReLU(0.01), "sigmoid": nn.Sigmoid}
    results = {}
    for dataset, noise in DATASETS:
        for act in ACTIVATIONS:
            for seed in range(SEEDS):
                torch.manual_seed(seed)
                if dataset == "moons":
                    x, y = make_moons(N_SAMPLES, noise=noise, random_state=0)
                else:
                    x, y = make_circles(N_SAMPLES, noise=noise, factor=0.5, random_state=0)
                xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.3, stratify=y,
                                                      random_state=seed)
                xtr, xva, ytr, yva = train_test_split(xtr, ytr, test_size=0.2, stratify=ytr,
                                                      random_state=seed)
                scaler = StandardScaler().fit(xtr)
                xtr, xva, xte = (torch.tensor(scaler.transform(a), dtype=torch.float32)
                                 for a in (xtr, xva, xte))
                ytr, yva, yte = (torch.tensor(a) for a in (ytr, yva, yte))
                layers, width = [], 2
                for h in HIDDEN:
                    layers += [nn.Linear(width, h), acts[act]()]
                    width = h
                model = nn.Sequential(*layers, nn.Linear(width, 2))
                for m in model:
                    if isinstance(m, nn.Linear):
                        nn.init.normal_(m.weight, 0, 0.01)
                        nn.init.zeros_(m.bias)
                opt = torch.optim.Adam(model.parameters(), lr=0.01)
                loss_fn = nn.CrossEntropyLoss()
                history = []
                for _epoch in range(EPOCHS):
                    model.train()
                    opt.zero_grad()
                    logits = model(xtr)
                    loss = loss_fn(logits, ytr)
                    loss.backward()
                    opt.step()
                    model.eval()
                    with torch.no_grad():
                        h = xtr
                        dead = []
                        for m in model:
                            h = m(h)
                            if isinstance(m, (nn.ReLU, nn.LeakyReLU, nn.Sigmoid)):
                                dead.append(float((h <= 0).float().mean()))
                        val = (model(xva).argmax(1) == yva).float().mean().item()
                        train = (logits.argmax(1) == ytr).float().mean().item()
                    history.append((loss.item(), train, val, float(np.mean(dead))))
                with torch.no_grad():
                    test = (model(xte).argmax(1) == yte).float().mean().item()
                    gx, gy = np.meshgrid(np.linspace(-3, 3, 100), np.linspace(-3, 3, 100))
                    grid = torch.tensor(np.c_[gx.ravel(), gy.ravel()], dtype=torch.float32)
                    boundary = model(grid).argmax(1).reshape(100, 100).numpy()
                results[(dataset, act, seed)] = (history, test, boundary)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for (dataset, act, seed), (history, _, _) in results.items():
        ax = axes[0 if dataset == "moons" else 1]
        ax.plot([h[0] for h in history], label=f"{act} s{seed}", lw=0.8)
    fig.savefig(out / "curves.png")
    fig, axes = plt.subplots(2, 3, figsize=(12, 8))
    for (dataset, act, seed), (_, _, boundary) in results.items():
        if seed == 0:
            ax = axes[0 if dataset == "moons" else 1][ACTIVATIONS.index(act)]
            ax.contourf(gx, gy, boundary, alpha=0.5)
    fig.savefig(out / "boundaries.png")
    with open(out / "results.json", "w") as handle:
        json.dump({f"{d}/{a}/{s}": t for (d, a, s), (_, t, _) in results.items()}, handle)


def peak_gflops() -> float:
    """A 1-thread float32 matmul's rate: the arithmetic peak of one core, measured."""
    import torch

    torch.set_num_threads(1)
    a, b = torch.randn(512, 512), torch.randn(512, 512)
    for _ in range(3):
        a @ b
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < 1.0:
        a @ b
        n += 1
    return n * 2 * 512**3 / (time.perf_counter() - start) / 1e9


def study_flops() -> float:
    sizes = (2, *HIDDEN, 2)
    weights = sum(a * b + b for a, b in zip(sizes, sizes[1:], strict=False))
    rows = round(N_SAMPLES * 0.7)  # ablab's study trains on all 700 training points
    return 3 * 2 * weights * rows * EPOCHS * SEEDS * len(ACTIVATIONS) * len(DATASETS)


def bare_steps() -> None:
    """Prints the floor's two parts as JSON: the imports a worker cannot train without
    (torch, torch._dynamo that every torch optimizer imports, scikit-learn that makes the
    data), then 300 bare training steps of the study's model on its 700 training points,
    one thread: forward, cross-entropy, backward, AdamW -- no probe, no record, no
    evaluation."""
    start = time.perf_counter()
    import sklearn.datasets  # noqa: F401
    import torch
    import torch._dynamo  # noqa: F401

    imports_s = time.perf_counter() - start
    torch.set_num_threads(1)
    torch.manual_seed(0)
    x, y = torch.randn(round(N_SAMPLES * 0.7), 2), torch.randint(0, 2, (round(N_SAMPLES * 0.7),))
    layers, width = [], 2
    for h in HIDDEN:
        layers += [torch.nn.Linear(width, h), torch.nn.ReLU()]
        width = h
    model = torch.nn.Sequential(*layers, torch.nn.Linear(width, 2))
    opt = torch.optim.AdamW(model.parameters(), lr=0.01, weight_decay=0.01, foreach=True)
    loss_fn = torch.nn.CrossEntropyLoss()

    def steps(n: int) -> None:
        for _ in range(n):
            opt.zero_grad(set_to_none=True)
            loss_fn(model(x), y).backward()
            opt.step()

    steps(30)  # warm-up
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        steps(EPOCHS)
        best = min(best, time.perf_counter() - start)
    print(json.dumps({"imports_s": imports_s, "run_steps_s": best}))


def study_phases(out: Path, launched: float, ended: float) -> dict[str, float]:
    """Where ``ablab run``'s wall time went, from the index's run times (epoch seconds):
    until the first run started, training, and from the last run's end to the exit
    (tables, report, verdicts)."""
    import sqlite3

    with sqlite3.connect(out / "index.sqlite") as db:
        first, last, total = db.execute(
            "SELECT min(started), max(finished), sum(seconds) FROM runs").fetchone()
    return {"startup_s": first - launched, "training_s": last - first,
            "run_seconds_sum": total, "report_and_exit_s": ended - last}


def timed(cmd: list[str], env: dict | None = None) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"study_speed: {' '.join(cmd[:4])} failed:\n{proc.stderr[-2000:]}")
    return wall


#: Seconds between two readings of the process tree's CPU times (a process that ends
#: between two readings loses at most this much of its CPU time).
CPU_SAMPLE_S = 0.1
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _proc_stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, user + system CPU seconds) of a live process; None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            text = handle.read()
    except OSError:
        return None
    fields = text[text.rfind(")") + 2 :].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICKS


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def timed_cpu(cmd: list[str], env: dict | None = None) -> tuple[float, dict[str, float]]:
    """``timed``, plus the CPU seconds (user + system) of the command's process tree by
    role, read from /proc every ``CPU_SAMPLE_S``: ``parent`` (the command), ``fork_server``
    (which imports torch for the workers), ``workers`` (its children: the training),
    ``report_drawing`` (processes the command forks: the report's figures) and ``other``.
    CPU seconds hardly depend on what else the machine runs, unlike wall time, so on a
    shared machine they say where the study's work goes. Empty on a system without /proc."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    seen: dict[int, tuple[int, float, str]] = {}  # pid -> (parent pid, CPU s, cmdline)
    if Path("/proc/self/stat").exists():
        while proc.poll() is None:
            tree = {proc.pid}
            stats = {int(d): s for d in os.listdir("/proc")
                     if d.isdigit() and (s := _proc_stat(int(d))) is not None}
            grew = True
            while grew:
                grew = False
                for pid, (ppid, _) in stats.items():
                    if ppid in tree and pid not in tree:
                        tree.add(pid)
                        grew = True
            for pid in tree:
                if pid in stats:
                    line = seen[pid][2] if pid in seen else _cmdline(pid)
                    seen[pid] = (stats[pid][0], stats[pid][1], line)
            time.sleep(CPU_SAMPLE_S)
    stdout, stderr = proc.communicate()
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"study_speed: {' '.join(cmd[:4])} failed:\n{stderr[-2000:]}")
    roles = dict.fromkeys(("parent", "fork_server", "workers", "report_drawing", "other"), 0.0)
    # the server is the command's child; its forks (the workers) share its command line
    servers = {pid for pid, (ppid, _, line) in seen.items()
               if "forkserver" in line and ppid == proc.pid}
    root_line = seen.get(proc.pid, (0, 0.0, ""))[2]
    for pid, (ppid, cpu, line) in seen.items():
        if pid == proc.pid:
            role = "parent"
        elif pid in servers:
            role = "fork_server"
        elif ppid in servers:
            role = "workers"
        elif ppid == proc.pid and line == root_line:  # a fork of the command itself
            role = "report_drawing"
        else:
            role = "other"
        roles[role] += cpu
    return wall, roles


def main() -> None:
    global SEEDS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path)
    parser.add_argument("--plain", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--bare-steps", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--seeds", type=int, default=SEEDS, help="seeds per variant (5)")
    args = parser.parse_args()
    SEEDS = args.seeds
    if args.plain:
        plain(args.plain)
        return
    if args.bare_steps:
        bare_steps()
        return
    runs = SEEDS * len(ACTIVATIONS) * len(DATASETS)
    tmp = Path(tempfile.mkdtemp(prefix="ablab-speed-"))
    env = dict(os.environ)
    try:
        load = os.getloadavg()[0]
        (tmp / "plain").mkdir()
        plain_s = timed([sys.executable, __file__, "--plain", str(tmp / "plain"),
                         "--seeds", str(SEEDS)], env)
        ablab = [sys.executable, "-m", "ablab.cli"]
        launched = time.time()
        ablab_s, cpu = timed_cpu([*ablab, "run", "moons-circles-activations", "--seeds",
                                  str(SEEDS), "--out", str(tmp / "ablab"), "--workers", "2"], env)
        phases = study_phases(tmp / "ablab", launched, time.time())
        report_s = timed([*ablab, "report", str(tmp / "ablab")], env)
        import_s = timed([sys.executable, "-c", "import ablab"], env)
        floor = json.loads(subprocess.run(
            [sys.executable, __file__, "--bare-steps"], capture_output=True, text=True,
            env=env, check=True).stdout)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    # the floor with identical numbers: the imports, then every run's bare steps on 2 cores
    floor_s = floor["imports_s"] + runs * floor["run_steps_s"] / 2
    # the same floor in CPU seconds: one process's imports, then every run's bare steps
    floor_cpu_s = floor["imports_s"] + runs * floor["run_steps_s"]
    peak = peak_gflops()
    bound_s = study_flops() / (peak * 1e9 * 2)
    figures = {
        "runs": runs,
        "plain_s": round(plain_s, 1),
        "ablab_s": round(ablab_s, 1),
        "plain_per_run_s": round(plain_s / runs, 3),
        "ablab_per_run_s": round(ablab_s / runs, 3),
        "speedup_per_run": round(plain_s / ablab_s, 2),
        "ablab_report_s": round(report_s, 2),
        "import_ablab_s": round(import_s, 2),
        "peak_gflops_per_core": round(peak, 1),
        "arithmetic_bound_s": round(bound_s, 2),
        "share_of_bound": round(bound_s / ablab_s, 3),
        "load_before": round(load, 2),
        **{k: round(v, 2) for k, v in phases.items()},
        "floor_imports_s": round(floor["imports_s"], 2),
        "floor_run_steps_s": round(floor["run_steps_s"], 3),
        "floor_s": round(floor_s, 1),
        "ratio_to_floor": round(ablab_s / floor_s, 2),
        **{f"cpu_{k}_s": round(v, 2) for k, v in cpu.items()},
        "cpu_total_s": round(sum(cpu.values()), 1),
        "floor_cpu_s": round(floor_cpu_s, 1),
        "cpu_ratio_to_floor": round(sum(cpu.values()) / floor_cpu_s, 2) if cpu["parent"] else None,
    }
    print(
        f"plain PyTorch script: {plain_s:.1f} s ({plain_s / runs:.2f} s/run); "
        f"ablab run (report included): {ablab_s:.1f} s ({ablab_s / runs:.2f} s/run); "
        f"ablab {plain_s / ablab_s:.2f}x faster per run\n"
        f"ablab report alone: {report_s:.2f} s; python -c 'import ablab': {import_s:.2f} s\n"
        f"arithmetic bound at {peak:.1f} GFLOP/s per core on 2 cores: {bound_s:.1f} s = "
        f"{100 * bound_s / ablab_s:.0f} % of ablab's wall time (load avg before: {load:.2f})\n"
        f"ablab's wall time: start-up {phases['startup_s']:.1f} s (until the first run "
        f"starts), training {phases['training_s']:.1f} s ({runs} runs, "
        f"{phases['run_seconds_sum'] / runs:.2f} s each), tables + report + exit "
        f"{phases['report_and_exit_s']:.1f} s\n"
        f"floor with the same numbers: imports {floor['imports_s']:.1f} s + {runs} runs x "
        f"300 bare steps ({floor['run_steps_s']:.2f} s each) on 2 cores = {floor_s:.1f} s; "
        f"ablab's wall time is {ablab_s / floor_s:.2f}x the floor"
    )
    if cpu["parent"]:
        print(
            f"ablab's CPU time: {sum(cpu.values()):.1f} s = parent {cpu['parent']:.1f} + fork "
            f"server {cpu['fork_server']:.1f} + workers {cpu['workers']:.1f} "
            f"({cpu['workers'] / runs:.2f} s a run) + report drawing "
            f"{cpu['report_drawing']:.1f} + other {cpu['other']:.1f}; the floor's: "
            f"{floor_cpu_s:.1f} s (imports + {runs} x bare steps): "
            f"{sum(cpu.values()) / floor_cpu_s:.2f}x"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
