"""report.html (self-contained) and report.md (+ figures/) from a study directory.

    >>> from ablab.store import StudyStore                          # doctest: +SKIP
    >>> write_report(StudyStore.existing("out/moons"))               # doctest: +SKIP
    {'html': PosixPath('out/moons/report.html'), 'markdown': PosixPath('out/moons/report.md')}

The HTML carries every figure as a base64 data URI, its CSS inline, no script, and a
Content-Security-Policy that forbids any request, so it opens offline and leaks nothing.
Templates are jinja2 with autoescaping on: labels and descriptions from study files
cannot inject markup.
"""

from __future__ import annotations

import base64
import importlib.metadata
import math
import os
import re
from pathlib import Path
from typing import Any

import jinja2

from ablab.analysis import StudyAnalysis, analyze
from ablab.analysis.verdicts import MINUS, format_ci, format_diff, format_effect, format_p
from ablab.report.against_source import against_source
from ablab.report.figures import (
    FIGURES,
    figure_bytes,
    short_label,
    variant_colors,
    write_figure_files,
)
from ablab.report.variance_sources import variance_section

FIGURE_DIR = "figures"
METHOD_NOTE = (
    "Variants are compared on test accuracy and test softmax cross-entropy (the common "
    "yardsticks), never on each run's own training loss. Each comparison ends in one of "
    "three outcomes: A \"beats\" B (Holm-adjusted; the interval printed is the one at the "
    "Holm step's level, which decided), \"equivalent\" within the study's margin (two "
    "one-sided tests), or \"undecided\" (with the difference the seeds can detect and the "
    "seeds needed). The Methods section lists every procedure."
)


def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("ablab.report", "templates"),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default=False),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    env.filters["md"] = md_escape
    env.filters["mdtable"] = md_table
    return env


def md_escape(text: Any) -> str:
    """Text for Markdown that reads as written (``p < 0.001``, ``a & b``) yet cannot inject
    markup into a rendered write-up: only a ``<`` that could open a tag, comment or
    autolink (``<script``, ``</``, ``<!``, ``<?``) and an ``&`` that could start an entity
    become entities.

    >>> md_escape("p < 0.001 & n = 3; <script>alert(1)</script> &amp;")
    'p < 0.001 & n = 3; &lt;script>alert(1)&lt;/script> &amp;amp;'
    """
    text = re.sub(r"&(?=#?[A-Za-z0-9]+;)", "&amp;", str(text))
    return re.sub(r"<(?=[A-Za-z/!?])", "&lt;", text)


def md_table(table: dict[str, Any]) -> str:
    def cell(value: Any) -> str:
        return md_escape(value).replace("|", "\\|").replace("\n", " ")

    lines = [
        "| " + " | ".join(cell(h) for h in table["header"]) + " |",
        "|" + "|".join("---" for _ in table["header"]) + "|",
    ]
    lines += ["| " + " | ".join(cell(c) for c in row["cells"]) + " |" for row in table["rows"]]
    return "\n".join(lines)


# ---------------------------------------------------------------- formatting cells


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def _scaled(x: float, metric: str) -> str:
    from ablab.analysis.outcomes import outcome_of

    if not _finite(x):
        return "–"
    if metric.endswith("accuracy") or outcome_of(metric).percent:
        return f"{x * 100:.1f}".replace("-", MINUS)
    if metric == "convergence_epoch":
        return f"{x:.1f}"
    return f"{x:.3f}".replace("-", MINUS)


def _mean_std(row, metric: str) -> str:
    mean, std = row[f"{metric}_mean"], row[f"{metric}_std"]
    if not _finite(mean):
        return "–"
    if not _finite(std):
        return _scaled(mean, metric)
    return f"{_scaled(mean, metric)} ± {_scaled(std, metric)}"


def _interval(low, high, metric: str) -> str:
    if not (_finite(low) and _finite(high)):
        return "–"
    return f"[{_scaled(low, metric)}, {_scaled(high, metric)}]"


def summary_tables(a: StudyAnalysis) -> tuple[dict, dict]:
    """(main table: accuracy and cross-entropy with CIs; behaviour table)."""
    colors = variant_colors(a)
    shown = ["test_accuracy", "test_cross_entropy"]
    header = [
        "variant", "done / runs", "test acc. mean ± std", "95 % CI (t)", "95 % CI (bootstrap)",
        "test CE mean ± std", "95 % CI (t)", "95 % CI (bootstrap)",
        "diverged", "failed", "at chance", "pending",
    ]
    if a.primary != "test_accuracy" and f"{a.primary}_mean" in a.summary:
        spec = a.outcomes.primary
        shown = [a.primary]
        header[2:8] = [f"{spec.label} mean ± std", "95 % CI (t)", "95 % CI (bootstrap)"]
    rows = []
    behaviour_rows = []
    val_on_test = {
        v.label for v in a.variants
        if (v.config.get("dataset") or {}).get("validate_on") == "test"
    }
    for v, (_, s) in zip(a.variants, a.summary.iterrows(), strict=True):
        cells = [short_label(a, v), f"{int(s['done'])} / {int(s['runs'])}"]
        for metric in shown:
            cells += [
                _mean_std(s, metric),
                _interval(s[f"{metric}_ci_low"], s[f"{metric}_ci_high"], metric),
                _interval(s[f"{metric}_boot_low"], s[f"{metric}_boot_high"], metric),
            ]
        cells += [str(int(s[k])) for k in ("diverged", "failed", "at_chance", "pending")]
        bad = bool(s["diverged"] or s["failed"] or s["at_chance"])
        rows.append({"cells": cells, "color": colors[v.label], "bad": bad})
        best_val = _mean_std(s, "best_val_accuracy")
        if v.label in val_on_test and best_val != "–":
            best_val += " (test set!)"
        behaviour_rows.append(
            {
                "cells": [
                    short_label(a, v), best_val,
                    _mean_std(s, "convergence_epoch"), _mean_std(s, "stability"),
                    _mean_std(s, "overfit_gap"), _mean_std(s, "test_loss"),
                ],
                "color": colors[v.label],
            }
        )
    behaviour = {
        "header": [
            "variant", "best val. acc. (%)", "epochs to 95 % of final val. acc.",
            "val. acc. std, last 5 epochs (pp)", "final train − val. acc. (pp)",
            "test loss (own loss, not comparable across losses)",
        ],
        "rows": behaviour_rows,
    }
    return {"header": header, "rows": rows}, behaviour


def comparisons_table(a: StudyAnalysis) -> dict:
    header = ["factor", "within", "a vs b", "metric", "a − b", "95 % CI",
              "deciding CI (level)", "test", "p", "p (Holm)", "effect", "P(a better)", "n",
              "verdict"]
    rows = []
    for c in a.comparisons:
        r = c.result
        if c.significant:
            word = f"{c.winner} better"
        elif c.outcome == "equivalent":
            word = "equivalent"
        elif c.not_applicable:
            word = "not applicable"
        elif c.testable:
            word = "undecided"
        else:
            word = "no test"
        rows.append({"cells": [
            c.factor, c.stratum or "–", f"{c.level_a} vs {c.level_b}", c.spec.label,
            format_diff(r.diff, c.spec) if _finite(r.diff) else "–",
            format_ci(r.ci_low, r.ci_high, c.spec).removeprefix("95 % CI "),
            _deciding_ci(c), r.test, format_p(r.p), format_p(c.p_holm),
            format_effect(r.effect, r.effect_name) if c.testable else "–",
            f"{c.poi:.2f} [{c.poi_low:.2f}, {c.poi_high:.2f}]" if _finite(c.poi_low) else "–",
            f"{r.n_a} / {r.n_b}", word,
        ]})
    return {"header": header, "rows": rows}


def _deciding_ci(c) -> str:
    """The interval the verdict used: at the Holm step's level (and look), or for an
    equivalence the (1 − 2·level) TOST interval."""
    if c.equivalent:
        low, high, conf = c.equivalence_low, c.equivalence_high, 1 - 2 * c.equivalence_level
    else:
        low, high, conf = c.decision_low, c.decision_high, 1 - c.level
    if not (_finite(low) and _finite(high)):
        return "–"
    text = format_ci(low, high, c.spec).removeprefix("95 % CI ")
    return f"{text} ({conf * 100:.1f} %)"


def runs_table(a: StudyAnalysis) -> dict:
    header = ["run", *a.columns, "seed", "status", "test acc. (%)", "test CE", "test loss",
              "best val. acc. (%)", "epochs", "seconds", "at chance", "note"]
    rows = []
    for _, r in a.runs.iterrows():
        note = r.get("error") or (
            f"diverged at epoch {int(r['diverged_epoch'])}"
            if _finite(r.get("diverged_epoch")) else ""
        )
        rows.append({
            "cells": [
                r["run_id"], *[str(r[c]) for c in a.columns], str(r["seed"]), r["status"],
                _scaled(r["test_accuracy"], "test_accuracy"),
                _scaled(r["test_cross_entropy"], "test_loss"),
                _scaled(r["test_loss"], "test_loss"),
                _scaled(r["best_val_accuracy"], "test_accuracy"),
                str(int(r["epochs_run"])) if _finite(r["epochs_run"]) else "–",
                f"{r['seconds']:.1f}" if _finite(r["seconds"]) else "–",
                "yes" if r["at_chance"] is True else "",
                note or "",
            ],
            "bad": r["status"] in ("diverged", "failed") or r["at_chance"] is True,
        })
    return {"header": header, "rows": rows}


#: Verdicts in the report: decided ones first (as the terminal prints them).
_ORDER = {"beats": 0, "equivalent": 1, "undecided": 2, "untestable": 3, "not applicable": 4}


def _verdict_items(a: StudyAnalysis) -> list[dict[str, str]]:
    """The primary outcome's verdicts, decided ones first (plan order within each)."""
    items = []
    pairs = list(zip(a.comparisons_on(a.primary), a.verdicts, strict=True))
    pairs.sort(key=lambda pair: _ORDER[pair[0].outcome])
    for c, text in pairs:
        kind = "beats" if c.significant else ("tie" if c.testable else "untestable")
        items.append({"text": text, "kind": kind, "decided": c.decided})
    return items


def _verdict_word(c) -> str:
    if c.outcome == "beats":
        return "decided"
    if c.outcome == "equivalent":
        return "equivalent (identical)" if c.identical else "equivalent"
    return c.outcome if c.outcome == "not applicable" else "undecided"


def verdict_table(a: StudyAnalysis, metric: str | None = None) -> dict:
    """The compact verdict table: per comparison of ``metric`` (the primary outcome), its
    factor, context, which level wins, the difference with the interval that decided, the
    verdict, and the seeds per variant an undecided one would need; decided ones first."""
    metric = metric or a.primary
    header = ["factor", "context", "levels", "better", "difference (deciding CI)", "verdict",
              "seeds needed"]
    rows = []
    chosen = sorted(a.comparisons_on(metric), key=lambda c: _ORDER[c.outcome])
    for c in chosen:
        r = c.result
        diff = format_diff(r.diff, c.spec) if _finite(r.diff) else "–"
        ci = _deciding_ci(c)
        needed = (f"~{c.seeds_needed}" if c.seeds_needed is not None
                  else ("–" if c.decided or not c.testable else "many"))
        better = c.winner or ("neither" if c.outcome == "equivalent" else "–")
        rows.append({
            "cells": [c.factor, c.stratum or "–", f"{c.level_a} vs {c.level_b}", better,
                      f"{diff}, {ci}" if ci != "–" else diff, _verdict_word(c), needed],
            "decided": c.decided,
        })
    return {"header": header, "rows": rows}


def method_note(a: StudyAnalysis) -> str:
    """What the verdicts compare on, and the three outcomes a comparison can end in."""
    if a.primary == "test_accuracy":
        return METHOD_NOTE
    label = a.outcomes.primary.label if a.outcomes else a.primary
    return METHOD_NOTE.replace(
        "test accuracy and test softmax cross-entropy (the common yardsticks)",
        f"{label} (the study's declared outcome)",
    )


def _outcome_sections(a: StudyAnalysis) -> list[dict[str, Any]]:
    """One section per outcome beyond the primary one (diagnostics, dynamics, cost): its
    verdicts (decided first) and its pooled sentences."""
    from ablab.outcome_catalogue import FAMILIES

    out = []
    for name, label, family, sentences in a.outcome_verdicts:
        pairs = list(zip(a.comparisons_on(name), sentences, strict=True))
        pairs.sort(key=lambda pair: _ORDER[pair[0].outcome])
        shown = [{"text": t, "decided": c.decided} for c, t in pairs if not c.not_applicable]
        lacking: dict[str, int] = {}  # one line per level without the figure, not per pair
        for c, _ in pairs:
            for level in c.not_applicable:
                key = f"{c.factor}={level}"
                lacking[key] = lacking.get(key, 0) + 1
        for key, n in lacking.items():
            shown.append({"text": (
                f"Not applicable to {key}: it records no {label} (it has no layer the "
                f"figure is defined for), which is not a value of 0; its {n} "
                f"{'comparison is' if n == 1 else 'comparisons are'} left out."),
                "decided": False})
        out.append({
            "title": f"{label[0].upper()}{label[1:]}",
            "family": FAMILIES.get(family, family),
            "verdicts": shown,
            "pooled": [s for p, s in zip(a.pooled, a.pooled_sentences, strict=True)
                       if p.metric == name],
        })
    return out


def _missing(a: StudyAnalysis) -> list[str]:
    out = []
    for v in a.variants:
        left = len(v.with_status("pending", "running"))
        if left:
            out.append(f"{v.label}: {len(v.done)} of {len(v.runs)} runs done, {left} pending")
    return out


def _fence(text: str) -> str:
    longest = max((len(s) for s in text.split("\n") if set(s.strip()) == {"`"}), default=0)
    return "`" * max(3, longest + 1)


#: Figures that take longest to draw go to the workers first.
_SLOW_FIRST = ("activation_histograms", "decision_boundaries", "learning_curves",
               "dead_units", "zero_activations", "gradient_norms")
#: The analysis the forked figure workers draw from (set just before they fork).
_SHARED: StudyAnalysis | None = None


def _draw(name: str, svg: bool) -> tuple[bytes, str | None] | None:
    """Build and render one figure of the shared analysis (in a worker, or in process):
    its PNG bytes and SVG text (when asked), None when the study has nothing to draw."""
    spec = next(s for s in FIGURES if s.name == name)
    fig = spec.make(_SHARED)
    if fig is None:
        return None
    try:
        return figure_bytes(fig, svg=svg)
    finally:
        fig.clear()


def _figure_workers(n_figures: int) -> int:
    """Processes to draw figures with: the CPUs this process may use (at most 4), 1 where
    processes cannot be forked (the workers inherit the analysis instead of unpickling
    it, and need not import anything)."""
    import multiprocessing
    import os
    import sys

    forks = "fork" in multiprocessing.get_all_start_methods()
    if not (sys.platform.startswith("linux") and forks):
        return 1
    if "ray" in sys.modules:  # a fork of a process that ran Ray (gRPC threads) dies at once
        return 1
    cpus = len(os.sched_getaffinity(0))
    return max(1, min(4, cpus, n_figures))


def _draw_all(a: StudyAnalysis, names: list[str], svg: bool) -> dict[str, Any]:
    """Every figure's rendering by name, drawn in parallel by forked processes (each
    builds its figures on a ``matplotlib.figure.Figure`` and renders it through the Agg
    canvas: no global backend is set, in the parent or in them)."""
    global _SHARED
    _SHARED = a
    try:
        workers = _figure_workers(len(names))
        # imported here once, before the workers fork (they inherit it); not with the
        # module: a report whose figures are all reused never imports matplotlib
        import matplotlib.backends.backend_agg  # noqa: F401
        import matplotlib.figure  # noqa: F401

        if workers == 1:
            return {name: _draw(name, svg) for name in names}
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        order = sorted(names, key=lambda n: _SLOW_FIRST.index(n) if n in _SLOW_FIRST
                       else len(_SLOW_FIRST))
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
            futures = {name: pool.submit(_draw, name, svg) for name in order}
            return {name: futures[name].result() for name in names}
    finally:
        _SHARED = None


#: In ``figures/``: the key of the inputs the figures there were drawn from, and each
#: file's digest (see :func:`figures_key`).
FIGURE_CACHE = "drawn-from.json"
#: Top-level files of a study directory that are outputs (or the lock), not inputs.
_NOT_INPUTS = {"report.html", "report.md", "results.csv", "summary.csv", "variance_runs.csv",
               ".lock"}


def figures_key(store, svg: bool) -> str:
    """A digest of everything the figures are drawn from: the study directory's input
    files (study.json, study.toml, tuning.json, sequential.json, ...), every index row,
    each run record's name, size and modification time, the code of the analysis, report
    and store packages, the versions of the libraries that draw and matplotlib's settings
    (:func:`_matplotlib_settings`). Equal keys, equal figures: :func:`render_figures` then
    reuses the files already in ``figures/``. Computing it imports nothing heavy
    (not matplotlib)."""
    import hashlib
    import json

    import numpy as np
    import scipy

    h = hashlib.sha256()
    h.update(json.dumps([svg, _version("matplotlib"), np.__version__, scipy.__version__,
                         _version()]).encode())
    h.update(_matplotlib_settings())
    package = _PACKAGE_DIR
    for sub in ("analysis", "report", "store"):
        for path in sorted((package / sub).rglob("*.py")):
            h.update(path.name.encode() + b"\0" + path.read_bytes())
    root = Path(store.root)
    for path in sorted(root.iterdir()):
        if path.is_file() and path.name not in _NOT_INPUTS and not path.name.startswith(
            "index.sqlite"
        ):
            h.update(path.name.encode() + b"\0" + path.read_bytes())
    for row in store.db.execute("SELECT * FROM runs ORDER BY position"):
        h.update(repr(tuple(row)).encode())
    runs = root / "runs"
    if runs.is_dir():
        with os.scandir(runs) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                if entry.is_file():
                    st = entry.stat()
                    h.update(f"{entry.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _reused(folder: Path, key: str | None, svg: bool) -> dict[str, Any] | None:
    """The figures already in ``folder`` as ``_draw_all`` returns them, when they were
    drawn from inputs with this ``key`` and are whole (each file's digest as written);
    None otherwise."""
    import hashlib
    import json

    if key is None:
        return None
    try:
        kept = json.loads((folder / FIGURE_CACHE).read_text(encoding="utf-8"))
        if kept.get("key") != key:
            return None
        out: dict[str, Any] = {}
        for name, digests in kept["figures"].items():
            if digests is None:
                out[name] = None
                continue
            png = (folder / f"{name}.png").read_bytes()
            text = (folder / f"{name}.svg").read_text(encoding="utf-8") if svg else None
            got = [hashlib.sha256(png).hexdigest(),
                   hashlib.sha256(text.encode()).hexdigest() if svg else None]
            if got != digests:
                return None
            out[name] = (png, text)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return out if set(out) == {spec.name for spec in FIGURES} else None


def _remember(folder: Path, key: str | None, drawn: dict[str, Any]) -> None:
    import hashlib

    from ablab.store import atomic_write_json

    if key is None:
        return
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(folder / FIGURE_CACHE, {"key": key, "figures": {
        name: None if result is None else [
            hashlib.sha256(result[0]).hexdigest(),
            None if result[1] is None else hashlib.sha256(result[1].encode()).hexdigest(),
        ] for name, result in drawn.items()}})


def render_figures(
    a: StudyAnalysis, folder: Path, svg: bool = False, key: str | None = None
) -> list[dict[str, Any]]:
    """Draw every figure the study has data for, in parallel; save each as PNG (and SVG
    when ``svg``) under ``folder``, removing files of figures not drawn (an SVG not asked
    for included, so none is left from an older report); return title, caption, topic,
    data URI and relative paths of each (``svg`` None when not written). With ``key``
    (:func:`figures_key`), figures drawn before from the same inputs are reused, not
    drawn again."""
    names = [spec.name for spec in FIGURES]
    drawn = _reused(folder, key, svg)
    fresh = drawn is None
    if fresh:
        drawn = _draw_all(a, names, svg)
    out = []
    for spec in FIGURES:
        result = drawn[spec.name]
        if result is None or not svg:
            (folder / f"{spec.name}.svg").unlink(missing_ok=True)
        if result is None:
            (folder / f"{spec.name}.png").unlink(missing_ok=True)
            continue
        png, text = result
        if fresh:
            write_figure_files(folder, spec.name, png, text)
        data = base64.b64encode(png).decode("ascii")
        out.append({
            "name": spec.name, "topic": spec.topic, "title": spec.title,
            "caption": spec.caption, "data_uri": f"data:image/png;base64,{data}",
            "png": f"{FIGURE_DIR}/{spec.name}.png",
            "svg": f"{FIGURE_DIR}/{spec.name}.svg" if svg else None,
        })
    if fresh:
        _remember(folder, key, drawn)
    return out


#: src/ablab: the code whose change invalidates drawn figures is read from here (this
#: file's grandparent, not ``ablab.__file__``: the package root sits above the report).
_PACKAGE_DIR = Path(__file__).resolve().parent.parent


def _version(package: str = "ablab") -> str:
    """A package's installed version (ablab's from the package metadata, not the package
    root, which sits above the report in the layers)."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _matplotlib_settings() -> bytes:
    """What decides matplotlib's settings (rcParams) in the drawing process, for
    :func:`figures_key`, without importing matplotlib: the contents of every matplotlibrc
    file an import would read (``matplotlib.matplotlib_fname``'s candidates; the default
    one in mpl-data comes with the version). In a process that has imported matplotlib
    and changed its settings since (a notebook's ``rcParams[...] = ...``), the settings
    themselves too, read past RcParams' lookup (which for "backend" would pick a GUI
    backend and import pyplot)."""
    import sys

    env = os.environ
    candidates = [Path("matplotlibrc")]
    if "MATPLOTLIBRC" in env:
        candidates += [Path(env["MATPLOTLIBRC"]), Path(env["MATPLOTLIBRC"]) / "matplotlibrc"]
    if env.get("MPLCONFIGDIR"):
        candidates.append(Path(env["MPLCONFIGDIR"]) / "matplotlibrc")
    try:
        config = Path(env.get("XDG_CONFIG_HOME") or Path.home() / ".config")
        candidates.append(config / "matplotlib" / "matplotlibrc")
    except (RuntimeError, KeyError):  # no home directory
        pass
    out = []
    for path in candidates:
        try:
            out.append(f"{path}\0".encode() + path.read_bytes() if path.is_file() else b"-")
        except OSError:
            out.append(b"?")
    mpl = sys.modules.get("matplotlib")
    if mpl is not None and hasattr(mpl, "rcParamsOrig"):
        live = sorted((k, v) for k, v in dict.items(mpl.rcParams) if k != "backend")
        orig = sorted((k, v) for k, v in dict.items(mpl.rcParamsOrig) if k != "backend")
        if live != orig:
            out.append(repr(live).encode())
    return b"\0".join(out)


def _setting(params: dict[str, Any]) -> str:
    return ", ".join(
        f"{k} = {v:.4g}" if isinstance(v, float) else f"{k} = {v}" for k, v in params.items()
    )


def tuning_table(a: StudyAnalysis) -> dict | None:
    """The "Tuning" section's table: per variant its best setting, its best validation
    figure and the budget it used; None for a study without [tune]."""
    t = a.tuning
    if not t:
        return None
    metric = t["metric"]
    header = ["variant", "best setting", f"best {metric}", "trials", "outcomes",
              "tuning seeds"]
    rows = []
    for v in t["variants"]:
        value = v.get("best_value")
        shown = "–" if value is None else (
            f"{100 * value:.2f} %" if metric.endswith("accuracy") else f"{value:.4g}"
        )
        outcomes = ", ".join(f"{n} {k}" for k, n in sorted((v.get("outcomes") or {}).items()))
        rows.append({"cells": [v["label"] or a.name, _setting(v["best_params"]), shown,
                               f"{v['trials']} of {t['trials']}", outcomes,
                               ", ".join(map(str, t["seeds"]))]})
    seconds = t.get("seconds")
    note = (
        f"Search space: {'; '.join(f'{p} ~ {d}' for p, d in t['params'].items())}. Sampler "
        f"{t['sampler']}, pruner {t['pruner']}; every variant got the same budget of "
        f"{t['trials']} trials × {len(t['seeds'])} tuning seed(s), scored on {metric} "
        "(validation data, never test). Abandoned trials (a stopped run) are re-run and not "
        "counted."
        + (f" Tuning took {seconds:.0f} s." if isinstance(seconds, (int, float)) else "")
    )
    return {"header": header, "rows": rows, "note": note}


def report_context(a: StudyAnalysis, figures: list[dict[str, Any]]) -> dict[str, Any]:
    by_topic: dict[str, list] = {}
    for f in figures:
        by_topic.setdefault(f["topic"], []).append(f)
    tuning_figures = by_topic.pop("Tuning", [])
    summary, behaviour = summary_tables(a)
    return {
        "tuned_note": a.tuned_note,
        "tuning": tuning_table(a),
        "tuning_figures": tuning_figures,
        "title": f"ablab report — {a.name}",
        "description": a.description,
        "overrides": a.overrides,
        "status": a.status,
        "complete": a.complete,
        "missing": _missing(a),
        "method_note": method_note(a),
        "headline": a.headline,
        "verdict_table": verdict_table(a),
        "pooled": [s for p, s in zip(a.pooled, a.pooled_sentences, strict=True)
                   if p.metric == a.primary],
        "tradeoffs": a.tradeoff_sentences,
        "outcome_sections": _outcome_sections(a),
        "methods": a.methods,
        "interactions": a.interaction_sentences,
        "problems": a.status_sentences,
        "verdicts": _verdict_items(a),
        "rankings": a.ranking_sentences,
        "warnings": a.warnings,
        "inert": list(a.inert.values()),
        "summary": summary,
        "behaviour": behaviour,
        "figures": by_topic,
        "comparisons": comparisons_table(a),
        "runs": runs_table(a),
        "study_text": a.study_text,
        "fence": _fence(a.study_text),
        "version": _version(),
        "against_source": against_source(a),
        "variance_sources": variance_section(a),
    }


def render_html(context: dict[str, Any]) -> str:
    return _env().get_template("report.html").render(context)


def render_markdown(context: dict[str, Any]) -> str:
    return _env().get_template("report.md").render(context)


def write_report(
    store, svg: bool = False, analysis: StudyAnalysis | None = None
) -> dict[str, Path]:
    """Analyze the study in ``store`` (unless its fresh ``analysis`` is given) and write
    ``report.html``, ``report.md`` and ``figures/*.png`` (and ``figures/*.svg`` when
    ``svg``) into its directory."""
    from ablab.store import atomic_write_text

    a = analysis if analysis is not None else analyze(store)
    root = Path(store.root)
    figures = render_figures(a, root / FIGURE_DIR, svg=svg, key=figures_key(store, svg))
    context = report_context(a, figures)
    paths = {"html": root / "report.html", "markdown": root / "report.md"}
    atomic_write_text(paths["html"], render_html(context))
    atomic_write_text(paths["markdown"], render_markdown(context))
    return paths
