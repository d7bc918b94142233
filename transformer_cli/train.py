"""Starting and resuming training runs: data, tokenizer, model, then the Trainer's loop."""

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
from transformer_cli.config import Config, apply_override, load_config, validate_config
from transformer_cli.data.cache import EncodedCorpus, fingerprint
from transformer_cli.data.corpus import count_pairs, describe, iter_pairs, read_pairs
from transformer_cli.data.tokenizer import Tokenizer, Tokenizers, copy_tokenizer, train_tokenizer
from transformer_cli.device import has_native_bf16, resolve_device
from transformer_cli.distributed import (
    SINGLE_PROCESS,
    World,
    joined,
    launch,
    world_from_environment,
)
from transformer_cli.errors import ConfigError, DataError, Interrupted, RunError
from transformer_cli.files import atomic_write_bytes, atomic_write_text, remove_temporaries
from transformer_cli.records import log_to_file
from transformer_cli.rundir import RunDir, read_config
from transformer_cli.trainer import Trainer, TrainingData, TrainResult
from transformer_cli.translator import build_model

log = logging.getLogger(__name__)

# Keys a resumed run may not change, and why. Any other key may change; a resumed run applies
# the new value from its next step on (train.adam_betas too: they replace the saved optimizer's).
# train.accum_steps may change: the data position counts batches, not steps, so the run goes on
# with the batch it would have taken next, only grouped into steps differently.
FROZEN_ON_RESUME = {
    "model": "the saved weights depend on it",
    "tokenizer": "the saved weights and vocabulary depend on it",
    "data.train": "the saved weights and vocabulary depend on it",
    "data.max_len": "the saved data position counts the pairs it keeps",
    "data.max_ratio": "the saved data position counts the pairs it keeps",
    "train.batch_tokens": "the saved data position is a place in the list of batches it makes",
    "train.seed": "the saved data position is a place in the batch order it shuffles",
}

NO_VALIDATION = ([], [])  # for the processes other than rank 0, which validates alone


def train_command(
    config_file: Path | None,
    out: Path | None = None,
    resume_dir: Path | None = None,
    device: str = "auto",
    overrides: list[str] = (),
    overwrite: bool = False,
    processes: int | None = None,
) -> None:
    """`tcli train`'s work: train `config_file` into `out` (default runs/CONFIG_NAME), or resume
    the run in `resume_dir`; in `processes` processes on this machine (tcli run again in each,
    through torchrun's API), or, when torchrun started this process, as its share of the run."""
    overrides = list(overrides)
    config = None if config_file is None else load_config(config_file, overrides)
    launched = world_from_environment()
    if config is None and not launched.is_main and not RunDir(resume_dir).config.is_file():
        backend = "auto"  # a machine with no copy of the run: rank 0 will send it the config
    else:
        backend = (config or resumed_config(resume_dir, overrides)).train.dist_backend
    if processes and processes > 1 and launched.size == 1:
        given = [str(config_file)] if config_file is not None else ["--resume", str(resume_dir)]
        given += ["--out", str(out)] if out is not None else []
        given += [arg for value in overrides for arg in ("--set", value)]
        given += ["--device", device, *(["--overwrite"] if overwrite else [])]
        launch(processes, ["train", *given])
        return
    # Under torchrun: one process per device, each training its share of every step's batches.
    try:
        with joined(device, None if backend == "auto" else backend) as (world, torch_device):
            if not world.is_main:  # one voice: rank 0 logs and reports
                logging.getLogger("transformer_cli").setLevel(logging.WARNING)
            if config is None:
                resume(resume_dir, overrides, str(torch_device), world)
            else:
                out = out or Path("runs") / config_file.stem
                train(config, out, str(torch_device), overwrite, world)
    except Interrupted as stopped:
        if launched.is_main:
            raise
        raise SystemExit(stopped.exit_code) from None  # rank 0 says it, once


def train(
    config: Config,
    run_dir: str | Path,
    device: str = "auto",
    overwrite: bool = False,
    world: World = SINGLE_PROCESS,
) -> TrainResult:
    """Train a new model as `config` says, writing everything into `run_dir`.

    In a distributed run (see distributed.py) rank 0 prepares the run directory and trains the
    tokenizer while the others wait. The machines need not share a filesystem: the tokenizer
    reaches the others through torch.distributed, and on each machine the first process encodes
    the corpus into its own `run_dir` (or finds it there). Then every process trains its share.
    """
    run_dir, torch_device = Path(run_dir), resolve_device(device)
    if not world.is_main:  # wait for rank 0 to prepare the run directory, then copy it
        config, _ = _share_run_dir(run_dir, world)
        data = _training_data(config, run_dir, NO_VALIDATION)
        return _new_trainer(config, run_dir, data, torch_device, world).fit()
    _check_precision(config, torch_device)
    # Check what can be checked before touching the run directory.
    _check_data_files(config)
    pairs = count_pairs(config.data.train, "data.train")
    valid = _read_valid(config)
    if not pairs:
        raise DataError(f"data.train: {describe(config.data.train)} is empty")
    existed, run = run_dir.exists(), RunDir(run_dir)
    replaced = _prepare_run_dir(run_dir, overwrite)
    try:  # a run that cannot even start leaves nothing behind, and the run it replaces intact
        atomic_write_text(run.config, config.to_yaml())
        with log_to_file(run.train_log):
            tokenizers = _make_tokenizers(config, run_dir, pairs)
            corpus = _encoded_corpus(config, tokenizers, run_dir, pairs)
            _share_run_dir(run_dir, world, config)
            data = TrainingData(tokenizers, corpus, *valid)
            trainer = _new_trainer(config, run_dir, data, torch_device, world)
    except BaseException:
        shutil.rmtree(run_dir, ignore_errors=True)
        if replaced is not None:
            replaced.rename(run_dir)
        elif existed:
            run_dir.mkdir()  # the user's empty directory stays
        raise
    if replaced is not None:
        shutil.rmtree(replaced)
    with log_to_file(run.train_log):
        return trainer.fit()


def resume(
    run_dir: str | Path,
    overrides: list[str] = (),
    device: str = "auto",
    world: World = SINGLE_PROCESS,
) -> TrainResult:
    """Continue a run from its latest checkpoint, exactly as if it had never stopped.

    `overrides` may change e.g. train.max_steps, but not the model, tokenizer or training data.
    The encoded corpus in the run's cache is reused, not encoded again.
    """
    run_dir, torch_device = Path(run_dir), resolve_device(device)
    if not world.is_main:  # rank 0 reads the run; this machine may have no copy of it
        config, state = _share_run_dir(run_dir, world)
        # The weights need not be loaded here: DistributedDataParallel starts every process
        # with rank 0's.
        model = build_model(config, Tokenizers.load(run_dir)).to(torch_device)
        data = _training_data(config, run_dir, NO_VALIDATION)
        return Trainer(config, run_dir, model, data, torch_device, state, world).fit()
    config = resumed_config(run_dir, overrides)
    _check_precision(config, torch_device)
    run = RunDir(run_dir)
    directory = run.checkpoints.root
    step = latest_step(directory)
    if step is None:
        raise RunError(
            f"{run_dir} has no checkpoint to resume from; train it again with --overwrite"
        )
    state = load_training_state(directory, step)
    missing = Trainer.STATE_KEYS - (set(state) if isinstance(state, dict) else set())
    if missing:
        raise RunError(
            f"{run.checkpoints.state(step)} is not a tcli training state (it lacks "
            f"{', '.join(sorted(missing))}); resume from another checkpoint or train again"
        )
    remove_temporaries(directory)  # what a process killed mid-write left behind
    _check_limits_left(config, state, run_dir)
    valid = _read_valid(config)
    with log_to_file(run.train_log):
        log.info("resuming %s from step %d", run_dir, step)
        _share_run_dir(run_dir, world, config, state)
        tokenizers = Tokenizers.load(run_dir)
        model = build_model(config, tokenizers).to(torch_device)
        load_weights(model, resolve_checkpoint(run_dir, str(step)))
        data = _training_data(config, run_dir, valid)
        trainer = Trainer(config, run_dir, model, data, torch_device, state, world)
        atomic_write_text(run.config, config.to_yaml())  # the overrides, now they work
        return trainer.fit()


def _new_trainer(
    config: Config, run_dir: Path, data: TrainingData, device: torch.device, world: World
) -> Trainer:
    """A freshly initialised model (the same on every process: same seed) and its Trainer."""
    _seed_everything(config.train.seed)
    model = build_model(config, data.tokenizers).to(device)
    return Trainer(config, run_dir, model, data, device, world=world)


def _share_run_dir(
    run_dir: Path, world: World, config: Config | None = None, state: dict | None = None
) -> tuple[Config, dict | None]:
    """Give every process rank 0's config and training state, and every machine a copy of its
    tokenizer and encoded corpus (the machines need not share a filesystem).

    Rank 0 calls it once its run directory is ready; the others call it at once and wait. On each
    other machine its first process writes the files its run directory lacks and encodes the
    corpus there, while the machine's other processes wait.
    """
    if world.size == 1:
        return config, state
    run = RunDir(run_dir)
    paths = (run.config, *run.tokenizers)
    files = {path.name: path.read_bytes() for path in paths if path.exists()}
    config, state, files = world.from_main((config, state, files) if world.is_main else None)
    if not world.is_main and world.local_rank == 0:
        _write_missing(run_dir, files)
        _encoded_corpus(config, Tokenizers.load(run_dir), run_dir)  # encoded, or found there
    world.barrier()
    return config, state


def _training_data(
    config: Config, run_dir: Path, valid: tuple[list[str], list[str]]
) -> TrainingData:
    tokenizers = Tokenizers.load(run_dir)
    return TrainingData(tokenizers, _encoded_corpus(config, tokenizers, run_dir), *valid)


def _write_missing(run_dir: Path, files: dict[str, bytes]) -> None:
    """Write rank 0's files into this machine's run directory, unless they are already there (a
    shared filesystem)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        path = run_dir / name
        if not path.exists() or path.read_bytes() != content:
            atomic_write_bytes(path, content)


def _check_data_files(config: Config) -> None:
    """Name every missing data file at once, training files first, and how to get them."""
    data = config.data
    splits = {"train": data.train, "valid": data.valid, "test": data.test}
    missing = [
        f"data.{split}.{side} {path}"
        for split, files in splits.items()
        if files is not None
        for side, path in (("tsv", files.tsv), ("src", files.src), ("tgt", files.tgt))
        if path is not None and not Path(path).exists()
    ]
    if missing:
        get = f"; get them with: {data.download} (data.download)" if data.download else ""
        raise DataError(f"data files not found: {', '.join(missing)}{get}")


def _read_valid(config: Config) -> tuple[list[str], list[str]]:
    sources, targets = read_pairs(config.data.valid, "data.valid")
    if not sources:
        raise DataError(f"data.valid: {describe(config.data.valid)} is empty")
    return sources, targets


def _train_files(config: Config) -> list[str]:
    train = config.data.train
    return [train.tsv] if train.tsv is not None else [train.src, train.tgt]


def _make_tokenizers(config: Config, run_dir: Path, pairs: int) -> Tokenizers:
    """Train SentencePiece on the training data, or copy the models the config names."""
    tok, run = config.tokenizer, RunDir(run_dir)
    if tok.joint:
        if tok.model:
            joint = copy_tokenizer(tok.model, run.joint_tokenizer, "tokenizer.model")
        else:
            joint = _train_one(config, run.joint_tokenizer, (0, 1), "joint", pairs)
        return Tokenizers(joint, joint)
    if tok.src_model:
        return Tokenizers(
            copy_tokenizer(tok.src_model, run.source_tokenizer, "tokenizer.src_model"),
            copy_tokenizer(tok.tgt_model, run.target_tokenizer, "tokenizer.tgt_model"),
        )
    return Tokenizers(
        _train_one(config, run.source_tokenizer, (0,), config.data.src_lang, pairs),
        _train_one(config, run.target_tokenizer, (1,), config.data.tgt_lang, pairs),
    )


def _train_one(
    config: Config, path: Path, sides: tuple[int, ...], name: str, pairs: int
) -> Tokenizer:
    tok = config.tokenizer
    sentences, size = pairs * len(sides), tok.input_sentence_size
    sample = f", sampling {size:,} of {sentences:,} sentences" if 0 < size < sentences else ""
    log.info("training SentencePiece (%s, vocab_size=%d%s)", name, tok.vocab_size, sample)
    corpus = iter_pairs(config.data.train, "data.train")
    return train_tokenizer(
        (pair[side] for pair in corpus for side in sides),
        path,
        vocab_size=tok.vocab_size,
        model_type=tok.model_type,
        character_coverage=tok.character_coverage,
        input_sentence_size=size,
        total=sentences,
        seed=config.train.seed,
    )


def _encoded_corpus(
    config: Config, tokenizers: Tokenizers, run_dir: Path, pairs: int | None = None
) -> EncodedCorpus:
    """The training pairs as ids: from the run's cache, or encoded (and cached) now."""
    data = config.data
    models = sorted({tokenizers.source.path, tokenizers.target.path})
    expected = fingerprint(
        _train_files(config), models, max_len=data.max_len, max_ratio=data.max_ratio
    )
    cache = RunDir(run_dir).cache
    corpus = EncodedCorpus.open(cache, expected)
    if corpus is None:
        log.info("encoding the training data (%s) into %s", describe(data.train), cache)
        corpus = EncodedCorpus.build(
            cache,
            iter_pairs(data.train, "data.train"),
            tokenizers,
            data.max_len,
            data.max_ratio,
            expected,
            total=pairs,
        )
    else:
        log.info("training data: using its encoding cached in %s", cache)
    stats = corpus.stats
    reasons = ", ".join(f"{n} {reason}" for reason, n in stats["dropped"].items()) or "none"
    log.info("training pairs: %d kept of %d; dropped: %s", stats["kept"], stats["read"], reasons)
    if not len(corpus):
        raise DataError(f"data.train: no usable pairs left after filtering ({reasons})")
    return corpus


def _prepare_run_dir(run_dir: Path, overwrite: bool) -> Path | None:
    """Create an empty run directory. An existing run is replaced only when asked, and only
    moved aside at first: the path it was moved to is returned, to delete once the new run has
    started or to move back if it cannot."""
    if run_dir.exists() and not run_dir.is_dir():
        raise RunError(f"--out {run_dir} is a file, not a directory")
    run, replaced = RunDir(run_dir), None
    if run_dir.exists() and any(run_dir.iterdir()):
        if not overwrite:
            raise RunError(
                f"{run_dir} already exists; pass --overwrite to replace it, --resume to continue "
                "it, or --out to choose another directory"
            )
        if not run.config.is_file():
            raise RunError(f"{run_dir} is not a tcli run directory; refusing to delete it")
        replaced = run.replaced
        shutil.rmtree(replaced, ignore_errors=True)  # left by a replacement that crashed
        run_dir.rename(replaced)
    run_dir.mkdir(parents=True, exist_ok=True)
    return replaced


def resumed_config(run_dir: Path, overrides: list[str]) -> Config:
    """The run's saved config with `overrides` applied; frozen keys may not change."""
    saved = read_config(run_dir)
    raw = saved.model_dump(mode="json")
    keys = [apply_override(raw, item) for item in overrides]
    config = validate_config(raw, str(RunDir(run_dir).config), keys)
    before, after = saved.model_dump(mode="json"), config.model_dump(mode="json")
    for key in keys:
        frozen = next((f for f in FROZEN_ON_RESUME if key == f or key.startswith(f + ".")), None)
        if frozen and _lookup(before, key) != _lookup(after, key):
            raise ConfigError(
                f"--set {key}: cannot change {frozen} when resuming "
                f"({FROZEN_ON_RESUME[frozen]}); start a new run instead"
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
    if precision == "bf16" and not has_native_bf16(device):
        log.warning(
            "train.precision: this %s has no native bf16 arithmetic, so bf16 is likely slower "
            "than fp32 here (precision: auto picks for you); compare with scripts/bench_train.py",
            "CPU (no AVX512-BF16 or AMX)" if device.type == "cpu" else "device",
        )


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
