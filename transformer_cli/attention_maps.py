"""`tcli translate --attention`: the attention weights behind each translation, as pictures and
numbers.

Each sentence is translated by the configured search (greedy or beam), then its chosen output is
force-decoded once on the explicit attention path (`Transformer.attention`): the weights are
exactly those the model gives that output, whichever search found it.
"""

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import torch

from transformer_cli.data.batching import source_tensor
from transformer_cli.data.tokenizer import BOS_ID, EOS_ID, PAD_ID
from transformer_cli.decode import max_output_lengths
from transformer_cli.errors import TcliError
from transformer_cli.files import atomic_write_text
from transformer_cli.model import AttentionMaps, Transformer
from transformer_cli.plots import heatmap_figure, require_matplotlib, save_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from transformer_cli.translator import Translator

Kind = Literal["cross", "encoder", "decoder"]
KINDS: tuple[Kind, ...] = ("cross", "encoder", "decoder")

log = logging.getLogger(__name__)


@dataclass
class SentenceAttention:
    """One translated line and every attention weight of the model's pass over its output."""

    line: int  # counted from 1
    source: str
    translation: str
    source_pieces: list[str]  # the source pieces + </s>: encoder positions
    input_pieces: list[str]  # <s> + the output pieces: what each decoder position reads
    output_pieces: list[str]  # the output pieces + </s> (unless cut by the length limit): what
    # each decoder position produces
    maps: AttentionMaps  # per layer, batch dimension 1

    def weights(self, kind: Kind, layer: int) -> torch.Tensor:
        """(heads, rows, columns) of one layer (counted from 0)."""
        return getattr(self.maps, kind)[layer][0]

    def labels(self, kind: Kind) -> tuple[list[str], list[str]]:
        """The pieces along the rows (queries) and columns (keys) of `kind`'s weights."""
        if kind == "encoder":
            return self.source_pieces, self.source_pieces
        if kind == "decoder":
            return self.output_pieces, self.input_pieces
        return self.output_pieces, self.source_pieces


def attention_of_translations(
    translator: "Translator",
    sentences: Sequence[str],
    batch_size: int | None = None,
    progress: bool = False,
) -> list[SentenceAttention | None]:
    """Translate `sentences` and record the attention behind each translation (None for a blank
    line, which has no translation to look at)."""
    target = translator.tokenizers.target
    source = translator.tokenizers.source
    src_ids = translator.encode_inputs(sentences)  # over-long lines cut, as translate cuts them
    outputs = translator.best_outputs(src_ids, batch_size, progress)
    translations = translator.detokenize(outputs)
    records: list[SentenceAttention | None] = []
    model, d = translator.model, translator.decode
    for number, (text, ids, output, translation) in enumerate(
        zip(sentences, src_ids, outputs, translations, strict=True), start=1
    ):
        if output is None:
            records.append(None)
            continue
        src = source_tensor([ids]).to(translator.device)  # (1, src_len)
        # An output cut by the length limit has no </s>: its last token is the last prediction.
        limit = max_output_lengths(src, PAD_ID, d.max_len_a, d.max_len_b, model.max_length)
        produced = [*output, EOS_ID] if len(output) < int(limit[0]) else output
        tgt_in = torch.tensor([[BOS_ID, *produced[:-1]]], device=translator.device)
        with torch.no_grad():
            maps = model.attention(src, tgt_in)
        records.append(
            SentenceAttention(
                number,
                text,
                translation,
                [source.pieces[i] for i in src[0].tolist()],
                [target.pieces[i] for i in tgt_in[0].tolist()],
                [target.pieces[i] for i in produced],
                maps,
            )
        )
    return records


def check_selection(model: Transformer, kind: Kind, layer: int | None, head: str) -> None:
    """Before any translating: pictures can be made (the 'plot' extra), and --layer (1..the
    layers `kind` has) and --head (mean, all, or 1..n_heads) fit the model."""
    require_matplotlib()
    c = model.config
    n_layers, n_heads = c.n_encoder_layers if kind == "encoder" else c.n_decoder_layers, c.n_heads
    if layer is not None and not 1 <= layer <= n_layers:
        raise TcliError(f"--layer {layer}: the model has layers 1 to {n_layers}")
    if head not in ("mean", "all") and not (head.isdigit() and 1 <= int(head) <= n_heads):
        raise TcliError(f"--head {head}: give mean, all, or a head from 1 to {n_heads}")


def selected(
    record: SentenceAttention, kind: Kind, layer: int | None, head: str
) -> tuple[list[torch.Tensor], list[str], int]:
    """The matrices --attention-kind/--layer/--head pick (one, or one per head), their panel
    titles, and the layer counted from 1 (the last by default)."""
    layers = len(getattr(record.maps, kind))
    layer = layer or layers
    weights = record.weights(kind, layer - 1)  # (heads, rows, columns)
    if head == "mean":
        return [weights.mean(0)], [f"mean of {weights.size(0)} heads"], layer
    if head == "all":
        return list(weights), [f"head {h}" for h in range(1, weights.size(0) + 1)], layer
    return [weights[int(head) - 1]], [f"head {head}"], layer


def attention_figure(
    record: SentenceAttention, kind: Kind, layer: int | None, head: str
) -> "Figure":
    """A heatmap of the chosen weights (one panel per head for head='all'), tick-labelled with
    the pieces."""
    matrices, titles, layer = selected(record, kind, layer, head)
    rows, columns = record.labels(kind)
    n_layers = len(getattr(record.maps, kind))
    axes = {"cross": ("output piece", "source piece"), "encoder": ("source piece", "source piece"),
            "decoder": ("output piece", "decoder input")}[kind]  # fmt: skip
    return heatmap_figure(
        [
            (m.float().cpu().numpy(), t, rows, columns)
            for m, t in zip(matrices, titles, strict=True)
        ],
        f"line {record.line}: {kind} attention, layer {layer} of {n_layers}",
        *axes,
    )


def write_attention_maps(
    records: list[SentenceAttention | None],
    out_dir: Path,
    kind: Kind = "cross",
    layer: int | None = None,
    head: str = "mean",
) -> list[Path]:
    """For each translated line, LINE.KIND.png and LINE.KIND.json (the weights with the pieces)
    in out_dir; LINE is the line number, 4 digits."""
    written = []
    for record in records:
        if record is None:
            continue
        matrices, titles, chosen_layer = selected(record, kind, layer, head)
        rows, columns = record.labels(kind)
        stem = out_dir / f"{record.line:04d}.{kind}"
        numbers = {
            "line": record.line,
            "source": record.source,
            "translation": record.translation,
            "kind": kind,
            "layer": chosen_layer,
            "head": head,
            "rows": rows,
            "columns": columns,
            "weights": {
                title: [[round(x, 6) for x in row] for row in matrix.tolist()]
                for title, matrix in zip(titles, matrices, strict=True)
            },
        }
        atomic_write_text(f"{stem}.json", json.dumps(numbers, ensure_ascii=False))
        written.append(save_figure(attention_figure(record, kind, layer, head), f"{stem}.png"))
    return written


def translate_with_attention(
    translator: "Translator",
    sentences: Sequence[str],
    out_dir: Path,
    kind: Kind = "cross",
    layer: int | None = None,
    head: str = "mean",
    progress: bool = False,
) -> list[str]:
    """Translate `sentences` (blank in, blank out) and write each translation's attention maps
    to out_dir (see `write_attention_maps`); returns the translations."""
    records = attention_of_translations(translator, sentences, progress=progress)
    written = write_attention_maps(records, out_dir, kind, layer, head)
    log.info(f"wrote {len(written)} attention maps ({kind}) to {out_dir}")
    return ["" if record is None else record.translation for record in records]
