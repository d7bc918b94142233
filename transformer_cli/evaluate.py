"""Scoring translations with sacreBLEU (BLEU and chrF, with their signatures): lists of
sentences, files of translations, or a run translating a test set (`tcli eval`)."""

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sacrebleu.metrics import BLEU, CHRF

from transformer_cli.config import ParallelFiles
from transformer_cli.data.corpus import PairFiles, describe, read_pairs
from transformer_cli.errors import ConfigError, DataError, TcliError
from transformer_cli.rundir import CONFIG_FILE

if TYPE_CHECKING:  # for the annotation only: scoring files loads no model
    from transformer_cli.translator import Run

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
                f"{run.run_dir / CONFIG_FILE} has no data.test: pass --src and --ref, "
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
