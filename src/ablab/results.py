"""What a study directory holds, read-only: :class:`StudyResults` (tables, sentences,
figures), :func:`open_results`, :func:`load_model` and :func:`study_status`.

    >>> import ablab                                                         # doctest: +SKIP
    >>> results = ablab.open_results("out/moons")                             # doctest: +SKIP
    >>> results.summary           # one row per variant: n, mean, std, CIs    # doctest: +SKIP
    >>> results.verdicts          # the report's comparison sentences         # doctest: +SKIP
    >>> results.figure("learning_curves")                                     # doctest: +SKIP

Running a study lives in :mod:`ablab.runner` (``ablab.run_study``, ``study.run``), which
returns these results; this module never trains. :meth:`StudyResults.report` rewrites
the directory's tables and report from what it holds.
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ablab.config import parse_run
from ablab.displays import displayable, figure_png, img_tag
from ablab.errors import UserError
from ablab.store import StudyStore

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure
    from torch import nn

    from ablab.analysis import StudyAnalysis
    from ablab.config import RunConfig

__all__ = [
    "StudyResults",
    "load_model",
    "open_results",
    "study_status",
]


def open_results(out: str | Path) -> StudyResults:
    """The results held by an existing study directory (written by ``ablab run`` or
    ``study.run``), complete or not."""
    return StudyResults(out)


def study_status(out: str | Path) -> dict[str, Any]:
    """``name``, runs per status (``counts``), index ``rows`` and their ``total``."""
    with StudyStore.existing(out) as store:
        info = store.study_info()
        counts = store.counts()
        rows = store.rows()
    return {"name": info["name"], "counts": counts, "rows": rows, "total": len(rows)}


def _resolve_run_id(run_id: str, known: list[str], where: Path) -> str:
    if run_id in known:
        return run_id
    matches = [r for r in known if r.startswith(str(run_id))] if run_id else []
    if len(matches) == 1:
        return matches[0]
    what = "is ambiguous" if matches else "is not a run of this study"
    raise UserError(f"{where}: run id {run_id!r} {what}")


def _import_study_plugins(store: StudyStore, configs: list[dict[str, Any]] = ()) -> None:
    from ablab.plugins import import_plugins

    try:
        specs = list(store.study_info().get("plugins") or [])
    except UserError:
        specs = []
    for config in configs:
        specs += [p for p in (config.get("plugins") or []) if p not in specs]
    import_plugins(specs)


def load_model(out: str | Path, run_id: str) -> nn.Module:
    """Rebuild a run's model and load its kept weights (``keep = "best" | "last"``),
    in eval mode on the CPU. ``run_id`` may be a unique prefix. The model takes inputs
    normalized as in training (``ablab.data.load_data(cfg.dataset, seed).normalize``).

    >>> model = load_model("out/moons", "3f2a")                              # doctest: +SKIP
    """
    from safetensors.torch import load_file

    from ablab.models import build_model

    with StudyStore.existing(out) as store:
        rid = _resolve_run_id(run_id, [r["run_id"] for r in store.rows(True)], store.root)
        record = store.load_record(rid)
        if record is None:
            raise UserError(f"{out}: run {rid} has no record (not finished)")
        path = store.weights_path(rid)
        if not path.exists():
            raise UserError(
                f"{out}: run {rid} kept no weights (keep = "
                f"{(record.get('config') or {}).get('keep', 'none')!r}); set keep = \"last\" "
                "or \"best\" and run it again"
            )
        _import_study_plugins(store, [record["config"]])
    if not record.get("input_shape") or not record.get("num_classes"):
        raise UserError(f"{out}: run {rid}: its record has no input shape (an older ablab)")
    cfg = parse_run(record["config"], str(Path(out) / "runs" / f"{rid}.json"))
    model = build_model(cfg.model, tuple(record["input_shape"]), int(record["num_classes"]))
    model.load_state_dict(load_file(str(path)))
    return model.eval()


# ---------------------------------------------------------------- results


def _fmt_pct(mean: Any, std: Any) -> str:
    if not isinstance(mean, (int, float)) or not math.isfinite(mean):
        return "–"
    text = f"{mean * 100:.1f}"
    if isinstance(std, (int, float)) and math.isfinite(std):
        text += f" ± {std * 100:.1f}"
    return text


def _fmt_num(x: Any) -> str:
    return f"{x:.3f}" if isinstance(x, (int, float)) and math.isfinite(x) else "–"


def _fmt_ci(low: Any, high: Any) -> str:
    if not all(isinstance(x, (int, float)) and math.isfinite(x) for x in (low, high)):
        return "–"
    return f"[{low * 100:.1f}, {high * 100:.1f}]"


def typed_levels(labels: list[Any]) -> list[Any]:
    """A factor column's labels as numbers or booleans when every one of them reads as
    one (``"0.5"`` → 0.5, ``"True"`` → True); otherwise the labels unchanged.

    >>> typed_levels(["0", "0.5"]), typed_levels(["True", "False"]), typed_levels(["relu", "0"])
    ([0, 0.5], [True, False], ['relu', '0'])
    """
    from ablab.config import parse_value

    def read(label: Any) -> Any:
        if not isinstance(label, str):
            return label
        if label in ("True", "False"):  # how a study's labels write booleans
            return label == "True"
        value = parse_value(label)
        return value if isinstance(value, (bool, int, float)) else None

    values = [read(label) for label in labels]
    kinds = {type(v) for v in values}
    if None in values or not kinds or (bool in kinds and len(kinds) > 1):
        return labels
    return values


class StudyResults:
    """What a study directory holds, for a notebook: tables as pandas DataFrames, the
    verdicts and warnings as sentences, figures as matplotlib Figures, the report.

    The analysis is computed on first use and cached; :meth:`refresh` re-reads the
    directory (e.g. while a study is still running elsewhere)."""

    def __init__(self, out: str | Path, outcome: Any = None):
        self.out = Path(out)
        self.outcome = outcome  # the ablab.runner.StudyOutcome that wrote it, if any
        StudyStore.existing(self.out).close()  # a clear error for a wrong directory
        self._analysis: StudyAnalysis | None = None

    # ---- the analysis

    def refresh(self) -> StudyResults:
        self._analysis = None
        return self

    @property
    def analysis(self) -> StudyAnalysis:
        """Everything the report says (:class:`ablab.analysis.StudyAnalysis`)."""
        if self._analysis is None:
            from ablab.analysis import analyze

            with StudyStore.existing(self.out) as store:
                self._analysis = analyze(store)
        return self._analysis

    @property
    def name(self) -> str:
        return self.analysis.name

    @property
    def status(self) -> str:
        """``"12 of 18 runs done; 6 pending"``."""
        return self.analysis.status

    @property
    def counts(self) -> dict[str, int]:
        return dict(self.analysis.counts)

    @property
    def complete(self) -> bool:
        return self.analysis.complete

    @property
    def runs(self) -> pd.DataFrame:
        """One row per run: run_id, factor columns, seed, status, metrics, seconds. A
        factor column whose levels are all numbers or booleans holds them as such
        (``dropout`` 0.0 / 0.5, ``batch_norm`` True / False), not as their labels."""
        runs = self.analysis.runs.copy()
        for column in self.analysis.columns:
            if column in runs.columns:
                runs[column] = typed_levels(list(runs[column]))
        return runs

    @property
    def summary(self) -> pd.DataFrame:
        """One row per variant: counts by status, then per metric n, mean, std, t CI and
        bootstrap CI over the done runs."""
        return self.analysis.summary.copy()

    @property
    def verdicts(self) -> list[str]:
        """The comparisons' sentences ("relu beats tanh on test accuracy: ...")."""
        return list(self.analysis.verdicts)

    @property
    def ranking_sentences(self) -> list[str]:
        """The rankings' sentences (each factor's levels, best first, with letters)."""
        return list(self.analysis.ranking_sentences)

    @property
    def warnings(self) -> list[str]:
        """Methodology warnings (few seeds, selection on the test set, confounds...)."""
        return list(self.analysis.warnings)

    # ---- single runs

    def _run_id(self, run_id: str) -> str:
        return _resolve_run_id(run_id, list(self.analysis.runs["run_id"]), self.out)

    def record(self, run_id: str) -> dict[str, Any]:
        """A run's whole stored record (config, history, final metrics, probes)."""
        rid = self._run_id(run_id)
        with StudyStore.existing(self.out) as store:
            record = store.load_record(rid)
        if record is None:
            status = self.analysis.runs.set_index("run_id").loc[rid, "status"]
            raise UserError(f"{self.out}: run {rid} has no record (status {status})")
        return record

    def config(self, run_id: str) -> RunConfig:
        """A run's resolved config as a validated :class:`ablab.config.RunConfig` (what
        ``ablab.data.load_data(cfg.dataset, cfg.seed)`` and ``build_model`` take); plugin
        components the study used are imported first."""
        record = self.record(run_id)
        with StudyStore.existing(self.out) as store:
            _import_study_plugins(store, [record["config"]])
        return parse_run(record["config"], str(self.out / "runs" / f"{record['run_id']}.json"))

    def history(self, run_id: str) -> pd.DataFrame:
        """Per-epoch metrics of one run (``run_id`` or a unique prefix): epoch,
        train_loss, train_accuracy, val_loss, val_accuracy, val_cross_entropy, lr,
        seconds."""
        import pandas as pd

        return pd.DataFrame.from_records(self.record(run_id).get("history") or [])

    def load_model(self, run_id: str) -> nn.Module:
        """The run's model with its kept weights (see :func:`load_model`)."""
        return load_model(self.out, run_id)

    # ---- figures and the report

    @staticmethod
    def figure_names() -> list[str]:
        from ablab.report import FIGURES

        return [spec.name for spec in FIGURES]

    def figure(self, name: str) -> Figure | None:
        """One of the report's figures as a matplotlib Figure (None when the study has
        nothing to draw for it, e.g. no probe recorded). Names: :meth:`figure_names`
        (``learning_curves``, ``final_metrics``, ``dead_units``, ...)."""
        from ablab.report import FIGURES

        specs = {spec.name: spec for spec in FIGURES}
        key = name.removeprefix("fig_")
        if key not in specs:
            raise UserError(f"figure {name!r}: unknown; allowed: {', '.join(specs)}")
        return displayable(specs[key].make(self.analysis))

    def thumbnail(self, width_px: int = 480) -> bytes | None:
        """The main figure (``final_metrics``, else ``learning_curves``) as a small PNG,
        for the HTML display; None when there is nothing to draw."""
        for name in MAIN_FIGURES:
            fig = self.figure(name)
            if fig is not None:
                return figure_png(fig, dpi=width_px / fig.get_figwidth())
        return None

    def report(self, svg: bool = False) -> dict[str, Path]:
        """(Re)write results.csv, summary.csv, report.html and report.md (+ figures/, as
        SVG too when ``svg``) from a fresh analysis (kept as :attr:`analysis`); returns
        their paths."""
        from ablab.analysis import analyze
        from ablab.report import write_report, write_tables

        with StudyStore.existing(self.out) as store:
            paths = dict(write_tables(store))
            self._analysis = analyze(store)
            paths.update(write_report(store, svg=svg, analysis=self._analysis))
        return paths

    # ---- display

    def _table(self) -> pd.DataFrame:
        import pandas as pd

        rows = []
        for _, s in self.analysis.summary.iterrows():
            rows.append({
                "variant": s["variant"],
                "done / runs": f"{int(s['done'])} / {int(s['runs'])}",
                "test acc. % (mean ± std)": _fmt_pct(
                    s.get("test_accuracy_mean"), s.get("test_accuracy_std")
                ),
                "95 % CI": _fmt_ci(s.get("test_accuracy_ci_low"), s.get("test_accuracy_ci_high")),
                "test CE (mean)": _fmt_num(s.get("test_cross_entropy_mean")),
            })
        return pd.DataFrame.from_records(rows)

    def _repr_html_(self) -> str:
        a = self.analysis
        esc = html.escape
        parts = [
            '<div class="ablab-results">',
            f"<h4>{esc(a.name)}</h4>",
            f"<p>{esc(a.status)} — <code>{esc(str(self.out))}</code></p>",
            self._table().to_html(index=False, escape=True, border=0),
        ]
        sections = (("Verdicts", a.verdicts), ("Rankings", a.ranking_sentences),
                    ("Warnings", a.warnings))
        for title, items in sections:
            if items:
                parts.append(f"<p><b>{title}</b></p><ul>")
                parts += [f"<li>{esc(item)}</li>" for item in items]
                parts.append("</ul>")
        try:
            png = self.thumbnail()
        except Exception:  # noqa: BLE001 - a display never fails over its picture
            png = None
        if png is not None:
            parts.append(img_tag(png, "main figure"))
        parts.append("</div>")
        return "\n".join(parts)

    def __repr__(self) -> str:
        try:
            return f"<StudyResults {self.name!r} in {str(self.out)!r}: {self.status}>"
        except UserError as exc:
            return f"<StudyResults {str(self.out)!r}: {exc}>"


#: The figure a study's HTML display shows as a thumbnail: the first one it can draw.
MAIN_FIGURES = ("final_metrics", "learning_curves")
