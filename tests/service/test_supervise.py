"""`trainyard serve` supervises its worker: one killed mid-run (as the OOM killer would) is started
again, why it died is logged, and the run it was training is resumed and succeeds. The supervisor
itself: a doubling backoff with a cap, reset once a process stayed up, and a stop that restarts
nothing."""

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from cli.supervise import Supervisor, exit_reason
from tests.service.conftest import ROOT, TERMINAL, free_port, wait_for
from tests.service.test_recovery import SEEDED


def eventually(check: Callable[[], object], timeout: float, what: str) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := check():
            return found
        time.sleep(0.05)
    raise AssertionError(f"{what} not within {timeout} s")


def test_exit_reasons_name_the_signal() -> None:
    assert exit_reason(-signal.SIGKILL) == "killed by SIGKILL"
    assert exit_reason(-signal.SIGSEGV) == "killed by SIGSEGV"
    assert exit_reason(1) == "exited with code 1"
    assert exit_reason(0) == "exited with code 0"


def children(pid: int) -> list[int]:
    """A process's children, whichever of its threads started them (the supervisor's restarts)."""
    return [int(child) for path in Path(f"/proc/{pid}/task").glob("*/children") for child in path.read_text().split()]


def restarts(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "trainyard.serve" and "again" in r.getMessage()]


def test_a_crashing_process_is_started_again_with_a_doubling_capped_backoff(caplog: pytest.LogCaptureFixture) -> None:
    crash = [sys.executable, "-c", "raise SystemExit(3)"]
    supervisor = Supervisor(crash, env=dict(os.environ), name="crasher", first_backoff_s=0.1, max_backoff_s=0.4)
    with caplog.at_level(logging.INFO, logger="trainyard.serve"):
        supervisor.start()
        try:
            eventually(lambda: len(restarts(caplog)) >= 5, 30, "five restarts")
        finally:
            supervisor.stop()
    messages = restarts(caplog)
    assert all("crasher" in m and "exited with code 3" in m for m in messages), messages
    assert [m.rsplit(" in ", 1)[1] for m in messages[:5]] == ["0.1 s", "0.2 s", "0.4 s", "0.4 s", "0.4 s"]


def test_the_backoff_resets_once_a_process_stayed_up(caplog: pytest.LogCaptureFixture) -> None:
    lives = [sys.executable, "-c", "import time; time.sleep(0.3); raise SystemExit(1)"]
    supervisor = Supervisor(lives, env=dict(os.environ), first_backoff_s=0.1, max_backoff_s=10, stable_s=0.2)
    with caplog.at_level(logging.INFO, logger="trainyard.serve"):
        supervisor.start()
        try:
            eventually(lambda: len(restarts(caplog)) >= 3, 30, "three restarts")
        finally:
            supervisor.stop()
    assert [m.rsplit(" in ", 1)[1] for m in restarts(caplog)[:3]] == ["0.1 s"] * 3


def test_a_killed_process_is_replaced_and_stop_replaces_nothing(caplog: pytest.LogCaptureFixture) -> None:
    sleeper = [sys.executable, "-c", "import time; time.sleep(600)"]
    supervisor = Supervisor(sleeper, env=dict(os.environ), name="sleeper", first_backoff_s=0.1)
    with caplog.at_level(logging.INFO, logger="trainyard.serve"):
        supervisor.start()
        try:
            first = eventually(lambda: supervisor.process, 10, "a first process")
            os.kill(first.pid, signal.SIGKILL)
            second = eventually(lambda: supervisor.process is not first and supervisor.process, 10, "a second one")
        finally:
            supervisor.stop()
    assert f"sleeper (pid {first.pid}) killed by SIGKILL" in restarts(caplog)[0]
    assert second.returncode == -signal.SIGTERM and not supervisor.thread.is_alive()
    assert supervisor.process is second  # stopped: nothing started after it


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[tuple[subprocess.Popen, httpx.Client, Path]]:
    """`trainyard serve` with a short lease, a checkpoint every epoch and a fast sweeper."""
    port = free_port()
    env = {
        **os.environ,
        "TRAINYARD_LEASE_SECONDS": "2",
        "TRAINYARD_SWEEP_INTERVAL_S": "0.5",
        "TRAINYARD_CHECKPOINT_MIN_INTERVAL_S": "0",
        "TRAINYARD_WORKER_BEAT_S": "0.5",
        "TRAINYARD_ACCESS_LOG": "false",
    }
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "serve", "--port", str(port), "--data-dir", str(tmp_path)],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=log,
        )
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)

    def healthy() -> bool:
        assert process.poll() is None, log_path.read_text()
        try:
            return client.get("/healthz").status_code == 200  # the worker beats too
        except httpx.TransportError:
            return False

    try:
        eventually(healthy, 90, "a healthy server")
        yield process, client, log_path
    finally:
        client.close()
        process.terminate()
        process.wait(timeout=60)


def test_serve_restarts_a_worker_killed_mid_run_and_the_run_resumes(
    serve: tuple[subprocess.Popen, httpx.Client, Path],
) -> None:
    process, client, log_path = serve
    run_id = client.post("/v1/runs", json=SEEDED).json()["id"]
    eventually(
        lambda: (run := client.get(f"/v1/runs/{run_id}").json())["status"] == "running" and run["epoch"] >= 2,
        120,
        "the run at epoch 2",
    )
    [killed] = children(process.pid)
    os.kill(killed, signal.SIGKILL)  # what the kernel's OOM killer does
    run = wait_for(client, run_id, TERMINAL, timeout=240)  # type: ignore[arg-type]
    assert run["status"] == "succeeded", run
    assert run["attempt"] == 2, run  # requeued once its lease ran out, then resumed by the new worker
    train = client.get(f"/v1/runs/{run_id}/metrics").json()["series"]["train_loss"]
    assert train["epoch"] == list(range(1, SEEDED["epochs"] + 1))  # every epoch once
    [replacement] = children(process.pid)
    assert replacement != killed
    text = log_path.read_text()
    assert f"worker (pid {killed}) killed by SIGKILL" in text, text
    health = eventually(lambda: (h := client.get("/healthz")).status_code == 200 and h.json(), 10, "health")
    assert health["worker"] == "ok" and health["workers"] >= 1  # type: ignore[index]
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=60)
    assert not Path(f"/proc/{replacement}").exists() or "Z" in Path(f"/proc/{replacement}/stat").read_text().split()[2]
