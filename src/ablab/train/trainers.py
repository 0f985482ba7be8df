"""Trainers: what trains one run. The built-in loop is one of them (the default); a user's
own training code is another, registered with ``@ablab.register_trainer``, and an existing
script runs through the ``command`` trainer (:mod:`ablab.train.command`).

A trainer is a function ``fn(run, *, options...)``. Its keyword-only parameters are its
options (validated, listed by ``ablab list trainers``, set and varied in a study as
``trainer.NAME``). ``run`` (:class:`Run`) gives it the run's seeds, device and thread
budget, a folder for its own files, the study's dataset as ablab splits it for this seed
(``run.data("train")``: numpy arrays ``.x`` and ``.y``, the same split the built-in loop
trains on) and ``run.log(step, **metrics)`` for curves. It returns its final metrics as a
dict (the built-in loop returns its whole :class:`~ablab.train.result.RunResult`)::

    @ablab.register_trainer("sk_logreg")
    def sk_logreg(run, *, C: float = 1.0) -> dict:
        train, test = run.data("train"), run.data("test")
        model = LogisticRegression(C=C, random_state=run.seed).fit(train.x, train.y)
        return {"roc_auc": roc_auc_score(test.y, model.predict_proba(test.x)[:, 1])}

:func:`train_one` runs any trainer the same way and judges what it returned against the
study's declared metric (:func:`check_outcome`): missing, not a number, out of its declared
range -> failed; not finite -> diverged.
"""

from __future__ import annotations

import math
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ablab.config import BUILTIN_TRAINER, RunConfig, run_id
from ablab.lazy import LazyModule
from ablab.registry import TRAINERS
from ablab.train.result import RunResult

np = LazyModule("numpy")  # imported where data is read: listing and planning need none

__all__ = [
    "DataSplit",
    "Run",
    "RunFailed",
    "RunTimedOut",
    "check_outcome",
    "time_limit",
    "timed_out_message",
    "train_one",
]


class RunFailed(Exception):
    """A run failed for a reason already worded for its record (one line)."""


class RunTimedOut(RunFailed):
    """A run went past its ``timeout``."""


def timed_out_message(seconds: float) -> str:
    return f"timed out after {seconds:g} s"


@dataclass(frozen=True)
class DataSplit:
    """One split of the study's dataset as numpy arrays: ``x`` (normalized as the built-in
    loop normalizes it, float32, one example per row of the first axis) and ``y``."""

    x: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return int(self.y.shape[0])


class Run:
    """What a trainer gets for one run."""

    def __init__(
        self,
        config: RunConfig,
        artefacts: Path,
        on_epoch: Callable[[dict[str, Any]], None] | None = None,
    ):
        from ablab.train.state import resolve_device

        #: The resolved run config (``run.config.trainer.options``, ``run.config.dataset``).
        self.config = config
        self.seed = config.seed
        self.split_seed = config.split_seed
        self.init_seed = config.init_seed_value
        self.order_seed = config.order_seed_value
        self.device = str(resolve_device(config.device))
        self.threads = _threads()
        self.timeout = config.timeout
        #: A folder of the trainer's own (DIR/runs/ID/ in a study), created on first use.
        self.artefacts = artefacts
        self.history: list[dict[str, Any]] = []
        self._on_epoch = on_epoch
        self._bundle = None

    def data(self, which: str) -> DataSplit:
        """``"train"``, ``"val"`` or ``"test"``: the study's dataset as the built-in loop
        splits it for this run's split seed."""
        if which not in ("train", "val", "test"):
            raise ValueError(f'run.data: {which!r}; allowed: "train", "val", "test"')
        if self.config.dataset is None:
            raise RunFailed(
                f"trainer {self.config.trainer.name!r} asked for run.data({which!r}), but "
                "the run names no dataset"
            )
        if self._bundle is None:
            from ablab.data import load_data

            self._bundle = load_data(self.config.dataset, self.config.seed, "cpu")
        split = getattr(self._bundle, which)
        if split is None:
            raise RunFailed(
                f'run.data("{which}"): the run holds out no validation data '
                "(dataset.val_fraction is 0)"
            )
        x = self._bundle.normalize(split.x).numpy()
        return DataSplit(x, split.y.numpy())

    @property
    def class_names(self) -> list[str]:
        self.data("train")
        return list(self._bundle.class_names)

    def log(self, step: int, **metrics: float) -> None:
        """Record metrics at ``step`` (an epoch, an iteration): they join the run's history,
        which the report's learning curves read (``val_accuracy``, ``train_loss``, ...)."""
        entry: dict[str, Any] = {"epoch": int(step)}
        entry.update({k: _number(v) for k, v in metrics.items()})
        self.history.append(entry)
        if self._on_epoch is not None:
            self._on_epoch(entry)

    def sizes(self) -> dict[str, int]:
        return {} if self._bundle is None else self._bundle.sizes()


def _threads() -> int:
    try:
        import torch

        return int(torch.get_num_threads())
    except ImportError:  # pragma: no cover - torch is a dependency
        return 1


def _number(value: Any) -> Any:
    """numpy scalars and 0-d arrays as Python numbers; non-finite floats as None (JSON
    holds no NaN); anything else as it is."""
    if isinstance(value, np.generic | np.ndarray) and np.ndim(value) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# ---------------------------------------------------------------- running a trainer


@contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Raise :class:`RunTimedOut` in this (main) thread after ``seconds``: where no parent
    process watches the run (the Ray executor's tasks, a run trained in the calling
    process). Elsewhere, or without a limit, does nothing."""
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum, frame):
        raise RunTimedOut(timed_out_message(seconds))

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextmanager
def _artefacts_folder(given: str | Path | None) -> Iterator[Path]:
    """The run's artefacts folder: ``given`` (kept), else a temporary one (removed)."""
    if given is not None:
        yield Path(given)
        return
    folder = Path(tempfile.mkdtemp(prefix="ablab-run-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def train_one(
    cfg: RunConfig,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    artefacts: str | Path | None = None,
) -> RunResult:
    """Train one run with its trainer and judge the outcome (:func:`check_outcome`).
    Raises :class:`RunFailed` for a run that failed for a reason ablab words itself (a
    missing or out-of-range metric); a trainer's own exception propagates."""
    entry = TRAINERS.get(cfg.trainer.name)
    started = time.perf_counter()
    with _artefacts_folder(artefacts) as folder:
        run = Run(cfg, folder, on_epoch)
        returned = entry.fn(run, **cfg.trainer.options)
        if isinstance(returned, RunResult):  # a trainer that records everything itself
            return check_outcome(returned, cfg)
        result = _result_of(run, returned, time.perf_counter() - started)
    non_finite = {k: repr(v) for k, v in returned.items() if _non_finite(v)}
    return check_outcome(result, cfg, non_finite)


def _result_of(run: Run, returned: Any, seconds: float) -> RunResult:
    name = run.config.trainer.name
    if not isinstance(returned, dict):
        raise RunFailed(
            f"trainer {name!r} returned {type(returned).__name__}, not a dict of metrics"
        )
    final = {str(k): _number(v) for k, v in returned.items()}
    final["seconds"] = seconds
    return RunResult(
        run_id=run_id(run.config),
        config=run.config.resolved(),
        status="done",
        history=run.history,
        final=final,
        sizes=run.sizes(),
        device=run.device,
    )


def _non_finite(value: Any) -> bool:
    try:
        return isinstance(value, float | np.floating) and not math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def check_outcome(
    result: RunResult, cfg: RunConfig, non_finite: dict[str, str] | None = None
) -> RunResult:
    """The declared metric (``cfg.metric_spec``) against what a done run returned: missing
    or not a number -> :class:`RunFailed` naming it and the keys returned; not finite (in
    ``non_finite``: the returned values that were, stored as None) -> the run is diverged;
    outside the declared range -> :class:`RunFailed` naming it. A run that is already
    diverged (the built-in loop's non-finite loss) is left as it is."""
    spec = cfg.metric_spec
    non_finite = non_finite or {}
    if result.status != "done":
        return result
    if spec.name in non_finite:
        result.status = "diverged"
        result.error = f"{spec.name} is {non_finite[spec.name]} (not finite)"
        return result
    if spec.name not in result.final:
        keys = [k for k in result.final if k != "seconds"]
        raise RunFailed(
            f"trainer {cfg.trainer.name!r} returned no {spec.name!r} (the study's metric); "
            f"it returned: {', '.join(keys) or 'nothing'}"
        )
    value = result.final[spec.name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RunFailed(
            f"trainer {cfg.trainer.name!r} returned {spec.name} = {value!r}, not a number"
        )
    low, high = spec.range or (None, None)
    if (low is not None and value < low) or (high is not None and value > high):
        shown = f"[{'' if low is None else f'{low:g}'}, {'' if high is None else f'{high:g}'}]"
        raise RunFailed(f"{spec.name} = {value:g} is outside its declared range {shown}")
    return result


# ---------------------------------------------------------------- the built-in loop


@TRAINERS.register(
    BUILTIN_TRAINER,
    "ablab's own training loop: the run config's model, loss, optimizer, schedule, "
    "epochs, probes",
)
def builtin(run: Run) -> RunResult:
    from ablab.train import loop  # torch: only where a run trains

    # ``loop.fit`` looked up per call: tests replace it there
    return loop.fit(run.config, on_epoch=run._on_epoch)  # noqa: SLF001 - same module
