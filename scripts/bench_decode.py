"""Decoding-speed benchmark: tcli's greedy and beam search on a trained run, side by side in one
run, optionally against the same model exported to CTranslate2 (the dedicated C++ engine).

    .venv/bin/python scripts/bench_decode.py --run runs/toy [--ctranslate2] [--out table.md]

Sentences come from the run's test set (its validation set if it has none), sorted by length
into batches as `tcli translate` does.
Batch 64 reports sentences per second over all the sentences; batch 1 reports milliseconds per
sentence over 100 sentences spread over all lengths. Every system gets the same batches of the
same token ids, and the same output limit. tcli and CTranslate2 each run in their own process,
alternating round by round so that they see the same machine state; the table shows the median
round. Nothing here is a test.
"""

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from transformer_cli import load_run
from transformer_cli.config import Config, ParallelFiles
from transformer_cli.data.batching import source_tensor
from transformer_cli.data.corpus import read_pairs
from transformer_cli.decode import (
    beam_search,
    greedy_decode,
    greedy_decode_reference,
)

Batch = list[list[int]]  # token ids of each sentence, without EOS


def cpu_description() -> str:
    """The CPU model and the vector extensions that matter to matmul speed."""
    model, flags = platform.processor() or "unknown CPU", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    wanted = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16")
    return f"{model}, flags: {' '.join(f for f in wanted if f in flags) or 'none listed'}"


def tcli_systems(run, reference: bool) -> dict[str, tuple[str, Callable[[Batch], object]]]:
    a, b, alpha = run.decode.max_len_a, run.decode.max_len_b, run.decode.length_penalty

    def tensor(batch: Batch) -> torch.Tensor:
        return source_tensor(batch).to(run.device)

    systems = {
        "tcli greedy": (
            "greedy",
            lambda batch: greedy_decode(run.model, tensor(batch), a, b),
        ),
        "tcli beam 5": (
            "beam 5",
            lambda batch: beam_search(run.model, tensor(batch), 5, a, b, alpha),
        ),
    }
    if reference:
        systems["tcli greedy, recompute every prefix (the tutorials' way)"] = (
            "greedy",
            lambda batch: greedy_decode_reference(run.model, tensor(batch), a, b),
        )
    return systems


def ctranslate2_systems(
    run, threads: int, int8: bool
) -> dict[str, tuple[str, Callable[[Batch], object]]]:
    """The run exported to CTranslate2 (float32, and int8 if asked), decoding the same ids with
    the same limits."""
    import ctranslate2

    from transformer_cli.export import export_ctranslate2

    directory = Path(tempfile.mkdtemp(prefix="tcli-ct2-")) / "model"
    export_ctranslate2(run.model, run.tokenizers, directory)
    a, b, alpha = run.decode.max_len_a, run.decode.max_len_b, run.decode.length_penalty
    pieces = run.tokenizers.source.pieces
    systems = {}
    for compute_type in ["float32", "int8"] if int8 else ["float32"]:
        translator = ctranslate2.Translator(
            str(directory), device="cpu", compute_type=compute_type, intra_threads=threads
        )

        def translate(batch: Batch, beam_size: int, translator=translator) -> object:
            # CTranslate2 has one output limit per call, tcli one per sentence (a * length + b):
            # the batch's longest sentence sets it, which only lets CTranslate2 decode longer.
            return translator.translate_batch(
                [[pieces[i] for i in ids] for ids in batch],
                beam_size=beam_size,
                max_batch_size=len(batch),
                max_decoding_length=int(a * max(map(len, batch)) + b),
                length_penalty=alpha,
            )

        label = "" if compute_type == "float32" else f" ({compute_type})"
        systems[f"CTranslate2 greedy{label}"] = ("greedy", lambda x, t=translate: t(x, 1))
        systems[f"CTranslate2 beam 5{label}"] = ("beam 5", lambda x, t=translate: t(x, 5))
    return systems


def _source_split(config: Config) -> tuple[str, ParallelFiles]:
    """The split the sentences come from: the test set, or the validation set of a run without."""
    return ("test", config.data.test) if config.data.test else ("valid", config.data.valid)


def one_round(args: argparse.Namespace) -> dict[str, dict]:
    """Time one family of systems (tcli's, or CTranslate2's) for one round, in this process."""
    run = load_run(args.run, args.device)
    sources = read_pairs(_source_split(run.config)[1])[0][: args.sentences]
    ids = sorted((s for s in run.tokenizers.source.encode(sources) if s), key=len)
    single = ids[:: max(len(ids) // args.single, 1)][: args.single]  # spread over all lengths
    if args.family == "tcli":
        systems = tcli_systems(run, args.reference)
    else:
        systems = ctranslate2_systems(run, torch.get_num_threads(), args.int8)

    def seconds(method: Callable[[Batch], object], batch_size: int, sentences: Batch) -> float:
        start = time.perf_counter()
        for first in range(0, len(sentences), batch_size):
            method(sentences[first : first + batch_size])
        return time.perf_counter() - start

    timings = {}
    for name, (search, method) in systems.items():
        warmup = seconds(method, 64, ids[:128]) + seconds(method, 1, single[:5])  # allocations
        timings[name] = {
            "search": search,
            "warmup_s": warmup,
            "batch64_sentences_per_s": len(ids) / seconds(method, 64, ids),
            "batch1_ms_per_sentence": 1000 * seconds(method, 1, single) / len(single),
            "sentences": len(ids),
        }
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a trained run directory, e.g. runs/toy")
    parser.add_argument("--sentences", type=int, default=1000)
    parser.add_argument("--single", type=int, default=100, help="sentences decoded at batch 1")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--ctranslate2", action="store_true", help="also time CTranslate2")
    parser.add_argument("--int8", action="store_true", help="and CTranslate2 with int8 weights")
    parser.add_argument("--reference", action="store_true", help="also time the O(n²) greedy")
    parser.add_argument("--out", help="also write the markdown table to this file")
    parser.add_argument("--json", help="also write the raw timings to this file")
    parser.add_argument("--family", choices=["tcli", "ctranslate2"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.family:  # a child process: one round of one family, as JSON on stdout
        print(json.dumps(one_round(args)))
        return

    # Each family runs in its own process, one round at a time, alternating: CTranslate2's
    # OpenMP threads and torch's, in one process, slowed tcli's greedy search by half.
    families = ["tcli", "ctranslate2"] if args.ctranslate2 else ["tcli"]
    forwarded = [a for a in sys.argv[1:] if a not in ("--ctranslate2",)]
    rounds: list[dict[str, dict]] = []
    for _ in range(args.rounds):
        merged = {}
        for family in families:
            child = subprocess.run(
                [sys.executable, __file__, *forwarded, "--family", family],
                check=True, capture_output=True, text=True,
            )  # fmt: skip
            merged |= json.loads(child.stdout.splitlines()[-1])
        rounds.append(merged)
    searches = {name: timing["search"] for name, timing in rounds[0].items()}  # name -> search
    batch64 = {name: [r[name]["batch64_sentences_per_s"] for r in rounds] for name in searches}
    batch1 = {name: [r[name]["batch1_ms_per_sentence"] for r in rounds] for name in searches}
    warmup = {name: rounds[0][name]["warmup_s"] for name in searches}
    sentences = rounds[0]["tcli greedy"]["sentences"]
    run = load_run(args.run, args.device)
    threads = torch.get_num_threads()

    speed = {name: statistics.median(v) for name, v in batch64.items()}
    latency = {name: statistics.median(v) for name, v in batch1.items()}
    ct2 = {  # the float32 CTranslate2 system of each search
        search: f"CTranslate2 {search}"
        for name, search in searches.items()
        if name == f"CTranslate2 {search}"
    }
    lines = [
        f"{args.run}: {run.model.num_parameters() / 1e6:.2f}M parameters "
        f"({run.config.model.n_encoder_layers}+{run.config.model.n_decoder_layers} layers, "
        f"d_model {run.config.model.d_model}, vocabulary {run.tokenizers.target.vocab_size}), "
        f"{sentences} {_source_split(run.config)[0]} sentences, {run.device}, {threads} threads, "
        f"torch {torch.__version__}, "
        f"median of {args.rounds} rounds (each system family in its own process)",
        f"CPU: {cpu_description()}",
        "",
        "| system | batch 64: sentences / s | ÷ CTranslate2 | batch 1: ms / sentence "
        "| ÷ CTranslate2 |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, search in searches.items():
        peer = ct2.get(search)
        speed_ratio = f"{speed[name] / speed[peer]:.2f}x" if peer else "–"
        latency_ratio = f"{latency[name] / latency[peer]:.2f}x" if peer else "–"
        lines.append(
            f"| {name} | {speed[name]:,.0f} | {speed_ratio} | {latency[name]:.1f} | "
            f"{latency_ratio} |"
        )
    lines += ["", "Warm-up (128 sentences at batch 64, 5 at batch 1): "
              + ", ".join(f"{name} {value:.1f} s" for name, value in warmup.items())]  # fmt: skip
    table = "\n".join(lines) + "\n"
    print(table, end="")
    if args.out:
        Path(args.out).write_text(table, encoding="utf-8")
    if args.json:
        Path(args.json).write_text(json.dumps(rounds, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
