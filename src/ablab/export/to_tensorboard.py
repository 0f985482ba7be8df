"""``ablab export DIR --to tensorboard``: TensorBoard event files, one folder per run.

Each run's folder (``LOGDIR/<label>-<run id>``) holds

* scalars per epoch (``step = epoch``): ``loss/train``, ``loss/val``, ``accuracy/train``,
  ``accuracy/val``, ``cross_entropy/val``, ``lr``;
* the final metrics as ``final/<name>`` at the last epoch (``final/test_accuracy``, ...);
* histograms ``activations/<layer>`` per epoch (epoch 0 = before training) when the run
  recorded the ``activations`` probe, from its stored counts and fixed bin edges;
* the resolved config as text (``config``).

Exporting again rewrites each run's event files. ``tensorboard --logdir LOGDIR`` shows
them. Events are written with ``torch.utils.tensorboard.SummaryWriter``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from ablab.export.common import final_metrics, history_metrics, require, stored_runs
from ablab.store import StudyStore

SCALAR_TAGS = {
    "train_loss": "loss/train",
    "val_loss": "loss/val",
    "train_accuracy": "accuracy/train",
    "val_accuracy": "accuracy/val",
    "val_cross_entropy": "cross_entropy/val",
    "lr": "lr",
}


def run_folder(label: str, run_id: str) -> str:
    """``activation=relu, seed=0`` → ``activation=relu,seed=0-<run id>``."""
    text = re.sub(r"[^A-Za-z0-9=.,_+-]+", "_", label.replace(", ", ","))
    return f"{text[:80]}-{run_id}"


def _histograms(writer, probe: dict[str, Any]) -> int:
    """Write the ``activations`` probe's histograms; returns how many."""
    written = 0
    layers, edges_by_layer = probe.get("layers") or [], probe.get("bin_edges") or []
    for epoch, per_layer in zip(probe.get("epochs") or [], probe.get("hist") or [], strict=False):
        for layer, edges, counts in zip(layers, edges_by_layer, per_layer or [], strict=False):
            if not counts or not edges or sum(counts) == 0:
                continue
            centers = [(a + b) / 2 for a, b in zip(edges[:-1], edges[1:], strict=False)]
            writer.add_histogram_raw(
                f"activations/{layer}",
                min=float(edges[0]),
                max=float(edges[-1]),
                num=int(sum(counts)),
                sum=float(sum(c * x for c, x in zip(counts, centers, strict=False))),
                sum_squares=float(sum(c * x * x for c, x in zip(counts, centers, strict=False))),
                bucket_limits=[float(e) for e in edges[1:]],
                bucket_counts=[int(c) for c in counts],
                global_step=int(epoch),
            )
            written += 1
    return written


def export_tensorboard(out: str | Path, logdir: str | Path | None = None) -> dict[str, Any]:
    """Write TensorBoard event files for every stored run of the study in ``out`` into
    ``logdir`` (default ``out/tensorboard``). Returns ``{"logdir", "runs",
    "histograms"}``."""
    require("tensorboard", "tensorboard")
    from torch.utils.tensorboard import SummaryWriter

    with StudyStore.existing(out) as store:
        logdir = Path(logdir) if logdir is not None else store.root / "tensorboard"
        runs = histograms = 0
        for run in stored_runs(store):
            folder = logdir / run_folder(run.label, run.run_id)
            for old in folder.glob("events.out.tfevents.*"):  # exporting again rewrites
                old.unlink()
            writer = SummaryWriter(log_dir=str(folder))
            try:
                for key, epoch, value in history_metrics(run.record):
                    writer.add_scalar(SCALAR_TAGS[key], value, global_step=epoch)
                last = int((run.record.get("final") or {}).get("epochs_run") or 0)
                for key, value in final_metrics(run.record).items():
                    writer.add_scalar(f"final/{key}", value, global_step=last)
                probe = (run.record.get("probes") or {}).get("activations")
                if isinstance(probe, dict):
                    histograms += _histograms(writer, probe)
                config = json.dumps(run.record.get("config"), indent=2)
                writer.add_text("config", "    " + config.replace("\n", "\n    "))
            finally:
                writer.close()
            runs += 1
    return {"logdir": logdir, "runs": runs, "histograms": histograms}
