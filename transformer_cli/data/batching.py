"""From token ids to padded tensors: teacher-forcing batches and a length-bucketing sampler."""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from transformer_cli.data.tokenizer import BOS_ID, EOS_ID, PAD_ID


def pad_sequences(sequences: Sequence[Sequence[int]], pad_id: int = PAD_ID) -> Tensor:
    """Right-pad id sequences with `pad_id` to the longest one: (batch, max_len) int64."""
    longest = max(len(seq) for seq in sequences)
    padded = torch.full((len(sequences), longest), pad_id, dtype=torch.long)
    for row, seq in enumerate(sequences):
        padded[row, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
    return padded


def source_tensor(src_ids: Sequence[Sequence[int]]) -> Tensor:
    """Source ids + EOS, padded: (batch, src_len). EOS marks the end even for an empty sentence."""
    return pad_sequences([[*ids, EOS_ID] for ids in src_ids])


@dataclass
class Batch:
    """One training batch for teacher forcing; PAD fills the positions after each sentence."""

    src: Tensor  # (batch, src_len): source ids + EOS
    tgt_in: Tensor  # (batch, tgt_len): BOS + target ids, what the decoder reads
    tgt_out: Tensor  # (batch, tgt_len): target ids + EOS, what each decoder position predicts

    @classmethod
    def from_ids(
        cls, src_ids: Sequence[Sequence[int]], tgt_ids: Sequence[Sequence[int]]
    ) -> "Batch":
        return cls(
            src=source_tensor(src_ids),
            tgt_in=pad_sequences([[BOS_ID, *ids] for ids in tgt_ids]),
            tgt_out=pad_sequences([[*ids, EOS_ID] for ids in tgt_ids]),
        )

    def to(self, device: torch.device) -> "Batch":
        return Batch(self.src.to(device), self.tgt_in.to(device), self.tgt_out.to(device))

    @property
    def n_tgt_tokens(self) -> int:
        """Target tokens the loss is computed on (padding excluded)."""
        return int((self.tgt_out != PAD_ID).sum())


def pair_lengths(src_ids: Sequence[Sequence[int]], tgt_ids: Sequence[Sequence[int]]) -> np.ndarray:
    """The padded length each pair needs in a batch: the longer side plus its EOS (or BOS)."""
    return np.array([max(len(s), len(t)) + 1 for s, t in zip(src_ids, tgt_ids, strict=True)])


class TokenBatchSampler:
    """Groups example indices into batches of at most `batch_tokens` tokens, padding included.

    Examples are sorted by length (ties broken at random) and cut greedily, so a batch holds
    sentences of similar length and little padding; the order of the batches is then shuffled.
    `batches(epoch)` depends only on (seed, epoch), so an epoch can be replayed exactly.
    A single example longer than the budget gets a batch of its own.
    """

    def __init__(
        self, lengths: Sequence[int], batch_tokens: int, seed: int = 0, shuffle: bool = True
    ) -> None:
        self.lengths = np.asarray(lengths)
        self.batch_tokens, self.seed, self.shuffle = batch_tokens, seed, shuffle

    def batches(self, epoch: int = 0) -> list[list[int]]:
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(len(self.lengths)) if self.shuffle else np.arange(len(self.lengths))
        order = order[np.argsort(self.lengths[order], kind="stable")]
        batches: list[list[int]] = []
        current: list[int] = []
        longest = 0
        for index in order.tolist():
            length = int(self.lengths[index])
            if current and max(longest, length) * (len(current) + 1) > self.batch_tokens:
                batches.append(current)
                current, longest = [], 0
            current.append(index)
            longest = max(longest, length)
        if current:
            batches.append(current)
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches
