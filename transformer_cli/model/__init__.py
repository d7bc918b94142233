"""The Transformer, written out: attention -> layers -> encoder-decoder, and the `ModelConfig` it is
built from. Imports torch, and pydantic for the config."""

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
    ModelConfig,
    Transformer,
)

__all__ = [
    "AttentionMaps",
    "DecoderState",
    "KeyValueCache",
    "ModelConfig",
    "MultiHeadAttention",
    "SelfAttention2d",
    "Transformer",
    "causal_mask",
    "padding_mask",
    "scaled_dot_product_attention",
]
