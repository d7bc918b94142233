"""Pictures: a figure made without pyplot's global state, saved atomically as a PNG.

matplotlib is the optional extra `plot` (pip install 'transformer-cli[plot]'); every picture is
made through `new_figure`, so its absence is one line naming the extra.
"""

from pathlib import Path
from typing import TYPE_CHECKING, Any

from transformer_cli.errors import TcliError
from transformer_cli.files import atomic_write

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def require_matplotlib() -> type["Figure"]:
    """matplotlib's Figure class, or the one-line error naming the extra that installs it."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise TcliError(
            "pictures need matplotlib, the optional extra 'plot': "
            "pip install 'transformer-cli[plot]'"
        ) from None
    return Figure


def new_figure(**kwargs: Any) -> "Figure":
    """A matplotlib Figure (no window, no backend to choose: it only ever renders to files)."""
    return require_matplotlib()(**kwargs)


def save_figure(figure: "Figure", path: str | Path, dpi: int = 100) -> Path:
    """Write `figure` to `path` as a PNG, atomically (a crash leaves no half-written picture)."""
    path = Path(path)
    atomic_write(path, lambda tmp: figure.savefig(tmp, format="png", dpi=dpi))
    return path


def heatmap_figure(
    panels: "list[tuple[Any, str, list[str], list[str]]]",
    title: str,
    row_axis: str = "query",
    column_axis: str = "key",
) -> "Figure":
    """One heatmap per (matrix, panel title, row labels, column labels), each with its colour bar,
    up to four panels a row; the labels (subword pieces) are the ticks.

    The figure grows with the number of labels, so that a 25-piece sentence's ticks never
    overlap (about 0.3 inch a label).
    """
    across = min(len(panels), 4)
    down = -(-len(panels) // across)
    longest_rows = max(len(rows) for _, _, rows, _ in panels)
    longest_columns = max(len(columns) for _, _, _, columns in panels)
    width = max(3.2, 0.3 * longest_columns + 2.0) * across
    height = max(2.6, 0.3 * longest_rows + 1.7) * down + 0.4
    figure = new_figure(figsize=(width, height), layout="constrained")
    figure.suptitle(title, fontsize=10)
    axes = figure.subplots(down, across, squeeze=False).flatten()
    for axis, (matrix, panel_title, rows, columns) in zip(axes, panels, strict=False):
        image = axis.imshow(matrix, cmap="viridis", vmin=0, aspect="auto", interpolation="none")
        axis.set_xticks(range(len(columns)), labels=columns, rotation=90, fontsize=8)
        axis.set_yticks(range(len(rows)), labels=rows, fontsize=8)
        axis.set_xlabel(column_axis, fontsize=8)
        axis.set_ylabel(row_axis, fontsize=8)
        axis.set_title(panel_title, fontsize=9)
        figure.colorbar(image, ax=axis, shrink=0.8).ax.tick_params(labelsize=7)
    for axis in axes[len(panels) :]:
        axis.set_visible(False)
    return figure
