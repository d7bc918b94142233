"""The Translator, which turns sentences into translations; building its network from a config
and loading it from a run directory (see rundir.py: nothing needs the original config file);
translating a file or a stream of lines, as `tcli translate` does.
"""

import dataclasses
import itertools
import logging
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import torch
from tqdm import tqdm

from transformer_cli.checkpoint import load_weights, resolve_checkpoint
from transformer_cli.config import Config, DecodeConfig
from transformer_cli.data.batching import source_tensor
from transformer_cli.data.corpus import decode_lines, first_line_numbers, read_lines
from transformer_cli.data.tokenizer import PAD_ID, Tokenizers
from transformer_cli.decode import beam_search, greedy_decode, score_targets
from transformer_cli.device import resolve_device
from transformer_cli.errors import DataError, TcliError
from transformer_cli.model import Transformer
from transformer_cli.rundir import read_config

T = TypeVar("T")
TranslatorT = TypeVar("TranslatorT", bound="Translator")

log = logging.getLogger(__name__)


@dataclass
class Translator:
    """A model with its tokenizers and decoding settings: sentences in, translations out."""

    model: Transformer
    tokenizers: Tokenizers
    decode: DecodeConfig
    device: torch.device

    def with_search(
        self: TranslatorT, beam: int | None = None, greedy: bool = False
    ) -> TranslatorT:
        """A copy that searches as asked: greedy search, or beam search with `beam` hypotheses
        (1 is greedy search); neither keeps `decode.strategy` and `decode.beam_size`."""
        if greedy and beam is not None:
            raise TcliError("--greedy and --beam exclude each other (--beam 1 is greedy search)")
        if greedy:
            return self._with_decode(strategy="greedy")
        if beam is not None:
            return self._with_decode(strategy="beam", beam_size=beam)
        return self._with_decode()

    def with_batches(
        self: TranslatorT, size: int | None = None, tokens: int | None = None
    ) -> TranslatorT:
        """A copy that decodes at most `size` sentences and `tokens` (sentences x longest source
        x beam width) a batch; None keeps `decode.batch_size` or `decode.batch_tokens`."""
        updates = {"batch_size": size, "batch_tokens": tokens}
        return self._with_decode(**{key: n for key, n in updates.items() if n is not None})

    def _with_decode(self: TranslatorT, **updates: object) -> TranslatorT:
        """A copy (sharing the model) with these `decode` settings changed."""
        return dataclasses.replace(self, decode=self.decode.model_copy(update=updates))

    def translate(
        self,
        sentences: Sequence[str],
        batch_size: int | None = None,
        progress: bool = False,
        first_line: int = 1,
    ) -> list[str]:
        """Translate each sentence (blank in, blank out); the output order is the input order.

        Greedy or beam search as `decode.strategy` says (a beam of one is greedy search). An
        over-long sentence is cut (see `encode_inputs`; `first_line` numbers the lines it names).
        """
        src_ids = self.encode_inputs(sentences, first_line)
        return self.detokenize(self.best_outputs(src_ids, batch_size, progress))

    def encode_inputs(self, sentences: Sequence[str], first_line: int = 1) -> list[list[int]]:
        """The sentences as source ids, each cut to the longest input the model takes: the
        first `decode.max_input_tokens` tokens, fewer if learned positions end sooner. One
        warning names the lines that were cut, numbering `sentences` from `first_line`."""
        src_ids = self.tokenizers.source.encode(sentences)
        limit, reason = self.decode.max_input_tokens, "decode.max_input_tokens"
        positions = self.model.max_length
        if positions is not None and positions - 1 < limit:  # - 1 for EOS
            limit, reason = positions - 1, f"learned positions, model.max_positions={positions}"
        cut = [(first_line + i, len(ids)) for i, ids in enumerate(src_ids) if len(ids) > limit]
        if len(cut) == 1:
            number, length = cut[0]
            log.warning(
                f"input line {number} has {length} tokens; translating its first {limit} ({reason})"
            )
        elif cut:
            numbers = first_line_numbers([number for number, _ in cut])
            log.warning(
                f"{len(cut)} input lines have more than {limit} tokens; translating the first "
                f"{limit} of each ({reason}): lines {numbers}"
            )
        return [ids[:limit] for ids in src_ids]

    def best_outputs(
        self, src_ids: list[list[int]], batch_size: int | None = None, progress: bool = False
    ) -> list[list[int] | None]:
        """The output ids (no BOS, no EOS) the configured search finds best for each source
        (None for an empty one)."""
        d = self.decode
        beam = d.strategy == "beam" and d.beam_size > 1
        if beam:

            def search(src: torch.Tensor, _: list[int]) -> list[list[int]]:
                best = beam_search(
                    self.model, src, d.beam_size, d.max_len_a, d.max_len_b, d.length_penalty, 1
                )
                return [hypotheses[0].tokens for hypotheses in best]
        else:

            def search(src: torch.Tensor, _: list[int]) -> list[list[int]]:
                return [h.tokens for h in greedy_decode(self.model, src, d.max_len_a, d.max_len_b)]

        return self._each_batch(src_ids, batch_size, progress, search, d.beam_size if beam else 1)

    def translate_nbest(
        self,
        sentences: Sequence[str],
        nbest: int,
        batch_size: int | None = None,
        progress: bool = False,
        first_line: int = 1,
    ) -> list[list[tuple[str, float]]]:
        """The `nbest` best distinct beam-search translations of each sentence with their scores
        (log-probability / length penalty), best first; blank sentences get none.

        Two token sequences can spell the same text (SentencePiece segments a word in more than
        one way); only the better-scoring one is kept, so for a list the search is asked for
        twice as many. Over-long sentences are cut as `translate` cuts them.
        """
        d = self.decode
        beam_size, wanted = max(d.beam_size, nbest), 1 if nbest == 1 else 2 * nbest
        hypotheses = self._each_batch(
            self.encode_inputs(sentences, first_line),
            batch_size,
            progress,
            lambda src, _: beam_search(
                self.model, src, beam_size, d.max_len_a, d.max_len_b, d.length_penalty, wanted
            ),
            beam_size,
        )
        results = []
        for hyps in hypotheses:
            distinct: dict[str, float] = {}  # best first, so the first score of a text is its best
            for text, hypothesis in zip(
                self.detokenize([h.tokens for h in hyps or []]), hyps or [], strict=True
            ):
                distinct.setdefault(text, hypothesis.score)
            results.append(list(distinct.items())[:nbest])
        return results

    def score(
        self, sources: Sequence[str], targets: Sequence[str], batch_size: int | None = None
    ) -> list[float]:
        """The model's log-probability of each target (+ EOS) given its source (force decoding);
        a blank source is scored too, as the source that is just EOS. Nothing is cut: a line
        longer than learned positions allow is an error."""
        src_ids = self.tokenizers.source.encode(sources)
        tgt_ids = self.tokenizers.target.encode(targets)
        self._check_lengths(src_ids, "input")
        self._check_lengths(tgt_ids, "target")
        scores = self._each_batch(
            src_ids,
            batch_size,
            False,
            lambda src, rows: score_targets(self.model, src, [tgt_ids[i] for i in rows]),
            width=1,
            skip_blank=False,
        )
        return [float(s) for s in scores]

    def _each_batch(
        self,
        src_ids: list[list[int]],
        batch_size: int | None,
        progress: bool,
        run: Callable[[torch.Tensor, list[int]], list[T]],
        width: int,
        skip_blank: bool = True,
    ) -> list[T | None]:
        """Call run(src tensor, sentence indices) on batches of similar-length sentences and
        return its per-sentence results in input order (None for blank sentences, unless
        `skip_blank` is False). `width`: the hypotheses per sentence (the beam size)."""
        # Sentences of similar length decode together: less padding, fewer wasted steps.
        kept = (i for i, seq in enumerate(src_ids) if seq or not skip_blank)
        order = sorted(kept, key=lambda i: len(src_ids[i]))
        batches = self._batches(order, src_ids, batch_size or self.decode.batch_size, width)
        results: list[T | None] = [None] * len(src_ids)
        was_training = self.model.training
        self.model.eval()
        try:
            bar = tqdm(batches, desc="translate", unit="batch", disable=None if progress else True)
            for rows in bar:  # a progress bar only when asked for and on a terminal
                src = source_tensor([src_ids[i] for i in rows]).to(self.device)
                for i, result in zip(rows, run(src, rows), strict=True):
                    results[i] = result
        finally:
            self.model.train(was_training)
        return results

    def _batches(
        self, order: list[int], src_ids: list[list[int]], batch_size: int, width: int
    ) -> list[list[int]]:
        """`order` (shortest source first) cut into batches of at most `batch_size` sentences
        whose sentences x longest source (EOS included) x width is at most
        `decode.batch_tokens`, the memory a batch's search takes; a longer sentence is a batch
        alone."""
        batches: list[list[int]] = []
        for i in order:
            longest = len(src_ids[i]) + 1  # the batch's longest so far: shortest first
            batch = batches[-1] if batches else []
            if (
                batch
                and len(batch) < batch_size
                and (len(batch) + 1) * longest * width <= self.decode.batch_tokens
            ):
                batch.append(i)
            else:
                batches.append([i])
        return batches

    def _check_lengths(self, lines: list[list[int]], what: str) -> None:
        """Learned positions end at model.max_positions: say which line is too long."""
        limit = self.model.max_length
        if limit is None:  # sinusoidal positions have no end
            return
        for number, ids in enumerate(lines, start=1):
            if len(ids) + 1 > limit:  # + EOS (or BOS)
                raise DataError(
                    f"{what} line {number} has {len(ids)} tokens; with learned positions the "
                    f"model takes at most {limit - 1} (model.max_positions={limit})"
                )

    def detokenize(self, outputs: list[list[int] | None]) -> list[str]:
        """Target ids back to text; None (a blank input) gives a blank line."""
        texts = self.tokenizers.target.decode([ids or [] for ids in outputs])
        return ["" if ids is None else text for ids, text in zip(outputs, texts, strict=True)]


@dataclass
class Run(Translator):
    """A trained run directory loaded for translation."""

    run_dir: Path
    config: Config
    checkpoint: str  # which one: best, last
    checkpoint_metadata: dict[str, str]  # step and valid_bleu when it was saved


def build_model(config: Config, tokenizers: Tokenizers) -> Transformer:
    """The network described by `config.model`, over the tokenizers' vocabularies."""
    return Transformer(
        config.model, tokenizers.source.vocab_size, tokenizers.target.vocab_size, PAD_ID
    )


def load_run(run_dir: str | Path, device: str = "auto", checkpoint: str = "best") -> Run:
    """Load a run directory written by `tcli train`: config, tokenizers and a checkpoint.

    `checkpoint`: best, last, a step number, a name in checkpoints/ (average-last-5) or a path.
    """
    run_dir = Path(run_dir)
    config = read_config(run_dir)
    tokenizers = Tokenizers.load(run_dir)
    torch_device = resolve_device(device)
    model = build_model(config, tokenizers).to(torch_device)
    metadata = load_weights(model, resolve_checkpoint(run_dir, checkpoint))
    model.eval()
    return Run(
        model, tokenizers, config.decode, torch_device, run_dir, config, checkpoint, metadata
    )


def read_input(source: str | Path = "-") -> Iterable[str]:
    """The lines to translate: a file's, all read now, or for "-" stdin's, read as they come.
    Invalid UTF-8 is read as U+FFFD with a warning: one bad byte must not stop a long job."""
    if str(source) == "-":  # the same line rules as for files
        return decode_lines(sys.stdin.buffer, "stdin", replace_invalid=True)
    return read_lines(source, "--input", replace_invalid=True)


def translate_lines(
    translator: Translator,
    lines: Iterable[str],
    nbest: int | None = None,
    chunk_size: int | None = None,
    progress: bool = False,
) -> Iterator[str]:
    """The output lines for `lines`: one translation a line (blank in, blank out), or with
    `nbest` K the K best (beam search) of each, one a line as 'LINE ||| TRANSLATION ||| SCORE'
    (LINE counts from 0).

    `lines` may be a stream: it is read and translated `chunk_size` lines at a time (sorted into
    batches within a chunk; None: all of them at once), so chunks of 1 answer each line before
    the next is read. Warnings number the lines from the first of `lines`.
    """
    iterator, first = iter(lines), 0
    while chunk := list(itertools.islice(iterator, chunk_size)):
        if nbest:
            for number, hypotheses in enumerate(
                translator.translate_nbest(chunk, nbest, None, progress, first + 1)
            ):
                for text, value in hypotheses:
                    yield f"{first + number} ||| {text} ||| {value:.4f}"
        else:
            yield from translator.translate(chunk, None, progress, first + 1)
        first += len(chunk)


def translate_input(
    translator: Translator, source: str | Path = "-", nbest: int | None = None
) -> Iterator[str]:
    """`translate_lines` over the lines of a file, all at once with a progress bar, or for "-"
    over stdin's as they come: from a terminal each typed line is answered at once, piped input
    is translated 16 batches at a time."""
    lines = read_input(source)
    if str(source) != "-":
        return translate_lines(translator, lines, nbest, progress=True)
    chunk_size = 1 if sys.stdin.isatty() else 16 * translator.decode.batch_size
    return translate_lines(translator, lines, nbest, chunk_size)


def score_input(
    translator: Translator, targets: str | Path, source: str | Path = "-"
) -> list[float]:
    """The model's log-probability of each line of the file `targets` given the line of the same
    number in `source` (a file, or stdin for "-"); see `Translator.score`."""
    sources, target_lines = list(read_input(source)), read_lines(targets, "--score")
    if len(sources) != len(target_lines):
        raise DataError(
            f"--score {targets} has {len(target_lines)} lines but the input has {len(sources)}"
        )
    return translator.score(sources, target_lines)
