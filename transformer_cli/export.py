"""Export a trained run to CTranslate2, the C++ inference engine many NMT deployments serve with.

The exported directory holds CTranslate2's `TransformerSpec` filled with the run's weights and
one vocabulary (or two) listing the SentencePiece pieces in tcli's id order. CTranslate2 then
reads pieces, appends EOS to the source itself, and decodes as tcli does:

    import ctranslate2, sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_file="runs/toy/tokenizer.model")
    translator = ctranslate2.Translator("toy-ct2")
    result = translator.translate_batch([sp.encode("A dog runs.", out_type=str)])
    print(sp.decode(result[0].hypotheses[0]))

PAD and BOS are never outputs in tcli (its search masks them); the export gives them a bias of
-10,000 in the output layer, so that CTranslate2 never produces them either.
"""

import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from transformer_cli.data.tokenizer import BOS_ID, PAD_ID, Tokenizer, Tokenizers
from transformer_cli.errors import RunError
from transformer_cli.model import MultiHeadAttention, Transformer
from transformer_cli.model.layers import DecoderLayer, EncoderLayer, sinusoidal_positions

NEVER_OUTPUT_BIAS = -1e4  # exp(-10,000) is 0, and the number still fits in float16
# CTranslate2 needs a table of positions: this many, or as many as a learned table has.
SINUSOIDAL_POSITIONS = 1024
QUANTIZATIONS = ("float32", "int8", "int8_float32", "int16", "float16", "bfloat16")


def vocabulary(tokenizer: Tokenizer) -> list[str]:
    """Every piece in tcli's id order, the specials under CTranslate2's default names."""
    pieces = tokenizer.pieces
    if len(set(pieces)) != len(pieces):
        raise RunError(
            f"{tokenizer.path} has an ordinary piece spelled like a special token (<pad>, <unk>, "
            "<s>, </s>); CTranslate2 could not tell them apart"
        )
    return pieces


def export_ctranslate2(
    model: Transformer,
    tokenizers: Tokenizers,
    out_dir: str | Path,
    quantization: str = "float32",
    overwrite: bool = False,
) -> Path:
    """Write a model (for instance a loaded run's `run.model`, `run.tokenizers`) as a CTranslate2
    model directory at `out_dir`, atomically: it is built beside `out_dir` and renamed into
    place. `quantization`: float32, int8, int8_float32, int16, float16 or bfloat16."""
    try:
        import ctranslate2
        from ctranslate2.converters.converter import Converter
    except ImportError:
        raise RunError(
            "exporting to CTranslate2 needs the ctranslate2 package: "
            "pip install 'transformer-cli[ctranslate2]'"
        ) from None
    if quantization not in QUANTIZATIONS:
        raise RunError(f"--quantization {quantization}: choose one of {', '.join(QUANTIZATIONS)}")
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise RunError(f"{out_dir} already exists; pass --overwrite to replace it")
    spec = _transformer_spec(model, ctranslate2.specs)
    spec.register_source_vocabulary(vocabulary(tokenizers.source))
    spec.register_target_vocabulary(vocabulary(tokenizers.target))

    class _Spec(Converter):
        def _load(self):
            return spec

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        _Spec().convert(str(building), quantization=quantization, force=True)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        building.rename(out_dir)
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return out_dir


def _transformer_spec(model: Transformer, specs) -> object:
    c = model.config
    pre_norm = c.norm == "pre"
    spec = specs.TransformerSpec.from_config(
        (c.n_encoder_layers, c.n_decoder_layers), c.n_heads, pre_norm=pre_norm
    )
    spec.config.layer_norm_epsilon = model.encoder_layers[0].attn_residual.norm.eps
    spec.config.add_source_eos = True  # tcli's sources end in EOS
    encoder, decoder = spec.encoder, spec.decoder
    encoder.embeddings[0].weight = _array(model.src_embed.weight)
    decoder.embeddings.weight = _array(model.tgt_embed.weight)
    encoder.position_encodings.encodings = _positions(model, model.src_positions)
    decoder.position_encodings.encodings = _positions(model, model.tgt_positions)
    for layer_spec, layer in zip(encoder.layer, model.encoder_layers, strict=True):
        _encoder_layer(layer_spec, layer)
    for layer_spec, layer in zip(decoder.layer, model.decoder_layers, strict=True):
        _decoder_layer(layer_spec, layer)
    if pre_norm:
        _layer_norm(encoder.layer_norm, model.encoder_norm)
        _layer_norm(decoder.layer_norm, model.decoder_norm)
    _linear(decoder.projection, model.output_proj)
    bias = decoder.projection.bias.copy()
    bias[[PAD_ID, BOS_ID]] = NEVER_OUTPUT_BIAS
    decoder.projection.bias = bias
    return spec


def _encoder_layer(spec, layer: EncoderLayer) -> None:
    _attention(spec.self_attention, layer.src_src_attn)
    _layer_norm(spec.self_attention.layer_norm, layer.attn_residual.norm)
    _feed_forward(spec.ffn, layer)


def _decoder_layer(spec, layer: DecoderLayer) -> None:
    _attention(spec.self_attention, layer.tgt_tgt_attn)
    _layer_norm(spec.self_attention.layer_norm, layer.self_attn_residual.norm)
    _attention(spec.attention, layer.src_tgt_attn)
    _layer_norm(spec.attention.layer_norm, layer.cross_attn_residual.norm)
    _feed_forward(spec.ffn, layer)


def _attention(spec, attention: MultiHeadAttention) -> None:
    # CTranslate2 fuses the projections as tcli does: [q; k; v] for self-attention, q then
    # [k; v] for cross-attention, then the output projection.
    if attention.cross:
        projections = [attention.q_proj, attention.kv_proj, attention.out_proj]
    else:
        projections = [attention.qkv_proj, attention.out_proj]
    for linear_spec, linear in zip(spec.linear, projections, strict=True):
        _linear(linear_spec, linear)


def _feed_forward(spec, layer: EncoderLayer | DecoderLayer) -> None:
    first, _, _, second = layer.feed_forward.net
    _layer_norm(spec.layer_norm, layer.ff_residual.norm)
    _linear(spec.linear_0, first)
    _linear(spec.linear_1, second)


def _positions(model: Transformer, positions: nn.Module) -> np.ndarray:
    if model.config.positional == "learned":
        return _array(positions.table.weight)
    return sinusoidal_positions(SINUSOIDAL_POSITIONS, model.config.d_model).numpy()


def _linear(spec, linear: nn.Linear) -> None:
    spec.weight, spec.bias = _array(linear.weight), _array(linear.bias)


def _layer_norm(spec, norm: nn.LayerNorm) -> None:
    spec.gamma, spec.beta = _array(norm.weight), _array(norm.bias)


def _array(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().float().cpu().numpy().copy()
