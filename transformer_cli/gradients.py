"""The gradient of one optimizer step: the per-token loss over its micro-batches on every
process, with dropout masks that follow the batch.
"""

import contextlib

import numpy as np
import torch
from torch import nn

from transformer_cli.data.batching import Batch
from transformer_cli.distributed import SINGLE_PROCESS, World


def accumulate_gradients(
    loss: nn.Module,
    batches: list[Batch],
    device: torch.device,
    autocast_dtype: torch.dtype | None = None,
    scaler: torch.amp.GradScaler | None = None,
    world: World = SINGLE_PROCESS,
    dropout_seeds: list[int] | None = None,
) -> tuple[float, int]:
    """Add the gradient of the per-token loss over all `batches`, on all processes, to the
    parameters' .grad. `loss` is a TeacherForcedLoss, or one wrapped in DistributedDataParallel.

    Each batch's summed loss is divided by the target tokens of all batches of all processes, so
    k micro-batches on n processes give exactly the gradient of one batch holding them all.
    Each batch's dropout masks are drawn after seeding with its entry of `dropout_seeds`.
    Returns (loss per token, tokens), both over all processes.
    """
    tokens = int(world.sum(sum(batch.n_tgt_tokens for batch in batches)))
    total = 0.0
    for number, batch in enumerate(batches, start=1):
        batch = batch.to(device)
        # DDP averages the processes' gradients; a sum is wanted, hence world.size / tokens.
        # It synchronises them once, after the last micro-batch.
        last = number == len(batches)
        sync = contextlib.nullcontext() if last or world.size == 1 else loss.no_sync()
        if dropout_seeds is not None:
            torch.manual_seed(dropout_seeds[number - 1])
        with (
            sync,
            torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None),
        ):
            value = loss(batch, autocast_dtype) / tokens
            (scaler.scale(value * world.size) if scaler else value * world.size).backward()
        total += value.item()
    return world.sum(total), tokens


def dropout_seed(seed: int, epoch: int, position: int) -> int:
    """The seed of the dropout masks of the batch at `position` in `epoch`'s list of batches.

    Masks that follow the batch, not the process or the history: every process draws its own,
    one process taking k micro-batches draws the masks that k processes would, and a resumed run
    draws those of a run that never stopped, with no random-number state to save.
    """
    return int(np.random.SeedSequence([seed, epoch, position]).generate_state(1, np.uint64)[0])
