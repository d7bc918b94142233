"""Atomic file writes: a crash mid-write never leaves a half-written file under the final name."""

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from transformer_cli.errors import FileWriteError

_TMP = ".tmp"  # atomic_write's temporary files: .NAME.RANDOM.tmp beside the file NAME


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> None:
    """Call `write(tmp_path)` on a temporary file beside `path`, then rename it into place.

    An OSError on the way (a full disk, a read-only directory) becomes a FileWriteError naming
    `path`; `write` must report its failures as OSError too.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=_TMP, dir=path.parent)
    except OSError as err:
        raise cannot_write(path, err) from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        tmp.chmod(0o644)  # mkstemp makes the file private (0600); a result file should not be
        with open(tmp, "rb+") as file:
            os.fsync(file.fileno())  # the bytes are on disk before the name points at them
        os.replace(tmp, path)  # atomic on POSIX and Windows
    except OSError as err:  # a full disk, a read-only directory: the old file stays whole
        raise cannot_write(path, err) from None
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def cannot_write(path: str | Path, err: OSError) -> FileWriteError:
    """The one-line error for a write to `path` that failed with `err`."""
    return FileWriteError(f"cannot write {path}: {err.strerror or err}")


def remove_temporaries(directory: Path) -> None:
    """Delete the temporary files that atomic writes in `directory` left behind when their
    process was killed before renaming them into place."""
    for stale in directory.glob(f".*{_TMP}"):
        stale.unlink()
