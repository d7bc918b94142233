"""Search: turning the model's next-token logits into output token sequences."""

import torch
from torch import Tensor

from transformer_cli.data.tokenizer import BOS_ID, EOS_ID
from transformer_cli.model import Transformer


def max_output_lengths(src: Tensor, pad_id: int, max_len_a: float, max_len_b: int) -> Tensor:
    """Per-sentence output limit, a * source_tokens + b (EOS not counted): (batch,) int64."""
    src_tokens = (src != pad_id).sum(dim=1) - 1  # the source's EOS is not a word
    return (max_len_a * src_tokens + max_len_b).floor().long().clamp(min=1)


@torch.no_grad()
def greedy_decode(
    model: Transformer, src: Tensor, max_len_a: float, max_len_b: int
) -> list[list[int]]:
    """Batched greedy search: at each step every unfinished sentence takes its most likely token.

    src: (batch, src_len) ids ending in EOS, padded. A sentence stops at its own EOS or at its own
    length limit; the returned id lists hold neither BOS nor EOS.
    This version re-runs the decoder over the whole prefix at every step (O(n²) per sentence).
    """
    pad_id = model.config.pad_id
    memory, src_mask = model.encode(src)  # (batch, src_len, d_model), (batch, 1, 1, src_len)
    limits = max_output_lengths(src, pad_id, max_len_a, max_len_b)
    batch = src.size(0)
    tokens = torch.full((batch, 1), BOS_ID, dtype=torch.long, device=src.device)
    done = torch.zeros(batch, dtype=torch.bool, device=src.device)
    for step in range(1, int(limits.max()) + 1):
        logits = model.decode(tokens, memory, src_mask)[:, -1]  # (batch, vocab)
        logits[:, [pad_id, BOS_ID]] = float("-inf")  # never valid outputs
        next_token = logits.argmax(dim=-1).masked_fill(done, pad_id)  # finished rows get PAD
        tokens = torch.cat([tokens, next_token[:, None]], dim=1)  # (batch, step + 1)
        done |= (next_token == EOS_ID) | (limits <= step)
        if done.all():
            break
    return [_strip(row, pad_id) for row in tokens[:, 1:].tolist()]


def _strip(ids: list[int], pad_id: int) -> list[int]:
    """The tokens before the first EOS or PAD: a row ends with EOS + PADs, or with PADs alone
    when it reached its length limit first (PAD itself is never generated)."""
    for position, token in enumerate(ids):
        if token in (EOS_ID, pad_id):
            return ids[:position]
    return ids
