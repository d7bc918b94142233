"""Data-pipeline benchmark: SentencePiece, encoding into the cache, bucketing, on big corpora.

    .venv/bin/python scripts/bench_data.py [--pairs 100000 1000000] [--out table.md]
    .venv/bin/python scripts/bench_data.py --real DIR [--src-lang en --tgt-lang fr] [--repeat 35]

For each size, generates a synthetic English-German corpus with scripts/make_toy_corpus.py (not
timed), then runs the pipeline that `tcli train` runs, each phase in a fresh process so that its
peak resident memory is the phase's alone: SentencePiece training (on a sample of
`tokenizer.input_sentence_size` sentences), then encoding into the memory-mapped cache, bucketing
an epoch into 4096-token batches, and building batch tensors. Prints a markdown table.

With --real DIR (a corpus as DIR/train.SRC.gz and DIR/train.TGT.gz, e.g. Multi30k), the real
training pairs repeated --repeat times (gzipped) become a corpus of about a million pairs, and the
whole `tcli train` runs on it with the default tokenizer settings and configs/multi30k.yaml's model
until its first training steps: the seconds until the first step and the peak resident memory of
the process together with any process it starts, sampled every 50 ms from /proc.
"""

import argparse
import gzip
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
        tok = TokenizerConfig()  # the defaults tcli trains with: vocab_size 8000, 500k sentences
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


def tree_rss_mib(pid: int) -> float:
    """Resident memory of process `pid` and all its descendants now (Linux /proc)."""
    total_kib, pending = 0, [pid]
    while pending:
        current = pending.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            total_kib += int(status.split("VmRSS:")[1].split()[0]) if "VmRSS:" in status else 0
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += map(int, (task / "children").read_text().split())
        except (OSError, ValueError):
            continue  # it ended meanwhile
    return total_kib / 1024


def real_corpus_run(
    real: Path, src_lang: str, tgt_lang: str, repeat: int, overrides: list[str]
) -> str:
    """`tcli train` on the real training pairs repeated `repeat` times, up to its first steps,
    with `overrides` (KEY=VALUE) passed on as --set."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for lang in (src_lang, tgt_lang):
            lines = gzip.decompress((real / f"train.{lang}.gz").read_bytes())
            (tmp / f"train.{lang}.gz").write_bytes(gzip.compress(lines * repeat, compresslevel=1))
            # a small validation set: the run is measured up to its first steps, not validated
            head = b"".join(lines.splitlines(keepends=True)[:8])
            (tmp / f"valid.{lang}").write_bytes(head)
        from transformer_cli.rundir import RunDir

        pairs = lines.count(b"\n") * repeat
        data = {
            "data.src_lang": src_lang,
            "data.tgt_lang": tgt_lang,
            "data.train.src": tmp / f"train.{src_lang}.gz",
            "data.train.tgt": tmp / f"train.{tgt_lang}.gz",
            "data.valid.src": tmp / f"valid.{src_lang}",
            "data.valid.tgt": tmp / f"valid.{tgt_lang}",
            "data.test.src": tmp / f"valid.{src_lang}",
            "data.test.tgt": tmp / f"valid.{tgt_lang}",
            "train.max_steps": 2,
            "train.max_minutes": "null",
            "train.eval_every": 1000,
        }
        command = [sys.executable, "-m", "transformer_cli", "train", "configs/multi30k.yaml",
                   "--out", str(tmp / "run"), "--device", "cpu"]  # fmt: skip
        for item in [f"{key}={value}" for key, value in data.items()] + overrides:
            command += ["--set", item]
        start = time.perf_counter()
        process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL)
        peaks = {"tokenizer": 0.0, "after": 0.0}  # while SentencePiece trains, and after it
        first_step, run = 0.0, RunDir(tmp / "run")
        while process.poll() is None:
            phase = "after" if run.joint_tokenizer.exists() else "tokenizer"
            peaks[phase] = max(peaks[phase], tree_rss_mib(process.pid))
            if not first_step and run.metrics.exists():
                first_step = time.perf_counter() - start
            time.sleep(0.05)
        if process.returncode:
            raise SystemExit(f"tcli train failed with exit code {process.returncode}")
        first_step = first_step or time.perf_counter() - start
    return (
        f"| corpus | pairs | seconds to the first training steps | peak RSS (tcli train and its "
        "children): training SentencePiece / after it |\n| --- | --- | --- | --- |\n"
        f"| {real} ({src_lang}-{tgt_lang}) x {repeat} {' '.join(overrides)} | {pairs:,} "
        f"| {first_step:.0f} s "
        f"| {peaks['tokenizer']:,.0f} MiB / {peaks['after']:,.0f} MiB |\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--out", help="also write the markdown table to this file")
    parser.add_argument("--real", type=Path, help="a real corpus: DIR/train.{SRC,TGT}.gz")
    parser.add_argument("--src-lang", default="en")
    parser.add_argument("--tgt-lang", default="fr")
    parser.add_argument("--repeat", type=int, default=35, help="copies of the real corpus")
    parser.add_argument("--set", action="append", default=[], help="with --real: tcli's --set")
    parser.add_argument("--measure", nargs=2, help=argparse.SUPPRESS)  # the child: DIR PHASE
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(Path(args.measure[0]), args.measure[1])))
        return
    if args.real:
        table = real_corpus_run(args.real, args.src_lang, args.tgt_lang, args.repeat, args.set)
        print(table, end="")
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
