"""Command-line latency (#31): how long the commands that train nothing take to answer.

Each command runs in a fresh process (``python -m ablab.cli ...``, the interpreter this
script runs under), ``--repeat`` times (5 by default) after one unmeasured warm-up run
(so the files it reads are in the page cache for every measured one); printed per
command: the median and the fastest wall time, the median CPU time of the process (user +
system; much less sensitive than wall time to other load on the machine), and whether the
median meets the #31 target (<= 0.5 s, idle).

The commands: ``ablab --help``, ``ablab list studies``, ``ablab schema``,
``ablab status DIR`` (DIR: a study directory of 2 finished 1-epoch runs, made once
before the measurements; ``--dir`` gives another) and ``ablab run STUDY --dry-run``
(the built-in moons-circles-activations study, into a directory that does not exist).

    python benchmarks/cli_latency.py
    python benchmarks/cli_latency.py --repeat 3 --json benchmarks/results/cli_latency.json

The machine's load average before the measurements is printed with the table: figures
taken on a shared machine are only comparable with each other.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_S = 0.5
STUDY = "moons-circles-activations"
#: the study ``status DIR`` is measured on: 2 runs of 1 epoch on a small moons set
TINY_STUDY = """
name = "cli-latency"
description = "a study directory for `ablab status` to read"
seeds = [0]

[base]
epochs = 1
batch_size = 32
device = "cpu"
dataset = { name = "moons", n_samples = 200, noise = 0.25 }
model = { name = "mlp", hidden = [8] }
optimizer = { name = "adam", lr = 0.01 }

[[vary]]
"model.activation" = ["relu", "tanh"]
"""


def ablab() -> list[str]:
    return [sys.executable, "-m", "ablab.cli"]


def commands(study_dir: Path, dry_out: Path) -> dict[str, list[str]]:
    """Name shown → arguments after ``ablab``."""
    return {
        "ablab --help": ["--help"],
        "ablab list studies": ["list", "studies"],
        "ablab schema": ["schema"],
        "ablab status DIR": ["status", str(study_dir)],
        f"ablab run {STUDY} --dry-run": ["run", STUDY, "--out", str(dry_out), "--dry-run"],
    }


def make_study_dir(tmp: Path) -> Path:
    """A finished study directory of two 1-epoch runs (``ablab run``, report included)."""
    study = tmp / "cli-latency.toml"
    study.write_text(TINY_STUDY, encoding="utf-8")
    out = tmp / "status-dir"
    proc = subprocess.run([*ablab(), "run", str(study), "--out", str(out), "--workers", "1"],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.exit(f"cli_latency: making the study directory failed:\n{proc.stderr[-2000:]}")
    return out


def timed(args: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the child) of one ``ablab ARGS`` process; exits when
    it fails (a latency of a command that does not work means nothing)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run([*ablab(), *args], capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.exit(f"cli_latency: ablab {' '.join(args)} exited {proc.returncode}:\n"
                 f"{proc.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def measure(args: list[str], repeat: int) -> dict:
    timed(args)  # warm-up, not counted
    walls, cpus = zip(*(timed(args) for _ in range(repeat)), strict=True)
    median = statistics.median(walls)
    return {
        "median_s": round(median, 3),
        "min_s": round(min(walls), 3),
        "median_cpu_s": round(statistics.median(cpus), 3),
        "runs": repeat,
        "meets_target": median <= TARGET_S,
    }


def table(rows: dict[str, dict], load: float) -> str:
    lines = [
        f"| command | median wall (of {next(iter(rows.values()))['runs']}) | fastest "
        f"| median CPU | <= {TARGET_S} s |",
        "|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        lines.append(f"| `{name}` | {r['median_s']:.2f} s | {r['min_s']:.2f} s "
                     f"| {r['median_cpu_s']:.2f} s | {'yes' if r['meets_target'] else 'no'} |")
    lines.append(f"load average before: {load:.2f}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="measured runs per command (5)")
    parser.add_argument("--dir", type=Path, help="the study directory for `ablab status`")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat: give a number >= 1")
    tmp = Path(tempfile.mkdtemp(prefix="ablab-cli-latency-"))
    try:
        study_dir = args.dir or make_study_dir(tmp)
        load = os.getloadavg()[0]
        rows = {name: measure(cmd, args.repeat)
                for name, cmd in commands(study_dir, tmp / "dry-run").items()}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(table(rows, load))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(
            {"target_s": TARGET_S, "load_before": round(load, 2), "commands": rows},
            indent=2) + "\n")


if __name__ == "__main__":
    main()
