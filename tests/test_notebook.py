"""ablab in Jupyter, executed with Jupyter's own machinery (nbclient on an ipykernel kernel
running this repository's code): a model defined in a cell trains on 2 workers, figures
show inline without touching the notebook's backend, progress is one display without
warnings, and the worked example notebook (examples/notebook.ipynb) runs as written."""

import json
import os
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import moons_study

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel", reason="ipykernel is not installed: no kernel to run notebooks")

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "notebook.ipynb"
KERNEL = "ablab-test"


@pytest.fixture(scope="module")
def kernel_env(tmp_path_factory):
    """A kernelspec for this interpreter, found through JUPYTER_PATH, whose kernel imports
    this checkout's ``src`` (PYTHONPATH) and never downloads data."""
    root = tmp_path_factory.mktemp("jupyter")
    spec_dir = root / "kernels" / KERNEL
    spec_dir.mkdir(parents=True)
    env = {"PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
           "ABLAB_DOWNLOAD": "0"}
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "ablab test kernel", "language": "python", "env": env,
    }))
    saved = {k: os.environ.get(k) for k in ("JUPYTER_PATH", "MPLBACKEND")}
    os.environ["JUPYTER_PATH"] = str(root)
    os.environ.pop("MPLBACKEND", None)  # the kernel picks its own (inline) backend
    yield root
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def execute(nb, cwd: Path) -> tuple[object, float]:
    """Run every cell of ``nb`` in a fresh kernel; the executed notebook and its seconds."""
    client = nbclient.NotebookClient(nb, kernel_name=KERNEL, timeout=240,
                                     resources={"metadata": {"path": str(cwd)}})
    start = time.perf_counter()
    client.execute()
    return nb, time.perf_counter() - start


def mime_types(cell) -> list[str]:
    out = []
    for o in cell.get("outputs", []):
        if o["output_type"] == "stream":
            out.append(f"stream:{o['name']}")
        elif o["output_type"] == "error":
            out.append(f"error:{o['ename']}")
        else:
            out += list(o.get("data", {}))
    return out


def html_of(cell) -> str:
    return "".join(o.get("data", {}).get("text/html", "") for o in cell.get("outputs", []))


def text_of(cell) -> str:
    return "".join(o.get("text", "") + o.get("data", {}).get("text/plain", "")
                   for o in cell.get("outputs", []))


def progress_outputs(cell) -> list[dict]:
    return [o for o in cell.get("outputs", [])
            if "ablab-progress" in o.get("data", {}).get("text/html", "")]


def no_warnings(nb) -> None:
    """No Python warning (``UserWarning: install "ipywidgets"``, ``TqdmWarning``...) and
    nothing on stderr in any output (the study's own methodology "Warnings" are results)."""
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            text = o.get("text", "") + "".join(str(v) for v in o.get("data", {}).values())
            assert "Warning:" not in text and "ipywidgets" not in text, text[:500]
            assert not (o["output_type"] == "stream" and o["name"] == "stderr"), o["text"]


@pytest.mark.slow
def test_example_notebook_runs_a_cell_defined_model_on_two_workers(kernel_env, tmp_path):
    nb, seconds = execute(nbformat.read(EXAMPLE, as_version=4), tmp_path)
    code = [c for c in nb.cells if c.cell_type == "code"]
    summary = [{"source": c.source.splitlines()[-1], "mime": mime_types(c)} for c in code]
    (tmp_path / "example-outputs.json").write_text(json.dumps(
        {"seconds": round(seconds, 1), "cells": summary}, indent=1))
    print(json.dumps({"seconds": round(seconds, 1), "cells": summary}))
    no_warnings(nb)
    imports, _, study, run, table, figure, reload = code
    assert "inline" in text_of(imports)  # the kernel's backend, untouched by import ablab
    assert "text/html" in mime_types(study) and "nb-moons" in html_of(study)
    assert "4 runs" in html_of(study) and "<Study 'nb-moons'" in text_of(study)
    # Run cell: one progress display (updated in place), then the results as HTML.
    progress = progress_outputs(run)
    assert len(progress) == 1
    assert "finished: 4 / 4 runs" in progress[0]["data"]["text/html"]
    assert "failed" not in progress[0]["data"]["text/html"]
    results_html = html_of(run)
    assert "4 of 4 runs done" in results_html or "4 done" in results_html, results_html[:800]
    assert "95 % CI" in results_html and "Verdicts" in results_html
    assert "data:image/png;base64," in results_html  # thumbnail of the main figure
    assert "\n" not in text_of(run).strip().split("<StudyResults", 1)[-1]
    assert "text/html" in mime_types(table)
    assert "image/png" in mime_types(figure)
    assert "(3, 2)" in text_of(reload)


BACKEND_CELLS = [
    "import matplotlib\nbefore = matplotlib.get_backend()\nbefore",
    "import ablab\nfrom torch import nn\n"
    "@ablab.register_model('fragile_net')\n"
    "def fragile_net(spec, *, width: int = 8):\n"
    "    if width == 3:\n"
    "        raise RuntimeError('width 3 breaks on purpose')\n"
    "    return nn.Sequential(nn.Flatten(), nn.Linear(2, width), spec.act(),\n"
    "                         nn.Linear(width, spec.num_classes))",
    "study = ablab.load_study('{study}')\nresults = study.run('{out}', workers=1)\nresults",
    "results.figure('learning_curves')",
    "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])",
    "results.figure('learning_curves')",
    "assert matplotlib.get_backend() == before, matplotlib.get_backend()\nbefore",
]


@pytest.mark.slow
def test_backend_unchanged_figures_inline_and_failures_in_one_display(kernel_env, tmp_path):
    study = moons_study(tmp_path, name="fragile", seeds=(0,), epochs=2,
                        extra='\n[[vary]]\n"model.width" = [3, 8]\n')
    text = study.read_text().replace('{ name = "mlp", hidden = [32, 32] }',
                                     '{ name = "fragile_net" }')
    study.write_text(text)
    cells = [c.format(study=study, out=tmp_path / "out") for c in BACKEND_CELLS]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nb, _ = execute(nb, tmp_path)
    no_warnings(nb)
    before, _, run, ablab_fig, user_plot, ablab_fig_after, after = nb.cells
    assert "inline" in text_of(before) and text_of(before) == text_of(after)
    assert "image/png" in mime_types(ablab_fig), html_of(run)  # before pyplot was imported
    assert "image/png" in mime_types(user_plot)  # the user's own plot still shows
    assert "image/png" in mime_types(ablab_fig_after)
    progress = progress_outputs(run)
    assert len(progress) == 1  # the failure is in the same display, not a new output
    shown = progress[0]["data"]["text/html"]
    assert "finished: 4 / 4 runs, 2 failed" in shown
    assert shown.count("width 3 breaks on purpose") == 2


# ---------------------------------------------------------------- shipping, in-process


def test_main_entries_that_cannot_be_pickled_say_so_in_one_line_and_run_here():
    from ablab.execute.shipping import ShippingError, pack_main_entries, pack_or_stay_here
    from ablab.registry import MODELS

    lock = threading.Lock()

    def locked_net(spec, *, width: int = 4):
        with lock:  # a lock cannot be pickled: this entry cannot reach a worker
            pass

    locked_net.__module__ = "__main__"
    MODELS.register("locked_net")(locked_net)
    try:
        with pytest.raises(ShippingError) as info:
            pack_main_entries()
        message = str(info.value)
        assert "\n" not in message and "'locked_net'" in message and "workers=1" in message
        assert pack_or_stay_here(1) == (None, True)
        with pytest.raises(ShippingError):
            pack_or_stay_here(2)
    finally:
        MODELS._entries.pop("locked_net")


def test_shipped_entries_are_registered_again_by_value():
    import cloudpickle

    from ablab.execute.shipping import install_entries, main_entries, pack_main_entries
    from ablab.registry import MODELS

    def shipped_net(spec, *, width: int = 5):
        return width

    shipped_net.__module__ = "__main__"
    MODELS.register("shipped_net", "by value")(shipped_net)
    try:
        assert ("model", "shipped_net") in main_entries()
        blob = pack_main_entries()
        MODELS._entries.pop("shipped_net")
        install_entries(blob)
        entry = MODELS.get("shipped_net")
        assert entry.fn is not shipped_net and entry.fn(None) == 5
        assert entry.summary == "by value" and entry.option_defaults() == {"width": 5}
        assert cloudpickle.loads(blob)[0][:2] == ("model", "shipped_net")
    finally:
        MODELS._entries.pop("shipped_net", None)


def test_unpicklable_main_model_trains_in_this_process_with_one_worker(tmp_path):
    from torch import nn

    import ablab
    from ablab.execute.shipping import ShippingError
    from ablab.registry import MODELS

    lock = threading.Lock()

    def locked_mlp(spec, *, width: int = 8):
        with lock:
            return nn.Sequential(nn.Flatten(), nn.Linear(2, width), spec.act(),
                                 nn.Linear(width, spec.num_classes))

    locked_mlp.__module__ = "__main__"
    MODELS.register("locked_mlp")(locked_mlp)
    try:
        path = moons_study(tmp_path, seeds=(0,), epochs=2)
        path.write_text(path.read_text().replace('{ name = "mlp", hidden = [32, 32] }',
                                                 '{ name = "locked_mlp" }'))
        study = ablab.load_study(path)
        with pytest.raises(ShippingError, match="workers=1"):
            ablab.run_study(study, tmp_path / "two", workers=2, report=False)
        outcome = ablab.run_study(study, tmp_path / "one", workers=1, report=False)
        assert outcome.counts["done"] == 2 and not outcome.failures
    finally:
        MODELS._entries.pop("locked_mlp", None)


def test_run_result_and_study_displays(tmp_path):
    """What Jupyter shows for a RunResult (its learning curves as PNG, one text line) and
    a Study (an HTML table of its variants, one text line), through IPython's formatters."""
    from conftest import tiny_run
    from IPython.core.interactiveshell import InteractiveShell

    import ablab
    from ablab.displays import register_ipython_displays

    shell = InteractiveShell.instance()
    try:
        assert register_ipython_displays(shell)
        result = ablab.train_run(tiny_run(epochs=2))
        data, _ = shell.display_formatter.format(result)
        assert data["image/png"][:8] == b"\x89PNG\r\n\x1a\n"
        assert data["text/plain"].startswith("<RunResult ") and "\n" not in data["text/plain"]
        study = ablab.load_study(moons_study(tmp_path, seeds=(0, 1)))
        data, _ = shell.display_formatter.format(study)
        assert "<td>activation=tanh</td><td>2</td>" in data["text/html"]
        line = f"<Study 'tiny': 4 runs, 2 variants, from {str(study.source)!r}>"
        assert data["text/plain"] == line
    finally:
        InteractiveShell.clear_instance()


RAY_SCRIPT = '''
import ablab
from torch import nn


@ablab.register_model("script_net")
def script_net(spec, *, width: int = 8):
    return nn.Sequential(nn.Flatten(), nn.Linear(2, width), spec.act(),
                         nn.Linear(width, spec.num_classes))


if __name__ == "__main__":
    outcome = ablab.run_study({study!r}, {out!r}, workers=2, threads=1, executor="ray",
                              report=False)
    print("COUNTS", outcome.counts["done"], outcome.counts["failed"])
'''


@pytest.mark.slow
def test_main_model_reaches_ray_workers(tmp_path):
    """Ray workers never import the driver's ``__main__``: without shipping all runs fail."""
    import subprocess

    pytest.importorskip("ray", reason="Ray is not installed")
    study = moons_study(tmp_path, seeds=(0,), epochs=2)
    study.write_text(study.read_text().replace('{ name = "mlp", hidden = [32, 32] }',
                                               '{ name = "script_net" }'))
    script = tmp_path / "driver.py"
    script.write_text(RAY_SCRIPT.format(study=str(study), out=str(tmp_path / "out")))
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), ABLAB_DOWNLOAD="0")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          env=env, timeout=400, cwd=tmp_path)
    assert "COUNTS 2 0" in proc.stdout, proc.stdout + proc.stderr[-2000:]


def test_an_edited_cell_registers_its_model_again():
    """A cell's code lives in a file named after its text: editing the cell and running it
    again defines a function of another origin, which replaces the one from __main__."""
    import ablab
    from ablab.registry import MODELS

    first = compile("def edited_net(spec, *, width: int = 4):\n    return width\n",
                    "/tmp/ipykernel_1/111.py", "exec")
    second = compile("def edited_net(spec, *, width: int = 9):\n    return width\n",
                     "/tmp/ipykernel_1/222.py", "exec")
    try:
        for code in (first, second):
            namespace = {"__name__": "__main__"}
            exec(code, namespace)
            ablab.register_model("edited_net")(namespace["edited_net"])
        assert MODELS.get("edited_net").option_defaults() == {"width": 9}
    finally:
        MODELS._entries.pop("edited_net", None)


def test_displays_are_registered_by_first_use_of_the_api_not_by_an_import():
    """Importing ablab.displays registers nothing; the first use of ``ablab``'s API in a
    running IPython teaches it how to show a Study, once."""
    from IPython.core.interactiveshell import InteractiveShell

    import ablab
    import ablab.displays  # noqa: F401 - imported, registers nothing
    from ablab.study import Study

    shell = InteractiveShell.instance()
    try:
        html = shell.display_formatter.formatters["text/html"]
        assert Study not in html.type_printers
        ablab._displays_registered = False
        ablab.__getattr__("load_study")
        assert Study in html.type_printers and ablab._displays_registered
    finally:
        InteractiveShell.clear_instance()
