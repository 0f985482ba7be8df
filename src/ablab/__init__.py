"""ablab: controlled deep-learning comparisons, from one TOML study to a report."""

import os
import sys

# Idle OpenMP threads sleep instead of spinning: when a study's workers, a test runner or
# anything else share the cores, spinning threads slowed training ~50x here (measured:
# digits MLP, 3 epochs, 2 threads beside another busy process: 16.7 s spinning, 0.28 s
# passive). Must be set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"

# ---------------------------------------------------------------- the Python API
# ``import ablab`` loads no torch, pandas or scikit-learn (a fraction of a second): each
# name below is imported on first use (PEP 562), and the built-in components register on
# a registry's first use (``ablab.registry.load_builtins``).

_API = {
    # the runnable Study (``study.run(out)``) and the load_study that gives one: the
    # runner's, a layer above the study parsing of ablab.study
    "Study": "ablab.runner",
    "load_study": "ablab.runner",
    "ExecutionOptions": "ablab.execution_options",
    "StudyResults": "ablab.results",
    "load_model": "ablab.results",
    "open_results": "ablab.results",
    "register_ipython_displays": "ablab.displays",
    "run_study": "ablab.runner",
    "train_run": "ablab.one_run",
    "run_tuned": "ablab.tune",
    "check_model": "ablab.models.core",
    "analyze": "ablab.external",
    **{
        f"register_{kind}": "ablab.plugins"
        for kind in (
            "activation", "dataset", "loss", "model", "optimizer", "probe", "schedule",
            "trainer",
        )
    },
}


def __getattr__(name: str):
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'ablab' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    _register_ipython_displays()
    return value


def _register_ipython_displays() -> None:
    """In IPython, once, when the API is first used: how to show a Study and a RunResult
    (``ablab.displays.register_ipython_displays``). Outside IPython nothing is imported."""
    global _displays_registered
    ipython = sys.modules.get("IPython")
    if _displays_registered or ipython is None or ipython.get_ipython() is None:
        return
    _displays_registered = True  # before the call: it looks its own name up here
    _displays_registered = __getattr__("register_ipython_displays")()


_displays_registered = False


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))


__all__ = [
    "ExecutionOptions",
    "Study",
    "StudyResults",
    "analyze",
    "check_model",
    "load_model",
    "load_study",
    "open_results",
    "register_activation",
    "register_dataset",
    "register_ipython_displays",
    "register_loss",
    "register_model",
    "register_optimizer",
    "register_probe",
    "register_schedule",
    "register_trainer",
    "run_study",
    "run_tuned",
    "train_run",
]
