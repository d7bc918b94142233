"""The Transformer, written out: attention -> layers -> encoder-decoder. Imports only torch."""

from transformer_cli.model.attention import (
    KeyValueCache,
    MultiHeadAttention,
    causal_mask,
    padding_mask,
    scaled_dot_product_attention,
)
from transformer_cli.model.attention2d import SelfAttention2d
from transformer_cli.model.transformer import (
    AttentionMaps,
    DecoderState,
    Transformer,
    TransformerConfig,
)

__all__ = [
    "AttentionMaps",
    "DecoderState",
    "KeyValueCache",
    "MultiHeadAttention",
    "SelfAttention2d",
    "Transformer",
    "TransformerConfig",
    "causal_mask",
    "padding_mask",
    "scaled_dot_product_attention",
]
