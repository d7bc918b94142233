"""Scoring translations with sacreBLEU (BLEU and chrF, with their signatures)."""

from collections.abc import Sequence
from dataclasses import asdict, dataclass

from sacrebleu.metrics import BLEU, CHRF

from transformer_cli.errors import DataError


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


def score(hypotheses: Sequence[str], references: Sequence[str]) -> Scores:
    """Corpus BLEU and chrF of `hypotheses` against one reference each, exactly as sacreBLEU."""
    if len(hypotheses) != len(references):
        raise DataError(
            f"{len(hypotheses)} hypotheses but {len(references)} references; they must be aligned"
        )
    if not hypotheses:
        raise DataError("nothing to score: no sentences")
    bleu, chrf = BLEU(), CHRF()
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
