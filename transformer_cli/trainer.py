"""The optimisation loop: steps (each one's gradient from gradients.py), autocast, skipped
non-finite steps, validation, early stopping, checkpoints.

`Trainer` holds everything a checkpoint must save to continue exactly where it stopped; the
entry points that build one (a new run, or a resumed one) are in train.py.
"""

import logging
import math
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from transformer_cli.checkpoint import (
    latest_step,
    prune_checkpoints,
    save_checkpoint,
    save_weights,
)
from transformer_cli.config import Config
from transformer_cli.data.batching import (
    TokenBatchSampler,
    endless_batches,
    padding_fraction,
)
from transformer_cli.data.cache import EncodedCorpus
from transformer_cli.data.tokenizer import Tokenizers
from transformer_cli.device import resolve_precision
from transformer_cli.distributed import SINGLE_PROCESS, World
from transformer_cli.errors import Diverged, FileWriteError, Interrupted
from transformer_cli.evaluate import Validator, bleu_tokenizer
from transformer_cli.gradients import accumulate_gradients, dropout_seed
from transformer_cli.loss import TeacherForcedLoss
from transformer_cli.model import Transformer
from transformer_cli.records import TrainingLog
from transformer_cli.rundir import RunDir
from transformer_cli.schedule import learning_rate
from transformer_cli.signals import Aborted, StopSignals
from transformer_cli.translator import Translator

log = logging.getLogger(__name__)


class StopReason(str, Enum):
    """Why the training loop ended: a limit or early stopping ends the run; a signal (Ctrl-C,
    SIGTERM) pauses it, to be resumed."""

    MAX_STEPS = "max_steps"
    MAX_MINUTES = "max_minutes"
    EARLY_STOPPING = "early_stopping"
    SIGNAL = "signal"


LIMITS = (StopReason.MAX_STEPS, StopReason.MAX_MINUTES)


@dataclass
class TrainResult:
    run_dir: Path
    steps: int
    minutes: float
    stop_reason: StopReason  # never SIGNAL: a run stopped by a signal raises Interrupted
    best_metric: str  # bleu or loss
    best_value: float
    best_step: int

    def summary(self) -> str:
        metric = {"bleu": "BLEU"}.get(self.best_metric, self.best_metric)
        return (
            f"best valid {metric} {self.best_value:.4g} (step {self.best_step}); "
            f"stopped at step {self.steps} ({self.stop_reason.value}) after {self.minutes:.1f} min"
        )


@dataclass
class TrainingData:
    """The tokenizers, the encoded training pairs that survived filtering, the validation text."""

    tokenizers: Tokenizers
    corpus: EncodedCorpus
    valid_src: list[str]
    valid_tgt: list[str]


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
        world: World = SINGLE_PROCESS,
    ) -> None:
        self.config, self.run_dir, self.world = config, run_dir, world
        self.model, self.data, self.device = model, data, device
        self.checkpoints = RunDir(run_dir).checkpoints
        # fused: one kernel for all parameters instead of a loop of small ones per parameter.
        self.optimizer = torch.optim.Adam(
            model.parameters(), lr=config.train.lr, betas=config.train.adam_betas, eps=1e-9,
            fused=device.type in ("cpu", "cuda"),
        )  # fmt: skip
        self.precision = resolve_precision(config.train.precision, device)
        # Loss scaling keeps small fp16 gradients from flushing to zero; a no-op otherwise.
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.precision == "fp16")
        self.autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)
        corpus = data.corpus
        # Every process takes its own share of each epoch's batches (batch_tokens is per process).
        self.sampler = TokenBatchSampler(
            corpus.pair_lengths(), config.train.batch_tokens, seed=config.train.seed,
            rank=world.rank, world_size=world.size,
        )  # fmt: skip
        self.loss: nn.Module = TeacherForcedLoss(model, config.train.label_smoothing)
        if world.size > 1:
            self.loss = DistributedDataParallel(
                self.loss, device_ids=[device.index] if device.type == "cuda" else None
            )
        first_epoch = self.sampler.batches(0)
        padding = padding_fraction(first_epoch, corpus.src_lengths, corpus.tgt_lengths)
        log.info(
            "batches: %d per epoch of at most %d tokens; %.1f%% of their positions are padding",
            len(first_epoch),
            config.train.batch_tokens,
            100 * padding,
        )
        if world.size > 1:
            log.info(
                "%d processes: %d batches per epoch each; a step trains on batch_tokens x "
                "processes x accum_steps = %d x %d x %d tokens at most",
                world.size, len(first_epoch), config.train.batch_tokens, world.size,
                config.train.accum_steps,
            )  # fmt: skip
        if world.is_main:  # rank 0 validates alone
            translator = Translator(model, data.tokenizers, config.decode, device)
            tokenize = bleu_tokenizer(config.data.tgt_lang, config.eval.bleu_tokenize)
            self.validator = Validator(
                translator, data.valid_src, data.valid_tgt, config.train.batch_tokens, tokenize
            )
        # Counters: optimizer steps taken; the next batch is batches(epoch)[batch_index].
        self.step, self.epoch, self.batch_index = 0, 0, 0
        self.best_value: float | None = None
        self.best_step = self.bad_validations = 0
        self.best_saved: tuple[float | None, int] = (None, 0)  # what best.safetensors holds
        self.bad_steps = 0  # steps in a row skipped for a non-finite loss or gradient
        self.elapsed_before, self.validation_seconds, self.step_seconds = 0.0, 0.0, 0.0
        self.progress = 0.0  # of the budget, as _progress last estimated it
        if state is not None:
            self._load_state(state)
        source, target = data.tokenizers.source.vocab_size, data.tokenizers.target.vocab_size
        log.info(
            "model: %.2fM parameters, vocabulary %s, device %s, precision %s",
            model.num_parameters() / 1e6,
            source if source == target and self.config.tokenizer.joint else f"{source}/{target}",
            device,
            self.precision,
        )

    def fit(self) -> TrainResult:
        cfg = self.config.train
        records = TrainingLog(
            self.run_dir,
            cfg.max_steps,
            cfg.max_minutes,
            start_step=self.step,
            elapsed_before=self.elapsed_before,
            tensorboard=cfg.tensorboard,
            writes=self.world.is_main,
        )
        world = self.world
        batches = endless_batches(self.sampler, self.epoch, self.batch_index)
        self.model.train()
        try:
            with StopSignals() as signals:
                while True:
                    self._train_step(batches, records)
                    # Rank 0 decides when to stop (its clock, its signals) for every process.
                    reason, signum = world.from_main(
                        (self._stop_reason(records, signals), signals.received)
                    )
                    if self.step % cfg.log_every == 0 or reason:
                        records.flush_window()
                    scheduled = self.step % cfg.eval_every == 0
                    validate = scheduled or reason in LIMITS  # the final weights get scored too
                    if validate or reason:
                        self._check_finite_weights()
                    if validate:  # rank 0 validates; the others wait for its verdict
                        patience_out = self._validate(records, scheduled) if world.is_main else None
                        if world.from_main(patience_out) and not reason:
                            reason = StopReason.EARLY_STOPPING
                    if (validate or reason) and world.is_main:
                        self._save_checkpoint(records.elapsed())
                    if reason:
                        break
        except FileWriteError as err:  # a full disk, say: what is on disk is still whole
            last = latest_step(self.checkpoints.root)
            kept = f"the last checkpoint (step {last}) is intact" if last else "no checkpoint yet"
            raise FileWriteError(
                f"{err} (at step {self.step}); {kept}. Make room, then resume with: "
                f"{self._resume_command()}"
            ) from None
        except Aborted as err:
            raise Interrupted(
                f"{err} at step {self.step}; the checkpoints on disk are intact. "
                f"Resume from the last one with: {self._resume_command()}",
                err.signum,
            ) from None
        finally:
            records.close()
        if reason is StopReason.SIGNAL:
            raise Interrupted(
                f"stopped by {signal.Signals(signum).name} after step {self.step}; checkpoint "
                f"saved. Resume with: {self._resume_command()}",
                signum,
            )
        best_value, best_step = world.from_main(self.best_saved)
        result = TrainResult(
            run_dir=self.run_dir,
            steps=self.step,
            minutes=records.elapsed() / 60,
            stop_reason=reason,
            best_metric=cfg.best_metric,
            best_value=best_value,
            best_step=best_step,
        )
        log.info("done: %s; run: %s", result.summary(), self.run_dir)  # the one summary
        return result

    def _resume_command(self) -> str:
        processes = f" --nproc {self.world.size}" if self.world.size > 1 else ""
        return f"tcli train --resume {self.run_dir}{processes}"

    def _train_step(
        self, batches: Iterator[tuple[int, int, list[int]]], records: TrainingLog
    ) -> None:
        cfg, data = self.config.train, self.data
        started = time.monotonic()
        self.step += 1
        progress = self._progress(records)
        if cfg.max_minutes:  # a time budget's progress is rank 0's: one learning rate for all
            progress = self.world.from_main(progress)
        lr = learning_rate(self.step, cfg, self.config.model.d_model, progress)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        micro_batches, dropout_seeds = [], []
        for _ in range(cfg.accum_steps):
            self.epoch, index, indices = next(batches)
            self.batch_index = index + 1
            micro_batches.append(data.corpus.batch(indices))
            dropout_seeds.append(dropout_seed(cfg.seed, self.epoch, self.sampler.position(index)))
        self.optimizer.zero_grad(set_to_none=True)
        step_loss, tokens = accumulate_gradients(
            self.loss, micro_batches, self.device, self.autocast_dtype, self.scaler, self.world,
            dropout_seeds,
        )  # fmt: skip
        self.scaler.unscale_(self.optimizer)  # clip the true gradient, not the scaled one
        max_norm = cfg.clip_grad_norm or math.inf
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm))
        # A non-finite loss or gradient would make every weight NaN: skip the update. (With fp16
        # an overflowing gradient is the loss scaler's to handle: it skips the update itself and
        # lowers its scale; only a non-finite loss counts as a bad step there.)
        fp16 = self.precision == "fp16"
        bad = not math.isfinite(step_loss) or (not fp16 and not math.isfinite(grad_norm))
        if fp16 or not bad:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        self.bad_steps = self.bad_steps + 1 if bad else 0
        records.step(self.step, self.epoch, step_loss, tokens, lr, grad_norm, skipped=bad)
        self.step_seconds = time.monotonic() - started
        if bad:
            self._skipped(step_loss, grad_norm, lr)

    def _skipped(self, loss: float, grad_norm: float, lr: float) -> None:
        """Say that this step was skipped; stop after train.max_bad_steps of them in a row."""
        cfg = self.config.train
        log.warning(
            "step %d: the %s is %s; skipped it, no update (%d in a row, train.max_bad_steps=%d)",
            self.step, "loss" if not math.isfinite(loss) else "gradient norm",
            loss if not math.isfinite(loss) else grad_norm, self.bad_steps, cfg.max_bad_steps,
        )  # fmt: skip
        if self.bad_steps < cfg.max_bad_steps:
            return
        cause = (
            "fp16 overflow (try train.precision=bf16 or fp32) or a learning rate too high"
            if self.precision == "fp16"
            else "a learning rate too high"
        )
        raise Diverged(
            f"training diverged: steps {self.step - self.bad_steps + 1} to {self.step} all had a "
            f"non-finite loss or gradient (train.max_bad_steps={cfg.max_bad_steps}); the likely "
            f"cause is {cause} (train.lr={cfg.lr:g}, {lr:.3g} at step {self.step}); "
            f"{self._lower_lr_advice()}"
        )

    def _check_finite_weights(self) -> None:
        """Weights that are NaN or infinite are never validated, saved as best or checkpointed."""
        if all(bool(torch.isfinite(p).all()) for p in self.model.parameters()):
            return
        raise Diverged(
            f"the weights are not finite after step {self.step}; not saving them; "
            f"{self._lower_lr_advice()}"
        )

    def _lower_lr_advice(self) -> str:
        """What to do after a divergence: resume from the last checkpoint, which is intact, with
        a lower learning rate, or start again if there is none."""
        last = latest_step(self.checkpoints.root)
        if last is None:
            return "no checkpoint was saved; train again with a lower train.lr and --overwrite"
        return (
            f"lower train.lr and resume from the last checkpoint (step {last}), which is intact: "
            f"{self._resume_command()} --set train.lr=..."
        )

    def _progress(self, records: TrainingLog) -> float:
        """The share of the training budget that will be spent when the coming step ends: of
        train.max_steps, or of train.max_minutes less the time kept for the final validation
        (see _stop_reason), whichever is further along. Drives lr_schedule: budget.

        It never goes back: the time estimate does, when a fast step follows a slow one or a
        validation gets quicker, and the budget schedule's rate would rise with it."""
        progress = self.step / self.config.train.max_steps if self.config.train.max_steps else 0.0
        if self.config.train.max_minutes:
            usable = self.config.train.max_minutes * 60 - self.validation_seconds
            spent = records.elapsed() + self.step_seconds  # this step as long as the last one
            progress = max(progress, spent / max(usable, 1e-9))
        self.progress = max(self.progress, progress)
        return self.progress

    def _stop_reason(self, records: TrainingLog, signals: StopSignals) -> StopReason | None:
        if self.step == self.config.train.max_steps:  # done anyway: a signal needs no resume
            return StopReason.MAX_STEPS
        if signals.received is not None:
            return StopReason.SIGNAL
        # Stop early enough that the final validation ends by the deadline.
        if records.time_left() <= self.validation_seconds:
            return StopReason.MAX_MINUTES
        return None

    def _validate(self, records: TrainingLog, scheduled: bool = True) -> bool:
        """Validate, keep the best weights; True when early stopping's patience has run out.

        Only validations on the eval_every schedule decide the best checkpoint and count against
        the patience. The extra one at a max_steps or max_minutes stop is reported, but a run
        stopped there and resumed with a higher limit must pick the same best checkpoint and stop
        at the same step as one that never stopped, which never made that validation. (With no
        best yet it does write best.safetensors, so that the run has one, and leaves the state
        alone: the next scheduled validation replaces it, as in a run that never stopped.)
        """
        cfg, started = self.config.train, time.monotonic()
        with records.paused():
            result = self.validator.run()
        self.validation_seconds = time.monotonic() - started
        value = result[cfg.best_metric]
        better = self.best_value is None or (
            value > self.best_value if cfg.best_metric == "bleu" else value < self.best_value
        )
        if scheduled and better:
            self.best_value, self.best_step, self.bad_validations = value, self.step, 0
        elif scheduled:
            self.bad_validations += 1
        elif better and self.best_value is not None:
            log.info(
                "step %d is off the eval_every schedule: its %s %.4g beats the best (step %d), "
                "but best.safetensors stays; use --checkpoint last for these weights",
                self.step, cfg.best_metric, value, self.best_step,
            )  # fmt: skip
        saves_best = better and (scheduled or self.best_value is None)
        if saves_best:
            metadata = {"step": self.step, **{f"valid_{k}": v for k, v in result.items()}}
            save_weights(self.model, self.checkpoints.best, metadata)
            self.best_saved = (value, self.step)
        records.validation(self.step, self.epoch, result, saves_best)
        patience = cfg.early_stopping_patience
        if patience and self.bad_validations >= patience:
            log.info(
                "early stopping: %d validations without a better %s",
                patience,
                cfg.best_metric,
            )
            return True
        return False

    def _save_checkpoint(self, elapsed: float) -> None:
        self.elapsed_before = elapsed
        save_checkpoint(self.checkpoints.root, self.step, self.model, self.state_dict())
        prune_checkpoints(self.checkpoints.root, self.config.train.keep_last)

    def state_dict(self) -> dict:
        """Everything but the weights that the next step depends on (tensors and plain data)."""
        return {
            "step": self.step,
            "epoch": self.epoch,
            "batch_index": self.batch_index,  # in this process's share of the epoch's batches
            "world_size": self.world.size,
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "best_value": self.best_value,
            "best_step": self.best_step,
            "bad_validations": self.bad_validations,
            "best_saved": self.best_saved,  # what best.safetensors holds: (value, step)
            "bad_steps": self.bad_steps,
            "elapsed_s": self.elapsed_before,
            "validation_seconds": self.validation_seconds,
        }

    # What a saved state must hold; keys added later are read with a default.
    # fmt: off
    STATE_KEYS = frozenset({"step", "epoch", "batch_index", "optimizer", "scaler", "best_value",
                            "best_step", "bad_validations", "elapsed_s", "validation_seconds"})
    # fmt: on

    def _load_state(self, state: dict) -> None:
        self.step, self.epoch = state["step"], state["epoch"]
        # The data position, rank-independent: batches of the epoch's list taken by all processes.
        taken, saved_world = (
            state["batch_index"] * state.get("world_size", 1),
            state.get("world_size", 1),
        )
        # Every process has taken the same number of batches, each the next of its share.
        self.batch_index = -(-taken // self.world.size)  # rounded up: no batch is taken twice
        if saved_world != self.world.size:
            log.warning(
                "resuming a run of %d process(es) with %d: epoch %d goes on from batch %d of its "
                "list%s",
                saved_world, self.world.size, self.epoch, self.batch_index * self.world.size,
                f" (skipping {self.batch_index * self.world.size - taken})"
                if self.batch_index * self.world.size > taken else "",
            )  # fmt: skip
        self.optimizer.load_state_dict(state["optimizer"])
        for group in self.optimizer.param_groups:  # the config's betas, if --set changed them
            group["betas"] = self.config.train.adam_betas
        if state["scaler"]:  # empty when saved by a run without fp16
            self.scaler.load_state_dict(state["scaler"])
        self.best_value, self.best_step = state["best_value"], state["best_step"]
        self.bad_validations = state["bad_validations"]
        self.best_saved = tuple(state.get("best_saved") or (self.best_value, self.best_step))
        self.bad_steps = state.get("bad_steps", 0)
        self.elapsed_before = state["elapsed_s"]
        self.validation_seconds = state["validation_seconds"]
