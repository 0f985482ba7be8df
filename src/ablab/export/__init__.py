"""Export a study directory to other tools: MLflow and TensorBoard (optional extras).

    >>> from ablab.export import export_mlflow, export_tensorboard         # doctest: +SKIP
    >>> export_mlflow("out/moons", tracking_uri="sqlite:///mlflow.db")     # doctest: +SKIP
    >>> export_tensorboard("out/moons", logdir="out/moons/tensorboard")    # doctest: +SKIP

Both read only what the store holds (records, report) and write nothing into the study
directory except, for TensorBoard, the default log folder ``DIR/tensorboard``. A missing
extra is a :class:`~ablab.errors.UserError` naming the ``pip install`` to run.
"""

from ablab.export.common import (
    ExportedRun,
    final_metrics,
    flatten,
    history_metrics,
    require,
    stored_runs,
)
from ablab.export.to_mlflow import export_mlflow
from ablab.export.to_tensorboard import export_tensorboard

EXPORTERS = {"mlflow": export_mlflow, "tensorboard": export_tensorboard}

__all__ = [
    "EXPORTERS",
    "ExportedRun",
    "export_mlflow",
    "export_tensorboard",
    "final_metrics",
    "flatten",
    "history_metrics",
    "require",
    "stored_runs",
]
