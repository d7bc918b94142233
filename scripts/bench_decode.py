"""Decoding-speed benchmark: the old recompute-the-prefix greedy search against cached greedy and
cached beam search, on a trained run, side by side in one run.

    .venv/bin/python scripts/bench_decode.py --run runs/toy [--sentences 1000] [--out table.md]

Sentences come from the run's test set, sorted by length into batches as `tcli translate` does.
Batch 64 reports sentences per second over all the sentences; batch 1 reports milliseconds per
sentence over the first 100. Methods are interleaved round by round so that they see the same
machine state; the table shows the median round. Nothing here is a test.
"""

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from transformer_cli import load_run
from transformer_cli.data.batching import source_tensor
from transformer_cli.data.corpus import read_pairs
from transformer_cli.decode import beam_search, greedy_decode, greedy_decode_reference
from transformer_cli.model import MultiHeadAttention


def with_attention_flipped(model: torch.nn.Module, work: Callable[[], object]) -> object:
    """Run `work` with every attention module switched between explicit and fused (same weights)."""
    attention = [m for m in model.modules() if isinstance(m, MultiHeadAttention)]
    for module in attention:
        module.fused = not module.fused
    try:
        return work()
    finally:
        for module in attention:
            module.fused = not module.fused


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a trained run directory, e.g. runs/toy")
    parser.add_argument("--sentences", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", help="also write the markdown table to this file")
    args = parser.parse_args()

    run = load_run(args.run, args.device)
    a, b = run.decode.max_len_a, run.decode.max_len_b
    other = "explicit" if run.config.model.attention == "fused" else "fused"
    sources = read_pairs(run.config.data.test)[0][: args.sentences]
    ids = sorted(run.tokenizers.source.encode(sources), key=len)  # as translate batches them
    methods: dict[str, Callable[[torch.Tensor], object]] = {
        "greedy, recompute every prefix (the old way)": lambda src: greedy_decode_reference(
            run.model, src, a, b
        ),
        "greedy, cached": lambda src: greedy_decode(run.model, src, a, b),
        f"greedy, cached, {other} attention": lambda src: with_attention_flipped(
            run.model, lambda: greedy_decode(run.model, src, a, b)
        ),
        "beam 4, cached": lambda src: beam_search(
            run.model, src, 4, a, b, run.decode.length_penalty
        ),
    }

    def seconds(method: Callable, batch_size: int, sentences: list[list[int]]) -> float:
        start = time.perf_counter()
        for first in range(0, len(sentences), batch_size):
            method(source_tensor(sentences[first : first + batch_size]).to(run.device))
        return time.perf_counter() - start

    batch64 = {name: [] for name in methods}
    batch1 = {name: [] for name in methods}
    single = ids[:: max(len(ids) // 100, 1)][:100]  # 100 sentences spread over all lengths
    with torch.no_grad():
        for _ in range(args.rounds):
            for name, method in methods.items():
                batch64[name].append(len(ids) / seconds(method, 64, ids))
                batch1[name].append(1000 * seconds(method, 1, single) / len(single))

    lines = [
        f"{args.run} ({run.model.num_parameters() / 1e6:.2f}M parameters, attention "
        f"{run.config.model.attention}), {len(ids)} test sentences, {run.device}, torch "
        f"{torch.__version__}, {torch.get_num_threads()} threads, median of {args.rounds} rounds",
        "",
        "| search | batch 64: sentences / s | batch 1: ms / sentence |",
        "| --- | --- | --- |",
    ]
    for name in methods:
        lines.append(
            f"| {name} | {statistics.median(batch64[name]):,.0f} | "
            f"{statistics.median(batch1[name]):.1f} |"
        )
    old, cached = (statistics.median(batch64[n]) for n in list(methods)[:2])
    lines += ["", f"Cached greedy is {cached / old:.1f}x the old way at batch 64."]
    table = "\n".join(lines) + "\n"
    print(table, end="")
    if args.out:
        with open(args.out, "w", encoding="utf-8") as file:
            file.write(table)


if __name__ == "__main__":
    main()
