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
# The runner is imported now (it registers what ``Study.run`` calls); the results layer's
# heavy parts (pandas, matplotlib) load on first use.

from ablab.models.core import check_model  # noqa: E402
from ablab.plugins import (  # noqa: E402
    register_activation,
    register_dataset,
    register_loss,
    register_model,
    register_optimizer,
    register_probe,
    register_schedule,
)
from ablab.results import StudyResults, load_model, open_results  # noqa: E402
from ablab.runner import run_study, train_run  # noqa: E402
from ablab.study import Study, load_study  # noqa: E402
from ablab.tune import run_tuned  # noqa: E402

__all__ = [
    "Study",
    "StudyResults",
    "check_model",
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
    "run_tuned",
    "train_run",
]
