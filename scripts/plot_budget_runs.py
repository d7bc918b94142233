"""Training curves of several runs against wall-clock minutes, for the README's budget table.

    .venv/bin/python scripts/plot_budget_runs.py RUN_DIR[=LABEL] ... --out docs/budget-runs.png

Three panels from each run's metrics.jsonl: training loss, validation BLEU and learning rate.
Needs matplotlib (pip install matplotlib); a development script, not part of tcli.
"""

import argparse
from pathlib import Path

from matplotlib.figure import Figure

from transformer_cli.records import read_records

PANELS = (("train", "loss", "training loss"), ("valid", "bleu", "validation BLEU (greedy)"),
          ("train", "lr", "learning rate"))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="RUN_DIR or RUN_DIR=LABEL")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    figure = Figure(figsize=(12, 3.4), layout="constrained")
    axes = figure.subplots(1, len(PANELS))
    for spec in args.runs:
        run, _, label = spec.partition("=")
        records = read_records(Path(run) / "metrics.jsonl")
        for axis, (kind, key, title) in zip(axes, PANELS, strict=True):
            points = [(r["elapsed_s"] / 60, r[key]) for r in records if r["kind"] == kind]
            axis.plot(*zip(*points, strict=True), marker="o" if kind == "valid" else None,
                      markersize=3, label=label or Path(run).name)  # fmt: skip
            axis.set_title(title)
            axis.set_xlabel("minutes")
    axes[0].set_ylim(top=6)
    axes[0].legend(fontsize=8)
    figure.savefig(args.out, dpi=90)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
