"""What the report's parts import: the runner writes results.csv and summary.csv at
the start of a study and while it runs, and ``ablab report`` of an unchanged study reuses
its figures; neither should pay for libraries it does not use (statsmodels, matplotlib,
and before any run has finished scipy.stats). Each check runs in a fresh process, where
``sys.modules`` shows what was imported; the outputs stay the same as the analysis'."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import moons_study

import ablab.analysis
import ablab.report
from ablab.analysis import analyze
from ablab.store import StudyStore
from ablab.study import load_study

TESTS = Path(__file__).parent
HEAVY = ("scipy.stats", "pandas", "statsmodels", "matplotlib", "torch", "sklearn")


def run_python(script: str, *args) -> dict:
    """``script`` in a fresh interpreter (this one's sys.path); the JSON it prints."""
    proc = subprocess.run(
        [sys.executable, "-c", f"import sys; sys.path[:0] = {sys.path!r}\n{script}",
         *map(str, args)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


LOADED = f"[m for m in {HEAVY!r} if m in sys.modules]"


def test_every_public_name_of_the_lazy_packages_resolves():
    for package in (ablab.analysis, ablab.report):
        assert package.__all__ and set(package.__all__) <= set(dir(package))
        for name in package.__all__:
            assert getattr(package, name) is not None, (package.__name__, name)
    assert ablab.analysis.stats.describe is ablab.analysis.describe  # submodules too
    try:
        ablab.report.no_such_name  # noqa: B018
    except AttributeError as exc:
        assert "no_such_name" in str(exc)
    else:
        raise AssertionError("an unknown name must raise AttributeError")


def test_writing_the_tables_imports_no_statsmodels_or_matplotlib(tmp_path):
    """``from ablab.analysis import history_metrics`` (the runner, per finished run)
    loads none of the heavy libraries; writing the tables of a study with no finished run
    yet (the runner's first write, before training) loads pandas only; the tables equal
    the analysis' own."""
    out = tmp_path / "out"
    with StudyStore(out) as store, store.locked():
        store.sync_plan(load_study(moons_study(tmp_path)))
    loaded = run_python(
        "import json\n"
        "from ablab.analysis import history_metrics\n"
        f"first = {LOADED}\n"
        "from ablab.report import write_tables\n"
        "from ablab.store import StudyStore\n"
        "with StudyStore.existing(sys.argv[1]) as store:\n"
        "    write_tables(store)\n"
        f"print(json.dumps([first, {LOADED}]))\n",
        out,
    )
    assert loaded == [[], ["pandas"]]
    with StudyStore.existing(out) as store:
        a = analyze(store)
    assert (out / "results.csv").read_text() == a.runs.to_csv(index=False)
    assert (out / "summary.csv").read_text() == a.summary.to_csv(index=False)
    assert len((out / "results.csv").read_text().splitlines()) == 1 + 4  # every run, pending


def report_of(root: Path) -> dict:
    """A report of a hand-built study with one figure to draw (and one with no data) in
    ``root``: whether matplotlib got imported, the figures' data URIs, the HTML's digest."""
    import hashlib
    import sqlite3

    from test_report_shortcuts import INFO, make_record, make_rows

    from ablab.analysis import analyze_runs
    from ablab.report import drawing, writer

    class Store:
        db = sqlite3.connect(root / "index.sqlite")

    Store.root = root
    Store.db.execute("CREATE TABLE IF NOT EXISTS runs (run_id, position, status)")
    rows = make_rows(seeds=2)
    records = {r["run_id"]: make_record(r["seed"], r["variant"]["activation"])
               for r in rows if r["status"] == "done"}
    a = analyze_runs(INFO, rows, records)
    cheap = ("learning_rate", "interactions")
    drawing.FIGURES = [f for f in drawing.FIGURES if f.name in cheap]
    figures = drawing.render_figures(a, root / "figures", key=drawing.figures_key(Store, False))
    html = writer.render_html(writer.report_context(a, figures))
    return {"matplotlib": "matplotlib" in sys.modules,
            "figures": [f["data_uri"] for f in figures],
            "html": hashlib.sha256(html.encode()).hexdigest()}


def test_a_report_whose_figures_are_kept_imports_no_matplotlib(tmp_path, monkeypatch):
    """A report drawn here (matplotlib at its file settings, as in a fresh process) is
    reused by a report of the same inputs in a new process, which does not import
    matplotlib and writes the same HTML with the same figures."""
    import matplotlib

    from ablab.report import drawing

    (tmp_path / "study.json").write_text("{}")
    monkeypatch.setattr(drawing, "FIGURES", drawing.FIGURES)  # report_of narrows them
    monkeypatch.setattr(drawing, "_figure_workers", lambda n: 1)
    with matplotlib.rc_context():
        matplotlib.rc_file_defaults()
        first = report_of(tmp_path)
    again = run_python(
        f"sys.path.insert(0, {str(TESTS)!r})\nimport json\n"
        "from pathlib import Path\nfrom test_report_imports import report_of\n"
        "print(json.dumps(report_of(Path(sys.argv[1]))))", tmp_path)
    assert not again["matplotlib"]
    assert len(first["figures"]) == 1
    assert again["figures"] == first["figures"] and again["html"] == first["html"]
