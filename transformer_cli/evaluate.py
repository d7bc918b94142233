"""Scoring translations with sacreBLEU (BLEU and chrF, with their signatures): lists of
sentences, files of translations, or a run translating a test set (`tcli eval`)."""

import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from sacrebleu.metrics import BLEU, CHRF

from transformer_cli.config import ParallelFiles
from transformer_cli.data.batching import Batch, TokenBatchSampler, flatten, pair_lengths
from transformer_cli.data.corpus import PairFiles, describe, read_pairs
from transformer_cli.errors import ConfigError, DataError, TcliError
from transformer_cli.loss import sequence_loss
from transformer_cli.rundir import RunDir

if TYPE_CHECKING:  # for the annotations only
    from transformer_cli.translator import Run, Translator

log = logging.getLogger(__name__)


@dataclass
class Scores:
    bleu: float
    chrf: float
    bleu_signature: str
    chrf_signature: str
    n_sentences: int
    bleu_details: str  # sacreBLEU's usual line: "BLEU = 34.21 65.2/40.1/27.3/19.0 (BP = ...)"
    chrf_details: str

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


# sacreBLEU's recommended BLEU tokenizers for the languages 13a cannot split into words.
BLEU_TOKENIZERS = {"zh": "zh", "ja": "ja-mecab", "ko": "ko-mecab"}


def bleu_tokenizer(tgt_lang: str | None, tokenize: str | None = None) -> str:
    """`tokenize` if given, else sacreBLEU's choice for the target language (13a for most)."""
    return tokenize or BLEU_TOKENIZERS.get((tgt_lang or "").lower().split("-")[0], "13a")


def bleu_metric(tokenize: str) -> BLEU:
    """sacreBLEU's BLEU with this tokenizer, or a one-line error when it needs packages that are
    not installed (ja-mecab and ko-mecab)."""
    try:
        return BLEU(tokenize=tokenize)
    except KeyError:
        raise ConfigError(
            f"eval.bleu_tokenize: sacreBLEU has no tokenizer {tokenize!r} (13a, intl, zh, "
            "ja-mecab, ko-mecab, char, none, flores101, flores200)"
        ) from None
    except RuntimeError as err:
        install = str(err).strip().splitlines()[-1].strip()
        raise ConfigError(
            f"eval.bleu_tokenize: BLEU's {tokenize} tokenizer needs more packages ({install}), "
            "or choose another (13a, intl, char, ...)"
        ) from None


def score(hypotheses: Sequence[str], references: Sequence[str], tokenize: str = "13a") -> Scores:
    """Corpus BLEU (with sacreBLEU's `tokenize` tokenizer) and chrF of `hypotheses` against one
    reference each, exactly as sacreBLEU."""
    if len(hypotheses) != len(references):
        raise DataError(
            f"{len(hypotheses)} hypotheses but {len(references)} references; they must be aligned"
        )
    if not hypotheses:
        raise DataError("nothing to score: no sentences")
    bleu, chrf = bleu_metric(tokenize), CHRF()
    bleu_score = bleu.corpus_score(list(hypotheses), [list(references)])
    chrf_score = chrf.corpus_score(list(hypotheses), [list(references)])
    return Scores(
        bleu=round(bleu_score.score, 4),
        chrf=round(chrf_score.score, 4),
        bleu_signature=str(bleu.get_signature()),
        chrf_signature=str(chrf.get_signature()),
        n_sentences=len(hypotheses),
        bleu_details=str(bleu_score),
        chrf_details=str(chrf_score),
    )


def score_files(hypotheses: str | Path, references: str | Path, tokenize: str = "13a") -> Scores:
    """`score` of the translations in the file `hypotheses` against the line-aligned file
    `references`."""
    files = ParallelFiles(src=str(hypotheses), tgt=str(references))
    return _score_corpus(*read_pairs(files), files, tokenize)


def evaluate_run(
    run: "Run", files: PairFiles | None = None, bleu_tokenize: str | None = None
) -> Scores:
    """Translate a corpus's sources with a loaded run (with a progress bar) and `score` the
    translations against its targets. `files`: the corpus, by default the run's data.test;
    `bleu_tokenize`: the BLEU tokenizer, by default eval.bleu_tokenize, else sacreBLEU's choice
    for the target language."""
    config = run.config
    tokenize = bleu_tokenizer(config.data.tgt_lang, bleu_tokenize or config.eval.bleu_tokenize)
    bleu_metric(tokenize)  # a tokenizer that needs missing packages: say so before translating
    key = ""
    if files is None:
        if config.data.test is None:
            raise TcliError(
                f"{RunDir(run.run_dir).config} has no data.test: pass --src and --ref, "
                "or add data.test to it"
            )
        files, key = config.data.test, "data.test"
    sources, references = read_pairs(files, key)
    metadata = run.checkpoint_metadata
    origin = f"step {metadata['step']}" if "step" in metadata else metadata.get("averaged")
    log.info(f"{run.run_dir}: {run.checkpoint} checkpoint ({origin}) on {describe(files)}")
    return _score_corpus(run.translate(sources, progress=True), references, files, tokenize)


def _score_corpus(
    hypotheses: Sequence[str], references: Sequence[str], files: PairFiles, tokenize: str
) -> Scores:
    """`score`, or a one-line error naming `files` when they hold no sentences."""
    if not references:
        raise DataError(f"{describe(files)}: both files are empty; nothing to score")
    return score(hypotheses, references, tokenize)


class Validator:
    """Validation loss, perplexity, BLEU and chrF, translating with `tcli translate`'s code."""

    def __init__(
        self,
        translator: "Translator",
        sources: list[str],
        references: list[str],
        batch_tokens: int,
        tokenize: str = "13a",
    ) -> None:
        bleu_metric(tokenize)  # its packages are checked now, not at the first validation
        self.tokenize = tokenize
        src_ids = translator.tokenizers.source.encode(sources)
        tgt_ids = translator.tokenizers.target.encode(references)
        limit = translator.model.max_length  # learned positions place this many at most
        if limit is not None:
            kept = [i for i, (s, t) in enumerate(zip(src_ids, tgt_ids, strict=True))
                    if max(len(s), len(t)) + 1 <= limit]  # fmt: skip
            if len(kept) < len(sources):
                log.warning(
                    "data.valid: %d of %d pairs have a side longer than %d tokens, which "
                    "model.max_positions=%d cannot place; validating on the other %d",
                    len(sources) - len(kept), len(sources), limit - 1, limit, len(kept),
                )  # fmt: skip
            if not kept:
                raise DataError(
                    f"data.valid: every pair has a side longer than {limit - 1} tokens, which "
                    f"model.max_positions={limit} cannot place"
                )
            sources, references = [sources[i] for i in kept], [references[i] for i in kept]
            src_ids, tgt_ids = [src_ids[i] for i in kept], [tgt_ids[i] for i in kept]
        self.translator, self.sources, self.references = translator, sources, references
        src, tgt = flatten(src_ids), flatten(tgt_ids)
        lengths = pair_lengths(np.diff(src[1]), np.diff(tgt[1]))
        sampler = TokenBatchSampler(lengths, batch_tokens, shuffle=False)
        self.batches = [Batch.from_arrays(src, tgt, rows) for rows in sampler.batches()]

    @torch.no_grad()
    def loss(self) -> float:
        """Mean per-token cross entropy (no label smoothing) over the validation targets."""
        model = self.translator.model
        was_training = model.training
        model.eval()
        total, tokens = 0.0, 0
        for batch in self.batches:
            batch = batch.to(self.translator.device)
            total += float(sequence_loss(model, batch))
            tokens += batch.n_tgt_tokens
        model.train(was_training)
        return total / tokens

    def run(self) -> dict[str, float]:
        loss = self.loss()
        scores = score(self.translator.translate(self.sources), self.references, self.tokenize)
        return {
            "loss": round(loss, 4),
            "ppl": round(math.exp(min(loss, 100.0)), 3),
            "bleu": round(scores.bleu, 2),
            "chrf": round(scores.chrf, 2),
        }
