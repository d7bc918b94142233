"""The building blocks of the encoder and decoder stacks (Vaswani et al. 2017, section 3)."""

import math

import torch
from torch import Tensor, nn

from transformer_cli.model.attention import MultiHeadAttention


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

    def forward(self, x: Tensor) -> Tensor:
        length = x.size(1)
        if length > self.table.size(0):
            self.table = sinusoidal_positions(2 * length, x.size(-1)).to(self.table.device)
        return x + self.table[:length].to(x.dtype)


class FeedForward(nn.Module):
    """Position-wise feed-forward network: Linear -> ReLU -> dropout -> Linear."""

    def __init__(self, d_model: int, d_ff: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(d_model, d_ff), nn.ReLU(), nn.Dropout(dropout), nn.Linear(d_ff, d_model)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class EncoderLayer(nn.Module):
    """Source self-attention then feed-forward, each as LayerNorm(x + dropout(sublayer(x)))."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float) -> None:
        super().__init__()
        self.src_src_attn = MultiHeadAttention(d_model, n_heads, dropout)
        self.feed_forward = FeedForward(d_model, d_ff, dropout)
        self.attn_norm = nn.LayerNorm(d_model)
        self.ff_norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, src_mask: Tensor) -> Tensor:
        """x: (batch, src_len, d_model); src_mask: (batch, 1, 1, src_len)."""
        attended, _ = self.src_src_attn(x, x, x, src_mask)
        x = self.attn_norm(x + self.dropout(attended))
        return self.ff_norm(x + self.dropout(self.feed_forward(x)))


class DecoderLayer(nn.Module):
    """Masked target self-attention, attention over the source, feed-forward; post-norm residuals.

    The two attentions are separate modules with their own weights: one relates target positions
    to earlier target positions, the other target positions to source positions.
    """

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float) -> None:
        super().__init__()
        self.tgt_tgt_attn = MultiHeadAttention(d_model, n_heads, dropout)
        self.src_tgt_attn = MultiHeadAttention(d_model, n_heads, dropout)
        self.feed_forward = FeedForward(d_model, d_ff, dropout)
        self.self_attn_norm = nn.LayerNorm(d_model)
        self.cross_attn_norm = nn.LayerNorm(d_model)
        self.ff_norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, memory: Tensor, tgt_mask: Tensor, src_mask: Tensor) -> Tensor:
        """x: (batch, tgt_len, d_model); memory: (batch, src_len, d_model) from the encoder;
        tgt_mask: (batch, 1, tgt_len, tgt_len) causal and padding; src_mask: (batch, 1, 1, src_len).
        """
        attended, _ = self.tgt_tgt_attn(x, x, x, tgt_mask)
        x = self.self_attn_norm(x + self.dropout(attended))
        attended, _ = self.src_tgt_attn(x, memory, memory, src_mask)
        x = self.cross_attn_norm(x + self.dropout(attended))
        return self.ff_norm(x + self.dropout(self.feed_forward(x)))
