"""A run directory: naming one (a mistyped one is answered with the close match among the runs),
and reading the config saved in it.

A run directory holds everything needed to translate, and nothing needs the original config file:

    config.yaml       the resolved config the run was trained with
    tokenizer.model   the joint SentencePiece model (or tokenizer.src.model and tokenizer.tgt.model)
    cache/            the training corpus as token ids; see data/cache.py
    checkpoints/      weights (best, every saved step) and training state; see checkpoint.py
    metrics.jsonl     one JSON object per logged step and per validation; see records.py
    train.log         the lines training printed, with timestamps
"""

import difflib
from pathlib import Path
from typing import TYPE_CHECKING

from transformer_cli.errors import RunError

if TYPE_CHECKING:
    from transformer_cli.config import Config

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


def read_config(run_dir: Path) -> "Config":
    """The resolved config saved in a run directory."""
    from transformer_cli.config import load_config  # it imports the model: `tcli plot` need not

    check_run_dir(run_dir)
    config_file = run_dir / CONFIG_FILE
    if not config_file.is_file():
        raise RunError(f"{run_dir} is not a tcli run directory (no {CONFIG_FILE}); train one first")
    return load_config(config_file)
