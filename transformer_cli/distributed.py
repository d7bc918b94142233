"""Data-parallel training over several processes, GPUs or machines, launched by torchrun.

torchrun starts one process per device and tells each, through environment variables, its rank
(0 .. WORLD_SIZE - 1), its local rank on its machine and where to meet the others. `join` turns
that into a `World` and a process group (gloo on CPUs, NCCL on GPUs); a process started without
torchrun is a world of one, and every collective below is then a no-op.
"""

import datetime
import gc
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist

from transformer_cli.device import resolve_device
from transformer_cli.errors import DeviceError, Interrupted, LostProcess

# A rank that waits longer than this for the others (one crashed, or hangs) stops with an error
# instead of waiting forever; validation on rank 0 must fit in it.
COLLECTIVE_TIMEOUT = datetime.timedelta(minutes=30)


@dataclass(frozen=True)
class World:
    """This process's place among the training processes."""

    rank: int = 0
    local_rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes the run directory and validates."""
        return self.rank == 0

    def sum(self, value: float) -> float:
        """`value` summed over all processes."""
        if self.size == 1:
            return value
        total = torch.tensor([value], dtype=torch.float64)
        dist.all_reduce(total)
        return float(total)

    def from_main(self, value: object) -> object:
        """Rank 0's `value`, on every process (a decision all of them must share)."""
        if self.size == 1:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier()


SINGLE_PROCESS = World()


def world_from_environment() -> World:
    """The World torchrun describes in RANK, LOCAL_RANK and WORLD_SIZE (a world of one without)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return SINGLE_PROCESS
    return World(int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"]), size)


@contextmanager
def joined(device: str, backend: str | None = None) -> Iterator[tuple[World, torch.device]]:
    """Join the process group (if torchrun started several processes) for the duration, on this
    process's device: with CUDA, GPU LOCAL_RANK. `backend` defaults to nccl on CUDA, else gloo."""
    world, torch_device = world_from_environment(), resolve_device(device)
    if world.size == 1:
        yield world, torch_device
        return
    if torch_device.type == "cuda":
        local_size = int(os.environ.get("LOCAL_WORLD_SIZE", world.size))
        if torch.cuda.device_count() < local_size:
            raise DeviceError(
                f"--device cuda: {local_size} processes on this machine but "
                f"{torch.cuda.device_count()} GPU(s); start at most one process per GPU"
            )
        torch_device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(torch_device)
    backend = backend or ("nccl" if torch_device.type == "cuda" else "gloo")
    dist.init_process_group(backend, timeout=COLLECTIVE_TIMEOUT)
    # Leave together, when all stop together (done, or stopped by a signal after the same
    # step): a process that tears the group down while another still uses it (rank 0 writes the
    # last checkpoint) can abort in gloo's threads.
    try:
        yield world, torch_device
        dist.barrier()
    except Interrupted:
        dist.barrier()
        raise
    except Exception as err:
        if not _lost_contact(err):
            raise
        if threading.current_thread() is threading.main_thread():
            # torchrun SIGTERMs the survivors of a dead process, maybe while this one tears the
            # group down below: it is stopping already, so let it live to say why.
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise LostProcess(
            f"training process {world.rank} stops: another process of the run died or stopped "
            f"answering ({first_line}); its own output says why, and the checkpoints on disk "
            "are intact"
        ) from err
    finally:
        # DistributedDataParallel lives in reference cycles: free it now, while its group still
        # exists, not at exit, where tearing it down after the group can abort the process.
        gc.collect()
        dist.destroy_process_group()


def _lost_contact(err: Exception) -> bool:
    """Whether a collective failed because a peer died, hung past the timeout, or left: NCCL and
    the rendezvous store raise DistError; gloo raises a RuntimeError from its transport."""
    return isinstance(err, dist.DistError) or (isinstance(err, RuntimeError) and "gloo" in str(err))


def launch(processes: int, tcli_args: list[str]) -> None:
    """Run `tcli TCLI_ARGS` in `processes` processes on this machine, as `torchrun --standalone
    --nproc_per_node PROCESSES -m transformer_cli TCLI_ARGS` does (through torchrun's own API)."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    torchrun_args = ["--standalone", "--nproc_per_node", str(processes), "-m", "transformer_cli"]
    try:
        run(parse_args([*torchrun_args, *tcli_args]))
    except ChildFailedError as err:  # the first to fail has said why, unless a signal killed it
        rank, failure = err.get_first_failure()
        if failure.exitcode < 0:
            name = signal.Signals(-failure.exitcode).name
            print(f"tcli: error: training process {rank} was killed by {name}", file=sys.stderr)
        code = failure.exitcode
        raise SystemExit(code if code > 0 else 128 - code) from None
    except SignalException as err:  # Ctrl-C or SIGTERM: torchrun passed it on to every process,
        raise SystemExit(128 + err.sigval) from None  # which stopped after one step and saved
