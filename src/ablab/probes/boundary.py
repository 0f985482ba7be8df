"""Decision-boundary snapshots for 2-D tabular problems (moons, circles).

The model's class probabilities on a ``grid × grid`` mesh over the normalized input
plane, stored compactly as base64 of uint8 bytes, plus the test points so a report can
draw both. ``ablab.stored_grid.decode_grid`` turns a stored grid back into an array.
"""

from __future__ import annotations

from typing import Annotated, Any

import torch
from pydantic import Field

from ablab import stored_grid
from ablab.errors import ConfigError
from ablab.probes.base import ProbeContext, eval_mode

_CHUNK = 4096  # mesh points per forward pass: small enough to stay in cache


def encode_grid(values: torch.Tensor) -> str:
    """A grid×grid tensor of bytes in its stored form (:mod:`ablab.stored_grid`)."""
    return stored_grid.encode_grid(values.to(torch.uint8).cpu().numpy())


class Boundary:
    """See :func:`boundary`."""

    def __init__(self, ctx: ProbeContext, grid: int, margin: float, epochs: list[int]):
        bundle = ctx.bundle
        if tuple(bundle.input_shape) != (2,):
            raise ConfigError(
                "probes.boundary: needs 2-D input (moons, circles); "
                f"the dataset gives shape {tuple(bundle.input_shape)}"
            )
        self.ctx, self.grid, self.at = ctx, grid, set(epochs)
        self.num_classes = bundle.num_classes
        with torch.no_grad():
            points = bundle.normalize(torch.cat([bundle.train.x, bundle.test.x]))
            lo = (points.min(dim=0).values - margin).tolist()
            hi = (points.max(dim=0).values + margin).tolist()
            xs = torch.linspace(lo[0], hi[0], grid, device=points.device)
            ys = torch.linspace(lo[1], hi[1], grid, device=points.device)
            gy, gx = torch.meshgrid(ys, xs, indexing="ij")  # row = y, column = x
            self.mesh = torch.stack([gx.flatten(), gy.flatten()], dim=1)
            test = bundle.normalize(bundle.test.x)
        self.x_range, self.y_range = [lo[0], hi[0]], [lo[1], hi[1]]
        self.test_points = {
            "x": [round(v, 5) for v in test[:, 0].tolist()],
            "y": [round(v, 5) for v in test[:, 1].tolist()],
            "label": bundle.test.y.tolist(),
        }
        self.snapshots: list[dict[str, Any]] = []
        if 0 in self.at:
            self.snapshots.append({"epoch": 0, **self._snapshot()})

    def _snapshot(self) -> dict[str, str]:
        model = self.ctx.model
        with eval_mode(model):
            probs = torch.cat(
                [
                    torch.softmax(model(self.mesh[s : s + _CHUNK]).float(), dim=1)
                    for s in range(0, self.mesh.shape[0], _CHUNK)
                ]
            )
        probs = torch.nan_to_num(probs, nan=0.0)
        if self.num_classes == 2:
            return {"prob": encode_grid((probs[:, 1] * 255).round())}
        top, cls = probs.max(dim=1)
        return {"prob": encode_grid((top * 255).round()), "argmax": encode_grid(cls)}

    def on_epoch_end(self, epoch: int) -> None:
        if epoch in self.at:
            self.snapshots.append({"epoch": epoch, **self._snapshot()})

    def finish(self) -> dict[str, Any]:
        return {
            "grid": self.grid,
            "x_range": self.x_range,
            "y_range": self.y_range,
            "num_classes": self.num_classes,
            "encoding": "base64 uint8, row-major grid x grid, row = y, column = x",
            "final": self._snapshot(),
            "snapshots": self.snapshots,
            "test_points": self.test_points,
        }


def boundary(
    ctx: ProbeContext,
    *,
    grid: Annotated[int, Field(ge=10, le=1000)] = 200,
    margin: Annotated[float, Field(ge=0)] = 0.5,
    epochs: list[Annotated[int, Field(ge=0)]] = [],
) -> Boundary:
    """The model's class probabilities on a ``grid × grid`` mesh covering the normalized
    training and test inputs ± ``margin`` (fixed for the run), at the end of training (after
    best weights are restored) and after each epoch listed in ``epochs`` (0 = before
    training; epochs the run never reaches are skipped). Needs 2-D input; any other shape
    is a ConfigError.

    Output::

        {"grid": G, "x_range": [x_min, x_max], "y_range": [y_min, y_max],
         "num_classes": K, "encoding": "...",
         "final": SNAPSHOT, "snapshots": [{"epoch": e, **SNAPSHOT}, ...],
         "test_points": {"x": [...], "y": [...], "label": [...]}}   # normalized coords

    A SNAPSHOT is ``{"prob": B64}`` for two classes, where ``prob`` is P(class 1), and
    ``{"prob": B64, "argmax": B64}`` for more, where ``argmax`` is the predicted class and
    ``prob`` its probability. Each B64 is base64 of G×G uint8 bytes, row-major: row ``i``
    is y = linspace(y_min, y_max, G)[i], column ``j`` is x = linspace(x_min, x_max, G)[j];
    probabilities are round(p × 255). ``decode_grid(b64, G)`` gives probabilities back,
    ``decode_grid(b64, G, scale=1)`` class indices.
    """
    return Boundary(ctx, grid, margin, epochs)
