"""`trainyard serve`'s embedded worker, supervised: a thread that starts the worker process and
starts it again whenever it exits without being asked to (a crash, the kernel's OOM killer),
after a backoff that doubles from 1 s to 30 s and resets once a worker has stayed up a minute.
Each exit is logged with its exit code or the signal that killed it."""

import logging
import signal
import subprocess
import sys
import threading
import time

log = logging.getLogger("trainyard.serve")


def log_to_stderr() -> None:
    """Show the supervisor's messages on serve's stderr (uvicorn configures only its own loggers)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False


def exit_reason(code: int) -> str:
    """A process's exit status in words: ``killed by SIGKILL``, ``exited with code 1``."""
    if code >= 0:
        return f"exited with code {code}"
    try:
        return f"killed by {signal.Signals(-code).name}"
    except ValueError:
        return f"killed by signal {-code}"


class Supervisor:
    """Keeps one process of ``command`` running until ``stop``."""

    def __init__(
        self,
        command: list[str],
        *,
        env: dict[str, str],
        name: str = "worker",
        first_backoff_s: float = 1.0,
        max_backoff_s: float = 30.0,
        stable_s: float = 60.0,
    ) -> None:
        self.command, self.env, self.name = command, env, name
        self.first_backoff_s, self.max_backoff_s, self.stable_s = first_backoff_s, max_backoff_s, stable_s
        self.process: subprocess.Popen | None = None
        self.stopping = threading.Event()
        self.lock = threading.Lock()  # a process is never started once ``stop`` has begun
        self.thread = threading.Thread(target=self._supervise, name=f"supervise-{name}", daemon=True)

    def start(self) -> None:
        """Start the first process now (a child of the caller's thread), then supervise it."""
        self._spawn()
        self.thread.start()

    def _spawn(self) -> subprocess.Popen | None:
        with self.lock:
            if self.stopping.is_set():
                return None
            self.process = process = subprocess.Popen(self.command, env=self.env)
        log.info("%s started (pid %d)", self.name, process.pid)
        return process

    def _supervise(self) -> None:
        backoff, process = self.first_backoff_s, self.process
        while process is not None:
            started = time.monotonic()
            code = process.wait()
            if self.stopping.is_set():
                return
            if time.monotonic() - started >= self.stable_s:
                backoff = self.first_backoff_s  # it had stayed up: this is a fresh failure
            log.error(
                "%s (pid %d) %s after %.1f s; starting it again in %g s",
                self.name,
                process.pid,
                exit_reason(code),
                time.monotonic() - started,
                backoff,
            )
            if self.stopping.wait(backoff):
                return
            backoff = min(backoff * 2, self.max_backoff_s)
            process = self._spawn()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop supervising and terminate the process (SIGTERM; SIGKILL after ``timeout_s``)."""
        with self.lock:
            self.stopping.set()
            process = self.process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                log.warning("%s (pid %d) did not stop within %.0f s; killing it", self.name, process.pid, timeout_s)
                process.kill()
                process.wait()
        self.thread.join(timeout=timeout_s)
