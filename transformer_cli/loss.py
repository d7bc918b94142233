"""The training loss: label-smoothed cross entropy over the real (non-padding) target tokens.

Label smoothing spreads its share over the tokens the model can output, not PAD and BOS (as
OpenNMT does): no search ever produces them, so probability taught onto them is wasted.

The vocabulary projection and the loss are fused into one function that never holds the whole
(target tokens, vocabulary) logits: it projects a chunk of rows at a time, and because the loss
is the end of the graph it computes that chunk's gradient right away (softmax minus the smoothed
target distribution), so the backward pass only scales what the forward pass prepared. On a CPU
this is most of the difference: the full logits of a 4096-token batch with an 8k vocabulary
are 130 MB, and each pass over such a fresh buffer costs more in page faults than in arithmetic.
"""

import torch
from torch import Tensor, nn

from transformer_cli.data.batching import Batch
from transformer_cli.data.tokenizer import BOS_ID, PAD_ID
from transformer_cli.model import Transformer

CHUNK_ELEMENTS = 1 << 21  # logits per chunk: 8 MiB in fp32, small enough to stay cached
NEVER_OUTPUT = (PAD_ID, BOS_ID)  # label smoothing gives these no probability


class TeacherForcedLoss(nn.Module):
    """`sequence_loss` as a module: DistributedDataParallel wraps a module and synchronises the
    gradients of what runs through its forward, which must then be the whole loss."""

    def __init__(self, model: Transformer, label_smoothing: float) -> None:
        super().__init__()
        self.model, self.label_smoothing = model, label_smoothing

    def forward(self, batch: Batch, compute_dtype: torch.dtype | None = None) -> Tensor:
        return sequence_loss(self.model, batch, self.label_smoothing, compute_dtype)


def sequence_loss(
    model: Transformer,
    batch: Batch,
    label_smoothing: float = 0.0,
    compute_dtype: torch.dtype | None = None,
) -> Tensor:
    """Summed label-smoothed cross entropy of the model's predictions for `batch`'s targets.

    Only target positions holding a real token (not PAD) are projected and scored.
    `compute_dtype` (e.g. bfloat16 under autocast) is the dtype of the vocabulary matmuls;
    the softmax and the sums are always fp32.
    """
    features = model.features(batch.src, batch.tgt_in)  # (batch, tgt_len, d_model)
    real = batch.tgt_out != PAD_ID  # (batch, tgt_len)
    projection = model.output_proj
    return linear_cross_entropy(
        features[real],  # (tokens, d_model)
        projection.weight,
        projection.bias,
        batch.tgt_out[real],
        label_smoothing,
        compute_dtype,
        NEVER_OUTPUT,
    )


def linear_cross_entropy(
    hidden: Tensor,
    weight: Tensor,
    bias: Tensor,
    targets: Tensor,
    label_smoothing: float = 0.0,
    compute_dtype: torch.dtype | None = None,
    excluded: tuple[int, ...] = (),
) -> Tensor:
    """sum over rows of CE(softmax(hidden @ weightᵀ + bias), smoothed one-hot(targets)).

    hidden: (rows, d), weight: (vocab, d), bias: (vocab,), targets: (rows,). The smoothed target
    puts 1 - label_smoothing on the target and spreads label_smoothing evenly over the
    vocabulary less the `excluded` ids (with none excluded, as `F.cross_entropy(...,
    label_smoothing=...)` does).
    """
    return _LinearCrossEntropy.apply(
        hidden, weight, bias, targets, label_smoothing, compute_dtype or hidden.dtype, excluded
    )


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx,
        hidden: Tensor,
        weight: Tensor,
        bias: Tensor,
        targets: Tensor,
        label_smoothing: float,
        compute_dtype: torch.dtype,
        excluded: tuple[int, ...],
    ) -> Tensor:
        rows, vocab = hidden.size(0), weight.size(0)
        spread = label_smoothing / (vocab - len(excluded))  # each smoothed token's share
        excluded_ids = torch.tensor(excluded, dtype=torch.long, device=hidden.device)
        needs_grad = any(ctx.needs_input_grad[:3])
        w = weight.to(compute_dtype)
        b = bias.to(compute_dtype)
        if needs_grad:
            grad_hidden = torch.empty_like(hidden)
            grad_weight = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device)
            grad_bias = torch.zeros(vocab, dtype=torch.float32, device=weight.device)
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        chunk = max(CHUNK_ELEMENTS // vocab, 1)
        for start in range(0, rows, chunk):
            h = hidden[start : start + chunk].to(compute_dtype)  # (n, d)
            t = targets[start : start + chunk]
            logits = torch.addmm(b, h, w.t()).float()  # (n, vocab)
            lse = logits.logsumexp(dim=-1)  # (n,)
            # -sum_v q(v) log p(v) with q = (1 - eps) one-hot(y) + eps/|A| on the allowed ids A:
            # (1 - eps) (lse - z_y) + eps/|A| sum_{v in A} (lse - z_v)
            target_logit = logits.gather(1, t[:, None]).squeeze(1)
            loss = lse - (1 - label_smoothing) * target_logit
            if label_smoothing:
                allowed_sum = logits.sum(dim=-1) - logits[:, excluded_ids].sum(dim=-1)
                loss = loss - spread * allowed_sum
            total += loss.sum()
            if not needs_grad:
                continue
            # d loss / d logits = softmax(logits) - smoothed target, computed in place.
            grad = logits.sub_(lse[:, None]).exp_()
            if label_smoothing:
                grad.sub_(spread)
                grad[:, excluded_ids] += spread  # no share for the excluded ids
            grad.scatter_add_(
                1, t[:, None], torch.full_like(target_logit[:, None], label_smoothing - 1)
            )
            grad_bias += grad.sum(dim=0)
            grad = grad.to(compute_dtype)
            grad_hidden[start : start + chunk] = grad @ w  # (n, d)
            grad_weight += grad.t() @ h  # (vocab, d)
        if needs_grad:
            ctx.save_for_backward(grad_hidden, grad_weight, grad_bias)
            ctx.dtypes = (weight.dtype, bias.dtype)
        return total

    @staticmethod
    def backward(
        ctx: torch.autograd.function.FunctionCtx, grad_output: Tensor
    ) -> tuple[Tensor | None, ...]:
        grad_hidden, grad_weight, grad_bias = ctx.saved_tensors
        weight_dtype, bias_dtype = ctx.dtypes
        return (
            grad_hidden * grad_output.to(grad_hidden.dtype),
            (grad_weight * grad_output).to(weight_dtype),
            (grad_bias * grad_output).to(bias_dtype),
            None,
            None,
            None,
            None,
        )
