"""Scaled dot-product attention, multi-head attention, and the two masks they use.

Mask convention, used everywhere in tcli: a boolean tensor in which True means "this query may
attend to this key" and False means "blocked". It broadcasts against the attention scores, shaped
(batch, heads, query_len, key_len), the same convention as a boolean `attn_mask` of
`torch.nn.functional.scaled_dot_product_attention`. (`nn.MultiheadAttention`'s `key_padding_mask`
uses the opposite one.)
"""

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def padding_mask(tokens: Tensor, pad_id: int) -> Tensor:
    """Keys that are real tokens: (batch, len) ids -> (batch, 1, 1, len) mask."""
    return (tokens != pad_id)[:, None, None, :]


def causal_mask(length: int, device: torch.device | None = None) -> Tensor:
    """Query i may attend to keys 0..i: a (len, len) lower-triangular mask."""
    return torch.ones(length, length, dtype=torch.bool, device=device).tril()


def scaled_dot_product_attention(
    q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, dropout_p: float = 0.0
) -> tuple[Tensor, Tensor]:
    """softmax(q kᵀ / sqrt(d_head)) v, returning (output, attention weights).

    q: (..., q_len, d_head), k: (..., k_len, d_head), v: (..., k_len, d_v); mask broadcasts to
    (..., q_len, k_len). A query whose keys are all masked gets zero weights and a zero output.
    """
    # Scale before the softmax: with unit-variance q and k the dot products have variance d_head,
    # which would push the softmax into saturation and starve it of gradient.
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))  # (..., q_len, k_len)
    if mask is not None:
        # The dtype's most negative finite number, not -inf: an all-masked row then softmaxes to
        # a finite uniform row instead of 0/0 = NaN, and is zeroed just below.
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    weights = scores.softmax(dim=-1)
    if mask is not None:
        weights = weights.masked_fill(~mask, 0.0)
    attended = F.dropout(weights, dropout_p) if dropout_p > 0 else weights
    return attended @ v, weights  # (..., q_len, d_v), (..., q_len, k_len)


class MultiHeadAttention(nn.Module):
    """Project queries, keys and values into n_heads subspaces, attend in each, merge the heads.

    Self-attention projects q, k and v from the same input with one fused (d_model -> 3 d_model)
    matmul. Cross-attention (`cross=True`) projects q from the decoder and k, v from the encoder
    output, the latter with one (d_model -> 2 d_model) matmul. `fused=True` computes the
    attention with torch's `F.scaled_dot_product_attention` (same masks, same result, faster,
    but no attention weights); otherwise with our own `scaled_dot_product_attention`.
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        dropout: float = 0.0,
        *,
        cross: bool = False,
        fused: bool = False,
    ) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        self.n_heads, self.d_head, self.dropout = n_heads, d_model // n_heads, dropout
        self.cross, self.fused = cross, fused
        if cross:
            self.q_proj = nn.Linear(d_model, d_model)
            self.kv_proj = nn.Linear(d_model, 2 * d_model)
        else:
            self.qkv_proj = nn.Linear(d_model, 3 * d_model)
        self.out_proj = nn.Linear(d_model, d_model)

    def forward(
        self,
        x: Tensor,
        memory: Tensor | None = None,
        mask: Tensor | None = None,
        cache: dict[str, Tensor] | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """x: (batch, q_len, d_model); memory: (batch, k_len, d_model), for cross-attention.

        `cache` serves incremental decoding: self-attention appends this call's keys and values
        to the cached ones (so x holds only the new positions); cross-attention projects the
        memory once and reuses it. Returns the output (batch, q_len, d_model) and the weights
        (batch, heads, q_len, k_len), or None for the weights on the fused path.
        """
        if self.cross:
            q = self._split_heads(self.q_proj(x))  # (batch, heads, q_len, d_head)
            if cache is not None and "k" in cache:
                k, v = cache["k"], cache["v"]
            else:
                k, v = map(self._split_heads, self.kv_proj(memory).chunk(2, dim=-1))
        else:
            q, k, v = map(self._split_heads, self.qkv_proj(x).chunk(3, dim=-1))
            if cache is not None and "k" in cache:
                k = torch.cat([cache["k"], k], dim=2)  # (batch, heads, cached + q_len, d_head)
                v = torch.cat([cache["v"], v], dim=2)
        if cache is not None:
            cache["k"], cache["v"] = k, v
        dropout_p = self.dropout if self.training else 0.0
        if self.fused:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)
            weights = None
        else:
            out, weights = scaled_dot_product_attention(q, k, v, mask, dropout_p)
        return self.out_proj(self._merge_heads(out)), weights

    def _split_heads(self, x: Tensor) -> Tensor:
        # (batch, len, d_model) -> (batch, len, heads, d_head) -> (batch, heads, len, d_head).
        # A bare view to (batch, heads, len, d_head) would mix positions and features.
        batch, length, _ = x.shape
        return x.view(batch, length, self.n_heads, self.d_head).transpose(1, 2)

    def _merge_heads(self, x: Tensor) -> Tensor:
        # (batch, heads, len, d_head) -> (batch, len, heads * d_head), the inverse of _split_heads.
        batch, _, length, _ = x.shape
        return x.transpose(1, 2).reshape(batch, length, self.n_heads * self.d_head)
