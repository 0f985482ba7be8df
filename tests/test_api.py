"""The Python API a notebook uses: load_study → study.run → StudyResults, open_results,
train_run, and the README's notebook example run as a script."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import moons_study
from matplotlib.figure import Figure

import ablab
from ablab.errors import UserError
from ablab.report import write_tables
from ablab.store import StudyStore
from ablab.train import RunResult

#: The file whose ```python blocks make the notebook example (moves to README.md).
EXAMPLE_DOC = Path(__file__).resolve().parents[1] / "README.md"

@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """A finished study (trained in this process: no workers, to stay quick), opened."""
    root = tmp_path_factory.mktemp("api")
    study = ablab.load_study(moons_study(root, "api-study", description="a <b>tiny</b> study"))
    with StudyStore(root / "out") as store, store.locked():
        store.sync_plan(study)
        for planned in study.runs:
            store.record_result(ablab.train_run(planned.config).to_dict())
        write_tables(store)
    return ablab.open_results(root / "out")


def test_results_tables_and_sentences(results):
    assert isinstance(results.runs, pd.DataFrame) and len(results.runs) == 4
    assert isinstance(results.summary, pd.DataFrame) and len(results.summary) == 2
    assert {"run_id", "activation", "seed", "status", "test_accuracy"} <= set(results.runs)
    assert "test_accuracy_mean" in results.summary
    assert results.counts["done"] == 4 and results.complete
    assert results.verdicts and all(isinstance(v, str) for v in results.verdicts)
    assert all(isinstance(w, str) for w in results.warnings)
    rid = results.runs["run_id"][0]
    history = results.history(rid[:5])  # a unique prefix is enough
    assert list(history["epoch"]) == [1, 2, 3]
    assert {"train_loss", "val_accuracy", "lr"} <= set(history)
    with pytest.raises(UserError, match="not a run of this study"):
        results.history("nope")


def test_figures_and_report(results):
    assert "learning_curves" in results.figure_names()
    assert isinstance(results.figure("learning_curves"), Figure)
    assert isinstance(results.figure("fig_final_metrics"), Figure)
    assert results.figure("dead_units") is None  # no probe recorded: nothing to draw
    with pytest.raises(UserError, match="allowed: final_metrics"):
        results.figure("nope")
    paths = results.report()
    assert paths["html"].exists() and paths["markdown"].exists() and paths["summary"].exists()


def test_repr_html_shows_summary_and_escapes(results):
    page = results._repr_html_()
    assert "<table" in page and "relu" in page and "Verdicts" in page
    results.analysis.verdicts.append("<script>alert('x')</script> & more")
    try:
        page = results._repr_html_()
    finally:
        results.analysis.verdicts.pop()
    assert "<script>" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; more" in page
    assert "api-study" in repr(results)


def test_open_results_of_a_wrong_dir_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="not a study directory"):
        ablab.open_results(tmp_path)


def test_train_run(tmp_path):
    import ablab.train as train_pkg
    from ablab.train import fit

    assert train_pkg is ablab.train and train_pkg.fit is fit  # still the subpackage
    data = {"epochs": 2, "device": "cpu", "dataset": {"name": "moons", "n_samples": 200},
            "model": {"name": "mlp", "hidden": [8]}, "optimizer": "adam"}
    result = ablab.train_run(data, epochs=1, optimizer__lr=0.05)
    assert isinstance(result, RunResult) and len(result.history) == 1
    assert result.config["optimizer"]["lr"] == 0.05
    run = tmp_path / "run.toml"
    run.write_text('epochs = 1\ndevice = "cpu"\ndataset = "moons"\nmodel = { name = "mlp" }\n')
    result = ablab.train_run(run, sets=["model.hidden=[4]"])
    assert result.config["model"]["hidden"] == [4]
    with pytest.raises(UserError, match="epochs"):
        ablab.train_run(data, epochs=0)


def test_progress_object_receives_events(tmp_path):
    from ablab.ui import study_progress

    class Recorder:
        def __init__(self):
            self.events = []

        def start(self, total, already_done, workers, threads):
            self.events.append(("start", total, already_done))

        def on_event(self, event):
            self.events.append(event.kind)

        def stop(self):
            self.events.append("stop")

    study = ablab.load_study(moons_study(tmp_path, "api-study", seeds=(0,)), sets=["epochs=1"])
    recorder = Recorder()
    results = study.run(tmp_path / "out", workers=1, progress=recorder, report=False)
    assert results.outcome.exit_code == 0 and results.counts["done"] == 2
    assert recorder.events[0] == ("start", 2, 0) and recorder.events[-1] == "stop"
    assert recorder.events.count("done") == 2
    assert all(hasattr(study_progress("x"), m) for m in ("start", "on_event", "stop"))


@pytest.mark.slow
def test_notebook_example_runs_as_a_script(tmp_path):
    # the README's notebook section (its other sections write plugin and study files
    # first: tests/test_readme.py runs those)
    text = EXAMPLE_DOC.read_text()
    section = text[text.index("### In a notebook"):text.index("### Reference")]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert blocks, f"no python blocks in {EXAMPLE_DOC}'s notebook section"
    code = "\n".join(blocks)
    # ``python -c``: like a notebook, no __main__ file for spawned workers to re-run
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, ABLAB_DOWNLOAD="0"),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "12 of 12 runs done" in proc.stdout, proc.stdout[-2000:]
    assert (tmp_path / "out" / "moons-notebook" / "report.html").exists()


def test_study_and_run_result_reprs_are_one_short_line():
    import ablab

    study = ablab.load_study("moons-circles-activations")
    text = repr(study)
    assert "\n" not in text and len(text) < 200 and "18 runs" in text
    result = ablab.train_run({"epochs": 1, "dataset": "moons", "model": {"name": "mlp",
                              "hidden": [8]}}, device="cpu")
    text = repr(result)
    assert "\n" not in text and "done: 1 epochs" in text and len(text) < 120
