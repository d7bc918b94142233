"""The training loop: teacher forcing, label-smoothed loss, Adam with warmup, validation."""

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
from transformer_cli.data.tokenizer import PAD_ID, train_tokenizer
from transformer_cli.device import resolve_device
from transformer_cli.errors import DataError, RunError
from transformer_cli.evaluate import score
from transformer_cli.files import atomic_write_text
from transformer_cli.model import Transformer
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


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train(
    config: Config, run_dir: str | Path, device: str = "auto", overwrite: bool = False
) -> TrainResult:
    """Train a model as `config` says and write everything into `run_dir`."""
    run_dir, torch_device = Path(run_dir), resolve_device(device)
    data, cfg = config.data, config.train
    # Read (and so check) the data before touching the run directory.
    train_src, train_tgt = read_parallel(data.train.src, data.train.tgt, "data.train")
    valid_src, valid_tgt = read_parallel(data.valid.src, data.valid.tgt, "data.valid")
    if not valid_src:
        raise DataError(f"data.valid: {data.valid.src} is empty")
    prepare_run_dir(run_dir, overwrite)
    atomic_write_text(run_dir / CONFIG_FILE, config.to_yaml())
    seed_everything(cfg.seed)

    log.info(
        "training SentencePiece (vocab_size=%d) on %d pairs",
        config.tokenizer.vocab_size,
        len(train_src),
    )
    tokenizer = train_tokenizer(
        itertools.chain(train_src, train_tgt),
        run_dir / TOKENIZER_FILE,
        vocab_size=config.tokenizer.vocab_size,
        model_type=config.tokenizer.model_type,
        character_coverage=config.tokenizer.character_coverage,
    )
    src_ids, tgt_ids = tokenizer.encode(train_src), tokenizer.encode(train_tgt)
    kept, dropped = filter_pairs(src_ids, tgt_ids, data.max_len)
    reasons = ", ".join(f"{count} {reason}" for reason, count in dropped.items()) or "none"
    log.info("training pairs: %d kept of %d; dropped: %s", len(kept), len(src_ids), reasons)
    if not kept:
        raise DataError(f"data.train: no usable pairs left after filtering ({reasons})")
    src_ids, tgt_ids = [src_ids[i] for i in kept], [tgt_ids[i] for i in kept]
    sampler = TokenBatchSampler(pair_lengths(src_ids, tgt_ids), cfg.batch_tokens, seed=cfg.seed)

    model = build_model(config, tokenizer.vocab_size).to(torch_device)
    log.info(
        "model: %.2fM parameters, vocabulary %d, device %s",
        model.num_parameters() / 1e6,
        tokenizer.vocab_size,
        torch_device,
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=cfg.adam_betas, eps=1e-9)
    validator = Validator(
        Translator(model, tokenizer, config.decode, torch_device),
        valid_src,
        valid_tgt,
        cfg.batch_tokens,
    )
    metrics = (run_dir / METRICS_FILE).open("a", encoding="utf-8")

    def record(entry: dict[str, object]) -> None:
        metrics.write(json.dumps(entry) + "\n")
        metrics.flush()

    best_bleu, best_step, step = -1.0, 0, 0
    started = time.monotonic()
    deadline = started + cfg.max_minutes * 60 if cfg.max_minutes else math.inf
    progress = tqdm(
        total=cfg.max_steps,
        desc="train",
        unit="step",
        file=sys.stderr,
        dynamic_ncols=True,
        bar_format="{desc} {n_fmt}/{total_fmt} |{bar}| {percentage:3.0f}% [{elapsed}{postfix}]",
    )
    window_loss, window_tokens, window_start = 0.0, 0, time.monotonic()
    model.train()
    for epoch, indices in endless_batches(sampler):
        step += 1
        lr = inverse_sqrt_lr(step, cfg.lr, cfg.warmup_steps)
        for group in optimizer.param_groups:
            group["lr"] = lr
        batch = Batch.from_ids([src_ids[i] for i in indices], [tgt_ids[i] for i in indices])
        batch = batch.to(torch_device)
        n_tokens = batch.n_tgt_tokens
        logits = model(batch.src, batch.tgt_in)  # (batch, tgt_len, vocab)
        loss = sequence_loss(logits, batch.tgt_out, cfg.label_smoothing) / n_tokens
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        max_norm = cfg.clip_grad_norm or math.inf
        grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm))
        optimizer.step()

        window_loss += loss.item() * n_tokens
        window_tokens += n_tokens
        now = time.monotonic()
        finished = step == cfg.max_steps or now >= deadline
        if step % cfg.log_every == 0 or finished:
            tokens_per_s = window_tokens / max(now - window_start, 1e-9)
            entry = {
                "kind": "train",
                "step": step,
                "epoch": epoch,
                "loss": round(window_loss / window_tokens, 4),
                "lr": lr,
                "tokens_per_s": round(tokens_per_s),
                "grad_norm": round(grad_norm, 4),
                "elapsed_s": round(now - started, 1),
            }
            record(entry)
            progress.set_postfix_str(
                f"loss={entry['loss']:.3f} lr={lr:.2e} tok/s={tokens_per_s:,.0f} "
                f"eta={_eta(step, cfg.max_steps, now - started, deadline - now)}"
            )
            window_loss, window_tokens, window_start = 0.0, 0, now
        progress.update()

        if step % cfg.eval_every == 0 or finished:
            result = validator.run()
            improved = result["bleu"] > best_bleu
            if improved:
                best_bleu, best_step = result["bleu"], step
            record(
                {
                    "kind": "valid",
                    "step": step,
                    "epoch": epoch,
                    **result,
                    "elapsed_s": round(time.monotonic() - started, 1),
                }
            )
            tqdm.write(
                f"step {step}: valid loss {result['loss']:.3f} ppl {result['ppl']:.2f} "
                f"BLEU {result['bleu']:.2f} chrF {result['chrf']:.2f}"
                + (" (best)" if improved else ""),
                file=sys.stderr,
            )
            weights_metadata = {"step": step, "valid_bleu": result["bleu"]}
            save_weights(model, checkpoint_path(run_dir, "last"), weights_metadata)
            if improved:
                save_weights(model, checkpoint_path(run_dir, "best"), weights_metadata)
        if finished:
            break
    progress.close()
    metrics.close()
    minutes = (time.monotonic() - started) / 60
    log.info(
        "done: %d steps in %.1f min; best valid BLEU %.2f at step %d; run saved in %s",
        step,
        minutes,
        best_bleu,
        best_step,
        run_dir,
    )
    return TrainResult(run_dir, step, minutes, best_step, best_bleu)


def endless_batches(sampler: TokenBatchSampler) -> Iterator[tuple[int, list[int]]]:
    """(epoch, example indices) for every batch of every epoch, forever."""
    for epoch in itertools.count():
        for indices in sampler.batches(epoch):
            yield epoch, indices


def _eta(step: int, max_steps: int | None, elapsed: float, time_left: float) -> str:
    """Time until the first stopping rule fires, as m:ss."""
    remaining = time_left
    if max_steps:
        remaining = min(remaining, (max_steps - step) * elapsed / step)
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
        model: Transformer = self.translator.model
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
