"""The one-way pipeline holds: import-linter's layers contract (pyproject.toml) passes,
and the same check fails when a layer is put below one it imports."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=120,
    )


def test_layers_contract_is_kept():
    proc = lint_imports(ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    # every contract pyproject.toml declares (ablab, ablab.store, ablab.study, ...) is kept
    contracts = (ROOT / "pyproject.toml").read_text().count("[[tool.importlinter.contracts]]")
    assert contracts >= 7 and f"{contracts} kept, 0 broken" in proc.stdout, proc.stdout
    for name in ("ablab layers", "cli:", "store:", "study:", "report figures:", "analysis"):
        assert name in proc.stdout, proc.stdout[-3000:]


def test_the_contract_catches_an_upward_import(tmp_path):
    text = (ROOT / "pyproject.toml").read_text()
    # Claim the runner sits below the results view: runner imports results, so broken.
    results = '    "results | ui | external",'
    without_runner = text.replace('    "runner",\n', "", 1)
    swapped = without_runner.replace(results, results + '\n    "runner",', 1)
    assert swapped != text
    (tmp_path / "pyproject.toml").write_text(swapped)
    proc = lint_imports(tmp_path)
    assert proc.returncode != 0 and "ablab.runner -> ablab.results" in proc.stdout, proc.stdout


def test_the_analysis_contract_catches_a_comparison_importing_the_sequential_design(tmp_path):
    """Inside ablab.analysis the order is one-way too: compare applies the group-sequential
    design (sequential), which decides comparisons (comparison); put compare below
    sequential and the contract breaks."""
    text = (ROOT / "pyproject.toml").read_text()
    layers = '    "compare",\n    "sequential",'
    swapped = text.replace(layers, '    "sequential",\n    "compare",')
    assert swapped != text
    (tmp_path / "pyproject.toml").write_text(swapped)
    proc = lint_imports(tmp_path)
    assert proc.returncode != 0, proc.stdout
    assert "ablab.analysis.compare -> ablab.analysis.sequential" in proc.stdout, proc.stdout
