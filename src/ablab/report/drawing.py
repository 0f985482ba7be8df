"""The report's figures: drawn in forked worker processes, written under ``figures/``,
and reused when a report's inputs have not changed (:func:`figures_key`)."""

from __future__ import annotations

import base64
import importlib.metadata
import os
from pathlib import Path
from typing import Any

from ablab.analysis import StudyAnalysis
from ablab.report.figures import FIGURES, figure_bytes, write_figure_files

FIGURE_DIR = "figures"


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
    h.update(json.dumps([svg, package_version("matplotlib"), np.__version__, scipy.__version__,
                         package_version()]).encode())
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


def package_version(package: str = "ablab") -> str:
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
