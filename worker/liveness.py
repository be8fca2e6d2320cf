"""The worker process's own heartbeat: its row in ``workers``, renewed from a daemon thread every
``TRAINYARD_WORKER_BEAT_S`` seconds, so ``/healthz`` can tell whether any worker is alive. A
database error is logged and the next beat tries again: the thread never dies of one."""

import logging
import os
import socket
import threading
from collections.abc import Callable

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from core.settings import Settings
from core.store import workers
from core.store.db import make_engine, session_factory

log = logging.getLogger("trainyard.worker")
FORGET_AFTER_S = 86_400.0  # a killed worker's row is removed by the first worker to start a day later


class WorkerBeat:
    """Beats for this process, named ``host:pid`` as the runs it trains name their worker, on an
    engine of its own (not the one its tasks use)."""

    def __init__(self, engine: Engine, *, interval_s: float) -> None:
        self.engine, self.sessions, self.interval_s = engine, session_factory(engine), interval_s
        self.host, self.pid = socket.gethostname(), os.getpid()
        self.name = f"{self.host}:{self.pid}"
        self.failing = False
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="worker-beat", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        """Stop beating and remove this worker's row: a worker that stops cleanly is gone at once."""
        self.stopped.set()
        self.thread.join()
        self._try("leave", lambda session: workers.leave(session=session, name=self.name))
        self.engine.dispose()

    def _run(self) -> None:
        self._try("forget stale workers", lambda s: workers.forget_stale(session=s, older_than_s=FORGET_AFTER_S))
        while not self.stopped.is_set():
            self._try("beat", lambda s: workers.beat(session=s, name=self.name, host=self.host, pid=self.pid))
            self.stopped.wait(self.interval_s)

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


def start_beat(settings: Settings) -> WorkerBeat:
    """Start this worker process's beat."""
    beat = WorkerBeat(make_engine(settings.resolved_database_url), interval_s=settings.worker_beat_s)
    beat.start()
    return beat
