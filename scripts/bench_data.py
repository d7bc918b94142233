"""Data-pipeline benchmark: SentencePiece, encoding into the cache, bucketing, on big corpora.

    .venv/bin/python scripts/bench_data.py [--pairs 100000 1000000] [--out table.md]

For each size, generates a synthetic English-German corpus with scripts/make_toy_corpus.py (not
timed), then runs the pipeline that `tcli train` runs, each phase in a fresh process so that its
peak resident memory is the phase's alone: SentencePiece training (on a sample of
`tokenizer.input_sentence_size` sentences), then encoding into the memory-mapped cache, bucketing
an epoch into 4096-token batches, and building batch tensors. Prints a markdown table.
"""

import argparse
import importlib.util
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BATCH_TOKENS = 4096


def measure(directory: Path, phase: str) -> dict:
    """Run one phase of the pipeline on directory/train.{en,de}; called in a child process, so
    that the peak resident memory it reports is that phase's."""
    import numpy as np

    from transformer_cli.config import ParallelFiles, TokenizerConfig
    from transformer_cli.data.batching import TokenBatchSampler, padding_fraction
    from transformer_cli.data.cache import EncodedCorpus
    from transformer_cli.data.corpus import count_pairs, iter_pairs
    from transformer_cli.data.tokenizer import Tokenizer, Tokenizers, train_tokenizer

    result = {"rss_after_imports_mib": _peak_rss_mib()}
    files = ParallelFiles(src=str(directory / "train.en"), tgt=str(directory / "train.de"))
    pairs = count_pairs(files)
    start = time.perf_counter()
    if phase == "sentencepiece":
        tok = TokenizerConfig()  # the defaults tcli trains with: vocab_size 8000, 1M sentences
        sentences = (side for pair in iter_pairs(files) for side in pair)
        train_tokenizer(
            sentences,
            directory / "sp.model",
            vocab_size=tok.vocab_size,
            input_sentence_size=tok.input_sentence_size,
            total=2 * pairs,
        )
        result["seconds"] = time.perf_counter() - start
    else:
        tokenizer = Tokenizer(directory / "sp.model")
        tokenizers = Tokenizers(tokenizer, tokenizer)
        corpus = EncodedCorpus.build(
            directory / "cache", iter_pairs(files), tokenizers, 128, 9.0, {}, total=pairs
        )
        result["seconds"] = time.perf_counter() - start
        result["pairs"] = pairs
        start = time.perf_counter()
        batches = TokenBatchSampler(corpus.pair_lengths(), BATCH_TOKENS, seed=1).batches(0)
        result["bucket_s"] = time.perf_counter() - start
        result["batches"] = len(batches)
        src_lengths, tgt_lengths = corpus.src_lengths, corpus.tgt_lengths
        result["padding_bucketed"] = padding_fraction(batches, src_lengths, tgt_lengths)
        shuffled = np.random.default_rng(0).permutation(len(corpus))
        random = np.split(shuffled, np.cumsum([len(b) for b in batches])[:-1])  # same sizes
        result["padding_random"] = padding_fraction(random, src_lengths, tgt_lengths)
        start = time.perf_counter()
        for rows in batches[:1000]:
            corpus.batch(rows)
        result["tensor_ms"] = 1000 * (time.perf_counter() - start) / min(len(batches), 1000)
    result["peak_rss_mib"] = _peak_rss_mib()
    return result


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def generate(pairs: int, directory: Path) -> None:
    spec = importlib.util.spec_from_file_location("corpus", REPO / "scripts" / "make_toy_corpus.py")
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    generated = generator.generate_pairs(pairs, seed=7)
    for index, lang in enumerate(("en", "de")):
        with open(directory / f"train.{lang}", "w", encoding="utf-8") as file:
            file.writelines(pair[index] + "\n" for pair in generated)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--out", help="also write the markdown table to this file")
    parser.add_argument("--measure", nargs=2, help=argparse.SUPPRESS)  # the child: DIR PHASE
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(Path(args.measure[0]), args.measure[1])))
        return

    def child(directory: str, phase: str) -> dict:
        done = subprocess.run(
            [sys.executable, __file__, "--measure", directory, phase],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        return json.loads(done.stdout.strip().splitlines()[-1])

    lines = [
        "| pairs | SentencePiece: time, peak RSS | encode + cache: time, speed, peak RSS "
        "| bucketing an epoch | batch tensors | padding: bucketed / random |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for pairs in args.pairs:
        with tempfile.TemporaryDirectory() as tmp:
            generate(pairs, Path(tmp))
            sp, enc = child(tmp, "sentencepiece"), child(tmp, "encode")
        lines.append(
            f"| {pairs:,} | {sp['seconds']:.1f} s, {sp['peak_rss_mib']:,.0f} MiB "
            f"| {enc['seconds']:.1f} s, {pairs / enc['seconds']:,.0f} pairs/s, "
            f"{enc['peak_rss_mib']:,.0f} MiB | {enc['bucket_s']:.2f} s ({enc['batches']:,} "
            f"batches) | {enc['tensor_ms']:.2f} ms/batch | {100 * enc['padding_bucketed']:.1f}% / "
            f"{100 * enc['padding_random']:.1f}% |"
        )
    lines.append(
        f"\nPeak RSS includes the Python interpreter with torch and numpy imported "
        f"({enc['rss_after_imports_mib']:,.0f} MiB on its own)."
    )
    table = "\n".join(lines) + "\n"
    print(table, end="")
    if args.out:
        Path(args.out).write_text(table, encoding="utf-8")


if __name__ == "__main__":
    main()
