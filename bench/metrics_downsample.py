"""GET /v1/runs/{id}/metrics on a 100k-point run: the full series against ``?max_points=2000``,
response size and time (median of ``--repeats``), on the embedded SQLite database and on the
machine's PostgreSQL. The points are written into the store directly (a queued run, no worker):
one per step of ``train_loss_running`` over ``--points`` steps, or the same points spread over ten
step series (as diagnostics record them), next to 100 epochs of the per-epoch metrics. The API
runs in-process (TestClient): the time is the route's own (query, thinning, JSON), no network.

    python bench/metrics_downsample.py [--points 100000] [--repeats 7] [--backend embedded|postgres|both]
"""

import argparse
import math
import random
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from fastapi.testclient import TestClient
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from api.main import create_app
from bench.local_service import POSTGRES, tiny_spec
from core.settings import Settings
from core.store.db import make_engine, session_factory
from core.store.runs import add_points

EPOCHS = 100
PER_EPOCH = ("train_loss", "val_loss", "train_accuracy", "val_accuracy", "lr")


@contextmanager
def api(backend: str) -> Iterator[tuple[TestClient, Settings]]:
    """The API on a fresh embedded database or a fresh PostgreSQL database (no worker)."""
    database = f"trainyard_bench_{secrets.token_hex(4)}" if backend == "postgres" else None
    if database:
        with psycopg.connect(f"{POSTGRES}/test", autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{database}"')
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{database}" if database else None
    settings = Settings(data_dir=Path(tempfile.mkdtemp(prefix="trainyard-bench-metrics-")), database_url=url)
    try:
        with TestClient(create_app(settings)) as client:
            yield client, settings
    finally:
        if database:
            with psycopg.connect(f"{POSTGRES}/test", autocommit=True) as connection:
                connection.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def synthetic_points(points: int, series: int) -> list[tuple[int, int, str, float]]:
    """``points`` step points over ``series`` names (a noisy decaying loss, a spike or two), and
    100 epochs of the per-epoch metrics."""
    rng = random.Random(0)
    steps_per_epoch = max(1, points // series // EPOCHS)
    names = ["train_loss_running"] if series == 1 else [f"grad_norm/{i}_dense.weight" for i in range(series)]
    rows = []
    for index, name in enumerate(names):
        for step in range(points // series):
            value = 2.3 * math.exp(-step / (points / series / 5)) + abs(rng.gauss(0, 0.05)) + (index + 1) * 0.01
            rows.append((step, step // steps_per_epoch + 1, name, 50.0 if rng.random() < 1e-4 else value))
    for epoch in range(1, EPOCHS + 1):
        rows += [(epoch * steps_per_epoch, epoch, name, 1 / epoch) for name in PER_EPOCH]
    return rows


def stored_run(client: TestClient, settings: Settings, rows: list[tuple[int, int, str, float]]) -> str:
    run_id = client.post("/v1/runs", json=tiny_spec(name="bench-metrics")).json()["id"]
    sessions = session_factory(make_engine(settings.resolved_database_url))
    with sessions() as session:
        for start in range(0, len(rows), 10_000):
            add_points(session=session, run_id=run_id, points=rows[start : start + 10_000])
    return run_id


def measure(client: TestClient, run_id: str, params: dict, repeats: int) -> tuple[int, int, float]:
    """(points returned, response bytes, median seconds)."""
    times, response = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        response = client.get(f"/v1/runs/{run_id}/metrics", params=params)
        times.append(time.perf_counter() - started)
        assert response.status_code == 200, response.text
    points = sum(len(series["step"]) for series in response.json()["series"].values())
    return points, len(response.content), statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=100_000, help="step points stored")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--backend", choices=("embedded", "postgres", "both"), default="both")
    args = parser.parse_args()
    table = Table(
        title=f"GET /v1/runs/{{id}}/metrics, {args.points:,} step points (+{EPOCHS * len(PER_EPOCH)} per epoch)"
    )
    for column in ("backend", "step series", "query", "points returned", "response (kB)", "median (ms)", "÷ full"):
        table.add_column(column, justify="right")
    backends = ("embedded", "postgres") if args.backend == "both" else (args.backend,)
    for backend in backends:
        with api(backend) as (client, settings):
            for series in (1, 10):
                run_id = stored_run(client, settings, synthetic_points(args.points, series))
                full = measure(client, run_id, {}, args.repeats)
                thin = measure(client, run_id, {"max_points": 2000}, args.repeats)
                for query, (points, size, seconds) in (("full", full), ("max_points=2000", thin)):
                    ratio = f"{size / full[1]:.3f} size, {seconds / full[2]:.2f} time" if query != "full" else ""
                    table.add_row(
                        backend,
                        str(series),
                        query,
                        f"{points:,}",
                        f"{size / 1000:,.0f}",
                        f"{seconds * 1000:.0f}",
                        ratio,
                    )
    Console(width=160).print(table)


if __name__ == "__main__":
    main()
