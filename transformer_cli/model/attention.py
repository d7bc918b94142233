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


class KeyValueCache:
    """One attention module's keys and values, kept between decoding steps.

    Self-attention's cache is allocated once, for the most rows and the longest output the
    search needs, and each step writes its new position in place; cross-attention's holds the
    projected encoder output, computed once per sentence. `keys` and `values` are views of the
    rows in use and the positions filled.
    """

    def __init__(self, keys: Tensor, values: Tensor, rows: int, length: int) -> None:
        self._keys, self._values = keys, values  # (max rows, heads, capacity, d_head)
        self.rows, self.length = rows, length

    @classmethod
    def empty(
        cls, rows: int, n_heads: int, capacity: int, d_head: int, like: Tensor, max_rows: int
    ) -> "KeyValueCache":
        """`rows` rows in use, room for `max_rows` rows and `capacity` positions."""
        shape = (max_rows, n_heads, capacity, d_head)
        return cls(like.new_empty(shape), like.new_empty(shape), rows, 0)

    @property
    def keys(self) -> Tensor:
        return self._keys[: self.rows, :, : self.length]  # (rows, heads, length, d_head)

    @property
    def values(self) -> Tensor:
        return self._values[: self.rows, :, : self.length]

    def append(self, keys: Tensor, values: Tensor) -> None:
        """Write the next positions' keys and values, (rows, heads, new, d_head), in place."""
        end = self.length + keys.size(2)
        if end > self._keys.size(2):  # past the allocation: grow it (searches allocate enough)
            self._keys, self._values = (_grown(t, 2 * end) for t in (self._keys, self._values))
        self._keys[: self.rows, :, self.length : end] = keys
        self._values[: self.rows, :, self.length : end] = values
        self.length = end

    def select(self, rows: Tensor) -> None:
        """Keep rows `rows` (indices into the rows in use, in their new order, possibly repeated)
        as the new rows in use, written to the front of the same buffers."""
        gathered_keys, gathered_values = (t.index_select(0, rows) for t in (self.keys, self.values))
        self.rows = rows.numel()
        self._keys[: self.rows, :, : self.length] = gathered_keys
        self._values[: self.rows, :, : self.length] = gathered_values


def _grown(buffer: Tensor, capacity: int) -> Tensor:
    grown = buffer.new_empty(buffer.size(0), buffer.size(1), capacity, buffer.size(3))
    grown[:, :, : buffer.size(2)] = buffer
    return grown


class MultiHeadAttention(nn.Module):
    """Project queries, keys and values into n_heads subspaces, attend in each, merge the heads.

    Self-attention projects q, k and v from the same input with one fused (d_model -> 3 d_model)
    matmul. Cross-attention (`cross=True`) projects q from the decoder and k, v from the encoder
    output, the latter with one (d_model -> 2 d_model) matmul. `fused=True` computes the
    attention with torch's `F.scaled_dot_product_attention` (same masks, same result, faster,
    but no attention weights); otherwise with our own `scaled_dot_product_attention`.

    The weights are kept only when asked: while `record` is True (see `Transformer.attention`),
    every call uses the explicit path and appends its weights to `recorded`.
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
        # n_heads divides d_model: ModelConfig, from which the Transformer is built, checks it
        self.n_heads, self.d_head, self.dropout = n_heads, d_model // n_heads, dropout
        self.cross, self.fused = cross, fused
        if cross:
            self.q_proj = nn.Linear(d_model, d_model)
            self.kv_proj = nn.Linear(d_model, 2 * d_model)
        else:
            self.qkv_proj = nn.Linear(d_model, 3 * d_model)
        self.out_proj = nn.Linear(d_model, d_model)
        self.record = False
        self.recorded: list[Tensor] = []

    def forward(
        self,
        x: Tensor,
        memory: Tensor | None = None,
        mask: Tensor | None = None,
        cache: KeyValueCache | None = None,
    ) -> Tensor:
        """x: (batch, q_len, d_model); memory: (batch, k_len, d_model), for cross-attention.

        With a `cache` (incremental decoding), self-attention appends this call's keys and values
        to the cached ones, so x holds only the new positions; cross-attention takes its keys and
        values from the cache (see `project_memory`) and ignores `memory`. The cache may hold
        one row per sentence while x holds `beams` rows per sentence (grouped by sentence): the
        beams of a sentence then query the same keys, which are never copied per beam.
        Returns (batch, q_len, d_model); with `record` on, appends the weights (batch, heads,
        q_len, k_len) to `recorded`.
        """
        if self.cross:
            q = self._split_heads(self.q_proj(x))  # (batch, heads, q_len, d_head)
            if cache is None:
                k, v = map(self._split_heads, self.kv_proj(memory).chunk(2, dim=-1))
            else:
                return self._attend_grouped(q, cache, mask)
        else:
            q, k, v = map(self._split_heads, self.qkv_proj(x).chunk(3, dim=-1))
            if cache is not None:
                cache.append(k, v)
                k, v = cache.keys, cache.values  # (batch, heads, cached + q_len, d_head)
        out = self._attend(q, k, v, mask)
        return self.out_proj(self._merge_heads(out))

    def project_memory(self, memory: Tensor) -> KeyValueCache:
        """Cross-attention's keys and values of the encoder output, (batch, src_len, d_model),
        computed once for every decoding step."""
        k, v = (self._split_heads(t).contiguous() for t in self.kv_proj(memory).chunk(2, dim=-1))
        return KeyValueCache(k, v, k.size(0), k.size(2))

    def _attend(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> Tensor:
        dropout_p = self.dropout if self.training else 0.0
        if self.record:
            out, weights = scaled_dot_product_attention(q, k, v, mask, dropout_p)
            self.recorded.append(weights.detach())
            return out
        if self.fused:
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)
        return scaled_dot_product_attention(q, k, v, mask, dropout_p)[0]

    def _attend_grouped(self, q: Tensor, cache: KeyValueCache, mask: Tensor | None) -> Tensor:
        # The beams of a sentence become more query positions of the sentence, all over its one
        # set of keys: q (sentences * beams, heads, q_len, d_head) -> (sentences, heads,
        # beams * q_len, d_head).
        rows, _, q_len, _ = q.shape
        sentences = cache.rows
        beams = rows // sentences
        q = q.view(sentences, beams, self.n_heads, q_len, self.d_head).transpose(1, 2)
        q = q.reshape(sentences, self.n_heads, beams * q_len, self.d_head)
        out = self._attend(q, cache.keys, cache.values, mask)
        if self.record:  # (sentences, heads, beams * q_len, src_len) -> (rows, heads, q_len, ...)
            weights = self.recorded.pop().view(sentences, self.n_heads, beams, q_len, -1)
            self.recorded.append(weights.transpose(1, 2).reshape(rows, self.n_heads, q_len, -1))
        # (sentences, heads, beams * q_len, d_head) -> (rows, q_len, heads * d_head)
        out = out.view(sentences, self.n_heads, beams, q_len, self.d_head).permute(0, 2, 3, 1, 4)
        return self.out_proj(out.reshape(rows, q_len, self.n_heads * self.d_head))

    def _split_heads(self, x: Tensor) -> Tensor:
        # (batch, len, d_model) -> (batch, len, heads, d_head) -> (batch, heads, len, d_head).
        # A bare view to (batch, heads, len, d_head) would mix positions and features.
        batch, length, _ = x.shape
        return x.view(batch, length, self.n_heads, self.d_head).transpose(1, 2)

    def _merge_heads(self, x: Tensor) -> Tensor:
        # (batch, heads, len, d_head) -> (batch, len, heads * d_head), the inverse of _split_heads.
        batch, _, length, _ = x.shape
        return x.transpose(1, 2).reshape(batch, length, self.n_heads * self.d_head)
