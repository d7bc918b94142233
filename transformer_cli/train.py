"""Training: teacher forcing, label-smoothed loss, Adam, validation, checkpoints, exact resume."""

import itertools
import logging
import math
import random
import shutil
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from transformer_cli.checkpoint import (
    latest_step,
    load_training_state,
    load_weights,
    prune_checkpoints,
    resolve_checkpoint,
    save_checkpoint,
    save_weights,
)
from transformer_cli.config import Config, apply_override, validate_config
from transformer_cli.data.batching import Batch, TokenBatchSampler, pair_lengths
from transformer_cli.data.corpus import filter_pairs, read_parallel
from transformer_cli.data.tokenizer import PAD_ID, Tokenizer, train_tokenizer
from transformer_cli.device import resolve_device
from transformer_cli.errors import ConfigError, DataError, Interrupted, RunError
from transformer_cli.evaluate import score
from transformer_cli.files import atomic_write_text
from transformer_cli.model import Transformer
from transformer_cli.records import TRAIN_LOG_FILE, TrainingLog, log_to_file
from transformer_cli.run import CONFIG_FILE, TOKENIZER_FILE, Translator, build_model, read_config
from transformer_cli.schedule import learning_rate

log = logging.getLogger(__name__)

# Keys a resumed run may not change: the saved weights and vocabulary depend on them.
FROZEN_ON_RESUME = ("model", "tokenizer", "data.train", "data.max_len")


def sequence_loss(logits: Tensor, targets: Tensor, label_smoothing: float = 0.0) -> Tensor:
    """Summed cross entropy of (batch, len, vocab) logits against (batch, len) ids, PAD ignored."""
    return F.cross_entropy(
        logits.flatten(0, 1).float(),
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
    stop_reason: str  # max_steps, max_minutes or early_stopping
    best_metric: str  # bleu or loss
    best_value: float
    best_step: int


@dataclass
class TrainingData:
    """The encoded training pairs that survived filtering, and the validation text."""

    tokenizer: Tokenizer
    src_ids: list[list[int]]
    tgt_ids: list[list[int]]
    valid_src: list[str]
    valid_tgt: list[str]


def train(
    config: Config, run_dir: str | Path, device: str = "auto", overwrite: bool = False
) -> TrainResult:
    """Train a new model as `config` says, writing everything into `run_dir`."""
    run_dir, torch_device = Path(run_dir), resolve_device(device)
    _check_precision(config, torch_device)
    texts = _read_texts(config)  # check the data before touching the run directory
    _prepare_run_dir(run_dir, overwrite)
    atomic_write_text(run_dir / CONFIG_FILE, config.to_yaml())
    with log_to_file(run_dir / TRAIN_LOG_FILE):
        vocab_size = config.tokenizer.vocab_size
        log.info("training SentencePiece (vocab_size=%d) on %d pairs", vocab_size, len(texts[0]))
        tokenizer = train_tokenizer(
            itertools.chain(texts[0], texts[1]),
            run_dir / TOKENIZER_FILE,
            vocab_size=vocab_size,
            model_type=config.tokenizer.model_type,
            character_coverage=config.tokenizer.character_coverage,
        )
        data = _encode(config, tokenizer, texts)
        _seed_everything(config.train.seed)
        model = build_model(config, tokenizer.vocab_size).to(torch_device)
        return Trainer(config, run_dir, model, data, torch_device).fit()


def resume(run_dir: str | Path, overrides: list[str] = (), device: str = "auto") -> TrainResult:
    """Continue a run from its latest checkpoint, exactly as if it had never stopped.

    `overrides` may change e.g. train.max_steps, but not the model, tokenizer or training data.
    """
    run_dir, torch_device = Path(run_dir), resolve_device(device)
    config = _resumed_config(run_dir, overrides)
    _check_precision(config, torch_device)
    directory = run_dir / "checkpoints"
    step = latest_step(directory)
    if step is None:
        raise RunError(
            f"{run_dir} has no checkpoint to resume from; train it again with --overwrite"
        )
    state = load_training_state(directory, step)
    _check_limits_left(config, state, run_dir)
    texts = _read_texts(config)
    atomic_write_text(run_dir / CONFIG_FILE, config.to_yaml())
    with log_to_file(run_dir / TRAIN_LOG_FILE):
        log.info("resuming %s from step %d", run_dir, step)
        tokenizer = Tokenizer(run_dir / TOKENIZER_FILE)
        data = _encode(config, tokenizer, texts)
        model = build_model(config, tokenizer.vocab_size).to(torch_device)
        load_weights(model, resolve_checkpoint(run_dir, str(step)))
        return Trainer(config, run_dir, model, data, torch_device, state).fit()


class Trainer:
    """The optimisation loop and everything a checkpoint must hold to continue it exactly."""

    def __init__(
        self,
        config: Config,
        run_dir: Path,
        model: Transformer,
        data: TrainingData,
        device: torch.device,
        state: dict | None = None,
    ) -> None:
        self.config, self.cfg, self.run_dir = config, config.train, run_dir
        self.model, self.data, self.device = model, data, device
        self.checkpoints = run_dir / "checkpoints"
        self.optimizer = torch.optim.Adam(
            model.parameters(), lr=self.cfg.lr, betas=self.cfg.adam_betas, eps=1e-9
        )
        # Loss scaling keeps small fp16 gradients from flushing to zero; a no-op otherwise.
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.cfg.precision == "fp16")
        self.autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(
            self.cfg.precision
        )
        lengths = pair_lengths(data.src_ids, data.tgt_ids)
        self.sampler = TokenBatchSampler(lengths, self.cfg.batch_tokens, seed=self.cfg.seed)
        translator = Translator(model, data.tokenizer, config.decode, device)
        self.validator = Validator(
            translator, data.valid_src, data.valid_tgt, self.cfg.batch_tokens
        )
        # Counters: optimizer steps taken; the next batch is batches(epoch)[batch_index].
        self.step, self.epoch, self.batch_index = 0, 0, 0
        self.best_value: float | None = None
        self.best_step = self.bad_validations = 0
        self.elapsed_before, self.validation_seconds = 0.0, 0.0
        if state is not None:
            self._load_state(state)
        log.info(
            "model: %.2fM parameters, vocabulary %d, device %s, precision %s",
            model.num_parameters() / 1e6,
            data.tokenizer.vocab_size,
            device,
            self.cfg.precision,
        )

    def fit(self) -> TrainResult:
        cfg = self.cfg
        records = TrainingLog(
            self.run_dir,
            cfg.max_steps,
            cfg.max_minutes,
            start_step=self.step,
            elapsed_before=self.elapsed_before,
            tensorboard=cfg.tensorboard,
        )
        batches = endless_batches(self.sampler, self.epoch, self.batch_index)
        self.model.train()
        try:
            with StopSignals() as signals:
                while True:
                    self._train_step(batches, records)
                    reason = self._stop_reason(records, signals)
                    if self.step % cfg.log_every == 0 or reason:
                        records.flush_window()
                    validate = self.step % cfg.eval_every == 0 or reason in LIMITS
                    if validate and self._validate(records) and not reason:
                        reason = "early_stopping"
                    if validate or reason:
                        self._save_checkpoint(records.elapsed())
                    if reason:
                        break
        except Aborted as err:
            raise Interrupted(
                f"{err} at step {self.step}; the checkpoints on disk are intact. "
                f"Resume from the last one with: tcli train --resume {self.run_dir}",
                err.signum,
            ) from None
        finally:
            records.close()
        if reason not in (*LIMITS, "early_stopping"):
            raise Interrupted(
                f"stopped by {reason} after step {self.step}; checkpoint saved. "
                f"Resume with: tcli train --resume {self.run_dir}",
                signal.Signals[reason],
            )
        minutes = records.elapsed() / 60
        log.info(
            "done (%s): %d steps in %.1f min; best valid %s %.4g at step %d; run saved in %s",
            reason, self.step, minutes, cfg.best_metric.replace("bleu", "BLEU"), self.best_value,
            self.best_step,
            self.run_dir,
        )  # fmt: skip
        return TrainResult(
            self.run_dir,
            self.step,
            minutes,
            reason,
            cfg.best_metric,
            self.best_value,
            self.best_step,
        )

    def _train_step(
        self, batches: Iterator[tuple[int, int, list[int]]], records: TrainingLog
    ) -> None:
        cfg, data = self.cfg, self.data
        self.step += 1
        lr = learning_rate(self.step, cfg, self.config.model.d_model)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        micro_batches = []
        for _ in range(cfg.accum_steps):
            self.epoch, index, indices = next(batches)
            self.batch_index = index + 1
            micro_batches.append(
                Batch.from_ids(
                    [data.src_ids[i] for i in indices], [data.tgt_ids[i] for i in indices]
                )
            )
        self.optimizer.zero_grad(set_to_none=True)
        step_loss, tokens = accumulate_gradients(
            self.model, micro_batches, cfg.label_smoothing, self.device, self.autocast_dtype,
            self.scaler,
        )  # fmt: skip
        self.scaler.unscale_(self.optimizer)  # clip the true gradient, not the scaled one
        max_norm = cfg.clip_grad_norm or math.inf
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm))
        self.scaler.step(self.optimizer)
        self.scaler.update()
        records.step(self.step, self.epoch, step_loss, tokens, lr, grad_norm)

    def _stop_reason(self, records: TrainingLog, signals: "StopSignals") -> str | None:
        if signals.received is not None:
            return signal.Signals(signals.received).name
        if self.step == self.cfg.max_steps:
            return "max_steps"
        # Stop early enough that the final validation ends by the deadline.
        if records.time_left() <= self.validation_seconds:
            return "max_minutes"
        return None

    def _validate(self, records: TrainingLog) -> bool:
        """Validate, keep the best weights; True when early stopping's patience has run out."""
        started = time.monotonic()
        with records.paused():
            result = self.validator.run()
        self.validation_seconds = time.monotonic() - started
        value = result[self.cfg.best_metric]
        better = self.best_value is None or (
            value > self.best_value if self.cfg.best_metric == "bleu" else value < self.best_value
        )
        if better:
            self.best_value, self.best_step, self.bad_validations = value, self.step, 0
            metadata = {"step": self.step, **{f"valid_{k}": v for k, v in result.items()}}
            save_weights(self.model, self.checkpoints / "best.safetensors", metadata)
        else:
            self.bad_validations += 1
        records.validation(self.step, self.epoch, result, better)
        patience = self.cfg.early_stopping_patience
        if patience and self.bad_validations >= patience:
            log.info(
                "early stopping: %d validations without a better %s", patience, self.cfg.best_metric
            )
            return True
        return False

    def _save_checkpoint(self, elapsed: float) -> None:
        self.elapsed_before = elapsed
        save_checkpoint(self.checkpoints, self.step, self.model, self.state_dict(), {})
        prune_checkpoints(self.checkpoints, self.cfg.keep_last)

    def state_dict(self) -> dict:
        """Everything but the weights that the next step depends on (tensors and plain data)."""
        np_state = np.random.get_state()
        return {
            "step": self.step,
            "epoch": self.epoch,
            "batch_index": self.batch_index,
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "best_value": self.best_value,
            "best_step": self.best_step,
            "bad_validations": self.bad_validations,
            "elapsed_s": self.elapsed_before,
            "validation_seconds": self.validation_seconds,
            "rng": {
                "python": random.getstate(),
                "numpy": (np_state[0], torch.from_numpy(np_state[1].copy()), *np_state[2:]),
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            },
        }

    def _load_state(self, state: dict) -> None:
        self.step, self.epoch, self.batch_index = (
            state["step"],
            state["epoch"],
            state["batch_index"],
        )
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.best_value, self.best_step = state["best_value"], state["best_step"]
        self.bad_validations = state["bad_validations"]
        self.elapsed_before = state["elapsed_s"]
        self.validation_seconds = state["validation_seconds"]
        rng = state["rng"]
        random.setstate(rng["python"])
        name, keys, *rest = rng["numpy"]
        np.random.set_state((name, keys.numpy(), *rest))
        torch.set_rng_state(rng["torch"])
        if rng["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])


def accumulate_gradients(
    model: Transformer,
    batches: list[Batch],
    label_smoothing: float,
    device: torch.device,
    autocast_dtype: torch.dtype | None = None,
    scaler: torch.amp.GradScaler | None = None,
) -> tuple[float, int]:
    """Add the gradient of the per-token loss over all `batches` to the parameters' .grad.

    Each batch's summed loss is divided by the target tokens of all of them, so k micro-batches
    give exactly the gradient of one batch holding them all. Returns (loss per token, tokens).
    """
    tokens = sum(batch.n_tgt_tokens for batch in batches)
    total = 0.0
    for batch in batches:
        batch = batch.to(device)
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            logits = model(batch.src, batch.tgt_in)  # (batch, tgt_len, vocab)
        loss = sequence_loss(logits, batch.tgt_out, label_smoothing) / tokens
        (scaler.scale(loss) if scaler else loss).backward()
        total += loss.item()
    return total, tokens


LIMITS = ("max_steps", "max_minutes")


class StopSignals:
    """The first SIGINT (Ctrl-C) or SIGTERM asks training to stop after the current step and
    save a checkpoint; a second one aborts at once (atomic writes keep every file whole)."""

    def __enter__(self) -> "StopSignals":
        self.received: int | None = None
        self.previous = {}
        if threading.current_thread() is threading.main_thread():  # signals reach only it
            for signum in (signal.SIGINT, signal.SIGTERM):
                self.previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum: int, frame: object) -> None:
        if self.received is not None:
            raise Aborted(signum)
        self.received = signum
        tqdm.write(
            f"\n{signal.Signals(signum).name}: stopping after this step to save a checkpoint "
            "(press Ctrl-C again to abort without saving)",
            file=sys.stderr,
        )

    def __exit__(self, *exc_info: object) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)


class Aborted(KeyboardInterrupt):
    """A second stop signal: leave now (a KeyboardInterrupt, so that nothing swallows it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"aborted by {signal.Signals(signum).name}")
        self.signum = signum


def endless_batches(
    sampler: TokenBatchSampler, epoch: int = 0, index: int = 0
) -> Iterator[tuple[int, int, list[int]]]:
    """(epoch, index in epoch, example indices) for every batch from (epoch, index) on, forever."""
    for current in itertools.count(epoch):
        epoch_batches = sampler.batches(current)
        for position in range(index, len(epoch_batches)):
            yield current, position, epoch_batches[position]
        index = 0


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


def _read_texts(config: Config) -> tuple[list[str], list[str], list[str], list[str]]:
    """Training and validation text: source, target, source, target."""
    data = config.data
    train_src, train_tgt = read_parallel(data.train.src, data.train.tgt, "data.train")
    valid_src, valid_tgt = read_parallel(data.valid.src, data.valid.tgt, "data.valid")
    if not valid_src:
        raise DataError(f"data.valid: {data.valid.src} is empty")
    return train_src, train_tgt, valid_src, valid_tgt


def _encode(config: Config, tokenizer: Tokenizer, texts: tuple[list[str], ...]) -> TrainingData:
    """Encode the training pairs and drop the unusable ones, reporting how many and why."""
    train_src, train_tgt, valid_src, valid_tgt = texts
    src_ids, tgt_ids = tokenizer.encode(train_src), tokenizer.encode(train_tgt)
    kept, dropped = filter_pairs(src_ids, tgt_ids, config.data.max_len)
    reasons = ", ".join(f"{count} {reason}" for reason, count in dropped.items()) or "none"
    log.info("training pairs: %d kept of %d; dropped: %s", len(kept), len(src_ids), reasons)
    if not kept:
        raise DataError(f"data.train: no usable pairs left after filtering ({reasons})")
    return TrainingData(
        tokenizer, [src_ids[i] for i in kept], [tgt_ids[i] for i in kept], valid_src, valid_tgt
    )


def _prepare_run_dir(run_dir: Path, overwrite: bool) -> None:
    """Create an empty run directory; an existing non-empty one is replaced only when asked."""
    if run_dir.exists() and any(run_dir.iterdir()):
        if not overwrite:
            raise RunError(
                f"{run_dir} already exists; pass --overwrite to replace it, --resume to continue "
                "it, or --out to choose another directory"
            )
        if not (run_dir / CONFIG_FILE).is_file():
            raise RunError(f"{run_dir} is not a tcli run directory; refusing to delete it")
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)


def _resumed_config(run_dir: Path, overrides: list[str]) -> Config:
    """The run's saved config with `overrides` applied; frozen keys may not change."""
    saved = read_config(run_dir)
    raw = saved.model_dump(mode="json")
    keys = [apply_override(raw, item) for item in overrides]
    config = validate_config(raw, str(run_dir / CONFIG_FILE), keys)
    before, after = saved.model_dump(mode="json"), config.model_dump(mode="json")
    for key in keys:
        frozen = next((f for f in FROZEN_ON_RESUME if key == f or key.startswith(f + ".")), None)
        if frozen and _lookup(before, key) != _lookup(after, key):
            raise ConfigError(
                f"--set {key}: cannot change {frozen} when resuming (the saved weights and "
                "vocabulary depend on it); start a new run instead"
            )
    return config


def _lookup(raw: dict, key: str) -> object:
    for part in key.split("."):
        raw = raw.get(part) if isinstance(raw, dict) else None
    return raw


def _check_limits_left(config: Config, state: dict, run_dir: Path) -> None:
    train = config.train
    if train.max_steps is not None and state["step"] >= train.max_steps:
        raise RunError(
            f"{run_dir} already reached train.max_steps={train.max_steps}; "
            f"continue with --set train.max_steps=N (N > {state['step']})"
        )
    if train.max_minutes is not None and state["elapsed_s"] >= train.max_minutes * 60:
        raise RunError(
            f"{run_dir} already trained for train.max_minutes={train.max_minutes:g}; "
            "continue with --set train.max_minutes=M (or null)"
        )


def _check_precision(config: Config, device: torch.device) -> None:
    precision = config.train.precision
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError(
            f"train.precision: fp16 training needs a CUDA device, not {device.type}; "
            "use bf16 or fp32"
        )
    if precision == "bf16" and device.type == "cpu" and not _cpu_has_native_bf16():
        log.warning(
            "train.precision: this CPU has no native bf16 instructions (AVX512-BF16 or AMX), "
            "so bf16 is likely slower than fp32 here; compare with scripts/bench_train.py"
        )


def _cpu_has_native_bf16() -> bool:
    # Private torch helpers (present in torch 2.x); without them, assume the common case: no.
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
