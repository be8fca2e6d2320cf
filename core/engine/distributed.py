"""One run on several devices, through PyTorch's own distributed engine: one process per device
(a rank), launched the torchrun way (``MASTER_ADDR``, ``MASTER_PORT``, ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK`` in each rank's environment, joined with ``init_method="env://"``), NCCL on GPUs and
gloo on the CPU, the model wrapped in ``DistributedDataParallel``.

Each rank trains on its shard of every global batch of the epoch's permutation (the same
permutation on every rank), weighted so that DDP's mean of the ranks' gradients is the gradient of
the global batch's mean loss: two ranks reach the weights one process reaches with the same batch
size (for a model without dropout, augmentation or, on the CPU, batch norm, whose random draws
and batch statistics are each rank's own). Rank 0 is the writer: it alone runs the callbacks
that write (metrics, checkpoints, the service's reports), evaluates, and decides when the run
stops; the other ranks read its numbers and follow its decision at every sync point.

``launched`` starts ranks 1..N-1 as child processes of the caller, which is rank 0: the CLI's
``trainyard train`` and the service's worker both train a multi-device spec that way. Under
``torchrun`` (several machines: see the README), ``from_env`` reads the rank the launcher gave."""

import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from core.status import RunStatus

log = logging.getLogger("trainyard.distributed")

# How long a rank waits in a collective for the others. On gloo a rank whose peer died sees its
# socket close and fails at once; NCCL notices only at this timeout (its watchdog then ends the
# process). It must outlast the longest pause rank 0 takes between two collectives (a checkpoint
# of a large model, a slow database).
COLLECTIVE_TIMEOUT = timedelta(minutes=10)

# A child rank's exit once the run has ended on rank 0 (its last collective is behind it).
JOIN_TIMEOUT_S = 60.0
PARENT_POLL_S = 1.0  # how often a child rank checks that rank 0 is still alive

STOP_CODES = (None, *RunStatus)  # rank 0's stop decision travels as its index in this tuple
LAUNCHER_VARIABLES = ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK")  # torchrun's


@dataclass(frozen=True)
class Ranks:
    """This process's place among the ranks of one training: ``rank`` of ``world``, on device
    ``local`` of its machine. One process alone is ``Ranks()``, and every method is then a no-op."""

    rank: int = 0
    world: int = 1
    local: int = 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @property
    def writer(self) -> bool:
        """Rank 0 writes metrics, checkpoints and artifacts; the other ranks write nothing."""
        return self.rank == 0

    def device(self, device: torch.device) -> torch.device:
        """This rank's device: its own GPU (``cuda:LOCAL_RANK``), or the CPU."""
        return torch.device("cuda", self.local) if device.type == "cuda" and self.distributed else device

    def shard(self, index: torch.Tensor) -> tuple[torch.Tensor, float]:
        """This rank's part of a global batch's rows, and the weight of its mean loss that makes the
        ranks' mean gradient the global batch's: ``local rows × world / global rows``. A global batch
        smaller than the world gives some ranks no row: they take its first row at weight 0 (every
        rank must take part in each step's gradient all-reduce)."""
        if not self.distributed:
            return index, 1.0
        part = index.tensor_split(self.world)[self.rank]
        if len(part) == 0:
            return index[:1], 0.0
        return part, len(part) * self.world / len(index)

    def total(self, values: torch.Tensor) -> torch.Tensor:
        """``values`` summed over the ranks (every rank gets the sum; no host sync)."""
        if self.distributed:
            values = values.clone()
            dist.all_reduce(values, op=dist.ReduceOp.SUM)
        return values

    def from_writer(self, values: dict[str, float]) -> dict[str, float]:
        """Rank 0's ``values`` on every rank (an epoch's metrics: what the schedule, early stopping
        and the divergence check read must be the same everywhere; only rank 0 evaluates)."""
        if not self.distributed:
            return values
        box = [values]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def follow_writer(self, state: Any) -> None:
        """Every rank takes rank 0's stop decision (a cancel, the time limit, early stopping, a
        divergence), so all of them leave the loop at the same step. One small broadcast, at the
        sync points only."""
        if not self.distributed:
            return
        code = torch.tensor(
            [STOP_CODES.index(state.status if state.stopping else None)], device=state.device, dtype=torch.int64
        )
        dist.broadcast(code, src=0)
        if self.writer:
            return
        status = STOP_CODES[int(code.item())]
        state.stop_reason, state.status = None, RunStatus.RUNNING
        if status is not None:
            state.stop(f"rank 0 stopped the run ({status})", status=status)


def from_env() -> Ranks | None:
    """The ranks a launcher such as torchrun gave this process (``RANK``, ``WORLD_SIZE``,
    ``LOCAL_RANK``), or None outside one."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return None
    return Ranks(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", os.environ["RANK"])))


def backend(device: torch.device) -> str:
    return "nccl" if device.type == "cuda" else "gloo"


@contextmanager
def process_group(ranks: Ranks, device: torch.device) -> Iterator[None]:
    """Join the ranks' process group (``env://``: the launcher's variables) for one training."""
    if not ranks.distributed:
        yield
        return
    if device.type == "cuda":
        torch.cuda.set_device(ranks.device(device))
    dist.init_process_group(
        backend(device), init_method="env://", rank=ranks.rank, world_size=ranks.world, timeout=COLLECTIVE_TIMEOUT
    )
    try:
        yield
    finally:
        dist.destroy_process_group()


def wrap(model: torch.nn.Module, ranks: Ranks, device: torch.device) -> torch.nn.Module:
    """The module the training steps call: the model itself alone, else DDP around it (its
    gradients all-reduced as the backward pass produces them; on GPUs batch norm synchronised)."""
    if not ranks.distributed:
        return model
    if device.type == "cuda":
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ids = [ranks.local] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _variables(port: int, rank: int, world: int) -> dict[str, str]:
    """torchrun's variables for ``rank`` of ``world`` on this machine."""
    values = ("127.0.0.1", str(port), str(rank), str(world), str(rank))
    return dict(zip(LAUNCHER_VARIABLES, values, strict=True))


def _rank_main(
    rank: int, world: int, port: int, threads: int, target: Callable[..., Any], args: tuple, reports: Any
) -> None:
    """A child rank: the torchrun variables, its share of the CPU threads, then ``target(ranks, *args)``,
    which returns ``(failure, retryable)`` when its training failed. A failure or an error is put on
    ``reports`` for rank 0 to name."""
    os.environ.update(_variables(port, rank, world))
    torch.set_num_threads(threads)
    parent = os.getppid()
    threading.Thread(target=_exit_with, args=(parent,), name="rank-watch", daemon=True).start()
    try:
        failed = target(Ranks(rank, world, rank), *args)
    except BaseException as exc:
        reports.put((rank, f"{type(exc).__name__}: {exc}".splitlines()[0], False))
        raise
    if failed is not None:
        reports.put((rank, *failed))


def _exit_with(parent: int) -> None:
    """Ends this rank once the process that started it (rank 0) is gone: a killed rank 0 must not
    leave the others waiting in a collective (NCCL would wait out ``COLLECTIVE_TIMEOUT``)."""
    while os.getppid() == parent:
        time.sleep(PARENT_POLL_S)
    log.error("rank 0 (process %d) is gone; this rank stops", parent)
    os._exit(1)


class RankLost(RuntimeError):
    """A rank of a multi-device training died (killed, out of memory, gone without a word): like a
    lost worker, the run may succeed on another attempt, from its checkpoint."""


class RankFailed(RuntimeError):
    """A rank of a multi-device training raised an error of the run's own (another attempt would
    meet it too)."""


def _ended(code: int | None) -> str:
    if code is None:
        return "still running"
    return f"killed by {signal.Signals(-code).name}" if code < 0 else f"exited with {code}"


def _lost_or_failed(children: list[Any], reports: Any, world: int) -> RuntimeError | None:
    """What happened to the children once rank 0's training broke: a child's own report (its error,
    or a failure such as running out of memory), else how a dead child ended; None when none died
    or reported."""
    said = {}
    while not reports.empty():
        rank, failure, retryable = reports.get()
        said[rank] = (failure, retryable)
    if said:
        what = "; ".join(f"rank {rank}: {failure}" for rank, (failure, _) in sorted(said.items()))
        if all(retryable for _, retryable in said.values()):
            return RankLost(f"{what} (of {world} ranks)")
        return RankFailed(f"{what} (of {world} ranks)")
    dead = [(rank, child.exitcode) for rank, child in enumerate(children, 1) if child.exitcode]
    if dead:
        return RankLost(", ".join(f"rank {rank} {_ended(code)}" for rank, code in dead) + f" (of {world} ranks)")
    return None


@contextmanager
def launched(world: int, target: Callable[..., Any], args: tuple) -> Iterator[Ranks]:
    """Start ranks 1..``world``-1 on this machine, each running ``target(Ranks, *args)`` in a fresh
    process, and yield rank 0's ``Ranks`` for the caller to train as. CPU ranks share the caller's
    threads. On leaving, the children are joined (those still running after ``JOIN_TIMEOUT_S``, or
    at once when rank 0 failed, are killed), so no rank outlives its training. When rank 0's
    training breaks because of a child, the error names it: ``RankFailed`` for an error of the
    run's own, ``RankLost`` for a child that died or ran out of memory (worth another attempt)."""
    port = free_port()
    threads = max(1, torch.get_num_threads() // world)
    context = mp.get_context("spawn")
    reports = context.SimpleQueue()
    children = [
        context.Process(target=_rank_main, args=(rank, world, port, threads, target, args, reports), daemon=True)
        for rank in range(1, world)
    ]
    saved = {key: os.environ.get(key) for key in LAUNCHER_VARIABLES}
    own_threads = torch.get_num_threads()
    os.environ.update(_variables(port, 0, world))
    torch.set_num_threads(threads)
    try:
        for child in children:
            child.start()
        yield Ranks(0, world, 0)
    except Exception as exc:
        for child in children:
            child.join(timeout=1.0)  # a peer's end is what usually breaks rank 0's collective
        named = _lost_or_failed(children, reports, world)
        if named is not None:
            raise named from exc
        raise
    finally:
        for child in children:
            if child.pid is not None:
                child.join(timeout=JOIN_TIMEOUT_S if sys.exc_info()[0] is None else 0)
                if child.is_alive():
                    child.kill()
                    child.join()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        torch.set_num_threads(own_threads)
    for rank, child in enumerate(children, 1):
        if child.exitcode:  # after every collective of the training: rank 0's result stands
            log.warning("rank %d %s after the training", rank, _ended(child.exitcode))
