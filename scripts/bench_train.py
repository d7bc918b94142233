"""Training race: tcli against a PyTorch-tutorial nn.Transformer and Hugging Face Marian.

    .venv/bin/python scripts/bench_train.py [--config configs/toy.yaml] [--data CONFIG]
        [--steps 30] [--rounds 3] [--warmup 5] [--precision fp32,bf16] [--systems tcli,A,B,C]
        [--device cpu] [--json race.json]

for example, on an otherwise idle machine, with the `bench` extra installed
(pip install -e '.[bench]'):

    .venv/bin/python scripts/bench_train.py --precision fp32,bf16 --json race.json

Every system trains the model of --config's model section on the data of its data and tokenizer
sections, or of those of --data CONFIG (the model still from --config), with the same vocabulary,
threads and device. Prints the machine, then a markdown table; --json writes every figure.

    tcli  tcli's training step: transformer_cli.loss.sequence_loss / target tokens, backward,
          clip_grad_norm_(1.0), fused Adam (make_optimizer), on tcli's length-bucketed batches
          (TokenBatchSampler, train.batch_tokens).
    A     the loop of the PyTorch tutorial "Language Translation with nn.Transformer and
          torchtext": embeddings * sqrt(d_model), sinusoidal positions with dropout,
          torch.nn.Transformer with causal and padding masks, a Linear generator,
          CrossEntropyLoss(ignore_index=PAD, label_smoothing), Adam, no clipping; on shuffled
          batches of N sentences padded to their longest, N = training pairs / tcli batches per
          epoch, so that A's batches hold as many target tokens on average as tcli's.
    B     A's model and loop on tcli's batches: the model and loop without the batching.
    C     Hugging Face MarianMTModel, randomly initialised at the same sizes (post-norm, ReLU,
          static sinusoidal positions, embeddings tied as model.tie_embeddings says), in B's loop
          on tcli's batches. Needs the `bench` extra (transformers); skipped without it.

The parent trains the tokenizer and encodes the corpus once as `tcli train` does (into a
temporary directory), and measures the matmul peak. Then, round by round, it runs each system
(and precision) in a fresh child process, in the same order every round, so that all of them
share the machine's state and each one's peak RSS is its own. A child takes its round's batches,
trains --warmup untimed steps, then times --steps steps, each split into data (building the batch
tensors), forward (with the loss), backward and optimizer (clipping, step, zeroing the grads).
tcli's fused loss computes the output projection's gradients during the forward pass, so compare
forward + backward across systems rather than each on its own.
With --precision bf16, the forward pass and the loss run under torch.autocast(bfloat16).

Figures: target tokens are the real (non-padding) target tokens, each sentence's subwords plus
EOS. tokens/s, ms/step, the phases and the model FLOP/s are medians over the timed steps of all
rounds; padding is the share of padded positions among all positions of both sides; peak RSS is
the largest of the child's rounds (a whole process: Python, torch, and for C transformers).

Model FLOPs (`model_flops`) count real tokens only. With d = d_model, f = d_ff, V = the target
vocabulary, E and D the encoder and decoder layers, and S and T a pair's source and target lengths
(with EOS; with BOS for the decoder input):

    weights: 6 FLOPs (2 forward, 4 backward) per weight matrix entry per token it multiplies:
        per source token  E (4d² + 2df) + D 2d²           self-attention QKV and output, FFN;
                                                           cross-attention K and V
        per target token  D (4d² + 2d² + 2df) + dV        self-attention; cross-attention Q and
                                                           output; FFN; output projection
    attention: 4d FLOPs forward per query-key pair per layer (2d for the score QKᵀ, 2d for the
        weighted sum of V), x3 for forward and backward, over the pairs a model needs:
        encoder self-attention E S², decoder self-attention (causal) D T(T+1)/2, cross D T S

Not counted: biases, embedding lookups, softmax, layer norms, dropout, the loss, the optimizer,
and whatever an implementation computes for padded or masked-out positions. MFU is the median
model FLOP/s over the fp32 peak: the best torch.mm GFLOP/s of square fp32 matrices (1024 and
2048) on the same threads and device, measured before and after the race, the larger one used.
bf16 rows also get an MFU over the bf16 peak, measured where the device has native bf16.
"""

import argparse
import datetime
import importlib.util
import itertools
import json
import math
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from transformer_cli.config import Config, ModelConfig, load_config, validate_config
from transformer_cli.data.batching import Batch, TokenBatchSampler, padding_fraction
from transformer_cli.data.cache import EncodedCorpus
from transformer_cli.data.corpus import count_pairs
from transformer_cli.data.tokenizer import BOS_ID, EOS_ID, PAD_ID, Tokenizers
from transformer_cli.device import resolve_device
from transformer_cli.loss import sequence_loss
from transformer_cli.train import _encoded_corpus, _make_tokenizers
from transformer_cli.translator import build_model

SYSTEMS = {
    "tcli": "tcli's step, tcli's bucketed batches",
    "A": "tutorial nn.Transformer loop, random batches",
    "B": "tutorial nn.Transformer loop, tcli's batches",
    "C": "Hugging Face MarianMTModel, B's loop, tcli's batches",
}
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}
PHASES = ("data", "forward", "backward", "optimizer")
MATMUL_SIZES = (1024, 2048)
OPTIONS = ("config", "data", "steps", "rounds", "warmup", "precision", "systems", "device")
CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni")


def main() -> None:
    args = parse_args()
    if args.only:  # a child: one system, one round, figures as JSON on stdout
        print(json.dumps(measure(args)))
    else:
        race(args)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/toy.yaml", help="model size and data")
    parser.add_argument("--data", help="take the data and tokenizer sections of this config")
    parser.add_argument("--steps", type=int, default=30, help="timed steps per system and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps before each run")
    parser.add_argument("--precision", default="fp32", help="comma-separated: fp32,bf16")
    parser.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated subset")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", help="write every figure to this file")
    # What the parent tells a child: the system, the round, the data directory, the threads.
    parser.add_argument("--only", choices=SYSTEMS, help=argparse.SUPPRESS)
    parser.add_argument("--round", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.systems = _choices(parser, "--systems", args.systems, SYSTEMS)
    args.precision = _choices(parser, "--precision", args.precision, PRECISIONS)
    return args


def _choices(parser: argparse.ArgumentParser, flag: str, value: str, known: dict) -> list[str]:
    """The comma-separated names in `value`, in `known`'s order; an error for unknown ones."""
    names = {name.strip() for name in value.split(",")} - {""}
    if not names or names - known.keys():
        parser.error(f"{flag}: expected some of {', '.join(known)}, separated by commas")
    return [name for name in known if name in names]


def race_config(path: str, data: str | None) -> Config:
    """The config at `path`, with the data and tokenizer sections of the config `data` if given."""
    config = load_config(path)
    if data is None:
        return config
    raw, other = config.model_dump(mode="json"), load_config(data).model_dump(mode="json")
    raw["data"], raw["tokenizer"] = other["data"], other["tokenizer"]
    return validate_config(raw, source=f"{path} with the data of {data}")


# ---- the parent: data, peak, children, table ----------------------------------------------------


def race(args: argparse.Namespace) -> None:
    config = race_config(args.config, args.data)
    device = resolve_device(args.device)
    if "C" in args.systems and importlib.util.find_spec("transformers") is None:
        print(
            "note: transformers is not installed, so C (Marian) is skipped; install the bench extra"
        )
        args.systems.remove("C")
    environment = describe_environment(device)
    print_environment(environment)
    with tempfile.TemporaryDirectory() as workdir:
        tokenizers, corpus = prepare_data(config, Path(workdir))
        data = describe_data(config, tokenizers, corpus)
        peaks = {"before": matmul_peaks(device)}
        runs = []
        for round_, precision, system in itertools.product(
            range(args.rounds), args.precision, args.systems
        ):
            runs.append(run_child(args, system, precision, round_, workdir))
            milliseconds = 1000 * statistics.median(_step_seconds(runs[-1]["steps"]))
            name = row_name(system, precision)
            print(f"round {round_ + 1}: {name} {milliseconds:.1f} ms/step", file=sys.stderr)
        peaks["after"] = matmul_peaks(device)
    peaks["used"] = {
        dtype: max(peaks["before"][dtype], peaks["after"][dtype]) for dtype in peaks["before"]
    }
    rows = summarise(runs, peaks["used"])
    print_report(config, data, peaks, rows, args)
    if args.json:
        figures = {
            "environment": environment,
            "config": config.model_dump(mode="json"),
            "options": {k: getattr(args, k) for k in OPTIONS},
            "data": data,
            "matmul_peak_gflops": peaks,
            "rows": rows,
            "runs": runs,
        }
        Path(args.json).write_text(json.dumps(figures, indent=1) + "\n")
        print(f"\nEvery figure: {args.json}")


def describe_environment(device: torch.device) -> dict:
    """CPU model and flags, torch, threads, date and command line."""
    fields: dict[str, str] = {}  # the first processor's /proc/cpuinfo (Linux)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    cpu = fields.get("model name") or platform.processor() or "unknown"
    flags = [f for f in fields.get("flags", "").split() if f in CPU_FLAGS or f.startswith("amx")]
    environment = {
        "cpu": cpu,
        "cpu_flags": flags,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": str(device),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": shlex.join(sys.orig_argv),
    }
    if device.type == "cuda":
        environment["gpu"] = torch.cuda.get_device_name(device)
    return environment


def prepare_data(config: Config, workdir: Path) -> tuple[Tokenizers, EncodedCorpus]:
    """Train the tokenizer and encode the training data into `workdir`, as `tcli train` does."""
    pairs = count_pairs(config.data.train, "data.train")
    tokenizers = _make_tokenizers(config, workdir, pairs)
    return tokenizers, _encoded_corpus(config, tokenizers, workdir, pairs)


def load_data(config: Config, workdir: Path) -> tuple[Tokenizers, EncodedCorpus]:
    """The tokenizers and the encoded corpus that `prepare_data` left in `workdir`."""
    tokenizers = Tokenizers.load(workdir)
    return tokenizers, _encoded_corpus(config, tokenizers, workdir)


def describe_data(config: Config, tokenizers: Tokenizers, corpus: EncodedCorpus) -> dict:
    """The corpus and one epoch of tcli's batches, and A's batch size."""
    epoch = bucketed_batches(corpus, config)(0)
    return {
        "pairs": len(corpus),
        "vocab": [tokenizers.source.vocab_size, tokenizers.target.vocab_size],
        "tcli_batches_per_epoch": len(epoch),
        "tcli_mean_sentences_per_batch": len(corpus) / len(epoch),
        "tcli_mean_tgt_tokens_per_batch": float(corpus.tgt_lengths.sum() + len(corpus))
        / len(epoch),
        "tcli_epoch_padding": padding_fraction(epoch, corpus.src_lengths, corpus.tgt_lengths),
        "A_sentences_per_batch": sentences_per_batch(corpus, config),
    }


def run_child(
    args: argparse.Namespace, system: str, precision: str, round_: int, workdir: str
) -> dict:
    """One system's round in a fresh process (this script with --only); its figures."""
    data = ["--data", args.data] if args.data else []
    command = [sys.executable, __file__, "--config", args.config, *data, "--device", args.device]
    command += ["--steps", str(args.steps), "--warmup", str(args.warmup), "--precision", precision]
    command += ["--only", system, "--round", str(round_), "--workdir", workdir]
    command += ["--threads", str(torch.get_num_threads())]
    result = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(result.stdout.splitlines()[-1])


def matmul_peaks(device: torch.device) -> dict[str, float]:
    """torch.mm GFLOP/s in fp32, and in bf16 where the device has native bf16."""
    peaks = {"fp32": matmul_gflops(torch.float32, device)}
    native_bf16 = device.type == "cuda" or any(
        getattr(torch.cpu, check, lambda: False)()
        for check in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    )
    if native_bf16:
        peaks["bf16"] = matmul_gflops(torch.bfloat16, device)
    return peaks


def matmul_gflops(dtype: torch.dtype, device: torch.device, seconds: float = 0.5) -> float:
    """The best GFLOP/s of one torch.mm of square matrices of MATMUL_SIZES."""
    best = 0.0
    for n in MATMUL_SIZES:
        a, b = (torch.randn(n, n, device=device).to(dtype) for _ in range(2))
        out = torch.mm(a, b)  # warm-up
        start = clock(device)
        for repeat in itertools.count():
            begin = clock(device)
            torch.mm(a, b, out=out)
            end = clock(device)
            best = max(best, 2 * n**3 / (end - begin) / 1e9)
            if repeat >= 2 and end - start > seconds:
                break
    return best


def _step_seconds(steps: list[dict]) -> list[float]:
    return [sum(step[phase] for phase in PHASES) for step in steps]


def _median_rate(steps: list[dict], seconds: list[float], key: str) -> float:
    """The median over steps of step[key] per second."""
    return statistics.median(step[key] / t for step, t in zip(steps, seconds, strict=True))


def row_name(system: str, precision: str) -> str:
    return system if precision == "fp32" else f"{system} {precision}"


def summarise(runs: list[dict], peak: dict[str, float]) -> list[dict]:
    """One row per system and precision: medians over the steps of all its rounds."""
    rows = []
    for precision, system in itertools.product(PRECISIONS, SYSTEMS):
        group = [r for r in runs if r["system"] == system and r["precision"] == precision]
        if not group:
            continue
        steps = [step for run in group for step in run["steps"]]
        seconds = _step_seconds(steps)

        flops_per_s = _median_rate(steps, seconds, "flops")
        row = {
            "name": row_name(system, precision),
            "system": system,
            "precision": precision,
            "tgt_tokens_per_s": _median_rate(steps, seconds, "tgt_tokens"),
            "ms_per_step": 1000 * statistics.median(seconds),
            "phase_ms": {p: 1000 * statistics.median(s[p] for s in steps) for p in PHASES},
            "padding": statistics.mean(run["padding"] for run in group),
            "mean_tgt_tokens_per_batch": statistics.mean(s["tgt_tokens"] for s in steps),
            "mean_sentences_per_batch": statistics.mean(s["sentences"] for s in steps),
            "model_gflops_per_s": flops_per_s / 1e9,
            "mfu_fp32": flops_per_s / (peak["fp32"] * 1e9),
            "peak_rss_mib": max(run["peak_rss_mib"] for run in group),
            "parameters": group[0]["parameters"],
        }
        if precision != "fp32" and precision in peak:
            row[f"mfu_{precision}"] = flops_per_s / (peak[precision] * 1e9)
        rows.append(row)
    for row in rows:
        tcli = next((r for r in rows if r["name"] == row_name("tcli", row["precision"])), None)
        row["tcli_speedup"] = tcli["tgt_tokens_per_s"] / row["tgt_tokens_per_s"] if tcli else None
    return rows


def print_environment(environment: dict) -> None:
    flags = " ".join(environment["cpu_flags"]) or "none of " + ", ".join(CPU_FLAGS)
    gpu = f" ({environment['gpu']})" if "gpu" in environment else ""
    print(f"CPU: {environment['cpu']}; flags: {flags}")
    print(
        f"torch {environment['torch']}, {environment['threads']} threads, "
        f"device {environment['device']}{gpu}; {environment['date']}"
    )
    print(f"command: {environment['command']}\n")


def print_report(
    config: Config, data: dict, peaks: dict, rows: list[dict], args: argparse.Namespace
) -> None:
    m, vocab = config.model, "/".join(map(str, sorted(set(data["vocab"]))))
    print(
        f"model: d_model {m.d_model}, {m.n_heads} heads, {m.n_encoder_layers} + "
        f"{m.n_decoder_layers} layers, d_ff {m.d_ff}, dropout {m.dropout}; vocabulary {vocab}; "
        f"{data['pairs']:,} training pairs ({args.data or args.config})"
    )
    print(
        f"tcli's batches: {data['tcli_batches_per_epoch']} per epoch of at most "
        f"{config.train.batch_tokens} tokens, on average "
        f"{data['tcli_mean_sentences_per_batch']:.1f} sentences and "
        f"{data['tcli_mean_tgt_tokens_per_batch']:,.0f} target tokens, "
        f"{100 * data['tcli_epoch_padding']:.1f}% padding"
    )
    print(
        f"A's batches: {data['A_sentences_per_batch']} random sentences (training pairs / tcli's "
        "batches per epoch: the same mean number of target tokens per batch)"
    )
    for dtype, used in peaks["used"].items():
        print(
            f"{dtype} torch.mm peak: {peaks['before'][dtype]:,.1f} GFLOP/s before the race, "
            f"{peaks['after'][dtype]:,.1f} after; MFU is relative to {used:,.1f}"
        )
    print(
        f"medians over {args.rounds} rounds x {args.steps} timed steps after {args.warmup} "
        "warm-up steps; tcli ÷ this: tcli's tokens/s (same precision) over this row's\n"
    )
    for system in args.systems:
        print(f"- {system}: {SYSTEMS[system]}")
    with_bf16 = any("mfu_bf16" in row for row in rows)
    columns = ["system", "non-pad tgt tok/s", "ms/step", "padding %", "data / fwd / bwd / opt ms"]
    columns += ["MFU % of fp32 peak", *(["MFU % of bf16 peak"] if with_bf16 else [])]
    columns += ["peak RSS MiB", "tcli ÷ this"]
    print("\n" + markdown_row(columns))
    print(markdown_row(["---"] * len(columns)))
    for row in rows:
        cells = [row["name"], f"{row['tgt_tokens_per_s']:,.0f}", f"{row['ms_per_step']:.1f}"]
        cells.append(f"{100 * row['padding']:.1f}")
        cells.append(" / ".join(f"{row['phase_ms'][phase]:.1f}" for phase in PHASES))
        cells.append(f"{100 * row['mfu_fp32']:.1f}")
        if with_bf16:
            cells.append(f"{100 * row['mfu_bf16']:.1f}" if "mfu_bf16" in row else "–")
        cells.append(f"{row['peak_rss_mib']:,.0f}")
        cells.append(f"{row['tcli_speedup']:.2f}x" if row["tcli_speedup"] else "–")
        print(markdown_row(cells))
    print()
    for row in rows:
        print(
            f"{row['name']}: {row['parameters'] / 1e6:.2f}M parameters; per timed batch on average "
            f"{row['mean_sentences_per_batch']:.1f} sentences, "
            f"{row['mean_tgt_tokens_per_batch']:,.0f} target tokens; "
            f"{row['model_gflops_per_s']:.1f} model GFLOP/s"
        )


def markdown_row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


# ---- a child: one system, one round -------------------------------------------------------------


def measure(args: argparse.Namespace) -> dict:
    """Train `args.only` for its round's warm-up and timed steps; the figures."""
    torch.set_num_threads(args.threads)
    config = race_config(args.config, args.data)
    device = resolve_device(args.device)
    tokenizers, corpus = load_data(config, Path(args.workdir))
    torch.manual_seed(config.train.seed)
    contestant = BUILDERS[args.only](config, tokenizers, device)
    epochs = random_batches if args.only == "A" else bucketed_batches
    batches = round_batches(epochs(corpus, config), args.round, args.warmup + args.steps)
    dtype = PRECISIONS[args.precision[0]]
    for rows in batches[: args.warmup]:
        timed_step(contestant, corpus, rows, device, dtype)
    timed, steps = batches[args.warmup :], []
    vocab = tokenizers.target.vocab_size
    for rows in timed:
        times = timed_step(contestant, corpus, rows, device, dtype)
        src, tgt = corpus.src_lengths[rows] + 1, corpus.tgt_lengths[rows] + 1  # with EOS
        flops = model_flops(src, tgt, config.model, vocab)
        steps.append(
            {**times, "sentences": len(rows), "tgt_tokens": int(tgt.sum()), "flops": flops}
        )
    return {
        "system": args.only,
        "precision": args.precision[0],
        "round": args.round,
        "parameters": sum(p.numel() for p in contestant.model.parameters() if p.requires_grad),
        "padding": padding_fraction(timed, corpus.src_lengths, corpus.tgt_lengths),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # KiB on Linux
        "steps": steps,
    }


def bucketed_batches(corpus: EncodedCorpus, config: Config) -> Callable[[int], list[np.ndarray]]:
    """tcli's batches of each epoch."""
    lengths = corpus.pair_lengths()
    return TokenBatchSampler(lengths, config.train.batch_tokens, seed=config.train.seed).batches


def sentences_per_batch(corpus: EncodedCorpus, config: Config) -> int:
    """A's batch size: tcli's mean sentences per batch, for tcli's mean target tokens per batch."""
    return max(round(len(corpus) / len(bucketed_batches(corpus, config)(0))), 1)


def random_batches(corpus: EncodedCorpus, config: Config) -> Callable[[int], list[np.ndarray]]:
    """A's batches of each epoch: the shuffled pairs cut into batches of equal size."""
    pairs, size = len(corpus), sentences_per_batch(corpus, config)

    def epoch(number: int) -> list[np.ndarray]:
        order = np.random.default_rng([config.train.seed, number]).permutation(pairs)
        return [order[start : start + size] for start in range(0, pairs - size + 1, size)]

    return epoch


def round_batches(
    epochs: Callable[[int], list[np.ndarray]], round_: int, count: int
) -> list[np.ndarray]:
    """The `count` batches of round `round_` (from 0) of the endless sequence of epochs."""
    stream = itertools.chain.from_iterable(map(epochs, itertools.count()))
    return list(itertools.islice(stream, round_ * count, (round_ + 1) * count))


def model_flops(
    src_lengths: np.ndarray, tgt_lengths: np.ndarray, model_config: ModelConfig, vocab: int
) -> float:
    """Training FLOPs (forward and backward) of pairs with these real lengths, summed over the
    pairs; the formula is in the module docstring."""
    d, f = model_config.d_model, model_config.d_ff
    enc, dec = model_config.n_encoder_layers, model_config.n_decoder_layers
    s, t = np.asarray(src_lengths, np.float64), np.asarray(tgt_lengths, np.float64)
    per_src_token = enc * (4 * d * d + 2 * d * f) + dec * 2 * d * d
    per_tgt_token = dec * (6 * d * d + 2 * d * f) + d * vocab
    query_key_pairs = enc * s**2 + dec * (t * (t + 1) / 2 + t * s)
    weights = 6 * (per_src_token * s.sum() + per_tgt_token * t.sum())
    return float(weights + 3 * 4 * d * query_key_pairs.sum())


# ---- the systems --------------------------------------------------------------------------------


@dataclass
class Contestant:
    """A model, its loss per real target token, its optimizer and gradient clipping."""

    model: nn.Module
    loss: Callable[[Batch, torch.dtype | None], Tensor]  # (batch, compute dtype) -> mean loss
    optimizer: torch.optim.Optimizer
    clip_norm: float | None = None


def clock(device: torch.device) -> float:
    """time.perf_counter() once the device has finished its queued work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def timed_step(
    contestant: Contestant,
    corpus: EncodedCorpus,
    rows: np.ndarray,
    device: torch.device,
    dtype: torch.dtype | None,
) -> dict[str, float]:
    """One training step on the pairs `rows`: seconds of each of PHASES."""
    times = [clock(device)]
    batch = corpus.batch(rows).to(device)
    times.append(clock(device))
    with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
        loss = contestant.loss(batch, dtype)
    times.append(clock(device))
    loss.backward()
    times.append(clock(device))
    if contestant.clip_norm is not None:
        nn.utils.clip_grad_norm_(contestant.model.parameters(), contestant.clip_norm)
    contestant.optimizer.step()
    contestant.optimizer.zero_grad(set_to_none=True)
    times.append(clock(device))
    return dict(zip(PHASES, np.diff(times).tolist(), strict=True))


def make_optimizer(model: nn.Module) -> torch.optim.Optimizer:
    """tcli's optimizer in the race."""
    return torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.9, 0.98), eps=1e-9, fused=True)


def tcli(config: Config, tokenizers: Tokenizers, device: torch.device) -> Contestant:
    model = build_model(config, tokenizers).to(device).train()
    smoothing = config.train.label_smoothing

    def loss(batch: Batch, dtype: torch.dtype | None) -> Tensor:
        return sequence_loss(model, batch, smoothing, compute_dtype=dtype) / batch.n_tgt_tokens

    return Contestant(model, loss, make_optimizer(model), clip_norm=1.0)


def tutorial_loop(model: nn.Module, config: Config, device: torch.device) -> Contestant:
    """The tutorial's loss and optimizer around a model mapping (src, tgt_in) to logits."""
    model.to(device).train()
    criterion = nn.CrossEntropyLoss(
        ignore_index=PAD_ID, label_smoothing=config.train.label_smoothing
    )

    def loss(batch: Batch, dtype: torch.dtype | None) -> Tensor:
        logits = model(batch.src, batch.tgt_in)
        return criterion(logits.reshape(-1, logits.shape[-1]), batch.tgt_out.reshape(-1))

    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.9, 0.98), eps=1e-9)
    return Contestant(model, loss, optimizer)


class PositionalEncoding(nn.Module):
    """The tutorial's sinusoidal positions with dropout (batch first)."""

    def __init__(self, d_model: int, dropout: float, max_len: int = 5000) -> None:
        super().__init__()
        rates = torch.exp(-torch.arange(0, d_model, 2) * math.log(10000) / d_model)
        angles = torch.arange(max_len)[:, None] * rates
        table = torch.zeros(max_len, d_model)
        table[:, 0::2], table[:, 1::2] = torch.sin(angles), torch.cos(angles)
        self.dropout = nn.Dropout(dropout)
        self.register_buffer("table", table[None])

    def forward(self, embeddings: Tensor) -> Tensor:
        return self.dropout(embeddings + self.table[:, : embeddings.size(1)])


class TutorialTransformer(nn.Module):
    """The tutorial's Seq2SeqTransformer around torch.nn.Transformer, batch first."""

    def __init__(self, m: ModelConfig, src_vocab: int, tgt_vocab: int) -> None:
        super().__init__()
        self.d_model = m.d_model
        self.src_tok_emb = nn.Embedding(src_vocab, m.d_model)
        self.tgt_tok_emb = nn.Embedding(tgt_vocab, m.d_model)
        self.positional_encoding = PositionalEncoding(m.d_model, m.dropout)
        self.transformer = nn.Transformer(
            d_model=m.d_model,
            nhead=m.n_heads,
            num_encoder_layers=m.n_encoder_layers,
            num_decoder_layers=m.n_decoder_layers,
            dim_feedforward=m.d_ff,
            dropout=m.dropout,
            batch_first=True,
            norm_first=m.norm == "pre",
        )
        self.generator = nn.Linear(m.d_model, tgt_vocab)
        for parameter in self.parameters():
            if parameter.dim() > 1:
                nn.init.xavier_uniform_(parameter)

    def forward(self, src: Tensor, tgt_in: Tensor) -> Tensor:
        scale = math.sqrt(self.d_model)
        src_emb = self.positional_encoding(self.src_tok_emb(src) * scale)
        tgt_emb = self.positional_encoding(self.tgt_tok_emb(tgt_in) * scale)
        src_len, tgt_len = src.size(1), tgt_in.size(1)
        src_mask = torch.zeros(src_len, src_len, dtype=torch.bool, device=src.device)
        tgt_mask = nn.Transformer.generate_square_subsequent_mask(tgt_len, device=src.device)
        src_padding_mask, tgt_padding_mask = src == PAD_ID, tgt_in == PAD_ID
        outs = self.transformer(
            src_emb,
            tgt_emb,
            src_mask=src_mask,
            tgt_mask=tgt_mask,
            src_key_padding_mask=src_padding_mask,
            tgt_key_padding_mask=tgt_padding_mask,
            memory_key_padding_mask=src_padding_mask,
        )
        return self.generator(outs)


def tutorial(config: Config, tokenizers: Tokenizers, device: torch.device) -> Contestant:
    # The tutorial's float causal mask beside boolean padding masks draws a deprecation warning.
    warnings.filterwarnings("ignore", "Support for mismatched key_padding_mask and attn_mask")
    vocab = (tokenizers.source.vocab_size, tokenizers.target.vocab_size)
    return tutorial_loop(TutorialTransformer(config.model, *vocab), config, device)


class MarianLogits(nn.Module):
    """MarianMTModel from (src, tgt_in) to logits, with the padding masks."""

    def __init__(self, config: Config, tokenizers: Tokenizers) -> None:
        super().__init__()
        from transformers import MarianConfig, MarianMTModel  # the optional `bench` extra

        m, tie = config.model, config.model.tie_embeddings
        self.marian = MarianMTModel(
            MarianConfig(
                vocab_size=tokenizers.source.vocab_size,
                decoder_vocab_size=tokenizers.target.vocab_size,
                share_encoder_decoder_embeddings=tie == "all",
                tie_word_embeddings=tie != "none",
                d_model=m.d_model,
                encoder_layers=m.n_encoder_layers,
                decoder_layers=m.n_decoder_layers,
                encoder_attention_heads=m.n_heads,
                decoder_attention_heads=m.n_heads,
                encoder_ffn_dim=m.d_ff,
                decoder_ffn_dim=m.d_ff,
                dropout=m.dropout,
                attention_dropout=m.dropout,
                activation_dropout=m.dropout,
                activation_function="relu",
                scale_embedding=True,
                max_position_embeddings=max(config.data.max_len + 2, 1024),
                pad_token_id=PAD_ID,
                bos_token_id=BOS_ID,
                decoder_start_token_id=BOS_ID,
                eos_token_id=EOS_ID,
                forced_eos_token_id=EOS_ID,
            )
        )

    def forward(self, src: Tensor, tgt_in: Tensor) -> Tensor:
        return self.marian(
            input_ids=src,
            attention_mask=src != PAD_ID,
            decoder_input_ids=tgt_in,
            decoder_attention_mask=tgt_in != PAD_ID,
            use_cache=False,
        ).logits


def marian(config: Config, tokenizers: Tokenizers, device: torch.device) -> Contestant:
    return tutorial_loop(MarianLogits(config, tokenizers), config, device)


BUILDERS = {"tcli": tcli, "A": tutorial, "B": tutorial, "C": marian}


if __name__ == "__main__":
    main()
