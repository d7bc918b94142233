"""A run directory: where each of its files is (`RunDir`, `CheckpointDir`), naming one (a mistyped
one is answered with the close match among the runs), and reading the config saved in it."""

import difflib
import re
from pathlib import Path
from typing import TYPE_CHECKING

from transformer_cli.errors import RunError

if TYPE_CHECKING:
    from transformer_cli.config import Config


class RunDir:
    """The paths of a run directory; every module asks here rather than naming a file itself.

    A run directory holds everything needed to translate, and nothing needs the original config
    file:

        config.yaml       the resolved config the run was trained with: it marks a run directory
        tokenizer.model   the joint SentencePiece model, or one per language: tokenizer.src.model
                          and tokenizer.tgt.model
        cache/            the training corpus as token ids; see data/cache.py
        checkpoints/      weights (best, every saved step) and training state; see CheckpointDir
        metrics.jsonl     one JSON object per logged step and per validation; see records.py
        train.log         the lines training printed, with timestamps
        tensorboard/      the same records for TensorBoard, with train.tensorboard: true
        curves.png        the training curves, where `tcli plot RUN_DIR` draws them
        explain/          the pictures of `tcli explain RUN_DIR --text ...`, unless --out says
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.config = root / "config.yaml"
        self.joint_tokenizer = root / "tokenizer.model"
        self.source_tokenizer = root / "tokenizer.src.model"
        self.target_tokenizer = root / "tokenizer.tgt.model"
        # a run has the joint model, or the source and the target model
        self.tokenizers = (self.joint_tokenizer, self.source_tokenizer, self.target_tokenizer)
        self.cache = root / "cache"
        self.checkpoints = CheckpointDir(root / "checkpoints")
        self.metrics = root / "metrics.jsonl"
        self.train_log = root / "train.log"
        self.tensorboard = root / "tensorboard"
        self.curves = root / "curves.png"
        self.explain = root / "explain"
        # beside the run: where --overwrite moves the run it replaces until the new one has started
        self.replaced = root.with_name(f".{root.name}.replaced")


class CheckpointDir:
    """The paths of a folder of checkpoints, a run's checkpoints/, which checkpoint.py reads
    and writes:

        step-00000800.safetensors   model weights after optimizer step 800
        step-00000800.state.pt      optimizer, RNG states, data position, counters (for --resume)
        best.safetensors            the weights with the best validation score
        latest.json                 {"step": 800}, written last: it names only whole checkpoints
        average-last-5.safetensors  written by `tcli average`
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.best = self.weights("best")
        self.latest = root / "latest.json"

    def weights(self, name: int | str) -> Path:
        """The weights of a step (a number) or of a name (best, average-last-5, step-00000800)."""
        return self.root / f"{_step_name(name) if isinstance(name, int) else name}.safetensors"

    def state(self, step: int) -> Path:
        return self.root / f"{_step_name(step)}.state.pt"

    def averaged(self, last: int) -> Path:
        return self.weights(f"average-last-{last}")

    def all_weights(self) -> list[Path]:
        """Every weights file in the folder, in no particular order."""
        return list(self.root.glob("*.safetensors"))

    @staticmethod
    def step_of(weights: Path) -> int | None:
        """The step whose weights `weights` holds, or None if it is not a step's weights file."""
        match = _STEP_WEIGHTS.fullmatch(weights.name)
        return int(match.group(1)) if match else None

    @staticmethod
    def name_of(weights: Path) -> str:
        """What --checkpoint calls a weights file: its name without the suffix."""
        return weights.name.removesuffix(".safetensors")


def _step_name(step: int) -> str:
    return f"step-{step:08d}"


_STEP_WEIGHTS = re.compile(r"step-(\d+)\.safetensors")  # a step's weights, as weights() names them


def check_run_dir(run_dir: Path) -> None:
    """Raise RunError if `run_dir` does not exist, suggesting the sibling run directory with the
    closest name ("no run directory runs/tyo; did you mean runs/toy?")."""
    if run_dir.exists():
        return
    try:
        runs = [path.name for path in run_dir.parent.iterdir() if RunDir(path).config.is_file()]
    except OSError:  # no parent folder either, or one we may not list
        runs = []
    match = difflib.get_close_matches(run_dir.name, runs, n=1)
    hint = f"; did you mean {run_dir.with_name(match[0])}?" if match else ""
    raise RunError(f"no run directory {run_dir}{hint}")


def read_config(run_dir: Path) -> "Config":
    """The resolved config saved in a run directory."""
    from transformer_cli.config import load_config  # it imports the model: `tcli plot` need not

    check_run_dir(run_dir)
    config_file = RunDir(run_dir).config
    if not config_file.is_file():
        raise RunError(
            f"{run_dir} is not a tcli run directory (no {config_file.name}); train one first"
        )
    return load_config(config_file)
