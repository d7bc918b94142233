"""Naming a run directory: a mistyped one is answered with the close match among the runs."""

import difflib
from pathlib import Path

from transformer_cli.errors import RunError

CONFIG_FILE = "config.yaml"  # every run directory has its resolved config: it marks a run


def check_run_dir(run_dir: Path) -> None:
    """Raise RunError if `run_dir` does not exist, suggesting the sibling run directory with the
    closest name ("no run directory runs/tyo; did you mean runs/toy?")."""
    if run_dir.exists():
        return
    try:
        runs = [path.name for path in run_dir.parent.iterdir() if (path / CONFIG_FILE).is_file()]
    except OSError:  # no parent folder either, or one we may not list
        runs = []
    match = difflib.get_close_matches(run_dir.name, runs, n=1)
    hint = f"; did you mean {run_dir.with_name(match[0])}?" if match else ""
    raise RunError(f"no run directory {run_dir}{hint}")
