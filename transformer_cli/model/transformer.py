"""The encoder-decoder Transformer: embeddings, the two stacks, and the output projection."""

import math
from dataclasses import dataclass

from torch import Tensor, nn

from transformer_cli.model.attention import causal_mask, padding_mask
from transformer_cli.model.layers import DecoderLayer, EncoderLayer, PositionalEncoding


@dataclass
class TransformerConfig:
    """Everything needed to build the network (the paper's base model by default)."""

    src_vocab_size: int
    tgt_vocab_size: int
    d_model: int = 512
    n_heads: int = 8
    n_encoder_layers: int = 6
    n_decoder_layers: int = 6
    d_ff: int = 2048
    dropout: float = 0.1
    pad_id: int = 0


class Transformer(nn.Module):
    """Maps source token ids and a shifted target to next-token logits (no softmax inside)."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.config = c = config
        self.src_embed = nn.Embedding(c.src_vocab_size, c.d_model, padding_idx=c.pad_id)
        self.tgt_embed = nn.Embedding(c.tgt_vocab_size, c.d_model, padding_idx=c.pad_id)
        self.positions = PositionalEncoding(c.d_model)
        self.embed_dropout = nn.Dropout(c.dropout)
        self.encoder_layers = nn.ModuleList(
            EncoderLayer(c.d_model, c.n_heads, c.d_ff, c.dropout) for _ in range(c.n_encoder_layers)
        )
        self.decoder_layers = nn.ModuleList(
            DecoderLayer(c.d_model, c.n_heads, c.d_ff, c.dropout) for _ in range(c.n_decoder_layers)
        )
        self.output_proj = nn.Linear(c.d_model, c.tgt_vocab_size)
        self._init_parameters()

    def _init_parameters(self) -> None:
        for name, param in self.named_parameters():
            if name.endswith("_embed.weight"):
                # N(0, 1/d_model): after the sqrt(d_model) scaling in _embed, unit variance,
                # the same scale as the sinusoidal positions added to it.
                nn.init.normal_(param, std=self.config.d_model**-0.5)
                param.data[self.config.pad_id].zero_()
            elif param.dim() > 1:
                nn.init.xavier_uniform_(param)
            elif "norm" not in name:
                nn.init.zeros_(param)  # biases; LayerNorm keeps its (1, 0) init

    def _embed(self, embedding: nn.Embedding, tokens: Tensor) -> Tensor:
        x = embedding(tokens) * math.sqrt(self.config.d_model)  # (batch, len, d_model)
        return self.embed_dropout(self.positions(x))

    def encode(self, src: Tensor) -> tuple[Tensor, Tensor]:
        """src: (batch, src_len) ids -> memory (batch, src_len, d_model) and its padding mask."""
        src_mask = padding_mask(src, self.config.pad_id)  # (batch, 1, 1, src_len)
        x = self._embed(self.src_embed, src)
        for layer in self.encoder_layers:
            x = layer(x, src_mask)
        return x, src_mask

    def decode(self, tgt_in: Tensor, memory: Tensor, src_mask: Tensor) -> Tensor:
        """tgt_in: (batch, tgt_len) ids starting with BOS -> logits (batch, tgt_len, tgt_vocab)."""
        tgt_len = tgt_in.size(1)
        # Each position sees itself and earlier real tokens only.
        tgt_mask = padding_mask(tgt_in, self.config.pad_id) & causal_mask(
            tgt_len, tgt_in.device
        )  # (batch, 1, tgt_len, tgt_len)
        x = self._embed(self.tgt_embed, tgt_in)
        for layer in self.decoder_layers:
            x = layer(x, memory, tgt_mask, src_mask)
        return self.output_proj(x)

    def forward(self, src: Tensor, tgt_in: Tensor) -> Tensor:
        """Teacher forcing: logits (batch, tgt_len, tgt_vocab) for every next target token."""
        memory, src_mask = self.encode(src)
        return self.decode(tgt_in, memory, src_mask)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
