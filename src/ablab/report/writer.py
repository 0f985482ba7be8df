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

from pathlib import Path
from typing import Any

import jinja2

from ablab.analysis import StudyAnalysis, analyze
from ablab.report.against_source import against_source
from ablab.report.drawing import (
    FIGURE_CACHE,
    FIGURE_DIR,
    FIGURES,
    figures_key,
    package_version,
    render_figures,
)
from ablab.report.sections import (
    comparisons_table,
    fence_for,
    md_escape,
    md_table,
    method_note,
    missing_runs,
    outcome_sections,
    runs_table,
    summary_tables,
    tuning_table,
    verdict_items,
    verdict_table,
)
from ablab.report.variance_sources import variance_section

#: what other modules take from here: the report's parts live in sections (tables and
#: sections as data) and drawing (figures, drawn or reused)
__all__ = [
    "FIGURES", "FIGURE_CACHE", "FIGURE_DIR", "figures_key", "render_figures", "render_html",
    "render_markdown", "report_context", "write_report",
]


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
        "missing": missing_runs(a),
        "method_note": method_note(a),
        "headline": a.headline,
        "verdict_table": verdict_table(a),
        "pooled": [s for p, s in zip(a.pooled, a.pooled_sentences, strict=True)
                   if p.metric == a.primary],
        "tradeoffs": a.tradeoff_sentences,
        "outcome_sections": outcome_sections(a),
        "methods": a.methods,
        "interactions": a.interaction_sentences,
        "problems": a.status_sentences,
        "verdicts": verdict_items(a),
        "rankings": a.ranking_sentences,
        "warnings": a.warnings,
        "inert": list(a.inert.values()),
        "summary": summary,
        "behaviour": behaviour,
        "figures": by_topic,
        "comparisons": comparisons_table(a),
        "runs": runs_table(a),
        "study_text": a.study_text,
        "fence": fence_for(a.study_text),
        "version": package_version(),
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
