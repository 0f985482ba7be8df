"""Rendering figures to bytes and writing them: PNG (and SVG) rendered in memory
through the Agg canvas whatever the global backend, then written atomically."""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

from ablab.report.figures.style import STYLE

if TYPE_CHECKING:
    from matplotlib.figure import Figure



def figure_bytes(fig: Figure, dpi: int = 110, svg: bool = False) -> tuple[bytes, str | None]:
    """The figure rendered in memory through the Agg canvas (whatever the global
    backend): PNG bytes, and the SVG text when ``svg``."""
    import matplotlib

    with matplotlib.rc_context(STYLE):
        png = io.BytesIO()
        fig.savefig(png, format="png", dpi=dpi, metadata={"Software": None})
        text = None
        if svg:
            out = io.StringIO()
            fig.savefig(out, format="svg", metadata={"Date": None})
            text = out.getvalue()
    return png.getvalue(), text

def save_figure(
    fig: Figure, folder: Path, name: str, dpi: int = 110, svg: bool = True
) -> dict[str, Path]:
    """Write ``folder/name.png`` (and ``folder/name.svg`` unless ``svg=False``)
    atomically (rendered in memory, then a temporary file renamed over the old one: a
    killed process never leaves half a figure); returns the paths written."""
    png, text = figure_bytes(fig, dpi, svg)
    return write_figure_files(folder, name, png, text)

def write_figure_files(folder: Path, name: str, png: bytes, svg: str | None) -> dict[str, Path]:
    """Write rendered bytes as ``folder/name.png`` (+ ``.svg`` when given), atomically."""
    from ablab.store import atomic_write_bytes, atomic_write_text

    paths = {"png": folder / f"{name}.png"}
    atomic_write_bytes(paths["png"], png)
    if svg is not None:
        paths["svg"] = folder / f"{name}.svg"
        atomic_write_text(paths["svg"], svg)
    return paths
