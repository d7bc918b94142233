"""Model weights on disk: safetensors files (no code is ever executed when loading), atomically."""

from pathlib import Path

import safetensors.torch
import torch
from safetensors import SafetensorError, safe_open

from transformer_cli.errors import RunError
from transformer_cli.files import atomic_write


def save_weights(model: torch.nn.Module, path: str | Path, metadata: dict[str, object]) -> None:
    """Write the model's parameters and string metadata (step, scores) to a safetensors file."""
    text_metadata = {key: str(value) for key, value in metadata.items()}
    atomic_write(path, lambda tmp: safetensors.torch.save_model(model, str(tmp), text_metadata))


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
        message = str(err).strip().splitlines()[0]
        raise RunError(f"cannot load checkpoint {path}: {message}") from None
    return metadata
