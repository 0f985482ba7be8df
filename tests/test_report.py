"""The report on a small real study: both files, self-contained HTML, escaping, figures,
and a headless Chromium render."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import moons_study

from ablab.report import FIGURES, write_report
from ablab.runner import run_study
from ablab.store import StudyStore
from ablab.study import load_study

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists()
                                         else None)

PROBES = ('probes = ["dead_units", "activations", "gradients", "weights", '
          '{ name = "boundary", grid = 40 }]\n')


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("report")
    path = moons_study(root, "tiny-report", base=PROBES,
                       description="A tiny study <script>alert('x')</script> & friends")
    out = root / "out"
    run_study(load_study(path), out, workers=1, report=False)
    return out


@pytest.fixture(scope="module")
def report(study_dir):
    with StudyStore.existing(study_dir) as store:
        return write_report(store, svg=True)


def test_write_report_writes_both_files(report, study_dir):
    assert report == {"html": study_dir / "report.html", "markdown": study_dir / "report.md"}
    assert report["html"].stat().st_size > 10_000 and report["markdown"].exists()


def test_html_is_self_contained(report):
    html = report["html"].read_text()
    assert "http://" not in html and "https://" not in html
    assert "<script" not in html.lower()
    assert "default-src 'none'; img-src data:" in html
    images = re.findall(r"<img [^>]*src=\"([^\"]*)\"", html)
    assert images and all(src.startswith("data:image/png;base64,") for src in images)
    for src in images:  # each is a real PNG
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert not re.search(r"(src|href)=\"(?!data:|#)", html)  # nothing but data and anchors


def test_study_text_is_escaped_and_shown(report):
    html = report["html"].read_text()
    assert "&lt;script&gt;alert(" in html and "&amp; friends" in html
    assert 'name = &#34;tiny-report&#34;' in html or "name = &quot;tiny-report&quot;" in html
    md = report["markdown"].read_text()
    prose, _, study_file = md.partition("```toml")
    assert "<script" not in prose and "&lt;script>" in prose
    assert "&lt;" not in prose.replace("&lt;script>", "").replace("&lt;/script>", "")
    assert "<script>alert('x')</script>" in study_file  # the exact file, inside a code fence


def test_report_has_verdicts_summary_and_every_figure(report, study_dir):
    html = report["html"].read_text()
    assert "4 of 4 runs done" in html
    assert "activation=relu vs activation=tanh" in html or "beats" in html
    assert "fewer than 3 finished seeds" in html  # the few-seeds warning
    assert 'id="methods"' in html and "Holm (1979)" in html  # the methods section
    # one factor: no interactions; no [tune]: no sensitivity figure
    expected = {spec.name for spec in FIGURES} - {"interactions", "tuning_sensitivity"}
    written = {p.stem for p in (study_dir / "figures").glob("*.png")}
    assert written == expected
    assert {p.stem for p in (study_dir / "figures").glob("*.svg")} == expected
    assert html.count("<img ") == len(expected)


def test_markdown_references_existing_figures(report, study_dir):
    md = report["markdown"].read_text()
    refs = re.findall(r"\]\((figures/[^)]+)\)", md)
    assert any(r.endswith(".png") for r in refs) and any(r.endswith(".svg") for r in refs)
    assert all((study_dir / r).is_file() for r in refs)
    assert "## Verdicts" in md and "```toml" in md


def test_svg_only_when_asked(report, study_dir, tmp_path):
    """Without ``svg`` no SVG is written, none is left from an older report, the
    Markdown links none, and the PNGs are the ones an SVG report wrote."""
    copy = tmp_path / "copy"
    shutil.copytree(study_dir, copy)
    assert list((copy / "figures").glob("*.svg"))
    with StudyStore.existing(copy) as store:
        paths = write_report(store)
    assert not list((copy / "figures").glob("*.svg"))
    md = paths["markdown"].read_text()
    assert ".svg" not in md and "](figures/final_metrics.png)" in md
    for png in (copy / "figures").glob("*.png"):
        assert png.read_bytes() == (study_dir / "figures" / png.name).read_bytes()
    html = paths["html"].read_text()
    assert html == report["html"].read_text()  # the HTML embeds the same PNGs, once each


def test_partial_study_says_what_is_missing(study_dir, tmp_path):
    partial = tmp_path / "partial"
    shutil.copytree(study_dir, partial, ignore=shutil.ignore_patterns("figures", "report.*"))
    with StudyStore.existing(partial) as store:
        rid = store.rows()[-1]["run_id"]
        store.db.execute("UPDATE runs SET status='pending', final=NULL WHERE run_id=?", (rid,))
        (partial / "runs" / f"{rid}.json").unlink()
        paths = write_report(store)
    html = paths["html"].read_text()
    assert "3 of 4 runs done; 1 pending" in html
    assert "1 of 2 runs done, 1 pending" in html


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
def test_chromium_renders_report_offline(report, tmp_path):
    args = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
        "--enable-logging=stderr", "--v=0",
    ]
    url = report["html"].resolve().as_uri()
    dom = subprocess.run(
        [*args, "--dump-dom", url], capture_output=True, text=True, timeout=120
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "Verdicts" in dom.stdout and "4 of 4 runs done" in dom.stdout
    html = report["html"].read_text()
    assert dom.stdout.count("<img ") == html.count("<img ") > 0
    # Nothing but the file itself and data URIs was requested (CSP also forbids it).
    requested = re.findall(r"(https?://[^\s\"']+)", dom.stderr)
    assert requested == [], requested
    assert "Refused to load" not in dom.stderr and "Content Security Policy" not in dom.stderr
    shot = tmp_path / "shot.png"
    subprocess.run(
        [*args, f"--screenshot={shot}", "--window-size=1280,2000", url],
        capture_output=True, timeout=120, check=True,
    )
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_renders_for_hand_built_study_without_records(tmp_path):
    """No factors, no records, a diverged and a pending run: every figure is skipped or
    drawn, and both templates render."""
    from ablab.analysis import analyze_runs
    from ablab.report import render_html, render_markdown, report_context
    from ablab.report.writer import render_figures

    def row(seed, status, acc=None):
        final = {"test_accuracy": acc, "test_cross_entropy": 0.3, "at_chance": False}
        return {
            "run_id": f"r{seed}", "variant_id": "v", "variant_label": "", "variant": {},
            "seed": seed, "config": {"dataset": {"name": "moons"}}, "status": status,
            "final": final if status == "done" else None, "error": None,
            "diverged_epoch": 2 if status == "diverged" else None,
        }

    rows = [row(0, "done", 0.9), row(1, "done", 0.8), row(2, "diverged"), row(3, "pending")]
    a = analyze_runs({"name": "solo", "description": "<b>x</b>"}, rows, {}, "name = 'solo'")
    figures = render_figures(a, tmp_path / "figures")
    assert [f["name"] for f in figures] == ["final_metrics"]
    context = report_context(a, figures)
    html = render_html(context)
    assert "2 of 4 runs done; 1 pending; 1 diverged" in html and "&lt;b&gt;x" in html
    assert "The base recipe: 1 of 4 runs diverged (at epoch 2)" in html
    assert "figures/final_metrics.png" in render_markdown(context)


def test_summary_csv_is_the_reports_summary_table(study_dir):
    import pandas as pd

    from ablab.analysis import analyze
    from ablab.report import write_tables

    with StudyStore.existing(study_dir) as store:
        paths = write_tables(store)
        a = analyze(store)
    csv = pd.read_csv(paths["summary"])
    pd.testing.assert_frame_equal(csv, a.summary, check_dtype=False)
    assert list(csv["variant"]) == [v.label for v in a.variants]
    assert len(pd.read_csv(paths["results"])) == len(a.runs) == 4


#: Reports each box's page position once the page has laid out (run on a copy of the
#: report without its no-script policy; the report itself carries no script).
_MEASURE = """<script>
window.addEventListener("load", () => {
  const box = (sel) => { const e = document.querySelector(sel);
    return e ? Math.round(e.getBoundingClientRect().bottom) : -1; };
  document.body.setAttribute("data-bottoms", JSON.stringify({
    headline: box(".headline"), table: box("table.verdict-table"),
    decided: box("ul.verdicts.decided li"), undecided: box("ul.verdicts li.tie"),
    height: window.innerHeight}));
});
</script>"""


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
def test_the_first_screen_shows_the_headline_and_the_decided_verdicts(tmp_path):
    """Opened at 1300 x 900 in Chromium, the report's first screen holds the headline, the
    verdict table and the first decided verdict; undecided ones come later."""
    import json

    import numpy as np
    import pandas as pd

    import ablab

    rng = np.random.default_rng(0)
    rows = [{"width": w, "optimizer": o, "seed": s,
             "score": 0.7 + (0.05 if w == 64 else 0.0) + rng.normal(0, 0.01)}
            for w in (8, 64) for o in ("sgd", "adam") for s in range(8)]
    out = tmp_path / "out"
    ablab.analyze(pd.DataFrame(rows), factors=["width", "optimizer"], metric="score",
                  seed="seed", out=out)
    html = (out / "report.html").read_text()
    html = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", html)
    page = tmp_path / "measured.html"
    page.write_text(html.replace("</body>", _MEASURE + "</body>"))
    dom = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1300,900",
         "--virtual-time-budget=5000", "--dump-dom", page.resolve().as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    found = re.search(r'data-bottoms="([^"]*)"', dom.stdout)
    assert found, dom.stdout[:2000]
    bottoms = json.loads(found.group(1).replace("&quot;", '"'))
    # 900 px: the height of Chromium's 1300 x 900 screenshot (--dump-dom's own window
    # may report a smaller innerHeight; the boxes' positions do not depend on it)
    for box in ("headline", "table", "decided"):
        assert 0 < bottoms[box] <= 900, (box, bottoms)
    assert bottoms["undecided"] == -1 or bottoms["undecided"] > bottoms["decided"], bottoms
