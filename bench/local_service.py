"""Start a throwaway Trainyard backend for benchmarks: the embedded default or the machine's
PostgreSQL + Redis, with N worker processes, and the API in-process."""

import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from fastapi.testclient import TestClient

from api.main import create_app
from core.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
POSTGRES = "postgresql://postgres@127.0.0.1:5432"


@contextmanager
def local_service(backend: str, workers: int = 1, **settings: str) -> Iterator[TestClient]:
    """``backend`` is 'embedded' (SQLite + filesystem queue) or 'redis' (PostgreSQL + Redis);
    ``settings`` become the workers' TRAINYARD_* environment."""
    data_dir = Path(tempfile.mkdtemp(prefix=f"trainyard-bench-{backend}-"))
    env = {
        **os.environ,
        "TRAINYARD_DATA_DIR": str(data_dir),
        "TRAINYARD_QUEUE": f"bench-{secrets.token_hex(4)}",
        **{f"TRAINYARD_{name.upper()}": value for name, value in settings.items()},
    }
    database = None
    if backend == "redis":
        database = f"trainyard_bench_{secrets.token_hex(4)}"
        with psycopg.connect(f"{POSTGRES}/test", autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{database}"')
        env["TRAINYARD_DATABASE_URL"] = f"postgresql+psycopg://postgres@127.0.0.1:5432/{database}"
        env["TRAINYARD_BROKER_URL"] = "redis://127.0.0.1:6379/0"
    settings = Settings(
        data_dir=data_dir,
        queue=env["TRAINYARD_QUEUE"],
        database_url=env.get("TRAINYARD_DATABASE_URL"),
        broker_url=env.get("TRAINYARD_BROKER_URL"),
        sse_poll_seconds=0.02,
    )
    with TestClient(create_app(settings)) as client:  # migrates before the workers start
        processes = [
            subprocess.Popen(
                [sys.executable, "-m", "cli.main", "worker"],
                cwd=ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for _ in range(workers)
        ]
        try:
            warm = client.post("/v1/runs", json=tiny_spec()).json()["id"]
            wait(client, warm)  # every worker process is importing; one warm run proves one is up
            time.sleep(3 if workers > 1 else 0)
            yield client
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                process.wait(timeout=30)
    if database:
        with psycopg.connect(f"{POSTGRES}/test", autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def tiny_spec(**overrides: Any) -> dict[str, Any]:
    spec = {
        "name": "bench-tiny",
        "epochs": 1,
        "data": {"source": {"type": "builtin", "name": "iris"}},
        "model": {"type": "mlp", "hidden": [16]},
        "regularization": {"early_stopping": None},
        "diagnostics": {"activations": False, "gradients": False},
    }
    return {**spec, **overrides}


def wait(client: TestClient, run_id: str, timeout: float = 600.0, poll: float = 0.01) -> dict[str, Any]:
    """Poll until the run finishes (a long run: poll slowly, the poller shares the machine's cores)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = client.get(f"/v1/runs/{run_id}").json()
        if run["status"] in ("succeeded", "failed", "cancelled"):
            return run
        time.sleep(poll)
    raise TimeoutError(run_id)
