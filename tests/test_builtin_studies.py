"""Every built-in study runs end to end in a reduced form, on the data available here
(CIFAR-10 studies on a tiny fixture in the official format), report included."""

import pytest
from fixtures_data import require_dataset, write_cifar10

from ablab.runner import run_study
from ablab.study import builtin_studies, load_study

REDUCED = ["epochs=1", "dataset.subset=120", "dataset.eval_subset=300"]


@pytest.fixture
def cifar_fixture(tmp_path, monkeypatch):
    root = tmp_path / "data"
    write_cifar10(root, n_per_batch=40, n_test=40)
    monkeypatch.setenv("ABLAB_DATA", str(root))
    monkeypatch.setenv("ABLAB_DOWNLOAD", "0")
    return root


#: every built-in study runs end to end in the slow suite (make test-all); the quick one
#: in make test too
QUICK = {"moons-circles-activations"}


@pytest.mark.parametrize("name", [
    n if n in QUICK else pytest.param(n, marks=pytest.mark.slow)
    for n in sorted(builtin_studies())
])
def test_builtin_study_runs_reduced(name, tmp_path, cifar_fixture):
    study = load_study(name, seeds=1, sets=REDUCED)
    for dataset in sorted({r.config.dataset.name for r in study.runs}):
        require_dataset(dataset)  # cifar10: the fixture; fashion_mnist: the real files
    out = tmp_path / name
    if study.config.tune is not None:  # a tuned study: 2 trials per variant, then evaluated
        from ablab.tune import run_tuned

        study.config.tune = study.config.tune.model_copy(update={"trials": 2})
        outcome, _ = run_tuned(study, out, workers=2, threads=1)
    else:
        outcome = run_study(study, out, workers=2, threads=1)
    assert outcome.counts["failed"] == 0, outcome.failures
    assert outcome.counts["done"] + outcome.counts["diverged"] == len(study.runs)
    html = (out / "report.html").read_text()
    assert study.name in html
    assert (out / "report.md").exists() and (out / "summary.csv").exists()
