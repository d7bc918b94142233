"""The building blocks of the encoder and decoder stacks (Vaswani et al. 2017, section 3)."""

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from transformer_cli.model.attention import KeyValueCache, MultiHeadAttention


def sinusoidal_positions(length: int, d_model: int) -> Tensor:
    """PE[pos, 2i] = sin(pos / 10000^(2i/d_model)), PE[pos, 2i+1] = cos(same): (length, d_model)."""
    position = torch.arange(length, dtype=torch.float32)[:, None]  # (length, 1)
    frequency = torch.exp(
        torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model)
    )  # (d_model / 2,)
    table = torch.zeros(length, d_model)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency)
    return table


class PositionalEncoding(nn.Module):
    """Adds sinusoidal positions to (batch, len, d_model) embeddings; the table grows on demand."""

    def __init__(self, d_model: int, initial_length: int = 512) -> None:
        super().__init__()
        # Not persistent: it is a function of the shape, so it stays out of checkpoints.
        self.register_buffer(
            "table", sinusoidal_positions(initial_length, d_model), persistent=False
        )

    def forward(self, x: Tensor, offset: int = 0) -> Tensor:
        """x holds positions offset .. offset + len - 1 (offset > 0 when decoding step by step)."""
        end = offset + x.size(1)
        if end > self.table.size(0):
            with torch.inference_mode(False):  # a table grown while decoding also serves training
                self.table = sinusoidal_positions(2 * end, x.size(-1)).to(self.table.device)
        return x + self.table[offset:end].to(x.dtype)


class LearnedPositions(nn.Module):
    """Adds a trained embedding of each position (up to max_positions) to the embeddings."""

    def __init__(self, d_model: int, max_positions: int) -> None:
        super().__init__()
        self.table = nn.Embedding(max_positions, d_model)

    def forward(self, x: Tensor, offset: int = 0) -> Tensor:
        end = offset + x.size(1)
        if end > self.table.num_embeddings:
            raise ValueError(
                f"position {end - 1} is past model.max_positions={self.table.num_embeddings}"
            )
        return x + self.table(torch.arange(offset, end, device=x.device)).to(x.dtype)


class Dropout(nn.Module):
    """Dropout that draws its mask cheaply on a CPU.

    torch's CPU dropout draws one random number per element with `bernoulli_`, which took a
    seventh of a training step of the 3+3-layer d_model 256 model when measured. Here one
    64-bit draw gives four 16-bit numbers, each compared with a threshold, so the mask costs a
    fifth as much; `p` is rounded to a multiple of 1/65536. Other devices use F.dropout.
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0:
            return x
        if x.device.type != "cpu":
            return F.dropout(x, self.p, training=True)
        draws = torch.empty((x.numel() + 3) // 4, dtype=torch.int64)
        draws.random_(-(2**63), None)  # every 64-bit pattern equally likely
        uniform16 = draws.view(torch.int16)[: x.numel()].view(x.shape)  # each in [-2^15, 2^15)
        dropped = uniform16 < round(self.p * 65536) - 32768
        return x.masked_fill(dropped, 0.0) * (1 / (1 - self.p))

    def extra_repr(self) -> str:
        return f"p={self.p}"


class FeedForward(nn.Module):
    """Position-wise feed-forward network: Linear -> ReLU -> dropout -> Linear."""

    def __init__(self, d_model: int, d_ff: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(d_model, d_ff), nn.ReLU(), Dropout(dropout), nn.Linear(d_ff, d_model)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class Residual(nn.Module):
    """A sublayer with its residual connection and LayerNorm.

    Post-norm (the paper): LayerNorm(x + dropout(sublayer(x))). Pre-norm: x +
    dropout(sublayer(LayerNorm(x))), which keeps an identity path from input to output and
    trains stably without warmup; the stacks then end with a final LayerNorm.
    """

    def __init__(self, d_model: int, dropout: float, pre_norm: bool) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d_model)
        self.dropout = Dropout(dropout)
        self.pre_norm = pre_norm

    def forward(self, x: Tensor, sublayer: Callable[[Tensor], Tensor]) -> Tensor:
        if self.pre_norm:
            return x + self.dropout(sublayer(self.norm(x)))
        return self.norm(x + self.dropout(sublayer(x)))


class EncoderLayer(nn.Module):
    """Source self-attention, then feed-forward, each inside a Residual."""

    def __init__(
        self, d_model: int, n_heads: int, d_ff: int, dropout: float, pre_norm: bool, fused: bool
    ) -> None:
        super().__init__()
        self.src_src_attn = MultiHeadAttention(d_model, n_heads, dropout, fused=fused)
        self.feed_forward = FeedForward(d_model, d_ff, dropout)
        self.attn_residual = Residual(d_model, dropout, pre_norm)
        self.ff_residual = Residual(d_model, dropout, pre_norm)

    def forward(self, x: Tensor, src_mask: Tensor) -> Tensor:
        """x: (batch, src_len, d_model); src_mask: (batch, 1, 1, src_len)."""
        x = self.attn_residual(x, lambda h: self.src_src_attn(h, mask=src_mask))
        return self.ff_residual(x, self.feed_forward)


class DecoderLayer(nn.Module):
    """Masked target self-attention, attention over the source, feed-forward; each a Residual.

    The two attentions are separate modules with their own weights: one relates target positions
    to earlier target positions, the other target positions to source positions.
    """

    def __init__(
        self, d_model: int, n_heads: int, d_ff: int, dropout: float, pre_norm: bool, fused: bool
    ) -> None:
        super().__init__()
        self.tgt_tgt_attn = MultiHeadAttention(d_model, n_heads, dropout, fused=fused)
        self.src_tgt_attn = MultiHeadAttention(d_model, n_heads, dropout, cross=True, fused=fused)
        self.feed_forward = FeedForward(d_model, d_ff, dropout)
        self.self_attn_residual = Residual(d_model, dropout, pre_norm)
        self.cross_attn_residual = Residual(d_model, dropout, pre_norm)
        self.ff_residual = Residual(d_model, dropout, pre_norm)

    def forward(
        self,
        x: Tensor,
        memory: Tensor | None,
        tgt_mask: Tensor | None,
        src_mask: Tensor,
        self_cache: KeyValueCache | None = None,
        cross_cache: KeyValueCache | None = None,
    ) -> Tensor:
        """x: (batch, tgt_len, d_model); memory: (batch, src_len, d_model) from the encoder;
        tgt_mask: (batch, 1, tgt_len, tgt_len) causal and padding, or None when decoding step by
        step (the one new position may see every cached one); src_mask: (batch, 1, 1, src_len).
        When decoding step by step, the caches hold earlier positions' keys and values and the
        projected memory (which then replaces `memory`); see MultiHeadAttention.forward.
        """
        x = self.self_attn_residual(
            x, lambda h: self.tgt_tgt_attn(h, mask=tgt_mask, cache=self_cache)
        )
        x = self.cross_attn_residual(
            x, lambda h: self.src_tgt_attn(h, memory, src_mask, cache=cross_cache)
        )
        return self.ff_residual(x, self.feed_forward)
