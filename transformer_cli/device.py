"""Choosing the torch device from the --device flag."""

import re

import torch

from transformer_cli.errors import DeviceError

_DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def resolve_device(name: str = "auto") -> torch.device:
    """Turn `auto|cpu|cuda|cuda:N|mps` into a device; `auto` picks cuda, then mps, then cpu."""
    if not _DEVICE_PATTERN.fullmatch(name):
        raise DeviceError(f"--device {name!r}: expected auto, cpu, cuda, cuda:N or mps")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError(f"--device {name}: CUDA is not available on this machine")
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise DeviceError(
                f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)"
            )
    if name == "mps" and not torch.backends.mps.is_available():
        raise DeviceError("--device mps: MPS (Apple GPU) is not available on this machine")
    return torch.device(name)
