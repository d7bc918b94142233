"""The training loop: teacher forcing, label-smoothed loss, Adam with warmup, validation."""

import contextlib
import itertools
import json
import logging
import math
import random
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from transformer_cli.checkpoint import save_weights
from transformer_cli.config import Config
from transformer_cli.data.batching import Batch, TokenBatchSampler, pair_lengths
from transformer_cli.data.corpus import filter_pairs, read_parallel
from transformer_cli.data.tokenizer import PAD_ID, Tokenizer, train_tokenizer
from transformer_cli.device import resolve_device
from transformer_cli.errors import DataError, RunError
from transformer_cli.evaluate import score
from transformer_cli.files import atomic_write_text
from transformer_cli.run import (
    CONFIG_FILE,
    METRICS_FILE,
    TOKENIZER_FILE,
    Translator,
    build_model,
    checkpoint_path,
)

log = logging.getLogger(__name__)


def inverse_sqrt_lr(step: int, peak_lr: float, warmup_steps: int) -> float:
    """Learning rate at optimizer step `step` (from 1): linear warmup to `peak_lr`, then
    peak_lr * sqrt(warmup_steps / step), the schedule of Vaswani et al. up to a constant."""
    warmup = max(warmup_steps, 1)
    return peak_lr * min(step / warmup, math.sqrt(warmup / step))


def sequence_loss(logits: Tensor, targets: Tensor, label_smoothing: float = 0.0) -> Tensor:
    """Summed cross entropy of (batch, len, vocab) logits against (batch, len) ids, PAD ignored."""
    return F.cross_entropy(
        logits.flatten(0, 1),
        targets.flatten(),
        ignore_index=PAD_ID,
        label_smoothing=label_smoothing,
        reduction="sum",
    )


@dataclass
class TrainResult:
    run_dir: Path
    steps: int
    minutes: float
    best_step: int
    best_bleu: float


@dataclass
class TrainingData:
    """The encoded training pairs that survived filtering, and the validation text."""

    tokenizer: Tokenizer
    src_ids: list[list[int]]
    tgt_ids: list[list[int]]
    valid_src: list[str]
    valid_tgt: list[str]


def prepare_run_dir(run_dir: Path, overwrite: bool) -> None:
    """Create an empty run directory; an existing non-empty one is replaced only when asked."""
    if run_dir.exists() and any(run_dir.iterdir()):
        if not overwrite:
            raise RunError(
                f"{run_dir} already exists; pass --overwrite to replace it or --out to choose "
                "another directory"
            )
        if not (run_dir / CONFIG_FILE).is_file():
            raise RunError(f"{run_dir} is not a tcli run directory; refusing to delete it")
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)


def prepare_data(config: Config, run_dir: Path, overwrite: bool) -> TrainingData:
    """Read and check the data, then create the run directory, train SentencePiece, encode."""
    data = config.data
    # Read (and so check) the data before touching the run directory.
    train_src, train_tgt = read_parallel(data.train.src, data.train.tgt, "data.train")
    valid_src, valid_tgt = read_parallel(data.valid.src, data.valid.tgt, "data.valid")
    if not valid_src:
        raise DataError(f"data.valid: {data.valid.src} is empty")
    prepare_run_dir(run_dir, overwrite)
    atomic_write_text(run_dir / CONFIG_FILE, config.to_yaml())

    vocab_size = config.tokenizer.vocab_size
    log.info("training SentencePiece (vocab_size=%d) on %d pairs", vocab_size, len(train_src))
    tokenizer = train_tokenizer(
        itertools.chain(train_src, train_tgt),
        run_dir / TOKENIZER_FILE,
        vocab_size=vocab_size,
        model_type=config.tokenizer.model_type,
        character_coverage=config.tokenizer.character_coverage,
    )
    src_ids, tgt_ids = tokenizer.encode(train_src), tokenizer.encode(train_tgt)
    kept, dropped = filter_pairs(src_ids, tgt_ids, data.max_len)
    reasons = ", ".join(f"{count} {reason}" for reason, count in dropped.items()) or "none"
    log.info("training pairs: %d kept of %d; dropped: %s", len(kept), len(src_ids), reasons)
    if not kept:
        raise DataError(f"data.train: no usable pairs left after filtering ({reasons})")
    return TrainingData(
        tokenizer,
        [src_ids[i] for i in kept],
        [tgt_ids[i] for i in kept],
        valid_src,
        valid_tgt,
    )


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def endless_batches(sampler: TokenBatchSampler) -> Iterator[tuple[int, list[int]]]:
    """(epoch, example indices) for every batch of every epoch, forever."""
    for epoch in itertools.count():
        for indices in sampler.batches(epoch):
            yield epoch, indices


def train(
    config: Config, run_dir: str | Path, device: str = "auto", overwrite: bool = False
) -> TrainResult:
    """Train a model as `config` says and write everything into `run_dir`."""
    run_dir, torch_device, cfg = Path(run_dir), resolve_device(device), config.train
    data = prepare_data(config, run_dir, overwrite)
    seed_everything(cfg.seed)
    sampler = TokenBatchSampler(
        pair_lengths(data.src_ids, data.tgt_ids), cfg.batch_tokens, seed=cfg.seed
    )
    model = build_model(config, data.tokenizer.vocab_size).to(torch_device)
    log.info(
        "model: %.2fM parameters, vocabulary %d, device %s",
        model.num_parameters() / 1e6,
        data.tokenizer.vocab_size,
        torch_device,
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=cfg.adam_betas, eps=1e-9)
    translator = Translator(model, data.tokenizer, config.decode, torch_device)
    validator = Validator(translator, data.valid_src, data.valid_tgt, cfg.batch_tokens)
    training_log = TrainingLog(run_dir / METRICS_FILE, cfg.max_steps, cfg.max_minutes)
    best_bleu, best_step, step = -1.0, 0, 0

    model.train()
    for epoch, indices in endless_batches(sampler):
        step += 1
        lr = inverse_sqrt_lr(step, cfg.lr, cfg.warmup_steps)
        for group in optimizer.param_groups:
            group["lr"] = lr
        batch = Batch.from_ids(
            [data.src_ids[i] for i in indices], [data.tgt_ids[i] for i in indices]
        )
        batch = batch.to(torch_device)
        logits = model(batch.src, batch.tgt_in)  # (batch, tgt_len, vocab)
        # Normalised per target token, so the gradient scale does not depend on batch size.
        loss = sequence_loss(logits, batch.tgt_out, cfg.label_smoothing) / batch.n_tgt_tokens
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        max_norm = cfg.clip_grad_norm or math.inf
        grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm))
        optimizer.step()

        finished = step == cfg.max_steps or training_log.out_of_time()
        training_log.step(step, epoch, loss.item(), batch.n_tgt_tokens, lr, grad_norm)
        if step % cfg.log_every == 0 or finished:
            training_log.flush_window()
        if step % cfg.eval_every == 0 or finished:
            with training_log.paused():
                result = validator.run()
            improved = result["bleu"] > best_bleu
            if improved:
                best_bleu, best_step = result["bleu"], step
            training_log.validation(step, epoch, result, improved)
            weights_metadata = {"step": step, "valid_bleu": result["bleu"]}
            save_weights(model, checkpoint_path(run_dir, "last"), weights_metadata)
            if improved:
                save_weights(model, checkpoint_path(run_dir, "best"), weights_metadata)
        if finished:
            break
    minutes = training_log.close()
    log.info(
        "done: %d steps in %.1f min; best valid BLEU %.2f at step %d; run saved in %s",
        step,
        minutes,
        best_bleu,
        best_step,
        run_dir,
    )
    return TrainResult(run_dir, step, minutes, best_step, best_bleu)


class TrainingLog:
    """Where training reports: metrics.jsonl, the progress bar, and a line per validation.

    Train records average the loss over the target tokens of the steps since the last record.
    """

    def __init__(self, path: Path, max_steps: int | None, max_minutes: float | None) -> None:
        self.file = path.open("a", encoding="utf-8")
        self.max_steps = max_steps
        self.started = time.monotonic()
        self.deadline = self.started + max_minutes * 60 if max_minutes else math.inf
        self.bar = tqdm(
            total=max_steps,
            desc="train",
            unit="step",
            file=sys.stderr,
            dynamic_ncols=True,
            disable=None,  # only on a terminal; logs get the validation lines instead
            bar_format="{desc} {n_fmt}/{total_fmt} |{bar}| {percentage:3.0f}% [{elapsed}{postfix}]",
        )
        self.last: dict[str, object] = {}  # the latest step's lr, grad norm, ...
        self.last_record: dict[str, object] = {}  # the latest train record
        self._reset_window()

    def _reset_window(self) -> None:
        self.window_loss, self.window_tokens, self.window_start = 0.0, 0, time.monotonic()

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Time spent inside (validation) does not count towards tokens per second."""
        start = time.monotonic()
        yield
        self.window_start += time.monotonic() - start

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def out_of_time(self) -> bool:
        return time.monotonic() >= self.deadline

    def step(
        self, step: int, epoch: int, loss: float, tokens: int, lr: float, grad_norm: float
    ) -> None:
        self.window_loss += loss * tokens
        self.window_tokens += tokens
        self.last = {"step": step, "epoch": epoch, "lr": lr, "grad_norm": round(grad_norm, 4)}
        self.bar.update()

    def flush_window(self) -> None:
        """Write a train record for the steps since the last one, and refresh the bar."""
        tokens_per_s = self.window_tokens / max(time.monotonic() - self.window_start, 1e-9)
        record = {
            "kind": "train",
            **self.last,
            "loss": round(self.window_loss / self.window_tokens, 4),
            "tokens_per_s": round(tokens_per_s),
            "elapsed_s": round(self.elapsed(), 1),
        }
        self._write(record)
        self.last_record = record
        self.bar.set_postfix_str(
            f"loss={record['loss']:.3f} lr={record['lr']:.2e} tok/s={tokens_per_s:,.0f} "
            f"eta={self._eta()}"
        )
        self._reset_window()

    def validation(self, step: int, epoch: int, result: dict[str, float], best: bool) -> None:
        self._write({"kind": "valid", "step": step, "epoch": epoch, **result,
                     "elapsed_s": round(self.elapsed(), 1)})  # fmt: skip
        train = self.last_record
        tqdm.write(
            f"step {step} ({self.elapsed() / 60:.1f} min): train loss {train['loss']:.3f}, "
            f"{train['tokens_per_s']:,} tok/s | valid loss {result['loss']:.3f} "
            f"ppl {result['ppl']:.2f} BLEU {result['bleu']:.2f} chrF {result['chrf']:.2f}"
            + (" (best)" if best else ""),
            file=sys.stderr,
        )

    def close(self) -> float:
        """Close the log; the training time in minutes."""
        self.bar.close()
        self.file.close()
        return self.elapsed() / 60

    def _write(self, record: dict[str, object]) -> None:
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()

    def _eta(self) -> str:
        """Time until the first stopping rule fires, as m:ss."""
        step, elapsed = int(self.last["step"]), self.elapsed()
        remaining = self.deadline - time.monotonic()
        if self.max_steps:
            remaining = min(remaining, (self.max_steps - step) * elapsed / step)
        return f"{int(remaining // 60)}:{int(remaining % 60):02d}"


class Validator:
    """Validation loss, perplexity, BLEU and chrF, translating with `tcli translate`'s code."""

    def __init__(
        self, translator: Translator, sources: list[str], references: list[str], batch_tokens: int
    ) -> None:
        self.translator, self.sources, self.references = translator, sources, references
        tokenizer = translator.tokenizer
        src_ids, tgt_ids = tokenizer.encode(sources), tokenizer.encode(references)
        sampler = TokenBatchSampler(pair_lengths(src_ids, tgt_ids), batch_tokens, shuffle=False)
        self.batches = [
            Batch.from_ids([src_ids[i] for i in chunk], [tgt_ids[i] for i in chunk])
            for chunk in sampler.batches()
        ]

    @torch.no_grad()
    def loss(self) -> float:
        """Mean per-token cross entropy (no label smoothing) over the validation targets."""
        model = self.translator.model
        was_training = model.training
        model.eval()
        total, tokens = 0.0, 0
        for batch in self.batches:
            batch = batch.to(self.translator.device)
            total += float(sequence_loss(model(batch.src, batch.tgt_in), batch.tgt_out))
            tokens += batch.n_tgt_tokens
        model.train(was_training)
        return total / tokens

    def run(self) -> dict[str, float]:
        loss = self.loss()
        scores = score(self.translator.translate(self.sources), self.references)
        return {
            "loss": round(loss, 4),
            "ppl": round(math.exp(min(loss, 100.0)), 3),
            "bleu": round(scores.bleu, 2),
            "chrf": round(scores.chrf, 2),
        }
