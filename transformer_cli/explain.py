"""`tcli explain`: attention step by step, every number computed by the code the model runs.

Five topics need no trained model: self-attention on the illustrated guides' three-input example
(with the numbers five common mistakes would give instead), multi-head attention's split and
merge, the padding and causal masks, sinusoidal positions, and 2-D self-attention over a feature
map. `explain_model` walks through one head of a trained model's first encoder layer.
"""

import itertools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from transformer_cli.data.batching import source_tensor
from transformer_cli.data.tokenizer import PAD_ID, Tokenizer
from transformer_cli.errors import TcliError
from transformer_cli.model import (
    MultiHeadAttention,
    SelfAttention2d,
    Transformer,
    causal_mask,
    padding_mask,
    scaled_dot_product_attention,
)
from transformer_cli.model.layers import sinusoidal_positions
from transformer_cli.plots import heatmap_figure, new_figure, save_figure

if TYPE_CHECKING:
    from transformer_cli.translator import Translator

TOPICS = ("attention", "multihead", "masks", "positions", "image")

# The inputs and the key/query/value weights of the illustrated self-attention guides.
INPUTS = [[1, 0, 1, 0], [0, 2, 0, 2], [1, 1, 1, 1]]
KEY_WEIGHTS = [[0, 0, 1], [1, 1, 0], [0, 1, 0], [1, 1, 0]]
QUERY_WEIGHTS = [[1, 0, 1], [1, 0, 0], [0, 0, 1], [0, 1, 1]]
VALUE_WEIGHTS = [[0, 2, 0], [0, 3, 0], [1, 0, 3], [1, 1, 0]]
# For the shared-module mistake: two target positions attending over the three inputs, and the
# cross-attention module's own weights (here: the self-attention weights' rows reversed).
TARGETS = [[0, 1, 1, 0], [2, 0, 0, 1]]
# For multi-head attention: inputs whose two halves differ, so that the two heads do too.
HEAD_INPUTS = [[1, 0, 0, 2], [0, 2, 1, 0], [1, 1, 1, 1]]


@dataclass
class Step:
    """One step of a walkthrough: what it is, why, and its numbers (or a prepared grid)."""

    title: str
    why: str
    value: Tensor | str
    rows: list[str] | None = None  # labels of the rows and columns of a 2-D value
    columns: list[str] | None = None
    digits: int = 7


@dataclass
class Mistake:
    """A common mistake: the number it gives next to the right one."""

    name: str
    why: str
    right: Tensor
    wrong: Tensor


def _tensor(rows: list[list[int]]) -> Tensor:
    return torch.tensor(rows, dtype=torch.float64)


def _example() -> tuple[Tensor, Tensor, Tensor, Tensor]:
    x = _tensor(INPUTS)  # (inputs, d_model)
    return x, x @ _tensor(QUERY_WEIGHTS), x @ _tensor(KEY_WEIGHTS), x @ _tensor(VALUE_WEIGHTS)


def attention_walkthrough() -> list[Step]:
    """Each step of self-attention over INPUTS; the output is scaled_dot_product_attention's."""
    x, q, k, v = _example()
    scores = q @ k.T  # (queries, keys)
    scaled = scores / k.size(-1) ** 0.5
    output, weights = scaled_dot_product_attention(q, k, v)
    weighted = weights[0, :, None] * v  # the first input's weights times each value
    return [
        Step("inputs", "three inputs of 4 numbers each, one per row", x),
        Step("queries", "each input times the query weights: what it looks for", q),
        Step("keys", "each input times the key weights: what it offers to be found by", k),
        Step("values", "each input times the value weights: what it passes on", v),
        Step("scores", "every query dotted with every key (row: query, column: key)", scores),
        Step("scaled scores", "over sqrt(d_head) = sqrt(3): keeps the softmax unsaturated", scaled),
        Step("weights", "softmax of each row: how much each input attends to each", weights),
        Step("weighted values", "input 1's weight on each input times its value", weighted),
        Step("outputs", "the weighted values summed: one output per input", output),
    ]  # fmt: skip


def common_mistakes() -> list[Mistake]:
    """What five common mistakes compute on the same example, beside the right numbers."""
    x, q, k, v = _example()
    right, _ = scaled_dot_product_attention(q, k, v)
    d_head = k.size(-1)

    after_softmax = (q @ k.T).softmax(-1) / math.sqrt(d_head) @ v
    by_length = (q @ k.T / x.size(0)).softmax(-1) @ v

    # Two heads of 2 over HEAD_INPUTS themselves (queries = keys = values = the inputs).
    heads = MultiHeadAttention(4, 2)
    batch = _tensor(HEAD_INPUTS)[None]  # (1, inputs, 4)
    split = heads._split_heads(batch)  # (1, heads, inputs, 2): head h has features 2h, 2h+1
    bare_view = batch.view(1, 2, 3, 2)  # head 1 gets inputs 1 and 2 cut into rows of 2
    right_heads = heads._merge_heads(scaled_dot_product_attention(split, split, split)[0])
    wrong_heads = heads._merge_heads(
        scaled_dot_product_attention(bare_view, bare_view, bare_view)[0]
    )

    # The three inputs in a batch beside a longer sentence: a fourth, padding position (zeros).
    padded_q, padded_k, padded_v = (torch.cat([t, torch.zeros(1, 3)]) for t in (q, k, v))
    keep = torch.tensor([True, True, True, False])
    with_mask, _ = scaled_dot_product_attention(padded_q, padded_k, padded_v, keep)
    without_mask, _ = scaled_dot_product_attention(padded_q, padded_k, padded_v)

    target = _tensor(TARGETS)
    cross = [_tensor(w[::-1]) for w in (QUERY_WEIGHTS, KEY_WEIGHTS, VALUE_WEIGHTS)]
    own, _ = scaled_dot_product_attention(target @ cross[0], x @ cross[1], x @ cross[2])
    shared, _ = scaled_dot_product_attention(target @ _tensor(QUERY_WEIGHTS), k, v)
    return [
        Mistake(
            "scaling after the softmax",
            "softmax(QKᵀ)/sqrt(d_head)·V: the weights no longer sum to 1 and the softmax saw the "
            "unscaled, saturating scores (input 1's output)",
            right[0],
            after_softmax[0],
        ),
        Mistake(
            "scaling by the sequence length",
            "QKᵀ/3 (three inputs) instead of QKᵀ/sqrt(d_head): the temperature would change "
            "with every sentence's length (input 1's output)",
            right[0],
            by_length[0],
        ),
        Mistake(
            "splitting heads with a bare view",
            "x.view(batch, heads, len, d_head) instead of x.view(batch, len, heads, "
            "d_head).transpose(1, 2): head 2 gets pieces of inputs 2 and 3 instead of "
            "features 3-4 of every input (the merged outputs, one row per input)",
            right_heads[0],
            wrong_heads[0],
        ),
        Mistake(
            "forgetting the padding mask",
            "a padding position (zeros) beside the three inputs takes a share of every "
            "softmax; with the mask, input 1's output is exactly the unpadded one",
            with_mask[0],
            without_mask[0],
        ),
        Mistake(
            "one module for self- and cross-attention",
            "cross-attention needs its own projections (here, other weights); reusing the "
            "self-attention's asks the source the wrong question (the first target's output)",
            own[0],
            shared[0],
        ),
    ]


def multihead_walkthrough() -> list[Step]:
    """Multi-head attention's shapes on HEAD_INPUTS: d_model 4, two heads of 2, with identity
    projections so that each head's numbers are visibly the inputs' features."""
    module = MultiHeadAttention(4, 2).double().eval()
    with torch.no_grad():
        module.qkv_proj.weight.copy_(torch.eye(4).repeat(3, 1))  # q = k = v = x
        module.out_proj.weight.copy_(torch.eye(4))
        for bias in (module.qkv_proj.bias, module.out_proj.bias):
            bias.zero_()
    x = _tensor(HEAD_INPUTS)[None]  # (batch 1, 3 inputs, d_model 4)
    q, _, _ = module.qkv_proj(x).chunk(3, dim=-1)
    heads = module._split_heads(q)
    per_head, weights = scaled_dot_product_attention(heads, heads, heads)
    merged = module._merge_heads(per_head)
    output = module(x)
    return [
        Step("inputs (batch, len, d_model) = (1, 3, 4)", "one sentence of three inputs", x),
        Step("queries (1, 3, 4)", "one (d_model -> 3 d_model) matmul gives q, k and v", q),
        Step(
            "split (1, 3, 4) -> view (1, 3, 2, 2) -> transpose (1, 2, 3, 2)",
            "each head gets d_head = 2 features of every input: head 1 features 1-2, "
            "head 2 features 3-4",
            heads,
        ),
        Step(
            "weights (1, 2, 3, 3)",
            "each head attends on its own: (batch, heads, queries, keys)",
            weights,
        ),
        Step("per-head outputs (1, 2, 3, 2)", "each head's weighted values", per_head),
        Step(
            "merge: transpose (1, 3, 2, 2) -> reshape (1, 3, 4)",
            "the heads side by side again, one row per input",
            merged,
        ),
        Step(
            "output (1, 3, 4)",
            "the output projection mixes the heads (here the identity, so it equals the merge)",
            output.detach(),
        ),
    ]


MASK_SENTENCES = [["the", "cat", "sat", "down"], ["a", "dog"]]


def mask_walkthrough() -> list[Step]:
    """The padding and causal masks of a two-sentence batch, as grids (■ may attend, · may not)."""
    ids = torch.tensor([[5, 6, 7, 8], [9, 10, PAD_ID, PAD_ID]])  # (batch, len), right-padded
    labels = [words + ["<pad>"] * (4 - len(words)) for words in MASK_SENTENCES]
    padding = padding_mask(ids, PAD_ID)  # (batch, 1, 1, len)
    causal = causal_mask(4)  # (len, len)
    decoder = padding & causal  # (batch, 1, len, len)
    equal_scores = torch.zeros(4, 2)  # every score equal: the weights show the mask alone
    _, weights = scaled_dot_product_attention(equal_scores, equal_scores, equal_scores, decoder[1])
    return [
        Step(
            "padding mask (batch, 1, 1, len)",
            "one row per sentence: keys that are real tokens; padding is never attended to",
            padding[:, 0, 0],
            ["sentence 1", "sentence 2"],
            ["1", "2", "3", "4"],
        ),
        Step(
            "causal mask (len, len)",
            "query i (row) may see keys 0..i (columns): the decoder never looks ahead",
            causal,
            labels[0],
            labels[0],
        ),
        Step(
            "decoder mask of sentence 2: padding & causal",
            "both at once, by broadcasting (batch, 1, 1, len) & (len, len)",
            decoder[1, 0],
            labels[1],
            labels[1],
        ),
        Step(
            "weights under that mask, all scores equal",
            "each query spreads its weight evenly over the keys it may see; a padding query "
            "still sees the real tokens before it (its output is never used)",
            weights[0],
            labels[1],
            labels[1],
            digits=3,
        ),
    ]


def mask_figure() -> "object":
    steps = mask_walkthrough()[:3]
    titles = ["padding mask", "causal mask", "sentence 2: padding & causal"]
    return heatmap_figure(
        [
            (s.value.float().numpy(), title, s.rows, s.columns)
            for s, title in zip(steps, titles, strict=True)
        ],
        "masks: 1 (yellow) may attend, 0 may not",
    )


def positions_walkthrough() -> list[Step]:
    """Sinusoidal positions: the table, the wavelengths, and why relative offsets are easy."""
    d_model = 32
    table = sinusoidal_positions(50, d_model).double()  # (positions, d_model)
    wavelengths = 2 * math.pi * 10000 ** (torch.arange(0, d_model, 2).double() / d_model)
    offset = 3
    products = torch.stack([table[p] @ table[p + offset] for p in (0, 10, 20, 40)])
    return [
        Step(
            "positions 0-3, dimensions 1-6 of PE (50, 32)",
            "PE[pos, 2i] = sin(pos / 10000^(2i/d_model)), PE[pos, 2i+1] = cos(same)",
            table[:4, :6],
            digits=4,
        ),
        Step(
            "wavelength of each sine/cosine pair",
            "from 2π to 10000·2π: fast pairs tell neighbours apart, slow pairs far positions",
            wavelengths[None],
            digits=4,
        ),
        Step(
            "PE[p] · PE[p + 3] for p = 0, 10, 20, 40",
            "the same for every p: how two positions compare depends on their offset alone",
            products[None],
            digits=6,
        ),
    ]


def positions_figure() -> "object":
    table = sinusoidal_positions(50, 32)
    figure = new_figure(figsize=(6.5, 3.6), layout="constrained")
    axis = figure.subplots()
    image = axis.imshow(
        table.T.numpy(), cmap="RdBu", vmin=-1, vmax=1, aspect="auto", origin="lower"
    )
    axis.set_xlabel("position")
    axis.set_ylabel("dimension")
    axis.set_title("sinusoidal positions, d_model 32 (tcli's sinusoidal_positions)", fontsize=9)
    figure.colorbar(image, ax=axis)
    return figure


FEATURE_MAP = [  # A and B: two kinds of object on a background (.), 8x8 pixels
    "........",
    ".AA..BB.",
    ".AA..BB.",
    "........",
    "........",
    ".....AA.",
    ".....AA.",
    "........",
]
QUERY_PIXEL = (1, 1)


def image_attention() -> tuple[Tensor, Tensor]:
    """SelfAttention2d over FEATURE_MAP: (channels, H, W) features and (H*W, H*W) weights.

    Each pixel's features are one-hot by kind (A, B, background); query and key are 3x the
    identity, so a pixel's score with another is high exactly when they are the same kind."""
    kinds = "AB."
    features = torch.tensor(
        [[[float(kinds.index(c) == kind) for c in row] for row in FEATURE_MAP] for kind in range(3)]
    )  # (3, 8, 8)
    layer = SelfAttention2d(channels=3, reduction=1).eval()
    with torch.no_grad():
        for conv, scale in ((layer.query, 3.0), (layer.key, 3.0), (layer.value, 1.0)):
            conv.weight.copy_(scale * torch.eye(3)[:, :, None, None])
            conv.bias.zero_()
        _, weights = layer(features[None])
    return features, weights[0]


def image_walkthrough() -> list[Step]:
    features, weights = image_attention()
    height, width = features.shape[1:]
    row, column = QUERY_PIXEL
    query_weights = weights[row * width + column].view(height, width)
    return [
        Step("feature map (8x8)", "A and B are two kinds of object, '.' is background",
             "\n".join("  " + " ".join(line) for line in FEATURE_MAP)),
        Step("pixels as a sequence", "(batch, C, H, W) -> (batch, H*W, C): 64 positions of "
             "3 features; every pixel attends to all 64",
             f"  {tuple(features.flatten(1).T.shape)}"),
        Step(f"weights of pixel {QUERY_PIXEL} (row, column) over the map, in %",
             "an A pixel attends to every A pixel, the far ones too, and hardly anywhere else",
             100 * query_weights, digits=2),
    ]  # fmt: skip


def image_figure() -> "object":
    features, weights = image_attention()
    height, width = features.shape[1:]
    row, column = QUERY_PIXEL
    figure = new_figure(figsize=(7.6, 3.4), layout="constrained")
    left, right = figure.subplots(1, 2)
    left.imshow(features.argmax(0).numpy(), cmap="Set2")
    left.set_title("feature map: A, B, background", fontsize=9)
    for y, line in enumerate(FEATURE_MAP):
        for x, kind in enumerate(line):
            if kind != ".":
                left.text(x, y, kind, ha="center", va="center", fontsize=8)
    image = right.imshow(weights[row * width + column].view(height, width).numpy(), cmap="viridis")
    right.set_title(f"attention of pixel {QUERY_PIXEL} (x)", fontsize=9)
    for axis in (left, right):
        axis.plot(column, row, "x", color="red", markersize=10)
    figure.colorbar(image, ax=right)
    return figure


def format_steps(steps: list[Step]) -> str:
    """Steps as text: a number, title and sentence, then the numbers (labelled when they can)."""
    return "\n\n".join(
        f"{number}. {step.title}: {step.why}\n{_format_value(step)}"
        for number, step in enumerate(steps, start=1)
    )


def format_mistakes(mistakes: list[Mistake]) -> str:
    blocks = [
        "Common mistakes, each computed on the same example: the right number, then the wrong"
    ]
    for number, mistake in enumerate(mistakes, start=1):
        blocks.append(
            f"{number}. {mistake.name}: {mistake.why}\n"
            f"  right:\n{_format_matrix(mistake.right, 7, indent=4)}\n"
            f"  wrong:\n{_format_matrix(mistake.wrong, 7, indent=4)}"
        )
    return "\n\n".join(blocks)


def _format_value(step: Step) -> str:
    if isinstance(step.value, str):
        return step.value
    if step.value.dtype == torch.bool:
        cells = [["■" if allowed else "·" for allowed in row] for row in step.value.tolist()]
        return _table(cells, step.rows, step.columns)
    if step.value.dim() <= 2 and (step.rows or step.columns):
        numbers = [[f"{x:.{step.digits}g}" for x in row] for row in step.value.tolist()]
        return _table(numbers, step.rows, step.columns)
    return _format_matrix(step.value, step.digits)


def _format_matrix(value: Tensor, digits: int, indent: int = 2) -> str:
    """Rows of numbers; a tensor of more dimensions as one block per leading index."""
    pad = " " * indent
    if value.dim() <= 2:
        rows = value.reshape(-1, value.size(-1)) if value.dim() else value.reshape(1, 1)
        return "\n".join(
            pad + "[" + ", ".join(f"{x:{digits + 4}.{digits}g}" for x in row) + "]"
            for row in rows.tolist()
        )
    blocks = []
    for index in itertools.product(*map(range, value.shape[:-2])):
        blocks.append(f"{pad}{list(index)}:\n" + _format_matrix(value[index], digits, indent + 2))
    return "\n".join(blocks)


def _table(cells: list[list[str]], rows: list[str] | None, columns: list[str] | None) -> str:
    rows = rows or [""] * len(cells)
    columns = columns or [""] * len(cells[0])
    width = max(len(text) for text in [*columns, *itertools.chain(*cells)]) + 1
    label_width = max(len(text) for text in rows) + 2
    lines = [" " * label_width + "".join(f"{c:>{width}}" for c in columns)]
    lines += [
        f"  {label:<{label_width - 2}}" + "".join(f"{c:>{width}}" for c in row)
        for label, row in zip(rows, cells, strict=True)
    ]
    return "\n".join(lines)


_PICTURES = {"masks": mask_figure, "positions": positions_figure, "image": image_figure}
_WALKTHROUGHS = {
    "attention": attention_walkthrough,
    "multihead": multihead_walkthrough,
    "masks": mask_walkthrough,
    "positions": positions_walkthrough,
    "image": image_walkthrough,
}


def explain_topic(topic: str, out_dir: Path) -> str:
    """One topic's text; masks, positions and image also write their picture into out_dir."""
    text = format_steps(_WALKTHROUGHS[topic]())
    if topic == "attention":
        text += "\n\n" + format_mistakes(common_mistakes())
    if topic in _PICTURES:
        path = save_figure(_PICTURES[topic](), out_dir / f"{topic}.png")
        text += f"\n\nwrote {path}"
    return text


@dataclass
class ModelWalkthrough:
    steps: list[Step]
    pieces: list[str]  # the source pieces + </s>, the rows and columns of `weights`
    weights: Tensor  # (src_len, src_len)


def explain_model(
    model: Transformer, tokenizer: Tokenizer, text: str, head: int, shown_dims: int = 4
) -> ModelWalkthrough:
    """Self-attention of one head (counted from 0) of `model`'s first encoder layer over `text`,
    step by step, computed as `forward` computes it."""
    ids = tokenizer.encode([text])[0]
    src = source_tensor([ids]).to(next(model.parameters()).device)  # (1, src_len): ids + EOS
    pieces = [tokenizer.pieces[i] for i in src[0].tolist()]
    layer = model.encoder_layers[0]
    attention = layer.src_src_attn
    with torch.no_grad():
        x = model._embed(model.src_embed, model.src_positions, src)  # (1, src_len, d_model)
        if layer.attn_residual.pre_norm:
            x = layer.attn_residual.norm(x)
        q, k, v = (
            attention._split_heads(t)[0, head]  # (src_len, d_head)
            for t in attention.qkv_proj(x).chunk(3, dim=-1)
        )
        scores = q @ k.T  # (src_len, src_len)
        scaled = scores / math.sqrt(q.size(-1))
        output, weights = scaled_dot_product_attention(q, k, v)
    n = shown_dims
    d_head = q.size(-1)
    dims = [str(i) for i in range(1, n + 1)]
    norm = "LayerNorm of (" if layer.attn_residual.pre_norm else "("
    steps = [
        Step("pieces", "the sentence as the source tokenizer splits it, then </s>",
             "  " + " ".join(pieces)),
        Step(f"layer input, dimensions 1-{n} of {x.size(-1)}",
             f"{norm}embedding × sqrt(d_model) + position): one row per piece", x[0, :, :n],
             pieces, dims, 4),
        Step(f"queries of head {head + 1}, dimensions 1-{n} of {d_head}",
             "the input times this head's query weights", q[:, :n], pieces, dims, 4),
        Step(f"keys of head {head + 1}, dimensions 1-{n}", "times the key weights", k[:, :n],
             pieces, dims, 4),
        Step(f"values of head {head + 1}, dimensions 1-{n}", "times the value weights",
             v[:, :n], pieces, dims, 4),
        Step("scores", "every query dotted with every key (row: query, column: key)", scores,
             pieces, pieces, 3),
        Step("scaled scores", f"over sqrt(d_head) = sqrt({d_head})", scaled, pieces, pieces, 3),
        Step("weights", "softmax of each row: where each piece looks", weights, pieces, pieces,
             2),
        Step(f"head output, dimensions 1-{n} of {d_head}",
             "the weighted values summed; the heads are then merged and projected", output[:, :n],
             pieces, dims, 4),
    ]  # fmt: skip
    return ModelWalkthrough(steps, pieces, weights)


def explain_run(translator: "Translator", text: str, head: int, out_dir: Path) -> str:
    """`explain_model` for a loaded run with `head` counted from 1: the text, and the weights as a
    heatmap in out_dir."""
    n_heads = translator.model.config.n_heads
    if not 1 <= head <= n_heads:
        raise TcliError(f"--head {head}: the model has heads 1 to {n_heads}")
    if not text.strip():
        raise TcliError("--text is blank: give a sentence")
    walkthrough = explain_model(translator.model, translator.tokenizers.source, text, head - 1)
    pieces = walkthrough.pieces
    figure = heatmap_figure(
        [(walkthrough.weights.cpu().numpy(), f"head {head} of {n_heads}", pieces, pieces)],
        f"encoder self-attention, layer 1: {text[:60]}",
    )
    path = save_figure(figure, out_dir / f"encoder-layer1-head{head}.png")
    return f"{format_steps(walkthrough.steps)}\n\nwrote {path}"
