"""Starting and resuming training runs: data, tokenizer, model, then the Trainer's loop."""

import itertools
import logging
import random
import shutil
from pathlib import Path

import numpy as np
import torch

from transformer_cli.checkpoint import (
    latest_step,
    load_training_state,
    load_weights,
    resolve_checkpoint,
)
from transformer_cli.config import Config, apply_override, validate_config
from transformer_cli.data.corpus import filter_pairs, read_parallel
from transformer_cli.data.tokenizer import Tokenizer, train_tokenizer
from transformer_cli.device import resolve_device
from transformer_cli.errors import ConfigError, DataError, RunError
from transformer_cli.files import atomic_write_text
from transformer_cli.records import TRAIN_LOG_FILE, log_to_file
from transformer_cli.run import CONFIG_FILE, TOKENIZER_FILE, build_model, read_config
from transformer_cli.trainer import Trainer, TrainingData, TrainResult

log = logging.getLogger(__name__)

# Keys a resumed run may not change: the saved weights and vocabulary depend on them.
FROZEN_ON_RESUME = ("model", "tokenizer", "data.train", "data.max_len")


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
    if precision == "bf16" and device.type == "cpu":
        if not _cpu_has_native_bf16():
            log.warning(
                "train.precision: this CPU has no native bf16 instructions (AVX512-BF16 or AMX), "
                "so bf16 is likely slower than fp32 here; compare with scripts/bench_train.py"
            )
        if config.model.attention == "fused":
            log.warning(
                "train.precision: torch's fused attention is slow in bf16 on a CPU (1.9x slower "
                "than model.attention=explicit when measured); compare with scripts/bench_train.py"
            )


def _cpu_has_native_bf16() -> bool:
    # Private torch helpers (present in torch 2.x); without them, assume the common case: no.
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
