"""Reading parallel text and deciding which pairs are fit to train on.

A corpus is either two line-aligned files (source and target, one sentence a line) or one TSV
file with a source and a target column; any of them may be gzipped (`.gz`). Lines are read
lazily, so a corpus of any size streams through in bounded memory.
"""

import gzip
import itertools
import logging
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from transformer_cli.errors import DataError

log = logging.getLogger(__name__)


class PairFiles(Protocol):
    """Where a corpus lives: `src` and `tgt` files, or one `tsv` file (config.ParallelFiles)."""

    src: str | None
    tgt: str | None
    tsv: str | None


def decode_lines(
    binary: Iterable[bytes], name: str, replace_invalid: bool = False
) -> Iterator[str]:
    """UTF-8 lines from a binary stream, without their endings; `name` labels errors.

    Only "\\n" ends a line (a stray "\\r" or Unicode line separator inside a sentence does not), so
    the line count is the one `wc -l` reports. A byte-order mark is not part of the first line.
    A line that is not valid UTF-8 is an error naming it; with `replace_invalid`, its invalid
    bytes are read as U+FFFD instead, and one warning names such lines when the stream ends.
    """
    invalid = []
    for number, raw in enumerate(binary, start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            if not replace_invalid:
                raise DataError(f"{name}:{number}: not valid UTF-8 text") from None
            line = raw.decode("utf-8", errors="replace")
            invalid.append(number)
        if number == 1:
            line = line.removeprefix("\ufeff")
        yield line.removesuffix("\n").removesuffix("\r")
    if len(invalid) == 1:
        log.warning(f"{name}:{invalid[0]}: not valid UTF-8 text; read its invalid bytes as U+FFFD")
    elif invalid:
        log.warning(
            f"{name}: {len(invalid)} lines are not valid UTF-8 text (lines "
            f"{first_line_numbers(invalid)}); read their invalid bytes as U+FFFD"
        )


def first_line_numbers(numbers: Sequence[int], shown: int = 5) -> str:
    """Line numbers for a warning: "2, 5, 9", or the first `shown` and "..." if there are more."""
    return ", ".join(map(str, numbers[:shown])) + (", ..." if len(numbers) > shown else "")


def iter_lines(path: str | Path, key: str = "", replace_invalid: bool = False) -> Iterator[str]:
    """The lines of a UTF-8 text file (gunzipped if it ends in .gz), read lazily.

    `key` names the config key or flag in error messages; `replace_invalid` as for decode_lines.
    """
    label = f"{key}: " if key else ""
    yield from decode_lines(_binary_lines(path, key), f"{label}{path}", replace_invalid)


def _binary_lines(path: str | Path, key: str) -> Iterator[bytes]:
    path = Path(path)
    label = f"{key}: " if key else ""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as file:
            yield from file
    except FileNotFoundError:
        raise DataError(f"{label}file not found: {path}") from None
    except IsADirectoryError:
        raise DataError(f"{label}{path} is a directory, not a text file") from None
    except (OSError, EOFError) as err:  # unreadable, or a truncated / non-gzip .gz file
        raise DataError(f"{label}{path}: cannot read: {err}") from None


def read_lines(path: str | Path, key: str = "", replace_invalid: bool = False) -> list[str]:
    """All lines of a text file, as `iter_lines` reads them."""
    return list(iter_lines(path, key, replace_invalid))


def iter_pairs(files: PairFiles, key: str = "") -> Iterator[tuple[str, str]]:
    """(source, target) sentence pairs, lazily, from aligned files or a TSV file."""
    if files.tsv is not None:
        return _tsv_pairs(files.tsv, f"{key}.tsv" if key else "")
    return _aligned_pairs(files.src, files.tgt, key)


def read_pairs(files: PairFiles, key: str = "") -> tuple[list[str], list[str]]:
    """All source and all target sentences of a corpus."""
    src, tgt = [], []
    for source, target in iter_pairs(files, key):
        src.append(source)
        tgt.append(target)
    return src, tgt


def count_pairs(files: PairFiles, key: str = "") -> int:
    """The number of pairs of a corpus, checking its shape on the way: equal line counts for two
    files, two columns on every TSV line. A fast byte-level pass (no UTF-8 decoding)."""
    if files.tsv is not None:
        label = f"{key}.tsv: " if key else ""
        count = 0
        for count, line in enumerate(_binary_lines(files.tsv, f"{key}.tsv"), start=1):
            columns = line.count(b"\t") + 1
            if columns != 2:
                raise DataError(
                    f"{label}{files.tsv}:{count}: expected 2 tab-separated columns (source, "
                    f"target), found {columns}"
                )
        return count
    src = sum(1 for _ in _binary_lines(files.src, f"{key}.src" if key else ""))
    tgt = sum(1 for _ in _binary_lines(files.tgt, f"{key}.tgt" if key else ""))
    if src != tgt:
        raise DataError(
            f"{key + ': ' if key else ''}{files.src} has {src} lines but {files.tgt} has {tgt}; "
            "the two files must be line-aligned"
        )
    return src


def describe(files: PairFiles) -> str:
    """The file(s) of a corpus, for messages."""
    return files.tsv if files.tsv is not None else f"{files.src} / {files.tgt}"


def _aligned_pairs(src: str | Path, tgt: str | Path, key: str) -> Iterator[tuple[str, str]]:
    src_lines = iter_lines(src, f"{key}.src" if key else "")
    tgt_lines = iter_lines(tgt, f"{key}.tgt" if key else "")
    count = 0
    for count, pair in enumerate(itertools.zip_longest(src_lines, tgt_lines), start=1):
        if None in pair:  # one file ended first: count the rest of the other for the message
            src_count = count - 1 + (pair[0] is not None) + sum(1 for _ in src_lines)
            tgt_count = count - 1 + (pair[1] is not None) + sum(1 for _ in tgt_lines)
            raise DataError(
                f"{key + ': ' if key else ''}{src} has {src_count} lines but {tgt} has "
                f"{tgt_count}; the two files must be line-aligned"
            )
        yield pair


def _tsv_pairs(path: str | Path, key: str) -> Iterator[tuple[str, str]]:
    label = f"{key}: " if key else ""
    for number, line in enumerate(iter_lines(path, key), start=1):
        columns = line.split("\t")
        if len(columns) != 2:
            raise DataError(
                f"{label}{path}:{number}: expected 2 tab-separated columns (source, target), "
                f"found {len(columns)}"
            )
        yield columns[0], columns[1]


def filter_pairs(
    src_lengths: np.ndarray, tgt_lengths: np.ndarray, max_len: int, max_ratio: float | None
) -> tuple[np.ndarray, Counter[str]]:
    """Which pairs (by their token counts) are fit for training, as a boolean mask, and how many
    were dropped for each reason; a pair counts under the first reason that applies."""
    empty = (src_lengths == 0) | (tgt_lengths == 0)
    too_long = ~empty & ((src_lengths > max_len) | (tgt_lengths > max_len))
    reasons = {"empty side": empty, f"longer than data.max_len={max_len} tokens": too_long}
    if max_ratio is not None:
        longer = np.maximum(src_lengths, tgt_lengths)
        shorter = np.minimum(src_lengths, tgt_lengths)
        lopsided = ~empty & ~too_long & (longer > max_ratio * shorter)
        reasons[f"length ratio above data.max_ratio={max_ratio:g}"] = lopsided
    dropped = Counter({reason: int(mask.sum()) for reason, mask in reasons.items() if mask.any()})
    return ~np.logical_or.reduce(list(reasons.values())), dropped
