"""Choosing the torch device from the --device flag, and the precision it computes fastest."""

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


def has_native_bf16(device: torch.device) -> bool:
    """Whether `device` computes in bfloat16 natively (so that bf16 autocast pays off)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        # Private torch helpers (in torch 2.x); without them, assume the common case: no.
        checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        return any(getattr(torch.cpu, name, lambda: False)() for name in checks)
    return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """train.precision with `auto` replaced: bf16 where the device has it natively, else fp32.

    On a CPU with AVX512-BF16, bf16 autocast trained the 3+3-layer d_model 256 model 1.6x faster
    than fp32 (scripts/bench_train.py); the README compares the BLEU they reach.
    """
    if precision != "auto":
        return precision
    return "bf16" if has_native_bf16(device) else "fp32"
