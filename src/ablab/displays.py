"""How Jupyter shows ablab's objects: figures inline (PNG rendered with the report's
style, never through the global backend), a ``Study`` (an HTML table of its variants, one
text line) and a ``RunResult`` (its learning curves, one text line). Nothing here is
registered on import: :func:`register_ipython_displays` is called by the ``ablab`` package
the first time its API is used in a running IPython (or by you, for another shell).
``StudyResults`` carries its own ``_repr_html_`` (:mod:`ablab.results`)."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def figure_png(fig: Figure, dpi: float = 100) -> bytes:
    """A Figure rendered to PNG bytes with the report's style, through the Agg canvas
    (never the global backend)."""
    import io

    import matplotlib

    from ablab.report.figures import STYLE

    buf = io.BytesIO()
    with matplotlib.rc_context(STYLE):
        fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def _figure_repr_png(fig: Figure) -> bytes:
    return figure_png(fig, dpi=80)


def displayable(fig: Figure | None) -> Figure | None:
    """``fig`` with a ``_repr_png_``, so Jupyter shows it inline even when the inline
    backend's formatter is not active (pyplot never imported); where it is, IPython uses
    that formatter instead. Figures built without pyplot have no manager to show them."""
    if fig is not None:
        import types

        fig._repr_png_ = types.MethodType(_figure_repr_png, fig)
    return fig


def img_tag(png: bytes, alt: str) -> str:
    import base64

    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{alt}" style="max-width:480px" src="data:image/png;base64,{data}">'


def study_html(study: Any) -> str:
    """A :class:`ablab.study.Study` as compact HTML: name, description, runs, seeds, the
    variants with their run counts, plugins."""
    esc = html.escape
    variants = study.variants()
    parts = [
        '<div class="ablab-study">',
        f"<h4>{esc(study.name)}</h4>",
    ]
    if study.config.description:
        parts.append(f"<p>{esc(study.config.description)}</p>")
    parts.append(
        f"<p>{len(study.runs)} runs: {len(variants)} variant(s) × seeds "
        f"{esc(str(study.config.seeds))} — <code>{esc(str(study.source))}</code></p>"
    )
    parts.append("<table><tr><th>variant</th><th>runs</th><th>epochs</th></tr>")
    for runs in variants.values():
        first = runs[0]
        parts.append(
            f"<tr><td>{esc(first.variant_label or 'base')}</td><td>{len(runs)}</td>"
            f"<td>{first.config.epochs}</td></tr>"
        )
    parts.append("</table>")
    if study.plugins:
        parts.append(f"<p>plugins: {esc(', '.join(study.plugins))}</p>")
    parts.append("</div>")
    return "".join(parts)


def study_line(study: Any) -> str:
    return (
        f"<Study {study.name!r}: {len(study.runs)} runs, {len(study.variants())} variants, "
        f"from {str(study.source)!r}>"
    )


def run_result_line(result: Any) -> str:
    final = result.final or {}
    acc = final.get("test_accuracy")
    acc_text = f", test_accuracy {acc:.3f}" if isinstance(acc, float) else ""
    return (
        f"<RunResult {result.run_id[:8]} {result.status}: {len(result.history)} epochs"
        f"{acc_text}>"
    )


def run_result_png(result: Any) -> bytes | None:
    """A run's learning curves as PNG (its Jupyter display)."""
    from ablab.report.figures import fig_run_curves

    fig = fig_run_curves(result.history, run_result_line(result).strip("<>"))
    return None if fig is None else figure_png(fig, dpi=80)


def register_ipython_displays(shell: Any = None) -> bool:
    """Teach a running IPython (``shell``, or the current one) how to show a ``Study``
    (HTML, one-line text) and a ``RunResult`` (its learning curves, one-line text); True
    when registered. Called by the ``ablab`` package the first time its API is used in
    IPython, never by importing this module. ``StudyResults`` carries its own
    ``_repr_html_``."""
    if shell is None:
        import sys

        ipython = sys.modules.get("IPython")
        shell = ipython.get_ipython() if ipython is not None else None
    if shell is None:
        return False
    from ablab.study import Study
    from ablab.train import RunResult

    formatters = shell.display_formatter.formatters
    formatters["text/html"].for_type(Study, study_html)
    formatters["text/plain"].for_type(Study, lambda obj, p, cycle: p.text(study_line(obj)))
    formatters["image/png"].for_type(RunResult, run_result_png)
    formatters["text/plain"].for_type(
        RunResult, lambda obj, p, cycle: p.text(run_result_line(obj))
    )
    return True
