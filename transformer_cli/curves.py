"""Training curves (`tcli plot`): one figure of panels drawn from runs' metrics.jsonl files.

Reading a run's records again is all it takes, so a run can be plotted while it trains, and a
resumed run (which appends to the same file) plots as one.
"""

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from transformer_cli.errors import DataError, RunError, TcliError
from transformer_cli.plots import new_figure, save_figure
from transformer_cli.records import read_records
from transformer_cli.rundir import RunDir, check_run_dir

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@dataclass(frozen=True)
class Panel:
    kind: str  # which records: "train" or "valid"
    keys: tuple[str, ...]  # one line per key and run: the first solid, the second dashed
    title: str


PANELS = (
    Panel("train", ("loss",), "training loss"),
    Panel("valid", ("loss",), "validation loss (perplexity on the right)"),
    Panel("valid", ("bleu", "chrf"), "validation BLEU (solid) and chrF (dashed)"),
    Panel("train", ("lr",), "learning rate"),
    Panel("train", ("tokens_per_s",), "target tokens per second"),
)
EMPTY = {"train": "no training records yet", "valid": "no validation yet"}


@dataclass(frozen=True)
class RunCurves:
    label: str
    records: dict[str, list[dict]]  # "train" and "valid" records, by step


def parse_run(spec: str) -> tuple[Path, str]:
    """RUN_DIR or RUN_DIR=LABEL; the label defaults to the directory's name."""
    path, label = spec, ""
    if "=" in spec and not Path(spec).exists():  # a directory may have "=" in its name
        path, _, label = spec.rpartition("=")
    return Path(path), label or Path(path).resolve().name


def read_run(run_dir: Path, label: str) -> RunCurves:
    """A run's train and valid records, sorted by step; of two records of a step, the later
    wins (a resumed run redoes the steps after its last checkpoint)."""
    path = RunDir(run_dir).metrics
    check_run_dir(run_dir)
    if not path.is_file():
        raise RunError(f"{run_dir} is not a tcli run directory (no {path.name})")
    try:
        records = read_records(path)
    except OSError as err:
        raise DataError(f"cannot read {path}: {err}") from None
    by_step: dict[str, dict[int, dict]] = {"train": {}, "valid": {}}
    for record in records:
        if isinstance(record, dict) and record.get("kind") in by_step:
            by_step[record["kind"]][record["step"]] = record
    if not any(by_step.values()):
        raise DataError(f"{path} has no training or validation records yet")
    return RunCurves(label, {kind: [s[k] for k in sorted(s)] for kind, s in by_step.items()})


def training_curves(runs: list[tuple[Path, str]], minutes: bool = False) -> "Figure":
    """The figure of PANELS for `runs` (RUN_DIR, label), one colour per run, against steps or,
    with `minutes`, minutes of training."""
    curves = [read_run(path, label) for path, label in runs]
    figure = new_figure(figsize=(12, 6.5), layout="constrained")
    from matplotlib.lines import Line2D  # importable now: new_figure found matplotlib
    from matplotlib.ticker import FuncFormatter, MaxNLocator, StrMethodFormatter

    grid = figure.add_gridspec(2, 6)  # three panels of results above, two of the machinery below
    cells = (grid[0, 0:2], grid[0, 2:4], grid[0, 4:6], grid[1, 0:3], grid[1, 3:6])
    axes = [figure.add_subplot(cell) for cell in cells]
    x_key, x_scale = ("elapsed_s", 1 / 60) if minutes else ("step", 1)
    for number, run in enumerate(curves):
        for axis, panel in zip(axes, PANELS, strict=True):
            for key, style in zip(panel.keys, ("-", "--"), strict=False):
                records = run.records[panel.kind]  # a key is null where all steps were skipped
                points = [(r[x_key] * x_scale, r[key]) for r in records if r.get(key) is not None]
                if points:
                    xs, ys = zip(*points, strict=True)
                    marker = "o" if panel.kind == "valid" else None  # few points: show each
                    axis.plot(xs, ys, style, color=f"C{number}", marker=marker, markersize=3)
    for axis, panel in zip(axes, PANELS, strict=True):
        axis.set_title(panel.title, fontsize=10)
        axis.set_xlabel("minutes of training" if minutes else "step")
        # few round ticks: labels such as 0.0175 (a short run in minutes) would overlap
        axis.xaxis.set_major_locator(MaxNLocator(nbins=5, steps=[1, 2, 5, 10]))
        axis.grid(alpha=0.3)
        if not axis.lines:
            axis.set(xticks=[], yticks=[])  # no made-up 0-1 scale
            axis.text(0.5, 0.5, EMPTY[panel.kind], transform=axis.transAxes, ha="center",
                      va="center", color="0.4")  # fmt: skip
    if axes[1].lines:  # perplexity is exp(loss): the right axis labels the loss ticks with it
        perplexity = axes[1].secondary_yaxis("right")
        perplexity.yaxis.set_major_formatter(FuncFormatter(lambda loss, _: _perplexity(loss)))
        perplexity.set_ylabel("perplexity")
    axes[4].yaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    handles = [Line2D([], [], color=f"C{number}", label=run.label) for number, run in
               enumerate(curves)]  # fmt: skip
    figure.legend(handles=handles, loc="outside upper center", ncols=min(len(curves), 6),
                  frameon=False)  # fmt: skip
    return figure


def plot_training_curves(
    runs: list[tuple[Path, str]], out: Path | None = None, minutes: bool = False
) -> Path:
    """Write the training curves of `runs` (RUN_DIR, label) to the PNG `out`, by default
    RUN_DIR/curves.png of a single run; returns the path written."""
    if out is None:
        if len(runs) != 1:
            raise TcliError("several runs make one picture: give its file with --out FILE.png")
        out = RunDir(runs[0][0]).curves
    elif out.suffix.lower() != ".png":
        raise TcliError(f"--out {out}: the picture is a PNG; give a file name ending in .png")
    return save_figure(training_curves(runs, minutes), out)


def _perplexity(loss: float) -> str:
    value = math.exp(loss)
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"
