"""The encoder-decoder Transformer: the config it is built from, embeddings, the two stacks, the
output projection, and the state that lets the decoder run one token at a time."""

import math
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field, model_validator
from torch import Tensor, nn

from transformer_cli.model.attention import KeyValueCache, causal_mask, padding_mask
from transformer_cli.model.layers import (
    DecoderLayer,
    Dropout,
    EncoderLayer,
    LearnedPositions,
    PositionalEncoding,
)
from transformer_cli.schema import Section


class ModelConfig(Section):
    """The network's shape and variants, validated when made: the `model` section of a run's
    config, and what `Transformer` takes (with the vocabulary sizes, which the tokenizers fix)."""

    d_model: int = Field(gt=0, description="width of embeddings and every sublayer output")
    n_heads: int = Field(gt=0, description="attention heads; must divide d_model")
    n_encoder_layers: int = Field(gt=0, description="encoder layers")
    n_decoder_layers: int = Field(gt=0, description="decoder layers")
    d_ff: int = Field(gt=0, description="inner width of the position-wise feed-forward network")
    dropout: float = Field(
        ge=0, lt=1, description="dropout on embeddings, attention weights and sublayer outputs"
    )
    attention: Literal["explicit", "fused"] = Field(
        "fused",
        description="explicit: our matmul-softmax-matmul; fused: F.scaled_dot_product_attention",
    )
    norm: Literal["post", "pre"] = Field(
        "post", description="LayerNorm after each residual (the paper) or before each sublayer"
    )
    tie_embeddings: Literal["none", "decoder", "all"] = Field(
        "none",
        description="share the output projection with the target embedding (decoder) "
        "and with the source embedding too (all)",
    )
    positional: Literal["sinusoidal", "learned"] = Field(
        "sinusoidal", description="position encoding added to the embeddings"
    )
    max_positions: int = Field(
        1024, gt=0, description="longest sequence a learned position table covers"
    )

    @model_validator(mode="after")
    def _heads_divide_width(self) -> "ModelConfig":
        # Messages start with the key, which config.py prefixes with its section: model.d_model.
        if self.d_model % self.n_heads:
            raise ValueError(
                f"d_model: {self.d_model} is not divisible by model.n_heads ({self.n_heads})"
            )
        if self.d_model % 2:
            raise ValueError(f"d_model: {self.d_model} must be even (sinusoidal positions)")
        return self

    @classmethod
    def base(cls, **changes: Any) -> "ModelConfig":
        """The paper's base model (Vaswani et al. 2017, table 3), with `changes`."""
        paper = dict(
            d_model=512, n_heads=8, n_encoder_layers=6, n_decoder_layers=6, d_ff=2048, dropout=0.1
        )
        return cls(**paper | changes)


@dataclass
class DecoderState:
    """What step-by-step decoding carries from one step to the next.

    Rows are hypotheses grouped by sentence: with beam search, `beams` consecutive rows per
    sentence. What is the same for every beam of a sentence (the source mask, cross-attention's
    keys and values) is kept once per sentence.
    """

    src_mask: Tensor  # (sentences, 1, 1, src_len)
    self_attention: list[KeyValueCache]  # per decoder layer: (rows, heads, capacity, d_head)
    cross_attention: list[KeyValueCache]  # per decoder layer: (sentences, heads, src_len, d_head)
    length: int = 0  # target positions decoded so far; the next token's position

    def select(self, rows: Tensor, sentences: Tensor | None = None) -> None:
        """Keep (and reorder) hypothesis rows, in place: follow each beam's parent, drop finished
        sentences. `sentences` lists the sentences kept, when some have finished."""
        for cache in self.self_attention:
            cache.select(rows)
        if sentences is not None:
            for cache in self.cross_attention:
                cache.select(sentences)
            self.src_mask = self.src_mask.index_select(0, sentences)


@dataclass
class AttentionMaps:
    """Every attention weight of one teacher-forced pass, one tensor per layer."""

    encoder: list[Tensor]  # source over source: (batch, heads, src_len, src_len)
    decoder: list[Tensor]  # target over itself and earlier target: (batch, heads, tgt_len, tgt_len)
    cross: list[Tensor]  # target over source: (batch, heads, tgt_len, src_len)


class Transformer(nn.Module):
    """Maps source token ids and a shifted target to next-token logits (no softmax inside)."""

    def __init__(
        self, config: ModelConfig, src_vocab_size: int, tgt_vocab_size: int, pad_id: int = 0
    ) -> None:
        super().__init__()
        self.config = c = config.model_copy()  # what was built, whatever later happens to `config`
        self.src_vocab_size, self.tgt_vocab_size = src_vocab_size, tgt_vocab_size
        self.pad_id = pad_id  # tcli's tokenizers: 0
        pre_norm, fused = c.norm == "pre", c.attention == "fused"
        self.src_embed = nn.Embedding(src_vocab_size, c.d_model, padding_idx=pad_id)
        if c.tie_embeddings == "all":
            # A run's config checks that its vocabulary is one (tokenizer.joint); here, the sizes.
            if src_vocab_size != tgt_vocab_size:
                raise ValueError("tie_embeddings='all' needs one joint source/target vocabulary")
            self.tgt_embed = self.src_embed
        else:
            self.tgt_embed = nn.Embedding(tgt_vocab_size, c.d_model, padding_idx=pad_id)
        self.src_positions, self.tgt_positions = _positions(c), _positions(c)
        # the longest sequence (source + EOS, or BOS + target) a learned table can place
        self.max_length = c.max_positions if c.positional == "learned" else None
        self.embed_dropout = Dropout(c.dropout)
        self.encoder_layers = nn.ModuleList(
            EncoderLayer(c.d_model, c.n_heads, c.d_ff, c.dropout, pre_norm, fused)
            for _ in range(c.n_encoder_layers)
        )
        self.decoder_layers = nn.ModuleList(
            DecoderLayer(c.d_model, c.n_heads, c.d_ff, c.dropout, pre_norm, fused)
            for _ in range(c.n_decoder_layers)
        )
        # Pre-norm leaves the residual stream unnormalised: each stack ends with a LayerNorm.
        self.encoder_norm = nn.LayerNorm(c.d_model) if pre_norm else nn.Identity()
        self.decoder_norm = nn.LayerNorm(c.d_model) if pre_norm else nn.Identity()
        self.output_proj = nn.Linear(c.d_model, tgt_vocab_size)
        if c.tie_embeddings in ("decoder", "all"):
            self.output_proj.weight = self.tgt_embed.weight  # one matrix, read both ways
        self._init_parameters()

    def _init_parameters(self) -> None:
        embeddings = set()
        for module in self.modules():
            if isinstance(module, nn.Embedding):
                # N(0, 1/d_model): after the sqrt(d_model) scaling in _embed, unit variance,
                # the same scale as the sinusoidal positions added to it.
                nn.init.normal_(module.weight, std=self.config.d_model**-0.5)
                if module.padding_idx is not None:
                    module.weight.data[module.padding_idx].zero_()
                embeddings.add(id(module.weight))
            elif isinstance(module, nn.Linear):
                if id(module.weight) not in embeddings:  # a tied output projection keeps its init
                    nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)

    def _embed(
        self, embedding: nn.Embedding, positions: nn.Module, tokens: Tensor, offset: int = 0
    ) -> Tensor:
        x = embedding(tokens) * math.sqrt(self.config.d_model)  # (batch, len, d_model)
        return self.embed_dropout(positions(x, offset))

    def encode(self, src: Tensor) -> tuple[Tensor, Tensor]:
        """src: (batch, src_len) ids -> memory (batch, src_len, d_model) and its padding mask."""
        src_mask = padding_mask(src, self.pad_id)  # (batch, 1, 1, src_len)
        x = self._embed(self.src_embed, self.src_positions, src)
        for layer in self.encoder_layers:
            x = layer(x, src_mask)
        return self.encoder_norm(x), src_mask

    def decode(self, tgt_in: Tensor, memory: Tensor, src_mask: Tensor) -> Tensor:
        """tgt_in: (batch, tgt_len) ids starting with BOS -> logits (batch, tgt_len, tgt_vocab)."""
        return self.output_proj(self.decoder_states(tgt_in, memory, src_mask))

    def decoder_states(self, tgt_in: Tensor, memory: Tensor, src_mask: Tensor) -> Tensor:
        """The decoder's output before the vocabulary projection: (batch, tgt_len, d_model)."""
        tgt_len = tgt_in.size(1)
        # Each position sees itself and earlier real tokens only: (batch, 1, tgt_len, tgt_len).
        tgt_mask = padding_mask(tgt_in, self.pad_id) & causal_mask(tgt_len, tgt_in.device)
        x = self._embed(self.tgt_embed, self.tgt_positions, tgt_in)
        for layer in self.decoder_layers:
            x = layer(x, memory, tgt_mask, src_mask)
        return self.decoder_norm(x)

    def features(self, src: Tensor, tgt_in: Tensor) -> Tensor:
        """Teacher forcing up to the vocabulary projection: (batch, tgt_len, d_model). The
        training loss projects only the real target positions (see loss.py)."""
        return self.decoder_states(tgt_in, *self.encode(src))

    def forward(self, src: Tensor, tgt_in: Tensor) -> Tensor:
        """Teacher forcing: logits (batch, tgt_len, tgt_vocab) for every next target token."""
        return self.output_proj(self.features(src, tgt_in))

    def attention(self, src: Tensor, tgt_in: Tensor) -> AttentionMaps:
        """Teacher forcing that keeps every attention weight (on the explicit path, which only
        this switches to): the weights the model gives the target `tgt_in` continues."""
        modules = {
            "encoder": [layer.src_src_attn for layer in self.encoder_layers],
            "decoder": [layer.tgt_tgt_attn for layer in self.decoder_layers],
            "cross": [layer.src_tgt_attn for layer in self.decoder_layers],
        }
        every = [module for kind in modules.values() for module in kind]
        for module in every:
            module.record, module.recorded = True, []
        try:
            self(src, tgt_in)
            return AttentionMaps(
                **{
                    kind: [m.recorded[0] for m in kind_modules]
                    for kind, kind_modules in modules.items()
                }
            )
        finally:
            for module in every:
                module.record, module.recorded = False, []

    def start_decoding(
        self, memory: Tensor, src_mask: Tensor, capacity: int, beams: int = 1
    ) -> DecoderState:
        """An empty state for `decode_step`: one row per sentence, room for `beams` rows per
        sentence (beam search widens the state after its first step, with `select`) and for
        `capacity` target positions (BOS included) in each self-attention cache."""
        sentences, heads = memory.size(0), self.config.n_heads
        d_head = self.config.d_model // heads
        return DecoderState(
            src_mask,
            [
                KeyValueCache.empty(sentences, heads, capacity, d_head, memory, sentences * beams)
                for _ in self.decoder_layers
            ],
            [layer.src_tgt_attn.project_memory(memory) for layer in self.decoder_layers],
        )

    def decode_step(self, tokens: Tensor, state: DecoderState) -> Tensor:
        """Feed the newest target token of each row, (rows, 1), and get next-token logits
        (rows, tgt_vocab). Earlier tokens' keys and values come from `state`, which is updated.

        The rows hold no padding (finished rows are dropped with `state.select`), and the one new
        position may see every earlier one, so self-attention needs no mask.
        """
        x = self._embed(self.tgt_embed, self.tgt_positions, tokens, state.length)  # (rows, 1, d)
        for layer, self_cache, cross_cache in zip(
            self.decoder_layers, state.self_attention, state.cross_attention, strict=True
        ):
            x = layer(x, None, None, state.src_mask, self_cache, cross_cache)
        state.length += tokens.size(1)
        return self.output_proj(self.decoder_norm(x[:, -1]))

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def _positions(config: ModelConfig) -> nn.Module:
    if config.positional == "learned":
        return LearnedPositions(config.d_model, config.max_positions)
    return PositionalEncoding(config.d_model)
