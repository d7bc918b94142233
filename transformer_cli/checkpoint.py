"""Checkpoints on disk: weights as safetensors, the training state for resuming, all atomic.

The functions here read and write a folder of checkpoints, a run's checkpoints/; its files are
named in rundir.py (`CheckpointDir`).

Loading never executes code from a file: weights are safetensors, and the training state is
read with `torch.load(..., weights_only=True)`, which accepts only tensors and plain containers.
Every file is written to a temporary name and renamed into place, so a crash leaves either the
old file or the new one, never a torn one.
"""

import io
import json
import pickle
import re
from collections.abc import Callable
from pathlib import Path

import safetensors.torch
import torch
from safetensors import SafetensorError, safe_open

from transformer_cli.errors import RunError
from transformer_cli.files import atomic_write, atomic_write_bytes, atomic_write_text
from transformer_cli.rundir import CheckpointDir, RunDir, check_run_dir


def save_weights(model: torch.nn.Module, path: str | Path, metadata: dict[str, object]) -> None:
    """Write the model's parameters and string metadata (step, scores) to a safetensors file."""
    text_metadata = {key: str(value) for key, value in metadata.items()}
    _write_safetensors(path, lambda tmp: safetensors.torch.save_model(model, tmp, text_metadata))


def _write_safetensors(path: str | Path, save: Callable[[str], None]) -> None:
    """atomic_write for safetensors' writers, which report a full disk as a SafetensorError."""

    def write(tmp: Path) -> None:
        try:
            save(str(tmp))
        except SafetensorError as err:
            raise OSError(str(err)) from None

    atomic_write(path, write)


def load_weights(model: torch.nn.Module, path: str | Path) -> dict[str, str]:
    """Load parameters saved by `save_weights` into `model` (shapes must match); return metadata."""
    path = Path(path)
    if not path.is_file():
        raise RunError(f"checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as file:
            metadata = file.metadata() or {}
        device = next(model.parameters()).device
        safetensors.torch.load_model(model, str(path), strict=True, device=str(device))
    except (SafetensorError, RuntimeError) as err:
        # torch's first line only says "Error(s) in loading state_dict"; the second says which
        message = " ".join(line.strip() for line in str(err).strip().splitlines()[:2])
        raise RunError(f"cannot load checkpoint {path}: {message}") from None
    return metadata


def save_checkpoint(directory: Path, step: int, model: torch.nn.Module, state: dict) -> None:
    """Weights and training state of `step`, then the pointer that makes them the latest."""
    files = CheckpointDir(directory)
    save_weights(model, files.weights(step), {"step": step})
    # Serialised in memory first: torch.save reports a full disk as an obscure RuntimeError.
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(files.state(step), buffer.getvalue())
    atomic_write_text(files.latest, json.dumps({"step": step}) + "\n")


def latest_step(directory: Path) -> int | None:
    """The step of the newest complete checkpoint, or None if there is none yet."""
    latest = CheckpointDir(directory).latest
    try:
        return int(json.loads(latest.read_text(encoding="utf-8"))["step"])
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError) as err:
        raise RunError(f"{latest} is damaged: {err}") from None


def load_training_state(directory: Path, step: int) -> dict:
    """The optimizer, RNG and data state saved with step `step` (tensors and plain data only)."""
    path = CheckpointDir(directory).state(step)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise RunError(f"training state not found: {path}") from None
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError) as err:  # torn or foreign
        # torch refuses a pickle that would run code with a page of advice on loading it anyway;
        # keep just its reason
        unsafe = re.search(r"WeightsUnpickler error: (.*?)\.(\s|$)", str(err))
        if unsafe:
            reason = (
                f"it holds more than tensors and plain data ({unsafe.group(1)}); "
                "tcli never runs code from a file"
            )
        else:
            reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise RunError(f"cannot load training state {path}: {reason}") from None


def step_checkpoints(directory: Path) -> list[int]:
    """Steps that have a weights file, oldest first."""
    files = CheckpointDir(directory)
    return sorted(step for step in map(files.step_of, files.all_weights()) if step is not None)


def prune_checkpoints(directory: Path, keep_last: int) -> None:
    """Delete all but the newest `keep_last` step checkpoints (best and latest always stay)."""
    files, latest = CheckpointDir(directory), latest_step(directory)
    for step in step_checkpoints(directory)[:-keep_last]:
        if step != latest:
            files.weights(step).unlink(missing_ok=True)
            files.state(step).unlink(missing_ok=True)


def resolve_checkpoint(run_dir: Path, name: str) -> Path:
    """`best`, `last`, a step number, `step-N`, another name in checkpoints/, or a file path."""
    files = RunDir(run_dir).checkpoints
    if name == "last":
        step = latest_step(files.root)
        if step is None:
            raise RunError(f"{run_dir} has no checkpoint yet")
        return files.weights(step)
    if name.endswith(".safetensors"):
        return Path(name)
    path = files.weights(int(name) if name.isdigit() else name)
    if not path.is_file():
        there = ", ".join(checkpoint_names(files.root)) or "none"
        raise RunError(f"no checkpoint {name} in {files.root}; there are: {there}")
    return path


def checkpoint_names(directory: Path) -> list[str]:
    """What --checkpoint accepts in `directory`: best, last, the step numbers, then other names."""
    files = CheckpointDir(directory)
    names = ["best"] if files.best.is_file() else []
    if files.latest.is_file():
        names.append("last")
    names += [str(step) for step in step_checkpoints(directory)]
    others = (
        files.name_of(path)
        for path in files.all_weights()
        if path.name != files.best.name and files.step_of(path) is None
    )
    return names + sorted(others)


def average_checkpoints(paths: list[Path], out: Path) -> None:
    """Write the element-wise mean of the weights in `paths` (all of one model) to `out`."""
    total: dict[str, torch.Tensor] = {}
    dtypes: dict[str, torch.dtype] = {}
    for path in paths:
        try:
            weights = safetensors.torch.load_file(str(path))
        except (SafetensorError, FileNotFoundError) as err:
            raise RunError(f"cannot read checkpoint {path}: {err}") from None
        if total and weights.keys() != total.keys():
            raise RunError(f"{path} holds different tensors from {paths[0]}; not one model")
        for key, tensor in weights.items():
            # float64 sums: the mean of identical checkpoints is that checkpoint, bit for bit
            total[key] = total.get(key, 0) + tensor.double()
            dtypes[key] = tensor.dtype
    averaged = {key: (t / len(paths)).to(dtypes[key]).contiguous() for key, t in total.items()}
    metadata = {"averaged": ",".join(path.name for path in paths)}
    _write_safetensors(out, lambda tmp: safetensors.torch.save_file(averaged, tmp, metadata))


def average_last(
    run_dir: str | Path, last: int, out: str | Path | None = None, overwrite: bool = False
) -> Path:
    """Average the newest `last` step checkpoints of a run; returns the file written.

    A file of the user's choosing (`out`) is replaced only with `overwrite`; the default one in
    checkpoints/ is derived from the run and always rewritten.
    """
    run_dir = Path(run_dir)
    if out is not None and Path(out).exists() and not overwrite:
        raise RunError(f"--out {out} already exists; add --overwrite to replace it")
    check_run_dir(run_dir)
    files = RunDir(run_dir).checkpoints
    if not files.root.is_dir():
        raise RunError(f"{run_dir} is not a tcli run directory (no {files.root.name}/)")
    steps = step_checkpoints(files.root)
    if len(steps) < last:
        raise RunError(
            f"--last {last}: {run_dir} has {len(steps)} step checkpoint(s) "
            "(train.keep_last sets how many are kept)"
        )
    out = Path(out) if out else files.averaged(last)
    average_checkpoints([files.weights(step) for step in steps[-last:]], out)
    return out
