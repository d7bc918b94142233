"""User-facing errors.

Every mistake a user can make (a bad config key, a missing file, an unavailable device) raises a
subclass of `TcliError`. The CLI prints its message as one line and exits with code 2; any other
exception is a bug in tcli and keeps its traceback.
"""


class TcliError(Exception):
    """A problem with the user's input, reported as one line (exit code 2)."""

    exit_code = 2
    prefix = "error: "


class ConfigError(TcliError):
    """The YAML config or a --set override is invalid; the message names the key."""


class DataError(TcliError):
    """A data file is missing, unreadable or malformed; the message names the file."""


class DeviceError(TcliError):
    """The requested --device does not exist on this machine."""


class RunError(TcliError):
    """A run directory is missing, incomplete, or would be overwritten without --overwrite."""


class Interrupted(TcliError):
    """Work stopped by a signal (Ctrl-C, SIGTERM); the exit code is 128 + the signal number."""

    prefix = ""  # not a mistake of the user's: no "error:" in front of the message

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum


class LostProcess(TcliError):
    """Another process of a distributed run died or stopped answering; it says why itself."""

    exit_code = 1


class Diverged(TcliError):
    """Training stopped because its loss or gradients kept being NaN or infinite."""

    exit_code = 1


class FileWriteError(TcliError):
    """A file could not be written (a full disk, a read-only directory); the message names it."""
