"""`tcli explain`: scaled dot-product self-attention, step by step, on the classic example of the
illustrated guides (three 4-dimensional inputs), computed by the model's own attention function."""

from dataclasses import dataclass

import torch
from torch import Tensor

from transformer_cli.model.attention import scaled_dot_product_attention

# The inputs and the key/query/value weights of the illustrated self-attention guides.
INPUTS = [[1, 0, 1, 0], [0, 2, 0, 2], [1, 1, 1, 1]]
KEY_WEIGHTS = [[0, 0, 1], [1, 1, 0], [0, 1, 0], [1, 1, 0]]
QUERY_WEIGHTS = [[1, 0, 1], [1, 0, 0], [0, 0, 1], [0, 1, 1]]
VALUE_WEIGHTS = [[0, 2, 0], [0, 3, 0], [1, 0, 3], [1, 1, 0]]


@dataclass
class Step:
    title: str
    why: str
    value: Tensor


def attention_walkthrough() -> list[Step]:
    """Each step of self-attention over INPUTS; the output is scaled_dot_product_attention's."""

    def tensor(rows: list[list[int]]) -> Tensor:
        return torch.tensor(rows, dtype=torch.float64)

    x = tensor(INPUTS)  # (inputs, d_model)
    q, k, v = x @ tensor(QUERY_WEIGHTS), x @ tensor(KEY_WEIGHTS), x @ tensor(VALUE_WEIGHTS)
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


def format_walkthrough(steps: list[Step]) -> str:
    """The steps as text: a title, a sentence, and the numbers."""
    blocks = []
    for number, step in enumerate(steps, start=1):
        rows = "\n".join("  [" + ", ".join(f"{x:10.7g}" for x in row) + "]" for row in step.value)
        blocks.append(f"{number}. {step.title}: {step.why}\n{rows}")
    return "\n\n".join(blocks)
