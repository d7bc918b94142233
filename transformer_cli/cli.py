"""The `tcli` command line: parses arguments and calls the library functions that do the work."""

import json
import logging
import sys
import traceback
from pathlib import Path
from typing import Annotated

import typer
from tqdm import tqdm

from transformer_cli.errors import TcliError

try:  # newer typer versions carry their own copy of click
    from typer._click import exceptions as click_exceptions
except ImportError:  # older typer runs on click itself
    from click import exceptions as click_exceptions

# Library calls are imported inside the commands, so that --help does not wait for torch.

app = typer.Typer(
    name="tcli",
    help="Train, run and score a from-scratch Transformer translation model.\n\n"
    "Add --debug anywhere to see a Python traceback instead of a one-line error.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        from transformer_cli import __version__

        print(f"tcli {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", is_eager=True, callback=_print_version, help="Print the version."
        ),
    ] = False,
) -> None:
    """Train, run and score a from-scratch Transformer translation model."""


DeviceOption = Annotated[
    str, typer.Option("--device", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps.")
]
BeamOption = Annotated[
    int | None,
    typer.Option(
        "--beam", min=1, help="Beam search with N hypotheses; 1 is greedy [default: config]."
    ),
]
GreedyOption = Annotated[
    bool, typer.Option("--greedy", help="Greedy search, whatever the config says.")
]
RunDirArgument = Annotated[
    Path, typer.Argument(metavar="RUN_DIR", help="Run directory written by tcli train.")
]
CheckpointOption = Annotated[
    str,
    typer.Option(
        "--checkpoint",
        help="best, last, a step number, a name in RUN_DIR/checkpoints (average-last-5) or a path.",
    ),
]


@app.command(
    epilog="\b\nExamples:\n  tcli train configs/toy.yaml\n"
    "  tcli train configs/toy.yaml --out runs/quick --set train.max_steps=500 --device cpu\n"
    "  tcli train --resume runs/toy --set train.max_steps=2000"
)
def train(
    config: Annotated[
        Path | None,
        typer.Argument(metavar="CONFIG", help="YAML config file, e.g. configs/toy.yaml."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Run directory [default: runs/CONFIG_NAME].")
    ] = None,
    resume: Annotated[
        Path | None,
        typer.Option(
            "--resume", metavar="RUN_DIR", help="Continue this run from its last checkpoint."
        ),
    ] = None,
    device: DeviceOption = "auto",
    overrides: Annotated[
        list[str] | None,
        typer.Option("--set", metavar="KEY=VALUE", help="Override a config key (repeatable)."),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace RUN_DIR if it already holds a run.")
    ] = False,
    nproc: Annotated[
        int | None,
        typer.Option(
            "--nproc",
            min=1,
            help="Train with N processes on this machine (as torchrun --standalone "
            "--nproc_per_node N does); batch_tokens is per process.",
        ),
    ] = None,
) -> None:
    """Train a model (SentencePiece, then the Transformer, validating as it goes), or resume one.

    Ctrl-C (or SIGTERM) stops after the current step and saves a checkpoint; a second Ctrl-C
    aborts at once.
    """
    from transformer_cli.train import train_command

    if resume is not None:
        if config is not None or out is not None or overwrite:
            raise TcliError("--resume continues a run with its saved config: give no CONFIG, --out "
                            "or --overwrite (change settings with --set)")  # fmt: skip
    elif config is None:
        raise TcliError("give a CONFIG to train, or --resume RUN_DIR to continue a run")
    train_command(config, out, resume, device, overrides or [], overwrite, nproc)


@app.command(
    epilog="\b\nExamples:\n  echo 'The dog sees the cat.' | tcli translate runs/toy\n"
    "  tcli translate runs/toy --input test.en --output test.hyp.de --beam 5\n"
    "  tcli translate runs/toy --input test.en --nbest 3\n"
    "  tcli translate runs/toy --input test.en --score test.de"
)
def translate(
    run_dir: RunDirArgument,
    input: Annotated[str, typer.Option("--input", help="File to translate, or - for stdin.")] = "-",
    output: Annotated[str, typer.Option("--output", help="Output file, or - for stdout.")] = "-",
    device: DeviceOption = "auto",
    checkpoint: CheckpointOption = "best",
    batch_size: Annotated[
        int | None,
        typer.Option("--batch-size", min=1, help="Sentences per batch [default: config]."),
    ] = None,
    batch_tokens: Annotated[
        int | None,
        typer.Option(
            "--batch-tokens",
            min=1,
            help="Sentences x longest source x beam width per batch, at most [default: config].",
        ),
    ] = None,
    beam: BeamOption = None,
    greedy: GreedyOption = False,
    nbest: Annotated[
        int | None,
        typer.Option(
            "--nbest",
            min=1,
            help="Print the K best translations of each line (beam search), one per line, as "
            "'LINE ||| TRANSLATION ||| SCORE' (LINE counts from 0).",
        ),
    ] = None,
    score: Annotated[
        Path | None,
        typer.Option(
            "--score",
            metavar="TARGETS",
            help="Do not translate: print the model's log-probability of each line of TARGETS "
            "given the input line (force decoding).",
        ),
    ] = None,
    attention: Annotated[
        Path | None,
        typer.Option(
            "--attention",
            metavar="OUT_DIR",
            help="Also write each line's attention weights to OUT_DIR: LINE.KIND.png, a heatmap "
            "labelled with the subword pieces, and LINE.KIND.json, the numbers (needs the 'plot' "
            "extra).",
        ),
    ] = None,
    attention_kind: Annotated[
        str,
        typer.Option(
            "--attention-kind",
            help="cross (output over source), encoder (source over source) or decoder (output "
            "over earlier output).",
        ),
    ] = "cross",
    layer: Annotated[
        int | None,
        typer.Option("--layer", help="The layer to show, from 1 [default: the last]."),
    ] = None,
    head: Annotated[
        str, typer.Option("--head", help="mean (of all heads), all (one panel each), or 1..H.")
    ] = "mean",
) -> None:
    """Translate one sentence a line, keeping line count and order."""
    from transformer_cli.attention_maps import KINDS, check_selection, translate_with_attention
    from transformer_cli.files import atomic_write_text
    from transformer_cli.translator import load_run, read_input, score_input, translate_input

    if score is not None and (beam or nbest or greedy):
        raise TcliError(
            "--score force-decodes given targets: it takes no --beam, --greedy or --nbest"
        )
    if greedy and nbest:
        raise TcliError("--nbest lists beam search's best translations: it takes no --greedy")
    if attention is not None and (score is not None or nbest):
        raise TcliError("--attention shows the best translation's weights: no --score or --nbest")
    if attention is not None and attention.exists() and not attention.is_dir():
        raise TcliError(f"--attention {attention} is a file; give a directory")
    if attention_kind not in KINDS:
        raise TcliError(f"--attention-kind {attention_kind}: choose one of {', '.join(KINDS)}")
    if output != "-":  # say so now, not after translating everything
        _check_output_file(Path(output))
    run = load_run(run_dir, device, checkpoint)
    if attention is not None:  # a missing extra or a wrong layer is said before translating
        check_selection(run.model, attention_kind, layer, head)
    run = run.with_search(beam, greedy).with_batches(batch_size, batch_tokens)
    if attention is not None:
        lines = list(read_input(input))  # a progress bar for a file, as translate_input shows
        results = translate_with_attention(
            run, lines, attention, attention_kind, layer, head, progress=input != "-"
        )
    elif score is not None:
        results = [f"{value:.4f}" for value in score_input(run, score, input)]
    else:
        results = translate_input(run, input, nbest)
    if output == "-":
        for line in results:  # UTF-8 whatever the locale, as the output files are
            sys.stdout.buffer.write(f"{line}\n".encode())
            sys.stdout.buffer.flush()
    else:
        atomic_write_text(output, "".join(f"{line}\n" for line in results))


def _check_output_file(path: Path) -> None:
    """--output names a file that can be written: not a folder, in a folder that exists (tcli
    creates no folders the user did not ask for)."""
    if path.is_dir():
        raise TcliError(f"--output {path} is a directory; give a file name")
    folder = path.parent
    if not folder.is_dir():
        what = "is a file, not a folder" if folder.exists() else "does not exist"
        raise TcliError(f"--output {path}: {folder} {what}")


@app.command(
    name="eval",
    epilog="\b\nExamples:\n  tcli eval runs/toy\n"
    "  tcli eval runs/toy --src valid.en --ref valid.de --json\n"
    "  tcli eval runs/toy --beam 5\n"
    "  tcli eval runs/toy --greedy\n"
    "  tcli eval --hyp test.hyp.de --ref data/toy-en-de/test.de",
)
def evaluate(
    run_dir: Annotated[
        Path | None,
        typer.Argument(metavar="RUN_DIR", help="Run directory; omit to score --hyp against --ref."),
    ] = None,
    src: Annotated[
        Path | None, typer.Option("--src", help="Source file [default: config's test set].")
    ] = None,
    ref: Annotated[Path | None, typer.Option("--ref", help="Reference translations.")] = None,
    hyp: Annotated[
        Path | None, typer.Option("--hyp", help="Existing translations to score.")
    ] = None,
    device: DeviceOption = "auto",
    checkpoint: CheckpointOption = "best",
    beam: BeamOption = None,
    greedy: GreedyOption = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    bleu_tokenize: Annotated[
        str | None,
        typer.Option(
            "--bleu-tokenize",
            help="sacreBLEU's BLEU tokenizer (13a, intl, zh, ja-mecab, ko-mecab, char, ...) "
            "[default: eval.bleu_tokenize, else sacreBLEU's choice for the target language; "
            "13a with --hyp].",
        ),
    ] = None,
) -> None:
    """Score translations with sacreBLEU: BLEU and chrF with their signatures."""
    from transformer_cli.config import ParallelFiles
    from transformer_cli.evaluate import evaluate_run, score_files
    from transformer_cli.translator import load_run

    if hyp is not None:
        if run_dir is not None or src is not None or ref is None:
            raise TcliError(
                "--hyp scores existing output: use it with --ref only, e.g. "
                "tcli eval --hyp out.de --ref ref.de"
            )
        scores = score_files(hyp, ref, bleu_tokenize or "13a")
    else:
        if run_dir is None:
            raise TcliError("give a RUN_DIR to translate and score, or --hyp FILE --ref FILE")
        if (src is None) != (ref is None):
            raise TcliError("--src and --ref go together (omit both to use the config's test set)")
        run = load_run(run_dir, device, checkpoint).with_search(beam, greedy)
        files = None if src is None else ParallelFiles(src=str(src), tgt=str(ref))
        scores = evaluate_run(run, files, bleu_tokenize)
    if as_json:
        print(json.dumps(scores.as_dict()))
    else:
        print(scores.bleu_details)
        print(scores.chrf_details)
        print(f"BLEU signature: {scores.bleu_signature}")
        print(f"chrF signature: {scores.chrf_signature}")


@app.command(
    epilog="\b\nExamples:\n  tcli explain\n  tcli explain --topic masks --out pictures\n"
    "  tcli explain runs/toy --text 'The dog sees the cat.' --head 2"
)
def explain(
    run_dir: Annotated[
        Path | None,
        typer.Argument(
            metavar="RUN_DIR", help="A trained run to look inside; omit for the small examples."
        ),
    ] = None,
    topic: Annotated[
        str,
        typer.Option("--topic", help="attention, multihead, masks, positions or image."),
    ] = "attention",
    text: Annotated[
        str | None, typer.Option("--text", help="With RUN_DIR: the sentence to look at.")
    ] = None,
    head: Annotated[int, typer.Option("--head", min=1, help="With RUN_DIR: the head.")] = 1,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", help="Folder for the pictures [default: explain, or RUN_DIR/explain]."
        ),
    ] = None,
    device: DeviceOption = "auto",
    checkpoint: CheckpointOption = "best",
) -> None:
    """Attention step by step, every number computed by the model's own code.

    Without RUN_DIR: scaled dot-product attention on the illustrated guides' three-input example
    and what five common mistakes would compute instead (--topic attention); the split and merge
    of multi-head attention (multihead); the padding and causal masks (masks); sinusoidal
    positions (positions); 2-D self-attention over a feature map (image). With RUN_DIR and
    --text: one head of the model's first encoder layer on that sentence. Pictures need the
    'plot' extra.
    """
    from transformer_cli import explain as lessons

    if run_dir is None:
        if text is not None:
            raise TcliError("--text needs a RUN_DIR to run the sentence through")
        if topic not in lessons.TOPICS:
            raise TcliError(f"--topic {topic}: choose one of {', '.join(lessons.TOPICS)}")
        print(lessons.explain_topic(topic, out or Path("explain")))
        return
    if text is None:
        raise TcliError("with a RUN_DIR, give the sentence to look at: --text 'a sentence'")
    from transformer_cli.rundir import RunDir
    from transformer_cli.translator import load_run

    run = load_run(run_dir, device, checkpoint)
    print(lessons.explain_run(run, text, head, out or RunDir(run_dir).explain))


@app.command(
    epilog="\b\nExamples:\n  tcli average runs/toy --last 5\n"
    "  tcli eval runs/toy --checkpoint average-last-5"
)
def average(
    run_dir: RunDirArgument,
    last: Annotated[
        int, typer.Option("--last", min=1, help="How many of the newest step checkpoints.")
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            dir_okay=False,
            help="Output file [default: RUN_DIR/checkpoints/average-last-N.safetensors].",
        ),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace the --out file if it exists.")
    ] = False,
) -> None:
    """Average the weights of the last N step checkpoints into one checkpoint.

    The result is used with --checkpoint by translate and eval.
    """
    from transformer_cli.checkpoint import average_last

    path = average_last(run_dir, last, out, overwrite)
    print(f"wrote {path}")


@app.command(
    epilog="\b\nExamples:\n  tcli export runs/toy --to ctranslate2 toy-ct2\n"
    "  tcli export runs/toy --to ctranslate2 toy-ct2-int8 --quantization int8"
)
def export(
    run_dir: RunDirArgument,
    out_dir: Annotated[
        Path, typer.Argument(metavar="OUT_DIR", help="Directory to write the exported model to.")
    ],
    to: Annotated[
        str, typer.Option("--to", help="Target format; ctranslate2 is the one there is.")
    ] = "ctranslate2",
    quantization: Annotated[
        str,
        typer.Option(
            "--quantization",
            help="Weights as float32, int8, int8_float32, int16, float16 or bfloat16.",
        ),
    ] = "float32",
    checkpoint: CheckpointOption = "best",
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace OUT_DIR if it exists.")
    ] = False,
) -> None:
    """Export a trained model to serve it with another engine (CTranslate2).

    Needs the optional extra: pip install 'transformer-cli[ctranslate2]'.
    """
    from transformer_cli.export import export_ctranslate2
    from transformer_cli.translator import load_run

    if to != "ctranslate2":
        raise TcliError(f"--to {to}: the one export format is ctranslate2")
    run = load_run(run_dir, "cpu", checkpoint)
    path = export_ctranslate2(run.model, run.tokenizers, out_dir, quantization, overwrite)
    print(f"wrote {path} (CTranslate2, {quantization}); see transformer_cli/export.py for use")


@app.command(
    epilog="\b\nExamples:\n  tcli plot runs/toy\n"
    "  tcli plot runs/toy --minutes --out toy-minutes.png\n"
    "  tcli plot runs/tuned=tuned runs/peer=peers --minutes --out budget-runs.png"
)
def plot(
    runs: Annotated[
        list[str],
        typer.Argument(
            metavar="RUN_DIR[=LABEL]",
            help="Run directories, also of runs still training; LABEL names a run in the legend "
            "[default: its directory name].",
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            dir_okay=False,
            help="PNG file to write [default: RUN_DIR/curves.png; required with several runs].",
        ),
    ] = None,
    minutes: Annotated[
        bool, typer.Option("--minutes", help="Minutes of training on the x axis, not steps.")
    ] = False,
) -> None:
    """Draw training curves from metrics.jsonl as one PNG, several runs in one figure.

    Panels: training loss, validation loss and perplexity, validation BLEU and chrF, learning
    rate and target tokens per second. Needs the optional extra: pip install
    'transformer-cli[plot]'.
    """
    from transformer_cli.curves import parse_run, plot_training_curves

    path = plot_training_curves([parse_run(spec) for spec in runs], out, minutes)
    print(f"wrote {path}")


# click 8.2 and later raise this for a bare `tcli`; older ones print the help and exit 0
_NO_ARGS_IS_HELP = getattr(click_exceptions, "NoArgsIsHelpError", ())


class _TqdmHandler(logging.Handler):
    """Log lines that do not break the progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        tqdm.write(self.format(record), file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `tcli` script: one-line errors (tracebacks with --debug), exit code 2."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    args = [arg for arg in args if arg != "--debug"]
    handler = _TqdmHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    logging.getLogger("transformer_cli").addHandler(handler)
    logging.getLogger("transformer_cli").setLevel(logging.INFO)
    try:
        # not standalone: typer's usage errors come here, to be told in one line like ours
        exit_code = app(args, prog_name="tcli", standalone_mode=False)
    except TcliError as err:
        if debug:  # the traceback instead of the line, but the same exit code
            traceback.print_exc()
        else:
            print(f"tcli: {err.prefix}{err}", file=sys.stderr)
        sys.exit(err.exit_code)
    except click_exceptions.UsageError as err:  # a bad flag or value
        if debug:
            traceback.print_exc()
            sys.exit(2)
        if isinstance(err, _NO_ARGS_IS_HELP):  # bare `tcli`: the help is the message
            print(err.format_message(), file=sys.stderr)
            sys.exit(2)
        print(
            f"tcli: error: {err.format_message()} (see: {err.ctx.command_path} --help)",
            file=sys.stderr,
        )
        sys.exit(2)
    sys.exit(exit_code or 0)
