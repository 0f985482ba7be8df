"""ablab: controlled deep-learning comparisons, from one TOML study to a report."""

import os

# Idle OpenMP threads sleep instead of spinning: when a study's workers, a test runner or
# anything else share the cores, spinning threads slowed training ~50x here (measured:
# digits MLP, 3 epochs, 2 threads beside another busy process: 16.7 s spinning, 0.28 s
# passive). Must be set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from ablab import data as _data  # noqa: F401  (fills the dataset registry)
from ablab import models as _models  # noqa: F401  (fills model and activation registries)
from ablab import train as _train  # noqa: F401  (fills loss, optimizer, schedule registries)

__version__ = "0.1.0"

# ---------------------------------------------------------------- the Python API
# Light names are imported here; the results layer (pandas, matplotlib) on first use.

import types as _types  # noqa: E402

from ablab.plugins import (  # noqa: E402
    register_activation,
    register_dataset,
    register_loss,
    register_model,
    register_optimizer,
    register_probe,
    register_schedule,
)
from ablab.study import Study, load_study  # noqa: E402

_LAZY = {
    "StudyResults": "ablab.results",
    "open_results": "ablab.results",
    "train_run": "ablab.results",
    "load_model": "ablab.results",
    "run_study": "ablab.api",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ablab' has no attribute {name!r}")


class _CallableModule(_types.ModuleType):
    """``ablab.train`` stays the subpackage (``from ablab.train import fit``) and is also
    callable: ``ablab.train(config, **overrides)`` is :func:`ablab.train_run`."""

    def __call__(self, config, /, **options):
        from ablab.results import train_run

        return train_run(config, **options)


_train.__class__ = _CallableModule

__all__ = [
    "Study",
    "StudyResults",
    "load_model",
    "load_study",
    "open_results",
    "register_activation",
    "register_dataset",
    "register_loss",
    "register_model",
    "register_optimizer",
    "register_probe",
    "register_schedule",
    "run_study",
    "train",
    "train_run",
]
