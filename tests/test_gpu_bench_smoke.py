"""benchmarks/gpu_study.py (#33) runs end to end in its CPU smoke mode, and says in one
line that it measures nothing without a CUDA device."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_study.py"


def _run(*args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=ROOT)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_without_cuda_it_says_so_and_stops(tmp_path):
    proc = _run("--json", str(tmp_path / "r.json"), timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines() == [
        "gpu_study: no CUDA device here, nothing measured; run it on a GPU machine, or "
        "with --smoke for a CPU check of the script"]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "r.json").exists()


@pytest.mark.slow  # two small studies with their reports: about 1-2 minutes on 2 cores
def test_smoke_mode_runs_every_section(tmp_path):
    out = tmp_path / "gpu_study.json"
    proc = _run("--smoke", "--json", str(out), "--workdir", str(tmp_path / "work"),
                "--workers", "2")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for line in ("dense matmul peak", "idiomatic loop", "ablab per-run",
                 "ablab batched program (source002)", "operations per training step (fashion_mlp",
                 "ablab batched study "
                 "fashion-cnn-losses-optimizers: 18 runs", "ablab batched study "
                 "fashion-digits-optimizers: 9 runs", "CPU path CI", "wrote"):
        assert line in proc.stdout, line
    report = json.loads(out.read_text())
    assert report["device"] == "cpu (smoke)" and report["smoke"] is True
    for key in ("source002_wall_s", "fashion_mlp_wall_s", "share_of_peak", "peak_tflops",
                "idiomatic_loop", "per_run_path", "batched_program", "ops_per_step"):
        assert report[key] is not None, key
    assert report["source002"]["counts"]["done"] == 18
    assert report["fashion_mlp"]["counts"]["done"] == 9
    assert report["batched_program"]["fashion_mlp"]["batched"] is True
    # every reference figure of the Fashion-MNIST half is set beside the CPU path's CI
    accs = report["fashion_mlp"]["accuracies"]
    assert len(accs) == 9 and all(a["cpu_ci"] is not None for a in accs)
    assert report["targets_met"] == {}  # a smoke run measures nothing
