"""The training corpus as token ids: encoded once, cached in the run directory, memory-mapped.

    cache/train.src.ids       every kept pair's source ids, concatenated (uint16, or int32 for
    cache/train.tgt.ids       vocabularies of more than 65536 pieces)
    cache/train.src.offsets   where each pair's ids start, plus the end (int64)
    cache/train.tgt.offsets
    cache/train.json          counts (read, kept, dropped by reason), dtype, and the fingerprint of
                              what was encoded; written last, so it marks a complete cache

Encoding streams the text in chunks and training reads the ids through memory maps, so resident
memory holds the pages in use and the per-batch tensors, not the corpus. Resuming a run reuses
the cache as long as the fingerprint (data files, tokenizer models, filters) still matches.
"""

import hashlib
import itertools
import json
import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from transformer_cli.data.batching import Batch, pair_lengths
from transformer_cli.data.corpus import filter_pairs
from transformer_cli.data.tokenizer import Tokenizers
from transformer_cli.files import atomic_write, atomic_write_text

log = logging.getLogger(__name__)

CHUNK_PAIRS = 20_000
_SIDES = ("src", "tgt")
_DTYPES = {"uint16": np.uint16, "int32": np.int32}
_DAMAGED = "the cached corpus is damaged (%s); encoding the training data again"


@dataclass
class EncodedCorpus:
    """Kept training pairs as flat id arrays with offsets, one pair per row."""

    src: tuple[np.ndarray, np.ndarray]  # (ids, offsets)
    tgt: tuple[np.ndarray, np.ndarray]
    stats: dict

    def __len__(self) -> int:
        return len(self.src[1]) - 1

    @property
    def src_lengths(self) -> np.ndarray:
        return np.diff(self.src[1])

    @property
    def tgt_lengths(self) -> np.ndarray:
        return np.diff(self.tgt[1])

    def pair_lengths(self) -> np.ndarray:
        return pair_lengths(self.src_lengths, self.tgt_lengths)

    def batch(self, rows: np.ndarray) -> Batch:
        return Batch.from_arrays(self.src, self.tgt, rows)

    @classmethod
    def open(
        cls, directory: Path, fingerprint: dict, name: str = "train"
    ) -> "EncodedCorpus | None":
        """The cached corpus, or None if there is none, it was made from something else, or it
        is damaged (with a warning): the caller encodes the corpus again."""
        meta_path = directory / f"{name}.json"
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except FileNotFoundError:  # never cached, or a rebuild that was cut short
            return None
        except ValueError as err:  # UnicodeDecodeError too: not a file tcli wrote
            log.warning(_DAMAGED, f"{meta_path}: {err}")
            return None
        if not isinstance(meta, dict) or meta.get("fingerprint") != fingerprint:
            return None
        try:
            arrays = {side: _read_side(directory, name, side, meta) for side in _SIDES}
        except (KeyError, TypeError) as err:  # an entry missing or of another type
            log.warning(_DAMAGED, f"{meta_path}: bad entry {err}")
            return None
        except (OSError, ValueError) as err:  # their messages name the file
            log.warning(_DAMAGED, err)
            return None
        return cls(arrays["src"], arrays["tgt"], meta["stats"])

    @classmethod
    def build(
        cls,
        directory: Path,
        pairs: Iterable[tuple[str, str]],
        tokenizers: Tokenizers,
        max_len: int,
        max_ratio: float | None,
        fingerprint: dict,
        name: str = "train",
        total: int | None = None,
    ) -> "EncodedCorpus":
        """Encode `pairs` chunk by chunk, drop the unusable ones, and write the cache."""
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"{name}.json").unlink(missing_ok=True)  # no stale cache during the rebuild
        vocab = max(tokenizers.source.vocab_size, tokenizers.target.vocab_size)
        dtype = np.dtype(np.uint16 if vocab <= 2**16 else np.int32)
        dropped: Counter[str] = Counter()
        lengths: dict[str, list[np.ndarray]] = {side: [] for side in _SIDES}
        tokens = dict.fromkeys(_SIDES, 0)
        read = 0
        files = {side: (directory / f".{name}.{side}.ids.partial").open("wb") for side in _SIDES}
        progress = tqdm(desc="encoding", unit=" pairs", total=total, disable=None)
        try:
            iterator = iter(pairs)
            while chunk := list(itertools.islice(iterator, CHUNK_PAIRS)):
                sources, targets = zip(*chunk, strict=True)
                encoded = {
                    "src": tokenizers.source.encode_flat(sources),
                    "tgt": tokenizers.target.encode_flat(targets),
                }
                keep, why = filter_pairs(encoded["src"][1], encoded["tgt"][1], max_len, max_ratio)
                dropped.update(why)
                for side, (ids, side_lengths) in encoded.items():
                    kept_ids = ids[np.repeat(keep, side_lengths)].astype(dtype)
                    kept_ids.tofile(files[side])
                    lengths[side].append(side_lengths[keep])
                    tokens[side] += len(kept_ids)
                read += len(chunk)
                progress.update(len(chunk))
        finally:
            progress.close()
            for file in files.values():
                file.close()
        for side in _SIDES:
            (directory / f".{name}.{side}.ids.partial").replace(directory / f"{name}.{side}.ids")
            side_lengths = np.concatenate([np.zeros(0, np.int64), *lengths[side]])
            offsets = np.concatenate([[0], np.cumsum(side_lengths)]).astype(np.int64)
            atomic_write(directory / f"{name}.{side}.offsets.npy", _npy_writer(offsets))
        stats = {"read": read, "kept": read - sum(dropped.values()), "dropped": dict(dropped)}
        meta = {"fingerprint": fingerprint, "dtype": dtype.name, "tokens": tokens, "stats": stats}
        atomic_write_text(directory / f"{name}.json", json.dumps(meta, indent=1) + "\n")
        corpus = cls.open(directory, fingerprint, name)
        assert corpus is not None
        return corpus


def _read_side(directory: Path, name: str, side: str, meta: dict) -> tuple[np.ndarray, np.ndarray]:
    """One side's ids (memory-mapped) and offsets, checked against each other and `meta`; a
    file that does not fit raises ValueError naming it."""
    dtype = np.dtype(_DTYPES[meta["dtype"]])
    tokens, rows = meta["tokens"][side], meta["stats"]["kept"]
    ids_path = directory / f"{name}.{side}.ids"
    offsets_path = directory / f"{name}.{side}.offsets.npy"
    try:
        # an empty file cannot be memory-mapped
        ids = np.memmap(ids_path, dtype, mode="r") if tokens else np.zeros(0, dtype)
    except ValueError as err:  # a size that is no whole number of ids
        raise ValueError(f"{ids_path}: {err}") from None
    if len(ids) != tokens:
        raise ValueError(f"{ids_path} holds {len(ids)} ids, not {tokens}")
    with offsets_path.open("rb") as file:
        try:
            offsets = np.lib.format.read_array(file, allow_pickle=False)  # .npy only, no pickle
        except ValueError as err:
            raise ValueError(f"{offsets_path}: {err}") from None
    if not (
        offsets.dtype == np.int64
        and offsets.shape == (rows + 1,)
        and offsets[0] == 0
        and offsets[-1] == len(ids)
        and (np.diff(offsets) >= 0).all()
    ):
        raise ValueError(f"{offsets_path} does not hold the offsets of {ids_path}")
    return ids, offsets


def _npy_writer(array: np.ndarray):
    def write(path: Path) -> None:
        with path.open("wb") as file:
            np.save(file, array)

    return write


def fingerprint(
    paths: Iterable[str | Path], tokenizer_paths: Iterable[Path], **settings: object
) -> dict:
    """What a cache depends on: the data files (size and modification time), the tokenizer models
    (content), and the filter settings."""
    return {
        "data": [[str(p), Path(p).stat().st_size, Path(p).stat().st_mtime_ns] for p in paths],
        "tokenizers": [hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in tokenizer_paths],
        **settings,
    }
