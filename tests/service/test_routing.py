"""Runs reach a worker with the devices they ask for (``resources.devices``), on both backends, with
real worker processes: a run asking for 2 devices waits while only a 1-device worker is alive and
is taken by the 2-device worker once it starts. A spec asking for more devices than the largest
live worker has is refused at submit (422 at ``/resources/devices``, naming that worker); with no
worker alive it is accepted and waits in its queue. Every send (submit, the worker's own, the
sweeper's) goes through ``send``, which picks the queue from the run's stored spec."""

import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from api.sweeper import sweep_once
from core.settings import Settings
from core.store import workers
from core.store.db import make_engine, migrate, session_factory
from core.store.models import Run, Worker, utcnow
from tests.service.conftest import ROOT, beating_service, small_spec, wait_for
from worker.celery_app import queue_for, send, worker_queues

BEAT_S = 0.3


@pytest.fixture(params=["embedded", "production"])
def service(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Settings, dict[str, str]]]:
    """Settings and a worker environment of this test's own (a short beat, a queue of its own)."""
    with beating_service(request.param, tmp_path, prefix="routing", beat_s=BEAT_S, TRAINYARD_DEVICE="cpu") as service:
        yield service


def start_worker(env: dict[str, str], devices: int) -> subprocess.Popen:
    """A real worker advertising ``devices`` CPU devices; its log is worker-<devices>.log."""
    log = (Path(env["TRAINYARD_DATA_DIR"]) / f"worker-{devices}.log").open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "cli.main", "worker"],
        cwd=ROOT,
        env={**env, "TRAINYARD_DEVICES": str(devices)},
        stdout=log,
        stderr=log,
    )


def name_of(process: subprocess.Popen) -> str:
    return f"{socket.gethostname()}:{process.pid}"


def until_alive(client: TestClient, count: int, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while client.get("/healthz").json()["workers"] != count:
        assert time.monotonic() < deadline, f"never {count} worker(s) alive"
        time.sleep(0.1)


def until_claimed(client: TestClient, run_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (run := client.get(f"/v1/runs/{run_id}").json())["worker"] is None:
        assert time.monotonic() < deadline, f"run {run_id} never claimed"
        time.sleep(0.1)
    return run


def spec_for(devices: int) -> dict[str, Any]:
    return small_spec(epochs=1, resources={"devices": devices})


def test_a_run_goes_only_to_a_worker_with_the_devices_it_asks_for(service: tuple[Settings, dict[str, str]]) -> None:
    settings, env = service
    started: list[subprocess.Popen] = []
    with TestClient(create_app(settings)) as client:
        try:
            waiting = client.post("/v1/runs", json=spec_for(2))  # no worker alive: accepted, it waits
            assert waiting.status_code == 202, waiting.text
            waiting_id = waiting.json()["id"]

            started.append(small := start_worker(env, 1))
            until_alive(client, 1)
            refused = client.post("/v1/runs", json=spec_for(2))
            assert refused.status_code == 422, refused.text
            (error,) = refused.json()["errors"]
            assert error["pointer"] == "/resources/devices"
            assert f"the largest live worker ({name_of(small)}) has 1 cpu device(s)" in error["message"]

            one = client.post("/v1/runs", json=spec_for(1)).json()["id"]  # sent after the 2-device run
            assert wait_for(client, one, {"succeeded"})["worker"] == name_of(small)
            time.sleep(1)
            still = client.get(f"/v1/runs/{waiting_id}").json()
            assert still["status"] == "queued" and still["worker"] is None, still  # not the 1-device worker's

            started.append(large := start_worker(env, 2))
            assert until_claimed(client, waiting_id)["worker"] == name_of(large)
            trained = wait_for(client, waiting_id, {"succeeded"})
            assert trained["summary"]["devices"] == 2, trained  # as two gloo ranks
            until_alive(client, 2)
            (error,) = client.post("/v1/runs", json=spec_for(3)).json()["errors"]
            assert error["pointer"] == "/resources/devices"
            assert f"({name_of(large)}) has 2 cpu device(s)" in error["message"]
        finally:
            for process in started:
                process.terminate()
            for process in started:
                process.wait(timeout=30)


class SentTasks:
    """Stands in for the Celery app: records the queue each task is sent to."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    def send_task(self, name: str, *, args: list[str], queue: str, countdown: float | None) -> None:
        self.sent.append((args[0], queue))


def test_every_send_picks_the_queue_of_the_devices_a_run_asks_for(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, queue="base", requeue_after_s=1)
    migrate(settings.resolved_database_url)
    sessions = session_factory(make_engine(settings.resolved_database_url))
    with TestClient(create_app(settings)) as client:
        ids = {devices: client.post("/v1/runs", json=spec_for(devices)).json()["id"] for devices in (1, 2, 4)}
    recorder = SentTasks()
    send(recorder, settings, sessions, list(ids.values()))
    assert recorder.sent == [(ids[1], "base"), (ids[2], "base.devices-2"), (ids[4], "base.devices-4")]

    with sessions() as session:  # their messages are old now: the sweeper sends them again, to the same queues
        for run in session.query(Run).all():
            run.enqueued_at = utcnow() - timedelta(seconds=60)
        session.commit()
    resent = SentTasks()
    assert sorted(sweep_once(resent, settings, sessions)) == sorted(ids.values())
    assert sorted(resent.sent) == sorted(recorder.sent)


def test_a_worker_consumes_the_queues_of_every_run_it_can_train() -> None:
    settings = Settings(queue="trainyard")
    assert queue_for(settings, 1) == "trainyard"  # the queue of one-device runs is the one of before
    assert worker_queues(settings, 1) == ["trainyard"]
    assert worker_queues(settings, 3) == ["trainyard", "trainyard.devices-2", "trainyard.devices-3"]


def test_stale_workers_do_not_count_at_submit(tmp_path: Path) -> None:
    """A killed 1-device worker's row, older than three beats, refuses nothing; a live one does."""
    settings = Settings(data_dir=tmp_path, worker_beat_s=BEAT_S)
    migrate(settings.resolved_database_url)
    sessions = session_factory(make_engine(settings.resolved_database_url))
    advert = workers.Advert(1, "cpu", True)
    with sessions() as session:
        workers.beat(session=session, name="gone:1", host="gone", pid=1, advert=advert)
        session.get(Worker, "gone:1").seen_at = utcnow() - timedelta(seconds=10 * BEAT_S)
        session.commit()
    with TestClient(create_app(settings)) as client:
        assert client.post("/v1/runs", json=spec_for(2)).status_code == 202
        with sessions() as session:
            workers.beat(session=session, name="here:2", host="here", pid=2, advert=advert)
        answer = client.post("/v1/runs", json=spec_for(2))
        assert answer.status_code == 422 and answer.json()["errors"][0]["pointer"] == "/resources/devices"


def test_two_workers_on_one_host_each_take_half_its_cores(tmp_path: Path) -> None:
    """With no TRAINYARD_TORCH_THREADS, a worker alone takes every core it may use, and once a second
    starts on the host both train with half of them: the first recounts at its next beat and
    applies the count before its next run (a 2-device run, which only it can take). Each logs its
    choice."""
    cores = len(os.sched_getaffinity(0))
    env = {
        **{key: value for key, value in os.environ.items() if key != "TRAINYARD_TORCH_THREADS"},
        "TRAINYARD_DATA_DIR": str(tmp_path),
        "TRAINYARD_QUEUE": f"threads-{secrets.token_hex(4)}",
        "TRAINYARD_WORKER_BEAT_S": str(BEAT_S),
        "TRAINYARD_DEVICE": "cpu",
    }
    settings = Settings(data_dir=tmp_path, queue=env["TRAINYARD_QUEUE"], worker_beat_s=BEAT_S)
    first, second = tmp_path / "worker-2.log", tmp_path / "worker-1.log"
    half = f"torch threads: {max(1, cores // 2)} ({cores} cores ÷ 2 live worker(s) on this host)"
    started: list[subprocess.Popen] = []
    with TestClient(create_app(settings)) as client:
        try:
            started.append(start_worker(env, 2))
            until_alive(client, 1)
            wait_for_line(first, f"torch threads: {cores} ({cores} cores ÷ 1 live worker(s) on this host)")
            started.append(start_worker(env, 1))
            until_alive(client, 2)
            wait_for_line(second, half)
            time.sleep(3 * BEAT_S)  # the first worker's next beat counts the second
            run = wait_for(client, client.post("/v1/runs", json=spec_for(2)).json()["id"], {"succeeded"})
            assert run["worker"] == name_of(started[0])
            wait_for_line(first, half)
        finally:
            for process in started:
                process.terminate()
            for process in started:
                process.wait(timeout=30)


def wait_for_line(log: Path, line: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not (log.exists() and line in log.read_text()):
        assert time.monotonic() < deadline, f"{log.name} never logged {line!r}:\n{log.read_text()[-2000:]}"
        time.sleep(0.1)


def test_a_workers_row_says_what_its_process_has_now(tmp_path: Path) -> None:
    """A restarted process can take a killed one's name (host:pid, pid 1 in a container): each beat
    rewrites the advert, so routing never reads the old process's devices."""
    settings = Settings(data_dir=tmp_path)
    migrate(settings.resolved_database_url)
    sessions = session_factory(make_engine(settings.resolved_database_url))
    with sessions() as session:
        workers.beat(session=session, name="box:1", host="box", pid=1, advert=workers.Advert(4, "cuda", True))
        workers.beat(session=session, name="box:1", host="box", pid=1, advert=workers.Advert(1, "cpu", True))
        (row,) = workers.live(session=session, within_s=60)
        assert (row.devices, row.device_kind) == (1, "cpu")
