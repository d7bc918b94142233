"""Learning-rate schedules: a pure function of the optimizer step (counted from 1).

Every schedule but noam warms up linearly from 0 to `lr` over `warmup_steps`, then
- inverse_sqrt: lr * sqrt(warmup_steps / step), fairseq's default;
- cosine: lr * (1 + cos(pi * progress)) / 2, reaching 0 at max_steps;
- budget: lr * (1 - progress), where progress runs from 0 to 1 over the training budget,
  steps or minutes, whichever ends first: linear decay to 0 exactly when the budget runs out,
  which budgeted-training studies found best under a fixed budget (Li et al. 2020); the trainer
  supplies the progress;
- constant: lr.
noam is the formula of Vaswani et al. (2017, eq. 3) scaled by `lr` (1.0 in the paper):
lr * d_model^-0.5 * min(step^-0.5, step * warmup_steps^-1.5), which peaks at warmup_steps.
"""

import math

from transformer_cli.config import TrainConfig


def learning_rate(step: int, train: TrainConfig, d_model: int, progress: float = 0.0) -> float:
    """The learning rate of optimizer step `step` (1, 2, ...); `progress` (0 to 1: the share of
    the training budget spent by the end of this step) drives the budget schedule."""
    warmup = max(train.warmup_steps, 1)
    if train.lr_schedule == "noam":
        return train.lr * d_model**-0.5 * min(step**-0.5, step * warmup**-1.5)
    if train.lr_schedule == "budget":  # the warmup ramp times the decay, so no kink between them
        return train.lr * min(step / warmup, 1.0) * (1.0 - min(max(progress, 0.0), 1.0))
    if step < train.warmup_steps:
        return train.lr * step / train.warmup_steps
    if train.lr_schedule == "inverse_sqrt":
        return train.lr * math.sqrt(warmup / step)
    if train.lr_schedule == "cosine":
        assert train.max_steps is not None  # the config refuses cosine without max_steps
        progress = (step - train.warmup_steps) / max(train.max_steps - train.warmup_steps, 1)
        return train.lr * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    return train.lr  # constant
