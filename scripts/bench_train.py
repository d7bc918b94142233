"""Training-speed benchmark on the toy config: attention path and precision, and validation cost.

    .venv/bin/python scripts/bench_train.py [--config configs/toy.yaml] [--run runs/toy]

Trains SentencePiece on the bundled corpus, then times real training steps of the config's model
with explicit and fused attention (the same weights), each in fp32 and bf16, interleaved round by
round so that every variant sees the same machine state. Then times one validation, with the
trained model of --run if given (an untrained model stops translating early, which makes
validation look cheaper than it is). Prints a markdown
table; nothing here is a test.
"""

import argparse
import itertools
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from transformer_cli.config import load_config
from transformer_cli.data.batching import Batch, TokenBatchSampler, flatten, pair_lengths
from transformer_cli.data.corpus import read_pairs
from transformer_cli.data.tokenizer import Tokenizers, train_tokenizer
from transformer_cli.device import resolve_device
from transformer_cli.run import Translator, build_model, load_run
from transformer_cli.trainer import Validator, accumulate_gradients

VARIANTS = {  # name: (model.attention, autocast dtype)
    "explicit, fp32": ("explicit", None),
    "fused, fp32": ("fused", None),
    "explicit, bf16": ("explicit", torch.bfloat16),
    "fused, bf16": ("fused", torch.bfloat16),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/toy.yaml")
    parser.add_argument("--steps", type=int, default=30, help="timed steps per variant and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--run", help="a trained run of this config, to time validation with")
    args = parser.parse_args()

    config = load_config(args.config)
    device = resolve_device(args.device)
    src, tgt = read_pairs(config.data.train)
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = train_tokenizer(
            itertools.chain(src, tgt), Path(tmp) / "sp.model", config.tokenizer.vocab_size
        )
    tokenizers = Tokenizers(tokenizer, tokenizer)
    src_ids, tgt_ids = flatten(tokenizer.encode(src)), flatten(tokenizer.encode(tgt))
    lengths = pair_lengths(np.diff(src_ids[1]), np.diff(tgt_ids[1]))
    sampler = TokenBatchSampler(lengths, config.train.batch_tokens, seed=0)
    batches = [Batch.from_arrays(src_ids, tgt_ids, rows) for rows in sampler.batches()]
    torch.manual_seed(0)
    models = {}
    for attention in ("explicit", "fused"):
        config.model.attention = attention
        models[attention] = build_model(config, tokenizers).to(device)
    models["fused"].load_state_dict(models["explicit"].state_dict())  # the same weights
    optimizers = {name: torch.optim.Adam(m.parameters(), lr=1e-4) for name, m in models.items()}

    def step(batch: Batch, attention: str, dtype: torch.dtype | None) -> int:
        optimizers[attention].zero_grad(set_to_none=True)
        _, tokens = accumulate_gradients(
            models[attention], [batch], config.train.label_smoothing, device, dtype
        )
        optimizers[attention].step()
        return tokens

    seconds: dict[str, list[float]] = {name: [] for name in VARIANTS}
    tokens_per_s: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for round_ in range(args.rounds):
        for name, (attention, dtype) in VARIANTS.items():
            chosen = batches[round_ * args.steps : (round_ + 1) * args.steps]
            step(chosen[0], attention, dtype)  # warm-up
            start, tokens = time.perf_counter(), 0
            for batch in chosen:
                tokens += step(batch, attention, dtype)
            elapsed = time.perf_counter() - start
            seconds[name].append(elapsed / len(chosen))
            tokens_per_s[name].append(tokens / elapsed)

    valid_src, valid_tgt = read_pairs(config.data.valid)
    translator = load_run(args.run, args.device) if args.run else None
    translator = translator or Translator(models["fused"], tokenizers, config.decode, device)
    validator = Validator(translator, valid_src, valid_tgt, config.train.batch_tokens)
    start = time.perf_counter()
    validator.run()
    validation = time.perf_counter() - start

    baseline = statistics.median(seconds["explicit, fp32"])
    print(f"{args.config}, {device}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"median of {args.rounds} rounds x {args.steps} steps\n")  # fmt: skip
    print("| attention, precision | ms / step | target tokens / s | speed-up |")
    print("| --- | --- | --- | --- |")
    for name in VARIANTS:
        step_s = statistics.median(seconds[name])
        print(
            f"| {name} | {step_s * 1000:.0f} | {statistics.median(tokens_per_s[name]):,.0f} | "
            f"{baseline / step_s:.2f}x |"
        )
    every = config.train.eval_every
    model_used = f"the trained model of {args.run}" if args.run else "an untrained model"
    print(
        f"\nOne validation with {model_used} ({len(valid_src)} sentences: loss + greedy "
        "translation + BLEU) takes "
        f"{validation:.1f} s; every {every} steps ({every * baseline:.0f} s of explicit fp32 "
        f"training) that adds {100 * validation / (every * baseline):.1f}% to training time."
    )


if __name__ == "__main__":
    main()
