"""SentencePiece subword tokenization: trained on the training data, saved in the run directory."""

import io
from collections.abc import Iterable, Sequence
from pathlib import Path

import sentencepiece as spm

from transformer_cli.errors import ConfigError, RunError
from transformer_cli.files import atomic_write_bytes

# Fixed ids for the special tokens, so masks and decoding never need to look them up.
PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3


class Tokenizer:
    """Text <-> subword ids with one SentencePiece model (joint source and target vocabulary)."""

    pad_id, unk_id, bos_id, eos_id = PAD_ID, UNK_ID, BOS_ID, EOS_ID

    def __init__(self, model_path: str | Path) -> None:
        self.path = Path(model_path)
        try:
            self.sp = spm.SentencePieceProcessor(model_file=str(self.path))
        except (OSError, RuntimeError) as err:
            raise RunError(f"cannot load SentencePiece model {self.path}: {err}") from None

    @property
    def vocab_size(self) -> int:
        return self.sp.get_piece_size()

    def encode(self, sentences: Sequence[str]) -> list[list[int]]:
        """Subword ids of each sentence (no BOS/EOS added)."""
        return self.sp.encode(list(sentences))

    def decode(self, ids: Sequence[Sequence[int]]) -> list[str]:
        """Detokenized text of each id sequence."""
        return self.sp.decode([list(seq) for seq in ids])


def train_tokenizer(
    sentences: Iterable[str],
    model_path: str | Path,
    vocab_size: int,
    model_type: str = "unigram",
    character_coverage: float = 1.0,
) -> Tokenizer:
    """Train a SentencePiece model on `sentences` and save it atomically at `model_path`."""
    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(sentences),
            model_writer=model,
            vocab_size=vocab_size,
            model_type=model_type,
            character_coverage=character_coverage,
            pad_id=PAD_ID,
            unk_id=UNK_ID,
            bos_id=BOS_ID,
            eos_id=EOS_ID,
            # A small corpus may hold fewer distinct pieces than asked for; take what there is.
            hard_vocab_limit=False,
            num_threads=1,  # deterministic: the same data always gives the same vocabulary
            minloglevel=2,
        )
    except RuntimeError as err:
        message = str(err).strip().splitlines()[-1]
        raise ConfigError(f"tokenizer: SentencePiece training failed: {message}") from None
    atomic_write_bytes(Path(model_path), model.getvalue())
    return Tokenizer(model_path)
