"""The notebook API: run a study and look at what it found, one object per study directory.

    >>> import ablab                                                         # doctest: +SKIP
    >>> study = ablab.load_study("moons-circles-activations", seeds=2,
    ...                          sets=["epochs=20"])                          # doctest: +SKIP
    >>> results = study.run("out/moons", workers=2)                           # doctest: +SKIP
    >>> results.summary           # one row per variant: n, mean, std, CIs    # doctest: +SKIP
    >>> results.verdicts          # the report's sentences                    # doctest: +SKIP
    >>> results.figure("learning_curves")                                     # doctest: +SKIP
    >>> results.report()          # report.html, report.md                    # doctest: +SKIP

``ablab.open_results(DIR)`` opens a study directory written earlier (by the CLI too);
``ablab.train_run(config)`` trains one run; ``ablab.load_model(DIR, run_id)`` rebuilds a
run's model with its kept weights. The CLI is a thin layer over these and
:mod:`ablab.api`.
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ablab.api import Progress, StudyOutcome, run_study, write_report, write_tables
from ablab.config import apply_overrides, load_toml, parse_run, set_path
from ablab.errors import UserError
from ablab.store import StudyStore
from ablab.study import Study, load_study

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure
    from torch import nn

    from ablab.analysis import StudyAnalysis
    from ablab.train import RunResult

__all__ = [
    "StudyResults",
    "load_model",
    "open_results",
    "run",
    "study_progress",
    "train_run",
]


# ---------------------------------------------------------------- progress


class TqdmStudyProgress:
    """Study progress with ``tqdm.auto``: a widget in Jupyter, a text bar elsewhere."""

    def __init__(self, title: str = "study"):
        self.title = title
        self.bar = None

    def start(self, total: int, already_done: int, workers: int, threads: int) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, initial=already_done, desc=self.title, unit="run")
        self.bar.set_postfix_str(f"{workers} worker(s) × {threads} thread(s)")

    def on_event(self, event) -> None:
        if self.bar is None:
            return
        if event.kind in ("done", "failed"):
            self.bar.update(1)
            if event.kind == "failed":
                self.bar.write(f"failed {event.task.label}: {event.error}")
        elif event.kind == "epoch":
            rec = event.record or {}
            acc = rec.get("val_accuracy")
            info = f"{event.task.label} epoch {rec.get('epoch')}"
            if isinstance(acc, float):
                info += f" val_acc {acc:.3f}"
            self.bar.set_postfix_str(info, refresh=False)

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.close()


def study_progress(title: str = "study") -> Progress:
    """A progress display that works in a notebook and on a terminal: ``tqdm.auto`` when
    tqdm is installed, else rich (which renders live in Jupyter too)."""
    try:
        import tqdm.auto  # noqa: F401
    except ImportError:
        from ablab.ui import RichStudyProgress

        return RichStudyProgress(title=title)
    return TqdmStudyProgress(title)


# ---------------------------------------------------------------- running


def run(
    study: Study | str | Path,
    out: str | Path,
    *,
    workers: int | None = None,
    threads: int | None = None,
    executor: str = "local",
    address: str | None = None,
    retry_failed: bool = False,
    force_new_variants: bool = False,
    progress: bool | Progress | None = True,
    report: bool = True,
) -> StudyResults:
    """Run a study into ``out`` (resuming what it holds) and return its results.
    ``progress``: True for a notebook-friendly bar, False / None for none, or an object
    with ``start`` / ``on_event`` / ``stop`` (:class:`ablab.api.Progress`). Runs that fail
    do not raise: see ``results.counts`` and ``results.outcome.failures``."""
    if not isinstance(study, Study):
        study = load_study(study)
    if progress is True:
        progress = study_progress(study.name)
    elif progress is False:
        progress = None
    outcome = run_study(
        study,
        out,
        workers=workers,
        threads=threads,
        executor=executor,
        address=address,
        retry_failed=retry_failed,
        force_new_variants=force_new_variants,
        progress=progress,
        report=report,
    )
    return StudyResults(out, outcome)


def open_results(out: str | Path) -> StudyResults:
    """The results held by an existing study directory (written by ``ablab run`` or
    ``study.run``), complete or not."""
    return StudyResults(out)


def train_run(
    config: dict[str, Any] | str | Path,
    *,
    sets: list[str] | tuple[str, ...] = (),
    on_epoch=None,
    allow_plugins: bool | None = None,
    **overrides: Any,
) -> RunResult:
    """Train one run and return its :class:`~ablab.train.RunResult` (history, final
    metrics, probes; ``weights`` when ``keep`` is "best" or "last"). ``config`` is a run
    config as plain data or a run file's path. Keyword overrides set fields, ``__`` for
    a dot (``optimizer__lr=0.01``); ``sets`` are ``--set`` strings.

    >>> r = train_run({"epochs": 2, "dataset": "moons", "model": {"name": "mlp", "hidden": [8]}},
    ...               device="cpu", optimizer__lr=0.02)
    >>> r.status, len(r.history)
    ('done', 2)

    Also callable as ``ablab.train(config, ...)``."""
    import copy

    from ablab.train import fit

    if isinstance(config, (str, Path)):
        path = Path(config)
        data = load_toml(path)
        source = str(path)
        if isinstance(data.get("plugins"), list):
            from ablab.plugins import resolve_plugins

            data["plugins"] = resolve_plugins(data["plugins"], path.parent)
    elif isinstance(config, dict):
        data, source = copy.deepcopy(config), "<config>"
    elif hasattr(config, "resolved"):  # a RunConfig
        data, source = config.resolved(), "<config>"
    else:
        raise UserError(
            f"train_run: config must be a dict, a run file path or a RunConfig; "
            f"got {type(config).__name__}"
        )
    for key, value in overrides.items():
        set_path(data, key.replace("__", "."), value)
    apply_overrides(data, sets)
    if isinstance(data.get("plugins"), list):  # code: imported only with consent
        from ablab.plugins import PluginError, import_plugins

        try:
            import_plugins(data["plugins"], allow=allow_plugins)
        except PluginError as exc:
            raise UserError(f"{source}: {exc}") from None
    if overrides or sets:
        source += " (with overrides)"
    return fit(parse_run(data, source), on_epoch=on_epoch)


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

    store = StudyStore.existing(out)
    try:
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
    finally:
        store.close()
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


class StudyResults:
    """What a study directory holds, for a notebook: tables as pandas DataFrames, the
    verdicts and warnings as sentences, figures as matplotlib Figures, the report.

    The analysis is computed on first use and cached; :meth:`refresh` re-reads the
    directory (e.g. while a study is still running elsewhere)."""

    def __init__(self, out: str | Path, outcome: StudyOutcome | None = None):
        self.out = Path(out)
        self.outcome = outcome
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

            store = StudyStore.existing(self.out)
            try:
                self._analysis = analyze(store)
            finally:
                store.close()
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
        """One row per run: run_id, factor columns, seed, status, metrics, seconds."""
        return self.analysis.runs.copy()

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
    def warnings(self) -> list[str]:
        """Methodology warnings (few seeds, selection on the test set, confounds...)."""
        return list(self.analysis.warnings)

    # ---- single runs

    def _run_id(self, run_id: str) -> str:
        return _resolve_run_id(run_id, list(self.analysis.runs["run_id"]), self.out)

    def record(self, run_id: str) -> dict[str, Any]:
        """A run's whole stored record (config, history, final metrics, probes)."""
        rid = self._run_id(run_id)
        store = StudyStore.existing(self.out)
        try:
            record = store.load_record(rid)
        finally:
            store.close()
        if record is None:
            status = self.analysis.runs.set_index("run_id").loc[rid, "status"]
            raise UserError(f"{self.out}: run {rid} has no record (status {status})")
        return record

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
        return specs[key].make(self.analysis)

    def report(self) -> dict[str, Path]:
        """(Re)write results.csv, summary.csv, report.html and report.md (+ figures/);
        returns their paths."""
        store = StudyStore.existing(self.out)
        try:
            paths = dict(write_tables(store))
            paths.update(write_report(store))
        finally:
            store.close()
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
        for title, items in (("Verdicts", a.verdicts), ("Warnings", a.warnings)):
            if items:
                parts.append(f"<p><b>{title}</b></p><ul>")
                parts += [f"<li>{esc(item)}</li>" for item in items]
                parts.append("</ul>")
        parts.append("</div>")
        return "\n".join(parts)

    def __repr__(self) -> str:
        try:
            return f"<StudyResults {self.name!r} in {str(self.out)!r}: {self.status}>"
        except UserError as exc:
            return f"<StudyResults {str(self.out)!r}: {exc}>"
