"""Scaling benchmark (#22): does a study's cost per run stay flat as the study grows?

The same trivial recipe (the built-in moons-circles-activations study, 6 variants, at
``--epochs`` epochs, 5 by default) at 300, 1,000 and 3,000 runs (50, 167, 500 seeds), each
in a fresh process on 2 workers x 1 thread. For each size it prints:

- wall time of the study (report left out) and per run;
- workers' busy share: the runs' own seconds (from the index) / (wall x workers): how
  much of the study's wall time the workers spent inside runs;
- the coordinator's own CPU time per run (user + system, its start-up included);
- the report's time (``write_report`` alone, analysis included, after the study, in a
  fresh process), its CPU time (that process's and its figure workers', user + system:
  much less sensitive than wall time to other load on the machine) and that process's
  peak memory;
- the coordinator's peak memory (ru_maxrss of the coordinator process, the report left
  out) and the directory's size;
- growth ratios against the smallest size (the #22 targets: per run <= 1.3x, report
  <= 2x, memory <= 1.5x at 3,000 runs vs 300).

    python benchmarks/scaling.py                  # 300, 1000, 3000 runs
    python benchmarks/scaling.py --sizes 300 1000 --json benchmarks/results/scaling.json
    python benchmarks/scaling.py --sizes 300 3000 --keep /tmp/scaling   # studies kept

``--keep DIR`` builds each size's study in ``DIR/N`` and keeps it with its figures
(``DIR/N.json``); run again, a size already built there is not trained again: only its
report is measured again (its figures drawn afresh), the study's own figures reused.

The machine's load is printed with the table (``os.getloadavg``): figures taken on a
shared machine are only comparable with each other.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STUDY = "moons-circles-activations"
VARIANTS = 6


def one(n_runs: int, out: Path, epochs: int, workers: int) -> dict:
    """Run one size in this process; return its figures."""
    from ablab.runner import run_study
    from ablab.study import load_study

    seeds = max(1, round(n_runs / VARIANTS))
    study = load_study(STUDY, seeds=seeds, sets=[f"epochs={epochs}"])
    start = time.perf_counter()
    outcome = run_study(study, out, workers=workers, threads=1, report=False)
    wall = time.perf_counter() - start
    me = resource.getrusage(resource.RUSAGE_SELF)
    peak_mb = me.ru_maxrss / 1024
    # the workers' share of the wall time spent in runs (each run's own seconds, from the
    # index): the workers are the fork server's children, so RUSAGE_CHILDREN misses them
    import sqlite3

    with sqlite3.connect(out / "index.sqlite") as db:
        run_seconds = db.execute(
            "SELECT COALESCE(SUM(seconds), 0) FROM runs WHERE status='done'"
        ).fetchone()[0]
    busy = run_seconds / (wall * outcome.workers)
    report = measure_report(out)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return {
        "runs": len(study.runs),
        "done": outcome.counts.get("done", 0),
        "wall_s": round(wall, 2),
        "per_run_s": round(wall / len(study.runs), 4),
        # the coordinator's own CPU per run (import and planning included): what #22 is
        # about, and much less sensitive to other load on the machine than wall time
        "coordinator_cpu_ms_per_run": round(
            1000 * (me.ru_utime + me.ru_stime) / len(study.runs), 1
        ),
        "workers_busy": round(busy, 3),
        "report_s": report["report_s"],
        "report_cpu_s": report["report_cpu_s"],
        "report_peak_mb": report["peak_mb"],
        "peak_mb": round(peak_mb, 1),
        "dir_mb": round(size / 2**20, 1),
        "workers": outcome.workers,
    }


def report_only(out: Path) -> dict:
    """``write_report`` of a finished study directory in this (fresh) process: its time
    and this process's peak memory (the analysis streams the records: it should not grow
    with the study)."""
    from ablab.report import write_report
    from ablab.store import StudyStore

    start = time.perf_counter()
    cpu_start = _cpu_s()
    with StudyStore.existing(out) as store:
        write_report(store)
    return {
        "report_s": round(time.perf_counter() - start, 2),
        "report_cpu_s": round(_cpu_s() - cpu_start, 2),
        "peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def _cpu_s() -> float:
    """CPU seconds (user + system) of this process and of its children that ended (the
    figure workers)."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


def measure_report(out: Path) -> dict:
    """The report of the finished study in ``out``, in a fresh process, as after the
    study: no report or figures there yet (a kept study's are removed first)."""
    shutil.rmtree(out / "figures", ignore_errors=True)
    for name in ("report.html", "report.md"):
        (out / name).unlink(missing_ok=True)
    proc = subprocess.run(
        [sys.executable, __file__, "--report", str(out)],
        capture_output=True, text=True, check=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[300, 1000, 3000])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--keep", type=Path, help="build the studies in DIR/N, keep and reuse "
                        "them (only the report is measured again)")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--report", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.report:
        print(json.dumps(report_only(args.report)))
        return
    if args.one:
        print(json.dumps(one(args.one, args.out, args.epochs, args.workers)))
        return
    rows = []
    tmp = args.keep or Path(tempfile.mkdtemp(prefix="ablab-scaling-"))
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        for n in args.sizes:
            load = os.getloadavg()[0]
            kept = tmp / f"{n}.json"
            if args.keep and kept.is_file() and (tmp / str(n)).is_dir():
                row = json.loads(kept.read_text())  # the study's figures as built
                report = measure_report(tmp / str(n))
                row.update(report_s=report["report_s"], report_cpu_s=report["report_cpu_s"],
                           report_peak_mb=report["peak_mb"], reused=True)
            else:
                shutil.rmtree(tmp / str(n), ignore_errors=True)
                proc = subprocess.run(
                    [sys.executable, __file__, "--one", str(n), "--out", str(tmp / str(n)),
                     "--epochs", str(args.epochs), "--workers", str(args.workers)],
                    capture_output=True, text=True, check=False,
                )
                if proc.returncode != 0:
                    sys.exit(f"scaling: {n} runs failed:\n{proc.stderr[-2000:]}")
                row = json.loads(proc.stdout.strip().splitlines()[-1])
                row["load_before"] = round(load, 2)
                if args.keep:
                    kept.write_text(json.dumps(row) + "\n")
                else:
                    shutil.rmtree(tmp / str(n), ignore_errors=True)
            row["report_load_before"] = round(load, 2)
            rows.append(row)
            print(_line(row, rows[0]), flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    print(_table(rows))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"epochs": args.epochs, "rows": rows}, indent=2) + "\n")


def _line(row: dict, base: dict) -> str:
    return (
        f"{row['runs']:>5} runs: {row['wall_s']:.1f} s ({row['per_run_s']:.3f} s/run, "
        f"x{row['per_run_s'] / base['per_run_s']:.2f}), coordinator CPU "
        f"{row.get('coordinator_cpu_ms_per_run', float('nan')):.1f} ms/run, workers busy "
        f"{100 * row['workers_busy']:.0f} %, report {row['report_s']:.1f} s "
        f"(x{row['report_s'] / base['report_s']:.2f}; CPU {_report_cpu(row, base)}), "
        f"report peak "
        f"{row.get('report_peak_mb', float('nan')):.0f} MB, peak {row['peak_mb']:.0f} MB "
        f"(x{row['peak_mb'] / base['peak_mb']:.2f}), dir {row['dir_mb']:.0f} MB, "
        f"load {row['load_before']}"
    )


def _report_cpu(row: dict, base: dict) -> str:
    """``12.7 s (x1.54)``: the report's CPU time and its growth, where measured."""
    if "report_cpu_s" not in row or not base.get("report_cpu_s"):
        return "not measured"
    return f"{row['report_cpu_s']:.1f} s (x{row['report_cpu_s'] / base['report_cpu_s']:.2f})"


def _table(rows: list[dict]) -> str:
    base = rows[0]
    lines = [
        "| runs | wall time | per run (growth) | coordinator CPU per run | workers busy "
        "| report (growth) | report CPU (growth) | report peak memory (growth) "
        "| coordinator peak memory (growth) | directory | load avg before |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['runs']:,} | {r['wall_s']:.1f} s | {r['per_run_s']:.3f} s "
            f"(x{r['per_run_s'] / base['per_run_s']:.2f}) "
            f"| {r.get('coordinator_cpu_ms_per_run', float('nan')):.1f} ms "
            f"| {100 * r['workers_busy']:.0f} % "
            f"| {r['report_s']:.1f} s (x{r['report_s'] / base['report_s']:.2f}) "
            f"| {_report_cpu(r, base)} "
            f"| {r.get('report_peak_mb', float('nan')):.0f} MB "
            f"(x{r.get('report_peak_mb', float('nan')) / base.get('report_peak_mb', 1):.2f}) "
            f"| {r['peak_mb']:.0f} MB (x{r['peak_mb'] / base['peak_mb']:.2f}) "
            f"| {r['dir_mb']:.0f} MB | {r['load_before']} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
