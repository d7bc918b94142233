"""Stopping training from outside: Ctrl-C and SIGTERM end it after the current step, with a
checkpoint; a second one aborts at once."""

import signal
import sys
import threading

from tqdm import tqdm


class StopSignals:
    """The first SIGINT (Ctrl-C) or SIGTERM asks training to stop after the current step and
    save a checkpoint; a second one aborts at once (atomic writes keep every file whole)."""

    def __enter__(self) -> "StopSignals":
        self.received: int | None = None
        self.previous = {}
        if threading.current_thread() is threading.main_thread():  # signals reach only it
            for signum in (signal.SIGINT, signal.SIGTERM):
                self.previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum: int, frame: object) -> None:
        if self.received is not None:
            raise Aborted(signum)
        self.received = signum
        tqdm.write(
            f"\n{signal.Signals(signum).name}: stopping after this step to save a checkpoint "
            "(press Ctrl-C again to abort without saving)",
            file=sys.stderr,
        )

    def __exit__(self, *exc_info: object) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)


class Aborted(KeyboardInterrupt):
    """A second stop signal: leave now (a KeyboardInterrupt, so that nothing swallows it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"aborted by {signal.Signals(signum).name}")
        self.signum = signum
