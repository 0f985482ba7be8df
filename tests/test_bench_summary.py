"""``make bench``'s side-by-side summary (benchmarks/summary.py, #31): the floor, ablab's
wall and its ratio to the floor, the plain script, the command-line latencies and the
report's growth, each against its target, from the JSON files the benchmarks write."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "summary.py"

STUDY = {"runs": 30, "plain_s": 60.0, "ablab_s": 30.0, "floor_s": 24.0, "startup_s": 3.0,
         "training_s": 24.0, "report_and_exit_s": 3.0, "load_before": 0.5}
CLI = {"target_s": 0.5, "load_before": 0.2, "commands": {
    "ablab --help": {"median_s": 0.21, "min_s": 0.2, "median_cpu_s": 0.19, "runs": 5},
    "ablab schema": {"median_s": 0.75, "min_s": 0.7, "median_cpu_s": 0.7, "runs": 5},
}}
SCALING = {"epochs": 5, "rows": [
    {"runs": 300, "per_run_s": 0.1, "report_s": 3.0, "report_cpu_s": 4.0, "load_before": 0.1},
    {"runs": 3000, "per_run_s": 0.14, "report_s": 6.6, "report_cpu_s": 6.0,
     "load_before": 0.3},
]}


def _summary(folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), str(folder)], capture_output=True,
                          text=True, timeout=60)


def test_summary_sets_each_figure_beside_its_target(tmp_path):
    for name, data in (("study_speed", STUDY), ("cli_latency", CLI), ("scaling", SCALING)):
        (tmp_path / f"{name}.json").write_text(json.dumps(data))
    proc = _summary(tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "floor 24.0 s | ablab 30.0 s = 1.25x the floor (meets <= 1.3x)" in out
    assert "plain PyTorch script 60.0 s (2.00 s/run)" in out and "2.00x faster per run" in out
    help_line = next(line for line in out.splitlines() if "ablab --help" in line)
    schema_line = next(line for line in out.splitlines() if "ablab schema" in line)
    assert help_line.endswith("meets") and schema_line.endswith("MISSES")
    assert "1 of 2 within 0.5 s" in out
    assert "report 3.00 s at 300 runs -> 6.60 s at 3,000: x2.20 (MISSES <= 2.0x)" in out
    assert "report CPU 4.00 s -> 6.00 s: x1.50" in out
    assert "x1.40 (MISSES <= 1.3x)" in out  # per run 0.10 -> 0.14 s


def test_a_benchmark_that_did_not_run_is_said_to_be_missing(tmp_path):
    (tmp_path / "cli_latency.json").write_text(json.dumps(CLI))
    proc = _summary(tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert f"{tmp_path / 'study_speed.json'}: missing" in proc.stdout
    assert f"{tmp_path / 'scaling.json'}: missing" in proc.stdout
    assert _summary(tmp_path / "nothing-here").returncode == 1
