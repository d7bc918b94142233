"""Reading parallel text (one sentence a line, plain or .gz) and filtering unusable pairs."""

import gzip
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from transformer_cli.errors import DataError


def decode_lines(binary: Iterable[bytes], name: str) -> Iterator[str]:
    """UTF-8 lines from a binary stream, without their endings; `name` labels errors.

    Only "\\n" ends a line (a stray "\\r" or Unicode line separator inside a sentence does not), so
    the line count is the one `wc -l` reports. A byte-order mark is not part of the first line.
    """
    for number, raw in enumerate(binary, start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise DataError(f"{name}:{number}: not valid UTF-8 text") from None
        if number == 1:
            line = line.removeprefix("\ufeff")
        yield line.removesuffix("\n").removesuffix("\r")


def read_lines(path: str | Path, key: str = "") -> list[str]:
    """The lines of a UTF-8 text file (gunzipped if it ends in .gz), as `decode_lines` reads them.

    `key` names the config key or flag in error messages.
    """
    path = Path(path)
    label = f"{key}: " if key else ""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as file:
            return list(decode_lines(file, f"{label}{path}"))
    except FileNotFoundError:
        raise DataError(f"{label}file not found: {path}") from None
    except IsADirectoryError:
        raise DataError(f"{label}{path} is a directory, not a text file") from None
    except (OSError, EOFError) as err:  # unreadable, or a truncated / non-gzip .gz file
        raise DataError(f"{label}{path}: cannot read: {err}") from None


def read_parallel(src: str | Path, tgt: str | Path, key: str = "") -> tuple[list[str], list[str]]:
    """Source and target lines of a line-aligned pair of files; their line counts must agree."""
    src_lines = read_lines(src, f"{key}.src" if key else "")
    tgt_lines = read_lines(tgt, f"{key}.tgt" if key else "")
    if len(src_lines) != len(tgt_lines):
        raise DataError(
            f"{key + ': ' if key else ''}{src} has {len(src_lines)} lines but {tgt} has "
            f"{len(tgt_lines)}; the two files must be line-aligned"
        )
    return src_lines, tgt_lines


def filter_pairs(
    src_ids: Sequence[Sequence[int]], tgt_ids: Sequence[Sequence[int]], max_len: int
) -> tuple[list[int], Counter[str]]:
    """Indices of the pairs fit for training, and how many were dropped for each reason."""
    kept, dropped = [], Counter()
    for index, (src, tgt) in enumerate(zip(src_ids, tgt_ids, strict=True)):
        if not src or not tgt:
            dropped["empty side"] += 1
        elif len(src) > max_len or len(tgt) > max_len:
            dropped[f"longer than data.max_len={max_len} tokens"] += 1
        else:
            kept.append(index)
    return kept, dropped
