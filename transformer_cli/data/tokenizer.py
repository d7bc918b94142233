"""SentencePiece subword tokenization: trained on the training data (or given), kept in the run.

tcli's ids have a fixed layout: PAD 0, UNK 1, BOS 2, EOS 3, then the model's ordinary pieces in
the model's order. A model trained by tcli has exactly this layout; any other SentencePiece model
(with other special ids, or none for padding) is mapped onto it, so every model works.
"""

import functools
import io
import itertools
import logging
import random
import shutil
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import sentencepiece as spm
from tqdm import tqdm

from transformer_cli.errors import ConfigError, RunError
from transformer_cli.files import atomic_write, atomic_write_bytes
from transformer_cli.rundir import RunDir

log = logging.getLogger(__name__)

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3
_SPECIALS = 4


class Tokenizer:
    """Text <-> subword ids with one SentencePiece model, in tcli's id layout."""

    pad_id, unk_id, bos_id, eos_id = PAD_ID, UNK_ID, BOS_ID, EOS_ID

    def __init__(self, model_path: str | Path) -> None:
        self.path = Path(model_path)
        try:
            self.sp = spm.SentencePieceProcessor(model_file=str(self.path))
        except (OSError, RuntimeError) as err:
            raise RunError(f"cannot load SentencePiece model {self.path}: {err}") from None
        # Their ids -> ours: their unknown piece is our UNK, their other special pieces (BOS, EOS,
        # PAD, control symbols) are never produced by encoding, and the ordinary pieces follow
        # our four specials in their order.
        sizes = self.sp.get_piece_size()
        ordinary = [i for i in range(sizes) if not (self.sp.is_control(i) or self.sp.is_unknown(i))]
        self._to_ours = np.full(sizes, UNK_ID, dtype=np.int64)
        self._to_ours[ordinary] = np.arange(_SPECIALS, _SPECIALS + len(ordinary))
        # Ours -> theirs for decoding: -1 marks PAD, BOS and EOS, which have no text.
        self._to_theirs = np.array([-1, self.sp.unk_id(), -1, -1, *ordinary], dtype=np.int64)

    @property
    def vocab_size(self) -> int:
        return len(self._to_theirs)

    @functools.cached_property
    def pieces(self) -> list[str]:
        """The piece of each of our ids; the specials as <pad>, <unk>, <s> and </s>."""
        specials = {PAD_ID: "<pad>", UNK_ID: "<unk>", BOS_ID: "<s>", EOS_ID: "</s>"}
        return [
            specials.get(i) or self.sp.id_to_piece(int(theirs))
            for i, theirs in enumerate(self._to_theirs)
        ]

    def encode(self, sentences: Sequence[str]) -> list[list[int]]:
        """Subword ids of each sentence (no BOS/EOS added)."""
        ids, lengths = self.encode_flat(sentences)
        if not len(lengths):
            return []
        return [chunk.tolist() for chunk in np.split(ids, np.cumsum(lengths)[:-1])]

    def encode_flat(self, sentences: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """All sentences' ids concatenated (int64) and each sentence's length (int64)."""
        pieces = self.sp.encode(list(sentences))
        lengths = np.fromiter(map(len, pieces), dtype=np.int64, count=len(pieces))
        flat = np.fromiter(
            itertools.chain.from_iterable(pieces), dtype=np.int64, count=int(lengths.sum())
        )
        return self._to_ours[flat], lengths

    def decode(self, ids: Sequence[Sequence[int]]) -> list[str]:
        """Detokenized text of each id sequence (PAD, BOS and EOS are skipped)."""
        theirs = [[t for t in (int(self._to_theirs[i]) for i in seq) if t >= 0] for seq in ids]
        return self.sp.decode(theirs)


@dataclass
class Tokenizers:
    """The source and the target tokenizer: one and the same with a joint vocabulary."""

    source: Tokenizer
    target: Tokenizer

    @classmethod
    def load(cls, run_dir: Path) -> "Tokenizers":
        """The tokenizers saved in a run directory."""
        run = RunDir(run_dir)
        if run.joint_tokenizer.exists():
            joint = Tokenizer(run.joint_tokenizer)
            return cls(joint, joint)
        return cls(Tokenizer(run.source_tokenizer), Tokenizer(run.target_tokenizer))


def train_tokenizer(
    sentences: Iterable[str],
    model_path: str | Path,
    vocab_size: int,
    model_type: str = "unigram",
    character_coverage: float = 1.0,
    input_sentence_size: int = 0,
    total: int | None = None,
    seed: int = 0,
) -> Tokenizer:
    """Train a SentencePiece model on `sentences` and save it atomically at `model_path`.

    With `input_sentence_size` > 0, a random sample of that many sentences is kept while reading
    (a reservoir), so any amount of text trains in bounded memory. The sample is drawn here, from
    `seed`: SentencePiece's own sampling cannot be seeded from Python (its
    set_random_generator_seed leaves it different from one process to the next).
    """
    model = io.BytesIO()
    reading = tqdm(
        sentences, desc="SentencePiece: reading", unit=" sentences", total=total, disable=None
    )
    failures: list[Exception] = []

    def sentence_stream() -> Iterator[str]:
        # SentencePiece's C++ turns an exception raised while it reads into an opaque
        # RuntimeError; keep the original (a DataError naming the file and line) to raise it.
        try:
            if input_sentence_size > 0:  # read it all into the sample first
                yield from _reservoir_sample(reading, input_sentence_size, seed)
            else:
                yield from reading
        except Exception as err:
            failures.append(err)

    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=sentence_stream(),
            model_writer=model,
            vocab_size=vocab_size,
            model_type=model_type,
            character_coverage=character_coverage,
            # Our sample never holds more than this, so SentencePiece drops none of it; passing
            # it keeps SentencePiece's reading (and the vocabularies of unsampled corpora) as
            # they were.
            input_sentence_size=input_sentence_size,
            shuffle_input_sentence=True,
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
        if failures:
            raise failures[0] from None
        # "INTERNAL: src/trainer_interface.cc(638) [check] Vocabulary size is smaller...": the
        # sentence after the C++ check, in the config's terms
        message = str(err).strip().splitlines()[-1].split("] ", 1)[-1]
        message = message.replace("--character_coverage option", "tokenizer.character_coverage")
        raise ConfigError(
            f"tokenizer.vocab_size={vocab_size}: SentencePiece training failed: {message}"
        ) from None
    finally:
        reading.close()
    if failures:
        raise failures[0]
    atomic_write_bytes(Path(model_path), model.getvalue())
    tokenizer = Tokenizer(model_path)
    if tokenizer.vocab_size < vocab_size:  # hard_vocab_limit=False: the data had no more pieces
        log.info(
            "tokenizer.vocab_size=%d: the training data gave only %d pieces; using those",
            vocab_size,
            tokenizer.vocab_size,
        )
    return tokenizer


def _reservoir_sample(sentences: Iterable[str], size: int, seed: int) -> list[str]:
    """A uniform random sample of `size` sentences (all of them if there are fewer), in one pass:
    Algorithm R, the same sample for the same seed."""
    generator = random.Random(seed)
    sample: list[str] = []
    for seen, sentence in enumerate(sentences):
        if seen < size:
            sample.append(sentence)
        elif (slot := generator.randrange(seen + 1)) < size:
            sample[slot] = sentence
    return sample


def copy_tokenizer(source: str | Path, destination: Path, key: str) -> Tokenizer:
    """Use an existing SentencePiece model: check that it loads, then copy it into the run."""
    source = Path(source)
    if not source.is_file():
        raise ConfigError(f"{key}: file not found: {source}")
    try:
        Tokenizer(source)
    except RunError as err:
        raise ConfigError(f"{key}: {err}") from None
    atomic_write(destination, lambda tmp: shutil.copyfile(source, tmp))
    log.info("tokenizer: using %s (%s)", source, key)
    return Tokenizer(destination)
