"""Service fixtures: the same tests run on the embedded default (SQLite + filesystem queue) and on
the production path (the machine's PostgreSQL and Redis), each with a real worker process."""

import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from core.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
POSTGRES = "postgresql://postgres@127.0.0.1:5432"
REDIS = ("127.0.0.1", 6379)
TERMINAL = {"succeeded", "failed", "cancelled"}


@dataclass
class Backend:
    name: str
    settings: Settings
    env: dict[str, str]


def _unavailable(what: str, exc: Exception) -> None:
    message = f"{what} is not reachable: {exc}"
    if os.environ.get("CI") == "true":
        pytest.fail(message)  # in CI a missing service is a failure, never a skip
    pytest.skip(message)


def _redis_reachable() -> None:
    try:
        socket.create_connection(REDIS, timeout=2).close()
    except OSError as exc:
        _unavailable("Redis at 127.0.0.1:6379", exc)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def api_alone(data_dir: Path, env: dict[str, str]) -> Iterator[tuple[subprocess.Popen, str]]:
    """The API alone (uvicorn, no worker) as a process of this test's own on a free port, with the
    environment ``env``; yields the process and its base URL once it answers, and stops it (by PID)
    after. Its log is api.log in ``data_dir``."""
    port = free_port()
    log = (data_dir / "api.log").open("wb")
    argv = ["-m", "uvicorn", "api.main:create_app", "--factory", "--port", str(port), "--no-access-log"]
    process = subprocess.Popen([sys.executable, *argv], cwd=ROOT, env=env, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                httpx.get(f"{url}/openapi.json", timeout=10).raise_for_status()
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and process.poll() is None, (data_dir / "api.log").read_text()
                time.sleep(0.2)
        yield process, url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def start_worker(env: dict[str, str]) -> subprocess.Popen:
    """A real worker process; its log goes to worker.log in the backend's data folder."""
    log = (Path(env["TRAINYARD_DATA_DIR"]) / "worker.log").open("ab")
    return subprocess.Popen([sys.executable, "-m", "cli.main", "worker"], cwd=ROOT, env=env, stdout=log, stderr=log)


@contextmanager
def postgres_database(prefix: str) -> Iterator[str]:
    """A fresh database of the machine's PostgreSQL for one test (its SQLAlchemy URL), dropped after."""
    database = f"{prefix}_{secrets.token_hex(4)}"
    try:
        with psycopg.connect(f"{POSTGRES}/test", autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{database}"')
    except psycopg.Error as exc:
        _unavailable("PostgreSQL at 127.0.0.1:5432", exc)
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{database}"
    finally:
        with psycopg.connect(f"{POSTGRES}/test", autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


@contextmanager
def beating_service(
    backend: str, tmp_path: Path, *, prefix: str, beat_s: float, **extra: str
) -> Iterator[tuple[Settings, dict[str, str]]]:
    """Settings and a worker environment of one test's own, on ``backend`` (embedded or production):
    its own queue, a short worker beat, and ``extra`` TRAINYARD_* variables for the workers."""
    env = {
        **os.environ,
        "TRAINYARD_DATA_DIR": str(tmp_path),
        "TRAINYARD_QUEUE": f"{prefix}-{secrets.token_hex(4)}",
        "TRAINYARD_WORKER_BEAT_S": str(beat_s),
        **extra,
    }
    with ExitStack() as stack:
        if backend == "production":
            _redis_reachable()
            env["TRAINYARD_DATABASE_URL"] = stack.enter_context(postgres_database(f"trainyard_{prefix}"))
            env["TRAINYARD_BROKER_URL"] = "redis://127.0.0.1:6379/0"
        settings = Settings(
            data_dir=tmp_path,
            queue=env["TRAINYARD_QUEUE"],
            database_url=env.get("TRAINYARD_DATABASE_URL"),
            broker_url=env.get("TRAINYARD_BROKER_URL"),
            worker_beat_s=beat_s,
        )
        yield settings, env


@pytest.fixture(scope="module", params=["embedded", "production"])
def backend(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    data_dir = tmp_path_factory.mktemp(request.param)
    env = {**os.environ, "TRAINYARD_DATA_DIR": str(data_dir), "TRAINYARD_QUEUE": f"test-{secrets.token_hex(4)}"}
    with ExitStack() as stack:
        if request.param == "production":
            _redis_reachable()
            env["TRAINYARD_DATABASE_URL"] = stack.enter_context(postgres_database("trainyard_test"))
            env["TRAINYARD_BROKER_URL"] = "redis://127.0.0.1:6379/0"
        settings = Settings(
            data_dir=data_dir,
            queue=env["TRAINYARD_QUEUE"],
            sse_poll_seconds=0.05,
            database_url=env.get("TRAINYARD_DATABASE_URL"),
            broker_url=env.get("TRAINYARD_BROKER_URL"),
        )
        worker = start_worker(env)
        yield Backend(request.param, settings, env)
        worker.terminate()
        worker.wait(timeout=30)


@pytest.fixture(scope="module")
def client(backend: Backend) -> Iterator[TestClient]:
    with TestClient(create_app(backend.settings)) as test_client:
        yield test_client


def wait_for(client: TestClient, run_id: str, statuses: set[str], timeout: float = 120.0) -> dict[str, Any]:
    """Poll the run until its status is one of ``statuses``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = client.get(f"/v1/runs/{run_id}").json()
        if run["status"] in statuses:
            return run
        time.sleep(0.1)
    raise AssertionError(f"run {run_id} still {run['status']} after {timeout}s")


def small_spec(**overrides: Any) -> dict[str, Any]:
    """A digits MLP that trains in a few seconds."""
    spec = {
        "name": "service-test",
        "epochs": 3,
        "data": {"source": {"type": "builtin", "name": "digits"}},
        "model": {"type": "mlp", "hidden": [32], "dropout": 0.0},
        "schedule": {"type": "constant"},
        "optimizer": {"type": "adam", "lr": 0.01},
        "regularization": {"early_stopping": None},
        "diagnostics": {"every_n_steps": 5},
    }
    spec.update(overrides)
    return spec
