"""`/healthz` reports whether a worker is alive, on both backends: each worker process beats into
`workers`; one that stops cleanly leaves at once, one killed is counted out three beats later. A
beat that meets a database error logs it and beats again."""

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from core.settings import Settings
from core.store import workers
from core.store.db import make_engine, migrate, session_factory
from tests.service.conftest import beating_service, start_worker
from worker.liveness import WorkerBeat

BEAT_S = 0.3


@pytest.fixture(params=["embedded", "production"])
def short_beat(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Settings, dict[str, str]]]:
    """Settings and a worker environment of their own, with a short beat."""
    with beating_service(request.param, tmp_path, prefix="health", beat_s=BEAT_S) as service:
        yield service


def health_until(client: TestClient, status: int, workers_alive: int, timeout: float = 90) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        answer = client.get("/healthz")
        if answer.status_code == status and answer.json()["workers"] == workers_alive:
            return answer.json()
        assert time.monotonic() < deadline, answer.json()
        time.sleep(0.1)


def test_healthz_reports_workers_alive_and_fails_without_one(short_beat: tuple[Settings, dict[str, str]]) -> None:
    settings, env = short_beat
    with TestClient(create_app(settings)) as client:
        alone = client.get("/healthz")
        assert alone.status_code == 503 and alone.headers["content-type"] == "application/problem+json"
        body = alone.json()
        assert body["worker"] == "none alive" and body["workers"] == 0
        assert body["database"] == body["queue"] == "ok" and "worker: none alive" in body["detail"]

        first, second = start_worker(env), start_worker(env)
        try:
            both = health_until(client, 200, 2)
            assert both["status"] == both["database"] == both["queue"] == both["worker"] == "ok"
            os.kill(first.pid, signal.SIGKILL)  # its row stays, but goes stale after three beats
            first.wait()
            health_until(client, 200, 1, timeout=3 * BEAT_S + 5)
        finally:
            second.terminate()  # a clean stop removes its row
            second.wait(timeout=30)
        stopped = client.get("/healthz")
        assert stopped.status_code == 503 and stopped.json()["workers"] == 0, stopped.json()


def test_the_beat_outlives_database_errors(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'trainyard.db'}"
    engine = make_engine(url)  # no tables yet: every beat fails
    beat = WorkerBeat(make_engine(url), interval_s=0.05)
    beat.start()
    try:
        time.sleep(0.3)
        assert beat.thread.is_alive() and beat.failing
        migrate(url)
        deadline = time.monotonic() + 10
        while beat.failing:
            assert time.monotonic() < deadline, "the beat never recovered"
            time.sleep(0.05)
        with session_factory(engine)() as session:
            assert workers.alive(session=session, within_s=1) == 1
    finally:
        beat.stop()
    with session_factory(engine)() as session:
        assert workers.alive(session=session, within_s=60) == 0  # a clean stop leaves
