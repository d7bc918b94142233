"""What training reports: metrics.jsonl, train.log, optional TensorBoard, and the progress bar.

metrics.jsonl has one JSON object per `log_every` steps ("kind": "train": step, epoch, loss,
lr, tokens_per_s, grad_norm, elapsed_s) and per validation ("kind": "valid": loss, ppl, bleu,
chrf, elapsed_s). Train losses are averaged over the target tokens of the steps since the last
record; tokens_per_s counts target tokens over training time (validation excluded). Steps skipped
for a non-finite loss or gradient are counted in "skipped_steps" and left out of the loss (null
when every step of the record was skipped).
"""

import contextlib
import json
import logging
import math
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from tqdm import tqdm

from transformer_cli.errors import DataError
from transformer_cli.files import atomic_write_text, cannot_write
from transformer_cli.rundir import RunDir

log = logging.getLogger(__name__)


class TrainingLog:
    """Records one training invocation; a resumed run appends to the same files."""

    def __init__(
        self,
        run_dir: Path,
        max_steps: int | None,
        max_minutes: float | None,
        *,
        start_step: int = 0,
        elapsed_before: float = 0.0,
        tensorboard: bool = False,
        writes: bool = True,
    ) -> None:
        """`writes=False` (the ranks but 0 of a distributed run) keeps the clock and writes no file,
        log line or progress bar."""
        self.max_steps, self.start_step = max_steps, start_step
        self.started, self.elapsed_before = time.monotonic(), elapsed_before
        self.budget = max_minutes * 60 if max_minutes else math.inf  # across resumes
        run = RunDir(run_dir)
        metrics = run.metrics
        if writes and start_step and metrics.exists():
            _drop_records_after(metrics, start_step)  # steps redone after a crash are not doubled
        self.file = metrics.open("a", encoding="utf-8") if writes else None
        self.tensorboard = (
            _tensorboard_writer(run.tensorboard, start_step) if tensorboard and writes else None
        )
        self.bar = tqdm(
            total=max_steps,
            initial=start_step,
            desc="train",
            unit="step",
            file=sys.stderr,
            dynamic_ncols=True,
            disable=None if writes else True,  # only on a terminal; logs get validation lines
            bar_format="{desc} {n_fmt}/{total_fmt} |{bar}| {percentage:3.0f}% [{elapsed}{postfix}]",
        )
        self.last: dict[str, object] = {}  # the latest step's step, epoch, lr, grad norm
        self.last_record: dict[str, object] = {}  # the latest train record
        self._reset_window()

    def _reset_window(self) -> None:
        self.window_loss, self.window_tokens, self.window_start = 0.0, 0, time.monotonic()
        self.window_loss_tokens, self.window_skipped = 0, 0

    def elapsed(self) -> float:
        """Seconds of training, earlier invocations of a resumed run included."""
        return self.elapsed_before + time.monotonic() - self.started

    def time_left(self) -> float:
        """Seconds until train.max_minutes (inf without a limit)."""
        return self.budget - self.elapsed()

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Time spent inside (validation) does not count towards tokens per second."""
        start = time.monotonic()
        yield
        self.window_start += time.monotonic() - start

    def step(
        self,
        step: int,
        epoch: int,
        loss: float,
        tokens: int,
        lr: float,
        grad_norm: float,
        skipped: bool = False,
    ) -> None:
        """Count a step; a `skipped` one (a non-finite loss or gradient) is left out of the loss."""
        if skipped:
            self.window_skipped += 1
        else:
            self.window_loss += loss * tokens
            self.window_loss_tokens += tokens
        self.window_tokens += tokens
        norm = round(grad_norm, 4) if math.isfinite(grad_norm) else None
        self.last = {"step": step, "epoch": epoch, "lr": lr, "grad_norm": norm}
        # The bar shows the window so far from the first step on, not only once it is written.
        loss = self.window_loss / self.window_loss_tokens if self.window_loss_tokens else math.nan
        self.bar.set_postfix_str(
            f"loss={loss:.3f} lr={lr:.2e} tok/s={self._tokens_per_s():,.0f} eta={self._eta()}",
            refresh=False,  # drawn by update(), at most every tqdm's mininterval
        )
        self.bar.update()

    def _tokens_per_s(self) -> float:
        return self.window_tokens / max(time.monotonic() - self.window_start, 1e-9)

    def flush_window(self) -> None:
        """Write a train record for the steps since the last one, and refresh the bar."""
        if not self.window_tokens:
            return
        counted = self.window_loss_tokens
        record = {
            "kind": "train",
            **self.last,
            "loss": round(self.window_loss / counted, 4) if counted else None,
            "tokens_per_s": round(self._tokens_per_s()),
            "elapsed_s": round(self.elapsed(), 1),
            **({"skipped_steps": self.window_skipped} if self.window_skipped else {}),
        }
        self._write(record)
        self.last_record = record
        self._reset_window()

    def validation(self, step: int, epoch: int, result: dict[str, float], best: bool) -> None:
        self._write({"kind": "valid", "step": step, "epoch": epoch, **result,
                     "elapsed_s": round(self.elapsed(), 1)})  # fmt: skip
        train = self.last_record
        loss = math.nan if not train or train["loss"] is None else train["loss"]
        trained = f"train loss {loss:.3f}, {train['tokens_per_s']:,} tok/s | " if train else ""
        log.info(
            f"step {step} ({self.elapsed() / 60:.1f} min): {trained}valid loss "
            f"{result['loss']:.3f} ppl {result['ppl']:.2f} BLEU {result['bleu']:.2f} "
            f"chrF {result['chrf']:.2f}" + (" (best)" if best else "")
        )

    def close(self) -> None:
        self.bar.close()
        if self.file:
            self.file.close()
        if self.tensorboard:
            self.tensorboard.close()

    def _write(self, record: dict[str, object]) -> None:
        if self.file is None:
            return
        try:
            self.file.write(json.dumps(record) + "\n")
            self.file.flush()
        except OSError as err:
            raise cannot_write(self.file.name, err) from None
        if self.tensorboard:
            for key, value in record.items():
                if key not in ("kind", "step", "epoch") and isinstance(value, int | float):
                    self.tensorboard.add_scalar(f"{record['kind']}/{key}", value, record["step"])

    def _eta(self) -> str:
        """Time until the first stopping rule fires, as m:ss."""
        step = int(self.last["step"])
        seconds_per_step = (time.monotonic() - self.started) / max(step - self.start_step, 1)
        remaining = self.time_left()
        if self.max_steps:
            remaining = min(remaining, (self.max_steps - step) * seconds_per_step)
        return f"{int(remaining // 60)}:{int(remaining % 60):02d}"


@contextlib.contextmanager
def log_to_file(path: Path) -> Iterator[None]:
    """Copy tcli's log lines (the ones shown on the terminal) into `path`, with timestamps."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    logger = logging.getLogger("transformer_cli")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)  # the file gets the INFO lines even when nobody set a level
    try:
        yield
    finally:
        logger.setLevel(level)
        logger.removeHandler(handler)
        handler.close()


def read_records(path: Path) -> list[dict]:
    """The records of a metrics.jsonl file; a line cut short by a crash is skipped, with a
    warning."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:  # not text at all: a foreign file, not a crash
        raise DataError(f"{path} is not a metrics file: {err}") from None
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line:
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            log.warning("%s, line %d: skipping a damaged record", path, number)
    return records


def _drop_records_after(path: Path, step: int) -> None:
    kept = [record for record in read_records(path) if record["step"] <= step]
    atomic_write_text(path, "".join(json.dumps(record) + "\n" for record in kept))


def _tensorboard_writer(folder: Path, start_step: int) -> object | None:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        log.warning("train.tensorboard: the tensorboard package is not installed; skipping it")
        return None
    # drop what a crashed run wrote after its last checkpoint: steps from start_step + 1 on
    return SummaryWriter(folder, purge_step=start_step + 1 if start_step else None)
