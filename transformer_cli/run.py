"""A trained run directory, and the Translator that turns sentences into translations.

A run directory holds everything needed to translate, and nothing needs the original config file:

    config.yaml       the resolved config the run was trained with
    tokenizer.model   the SentencePiece model
    checkpoints/      weights (best, every saved step) and training state; see checkpoint.py
    metrics.jsonl     one JSON object per logged step and per validation; see records.py
    train.log         the lines training printed, with timestamps
"""

import itertools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from tqdm import tqdm

from transformer_cli.checkpoint import load_weights, resolve_checkpoint
from transformer_cli.config import Config, DecodeConfig, validate_config
from transformer_cli.data.batching import source_tensor
from transformer_cli.data.tokenizer import PAD_ID, Tokenizer
from transformer_cli.decode import greedy_decode
from transformer_cli.device import resolve_device
from transformer_cli.errors import RunError
from transformer_cli.model import Transformer, TransformerConfig

CONFIG_FILE = "config.yaml"
TOKENIZER_FILE = "tokenizer.model"


def read_config(run_dir: Path) -> Config:
    """The resolved config saved in a run directory."""
    config_file = run_dir / CONFIG_FILE
    if not config_file.is_file():
        raise RunError(f"{run_dir} is not a tcli run directory (no {CONFIG_FILE}); train one first")
    return validate_config(yaml.safe_load(config_file.read_text("utf-8")), str(config_file))


def build_model(config: Config, vocab_size: int) -> Transformer:
    """The network described by `config.model`, over a joint vocabulary of `vocab_size` pieces."""
    return Transformer(
        TransformerConfig(
            src_vocab_size=vocab_size,
            tgt_vocab_size=vocab_size,
            pad_id=PAD_ID,
            **config.model.model_dump(),
        )
    )


@dataclass
class Translator:
    """A model with its tokenizer and decoding settings: sentences in, translations out."""

    model: Transformer
    tokenizer: Tokenizer
    decode: DecodeConfig
    device: torch.device

    def translate(
        self, sentences: Sequence[str], batch_size: int | None = None, progress: bool = False
    ) -> list[str]:
        """Translate each sentence (blank in, blank out); the output order is the input order."""
        batch_size = batch_size or self.decode.batch_size
        ids = self.tokenizer.encode(sentences)
        # Sentences of similar length decode together: less padding, fewer wasted steps.
        order = sorted((i for i, seq in enumerate(ids) if seq), key=lambda i: len(ids[i]))
        translations = [""] * len(sentences)
        was_training = self.model.training
        self.model.eval()
        try:
            starts = range(0, len(order), batch_size)
            bar = tqdm(starts, desc="translate", unit="batch", disable=None if progress else True)
            for start in bar:  # a progress bar only when asked for and on a terminal
                chunk = order[start : start + batch_size]
                src = source_tensor([ids[i] for i in chunk]).to(self.device)
                outputs = greedy_decode(
                    self.model, src, self.decode.max_len_a, self.decode.max_len_b
                )
                for i, text in zip(chunk, self.tokenizer.decode(outputs), strict=True):
                    translations[i] = text
        finally:
            self.model.train(was_training)
        return translations

    def translate_stream(
        self, lines: Iterable[str], chunk_size: int, batch_size: int | None = None
    ) -> Iterator[str]:
        """Translate a stream lazily, `chunk_size` lines at a time (1 for interactive use)."""
        iterator = iter(lines)
        while chunk := list(itertools.islice(iterator, chunk_size)):
            yield from self.translate(chunk, batch_size)


@dataclass
class Run(Translator):
    """A trained run directory loaded for translation."""

    run_dir: Path
    config: Config
    checkpoint: str  # which one: best, last
    checkpoint_metadata: dict[str, str]  # step and valid_bleu when it was saved


def load_run(run_dir: str | Path, device: str = "auto", checkpoint: str = "best") -> Run:
    """Load a run directory written by `tcli train`: config, tokenizer and a checkpoint.

    `checkpoint`: best, last, a step number, a name in checkpoints/ (average-last-5) or a path.
    """
    run_dir = Path(run_dir)
    config = read_config(run_dir)
    tokenizer = Tokenizer(run_dir / TOKENIZER_FILE)
    torch_device = resolve_device(device)
    model = build_model(config, tokenizer.vocab_size).to(torch_device)
    metadata = load_weights(model, resolve_checkpoint(run_dir, checkpoint))
    model.eval()
    return Run(model, tokenizer, config.decode, torch_device, run_dir, config, checkpoint, metadata)
