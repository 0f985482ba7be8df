"""Learning-rate schedules, stepped once per epoch after validation.

Each entry returns an object with ``step(epoch_metrics)``; ``reduce_on_plateau`` reads its
``monitor`` from those metrics and follows Keras's ReduceLROnPlateau semantics.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal, Protocol

from pydantic import Field

from ablab.registry import SCHEDULES

if TYPE_CHECKING:  # each schedule imports torch when it is built
    import torch

Monitor = Literal["val_loss", "val_accuracy"]


class EpochSchedule(Protocol):
    def step(self, metrics: dict[str, float]) -> None: ...


class _Constant:
    def step(self, metrics: dict[str, float]) -> None:
        pass


class _Torch:
    """Adapts a ``torch.optim.lr_scheduler`` that steps without a metric."""

    def __init__(self, scheduler: torch.optim.lr_scheduler.LRScheduler):
        self.scheduler = scheduler

    def step(self, metrics: dict[str, float]) -> None:
        self.scheduler.step()


class _Plateau:
    def __init__(self, scheduler: torch.optim.lr_scheduler.ReduceLROnPlateau, monitor: str):
        self.scheduler, self.monitor = scheduler, monitor

    def step(self, metrics: dict[str, float]) -> None:
        self.scheduler.step(metrics[self.monitor])


@SCHEDULES.register("none", "constant learning rate")
def none(optimizer: torch.optim.Optimizer, epochs: int) -> EpochSchedule:
    return _Constant()


@SCHEDULES.register("exponential", "lr × gamma after every epoch")
def exponential(
    optimizer: torch.optim.Optimizer,
    epochs: int,
    *,
    gamma: Annotated[float, Field(gt=0, le=1)] = 0.95,
) -> EpochSchedule:
    import torch

    return _Torch(torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=gamma))


@SCHEDULES.register("step", "lr × gamma every step_size epochs")
def step(
    optimizer: torch.optim.Optimizer,
    epochs: int,
    *,
    step_size: Annotated[int, Field(gt=0)] = 10,
    gamma: Annotated[float, Field(gt=0, le=1)] = 0.1,
) -> EpochSchedule:
    import torch

    return _Torch(torch.optim.lr_scheduler.StepLR(optimizer, step_size=step_size, gamma=gamma))


@SCHEDULES.register("cosine", "cosine annealing to eta_min over t_max epochs (default: all)")
def cosine(
    optimizer: torch.optim.Optimizer,
    epochs: int,
    *,
    t_max: Annotated[int, Field(gt=0)] | None = None,
    eta_min: Annotated[float, Field(ge=0)] = 0.0,
) -> EpochSchedule:
    import torch

    return _Torch(
        torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=t_max or epochs, eta_min=eta_min
        )
    )


@SCHEDULES.register("reduce_on_plateau", "Keras ReduceLROnPlateau on a validation metric")
def reduce_on_plateau(
    optimizer: torch.optim.Optimizer,
    epochs: int,
    *,
    monitor: Monitor = "val_loss",
    factor: Annotated[float, Field(gt=0, lt=1)] = 0.1,
    patience: Annotated[int, Field(gt=0)] = 10,
    min_delta: Annotated[float, Field(ge=0)] = 1e-4,
    cooldown: Annotated[int, Field(ge=0)] = 0,
    min_lr: Annotated[float, Field(ge=0)] = 0.0,
) -> EpochSchedule:
    import torch

    # Keras reduces once `patience` epochs in a row have not improved; torch waits for
    # more than `patience` bad epochs, hence patience - 1.
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer,
        mode="min" if monitor == "val_loss" else "max",
        factor=factor,
        patience=patience - 1,
        threshold=min_delta,
        threshold_mode="abs",
        cooldown=cooldown,
        min_lr=min_lr,
    )
    return _Plateau(scheduler, monitor)


def build_schedule(name: str, options: dict, optimizer, epochs: int) -> EpochSchedule:
    return SCHEDULES.get(name).fn(optimizer, epochs, **options)
