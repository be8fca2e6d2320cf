"""The worker process's own heartbeat: its row in ``workers``, renewed from a daemon thread every
``TRAINYARD_WORKER_BEAT_S`` seconds, so ``/healthz`` can tell whether any worker is alive. The row
advertises what the worker can train (devices, their kind, bfloat16), and each beat counts the
live workers of its host, so the workers sharing a host share its cores (``ThreadShare``). A
database error is logged and the next beat tries again: the thread never dies of one."""

import logging
import os
import socket
import threading
from collections.abc import Callable

import torch
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from core.engine.precision import computes_bf16
from core.engine.run import pick_device
from core.settings import Settings
from core.store import workers
from core.store.db import make_engine, session_factory

log = logging.getLogger("trainyard.worker")
FORGET_AFTER_S = 86_400.0  # a killed worker's row is removed by the first worker to start a day later


def advert_of(settings: Settings) -> workers.Advert:
    """What this worker can train. The kind is its training device's (``TRAINYARD_DEVICE``, default
    CUDA when present). The devices: ``TRAINYARD_DEVICES``, else the CUDA devices it sees (one when
    ``TRAINYARD_DEVICE`` names one, as ``cuda:1``), else 1 on the CPU; a CUDA worker asked for more
    than it sees fails at start."""
    device = pick_device(settings.device)
    if device.type == "cuda":
        seen = 1 if device.index is not None else torch.cuda.device_count()
        if settings.devices is not None and settings.devices > seen:
            raise ValueError(f"TRAINYARD_DEVICES={settings.devices}, but this worker sees {seen} CUDA device(s)")
        return workers.Advert(settings.devices or seen, "cuda", computes_bf16(device))
    return workers.Advert(settings.devices or 1, device.type, computes_bf16(device))


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask where the OS has one), else the machine's."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def threads_for(cores: int, workers_on_host: int) -> int:
    """Each of the host's workers takes an equal share of its cores, at least one."""
    return max(1, cores // max(1, workers_on_host))


class ThreadShare:
    """This worker's torch thread count: ``TRAINYARD_TORCH_THREADS`` when set, else its share of the
    cores it may use among the live workers of its host, recounted by every beat. The count is only
    applied at safe points, in the thread that trains (when the worker starts and before each run,
    never from the beat thread in the middle of a step), and logged whenever it changes."""

    def __init__(self, *, cores: int, fixed: int | None) -> None:
        self.cores, self.fixed = cores, fixed
        self.wanted = (fixed, "TRAINYARD_TORCH_THREADS") if fixed else (cores, f"{cores} cores, alone")
        self.applied: int | None = None

    def recount(self, workers_on_host: int) -> None:
        """Called by the beat with the live workers of this host (itself included); a new count is
        logged here and applied at the next safe point."""
        if self.fixed is not None:
            return
        count = max(1, workers_on_host)
        threads, why = threads_for(self.cores, count), f"{self.cores} cores ÷ {count} live worker(s) on this host"
        if self.applied is not None and threads != self.wanted[0]:
            log.info("torch threads will be %d from the next run (%s)", threads, why)
        self.wanted = (threads, why)

    def apply(self) -> int:
        """Set torch's thread count to the wanted one (logged when it changes); the count."""
        threads, why = self.wanted
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        if threads != self.applied:
            log.info("torch threads: %d (%s)", threads, why)
            self.applied = threads
        return threads


class WorkerBeat:
    """Beats for this process, named ``host:pid`` as the runs it trains name their worker, on an
    engine of its own (not the one its tasks use); each beat recounts ``share``."""

    def __init__(
        self,
        engine: Engine,
        *,
        interval_s: float,
        advert: workers.Advert | None = None,
        share: ThreadShare | None = None,
    ) -> None:
        self.engine, self.sessions, self.interval_s = engine, session_factory(engine), interval_s
        self.advert = advert or workers.Advert(1, "cpu", True)
        self.share = share or ThreadShare(cores=usable_cores(), fixed=None)
        self.host, self.pid = socket.gethostname(), os.getpid()
        self.name = f"{self.host}:{self.pid}"
        self.failing = False
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="worker-beat", daemon=True)

    def start(self) -> None:
        """The first beat (and count) here, the next ones from the thread."""
        self._try("forget stale workers", lambda s: workers.forget_stale(session=s, older_than_s=FORGET_AFTER_S))
        self._beat()
        self.thread.start()

    def stop(self) -> None:
        """Stop beating and remove this worker's row: a worker that stops cleanly is gone at once."""
        self.stopped.set()
        self.thread.join()
        self._try("leave", lambda session: workers.leave(session=session, name=self.name))
        self.engine.dispose()

    def _run(self) -> None:
        while not self.stopped.wait(self.interval_s):
            self._beat()

    def _beat(self) -> None:
        self._try("beat", self._beat_and_count)

    def _beat_and_count(self, session: Session) -> None:
        workers.beat(session=session, name=self.name, host=self.host, pid=self.pid, advert=self.advert)
        within_s = workers.ALIVE_BEATS * self.interval_s
        self.share.recount(workers.alive_on_host(session=session, host=self.host, within_s=within_s))

    def _try(self, what: str, write: Callable[[Session], object]) -> None:
        """One write; an error is logged (once while they last) and swallowed."""
        try:
            with self.sessions() as session:
                write(session)
        except Exception:
            if not self.failing:
                log.exception("worker %s could not %s (the beat goes on)", self.name, what)
            self.failing = True
        else:
            if self.failing:
                log.info("worker %s can %s again", self.name, what)
            self.failing = False


def start_beat(settings: Settings, advert: workers.Advert) -> WorkerBeat:
    """Start this worker process's beat, advertising ``advert``, and apply its thread count (logged)."""
    beat = WorkerBeat(
        make_engine(settings.resolved_database_url),
        interval_s=settings.worker_beat_s,
        advert=advert,
        share=ThreadShare(cores=usable_cores(), fixed=settings.torch_threads),
    )
    beat.start()
    log.info(
        "worker %s: %d %s device(s)%s",
        beat.name,
        beat.advert.devices,
        beat.advert.device_kind,
        ", bfloat16" if beat.advert.bf16 else "",
    )
    beat.share.apply()
    return beat
