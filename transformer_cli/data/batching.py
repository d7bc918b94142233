"""From token ids to padded tensors: teacher-forcing batches and a length-bucketing sampler.

Sequences of ids are handled as one flat array plus offsets (sequence i is
flat[offsets[i]:offsets[i + 1]]), the layout of the memory-mapped corpus cache, so that a batch
of any corpus is built the same way.
"""

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from transformer_cli.data.tokenizer import BOS_ID, EOS_ID, PAD_ID


def flatten(sequences: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Id sequences as (flat ids, offsets)."""
    lengths = np.fromiter(map(len, sequences), dtype=np.int64, count=len(sequences))
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    flat = np.fromiter(
        (i for seq in sequences for i in seq), dtype=np.int64, count=int(offsets[-1])
    )
    return flat, offsets


def pad_rows(
    flat: np.ndarray,
    offsets: np.ndarray,
    rows: np.ndarray,
    prefix: int | None = None,
    suffix: int | None = None,
) -> Tensor:
    """The sequences `rows`, each with an optional first and last token, right-padded with PAD:
    (len(rows), longest + extras) int64."""
    starts, ends = offsets[rows], offsets[rows + 1]
    first = int(prefix is not None)
    width = int((ends - starts).max(initial=0)) + first + int(suffix is not None)
    padded = np.full((len(rows), width), PAD_ID, dtype=np.int64)
    if prefix is not None:
        padded[:, 0] = prefix
    for row, (start, end) in enumerate(zip(starts.tolist(), ends.tolist(), strict=True)):
        padded[row, first : first + end - start] = flat[start:end]
        if suffix is not None:
            padded[row, first + end - start] = suffix
    return torch.from_numpy(padded)


def pad_sequences(sequences: Sequence[Sequence[int]]) -> Tensor:
    """Right-pad id sequences with PAD to the longest one: (batch, max_len) int64."""
    flat, offsets = flatten(sequences)
    return pad_rows(flat, offsets, np.arange(len(sequences)))


def source_tensor(src_ids: Sequence[Sequence[int]]) -> Tensor:
    """Source ids + EOS, padded: (batch, src_len). EOS marks the end even for an empty sentence."""
    flat, offsets = flatten(src_ids)
    return pad_rows(flat, offsets, np.arange(len(src_ids)), suffix=EOS_ID)


@dataclass
class Batch:
    """One training batch for teacher forcing; PAD fills the positions after each sentence."""

    src: Tensor  # (batch, src_len): source ids + EOS
    tgt_in: Tensor  # (batch, tgt_len): BOS + target ids, what the decoder reads
    tgt_out: Tensor  # (batch, tgt_len): target ids + EOS, what each decoder position predicts

    @classmethod
    def from_arrays(
        cls,
        src: tuple[np.ndarray, np.ndarray],
        tgt: tuple[np.ndarray, np.ndarray],
        rows: np.ndarray,
    ) -> "Batch":
        """The pairs `rows` of a corpus held as (flat ids, offsets) for each side."""
        return cls(
            src=pad_rows(*src, rows, suffix=EOS_ID),
            tgt_in=pad_rows(*tgt, rows, prefix=BOS_ID),
            tgt_out=pad_rows(*tgt, rows, suffix=EOS_ID),
        )

    @classmethod
    def from_ids(
        cls, src_ids: Sequence[Sequence[int]], tgt_ids: Sequence[Sequence[int]]
    ) -> "Batch":
        return cls.from_arrays(flatten(src_ids), flatten(tgt_ids), np.arange(len(src_ids)))

    def to(self, device: torch.device) -> "Batch":
        return Batch(self.src.to(device), self.tgt_in.to(device), self.tgt_out.to(device))

    @property
    def n_tgt_tokens(self) -> int:
        """Target tokens the loss is computed on (padding excluded)."""
        return int((self.tgt_out != PAD_ID).sum())


def pair_lengths(src_lengths: np.ndarray, tgt_lengths: np.ndarray) -> np.ndarray:
    """The padded length each pair needs in a batch: the longer side plus its EOS (or BOS)."""
    return np.maximum(src_lengths, tgt_lengths) + 1


class TokenBatchSampler:
    """Groups example indices into batches of at most `batch_tokens` tokens, padding included.

    Examples are sorted by length (ties broken at random) and cut greedily, so a batch holds
    sentences of similar length and little padding; the order of the batches is then shuffled.
    `batches(epoch)` depends only on (seed, epoch), so an epoch can be replayed exactly. A single
    example longer than the budget gets a batch of its own.

    With `world_size` > 1 every rank gets its own share of each epoch's batches, and every rank
    the same number (a few batches at the end of the shuffled order are left out).
    """

    def __init__(
        self,
        lengths: Sequence[int] | np.ndarray,
        batch_tokens: int,
        seed: int = 0,
        shuffle: bool = True,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in 0..{world_size - 1}")
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.batch_tokens, self.seed, self.shuffle = batch_tokens, seed, shuffle
        self.rank, self.world_size = rank, world_size

    def batches(self, epoch: int = 0) -> list[np.ndarray]:
        """This rank's batches of `epoch`, each an array of example indices."""
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(len(self.lengths)) if self.shuffle else np.arange(len(self.lengths))
        order = order[np.argsort(self.lengths[order], kind="stable")]
        bounds = _greedy_bounds(self.lengths[order], self.batch_tokens)
        batches = [order[start:end] for start, end in itertools.pairwise(bounds)]
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        if self.world_size > 1:
            usable = len(batches) - len(batches) % self.world_size
            batches = batches[self.rank : usable : self.world_size]
        return batches

    def position(self, index: int) -> int:
        """Where this rank's batch `index` stands in the epoch's list of all ranks' batches."""
        return index * self.world_size + self.rank

    def __len__(self) -> int:
        """Batches per epoch for this rank (the same every epoch)."""
        return len(self.batches(0))


def _greedy_bounds(sorted_lengths: np.ndarray, budget: int) -> list[int]:
    """Batch boundaries over lengths sorted ascending: each batch takes as many examples as fit,
    count * longest <= budget. One numpy step per batch, not per example."""
    bounds, start, total = [0], 0, len(sorted_lengths)
    while start < total:
        # No batch starting here can hold more than budget // shortest examples.
        window = sorted_lengths[start : start + max(budget // int(sorted_lengths[start]), 1)]
        fits = np.arange(1, len(window) + 1) * window <= budget  # true then false: lengths ascend
        start += max(int(fits.sum()), 1)
        bounds.append(start)
    return bounds


def padding_fraction(
    batches: Sequence[np.ndarray], src_lengths: np.ndarray, tgt_lengths: np.ndarray
) -> float:
    """The share of padding among all positions of `batches` (source and target sides, with EOS)."""
    padded = real = 0
    for rows in batches:
        for lengths in (src_lengths[rows] + 1, tgt_lengths[rows] + 1):
            padded += len(rows) * int(lengths.max())
            real += int(lengths.sum())
    return 1 - real / padded if padded else 0.0


def endless_batches(
    sampler: TokenBatchSampler, epoch: int = 0, index: int = 0
) -> Iterator[tuple[int, int, list[int]]]:
    """(epoch, index in epoch, example indices) for every batch from (epoch, index) on, forever."""
    for current in itertools.count(epoch):
        epoch_batches = sampler.batches(current)
        for position in range(index, len(epoch_batches)):
            yield current, position, epoch_batches[position]
        index = 0
