"""Prediction latency and throughput against a running `trainyard serve` (uvicorn, real HTTP):
p50 / p99 for one row, and throughput at 64 concurrent clients with dynamic batching on ÷ off
(measured with wrk when it is installed, `apt-get install wrk`; else with an httpx client).
A `trainyard serve` trains the model; API processes alone (uvicorn, no access log, no worker
starting beside them) then serve it, alternating between the modes over several starts.

    python bench/predict_latency.py [--hidden 128 64] [--rounds 3] [--api-processes 1]
"""

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]


def spec(hidden: list[int]) -> dict:
    return {
        "name": "bench-predict",
        "epochs": 1,
        "data": {"source": {"type": "builtin", "name": "digits"}},
        "model": {"type": "mlp", "hidden": hidden},
        "regularization": {"early_stopping": None},
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def server(data_dir: Path, command: list[str], **env: str):
    """A server process on a free port, the data folder and ``TRAINYARD_*`` settings given."""
    port = free_port()
    settings = {"data_dir": str(data_dir), **env}
    environment = {**os.environ, **{f"TRAINYARD_{k.upper()}": v for k, v in settings.items()}}
    process = subprocess.Popen(
        [sys.executable, "-m", *command, "--port", str(port)],
        cwd=ROOT,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                httpx.get(f"{url}/healthz", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


SERVICE = ["cli.main", "serve"]  # API + worker, to train the model
API = ["uvicorn", "api.main:create_app", "--factory", "--no-access-log"]  # what serves predictions


def train(url: str, hidden: list[int]) -> str:
    run_id = httpx.post(f"{url}/v1/runs", json=spec(hidden), timeout=60).json()["id"]
    while (status := httpx.get(f"{url}/v1/runs/{run_id}").json()["status"]) not in ("succeeded", "failed"):
        time.sleep(0.2)
    assert status == "succeeded"
    return run_id


def one_row_latency(url: str, run_id: str, requests: int) -> list[float]:
    row = {"inputs": [[[[float((i * j) % 16) for j in range(8)] for i in range(8)]]]}
    times = []
    with httpx.Client(base_url=url) as client:
        for _ in range(50):
            client.post(f"/v1/runs/{run_id}/predict", json=row)
        for _ in range(requests):
            started = time.perf_counter()
            client.post(f"/v1/runs/{run_id}/predict", json=row).raise_for_status()
            times.append((time.perf_counter() - started) * 1000)
    return times


async def concurrent_throughput(url: str, run_id: str, clients: int, requests: int) -> float:
    row = {"inputs": [[[[float((i + j) % 16) for j in range(8)] for i in range(8)]]]}
    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:

        async def worker(count: int) -> None:
            for _ in range(count):
                (await client.post(f"/v1/runs/{run_id}/predict", json=row)).raise_for_status()

        await asyncio.gather(*(worker(5) for _ in range(clients)))  # warm up
        started = time.perf_counter()
        await asyncio.gather(*(worker(requests // clients) for _ in range(clients)))
        return (requests // clients) * clients / (time.perf_counter() - started)


def wrk_throughput(url: str, run_id: str, clients: int, seconds: int = 8) -> float | None:
    """Requests/s from wrk (a C load generator: the client costs the 2-core machine little), if installed."""
    if shutil.which("wrk") is None:
        return None
    row = [[[float((i + j) % 16) for j in range(8)] for i in range(8)]]
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        body = json.dumps({"inputs": [row]})
        script.write(
            f'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nwrk.body = {json.dumps(body)}\n'
        )
    out = subprocess.run(
        ["wrk", "-t2", f"-c{clients}", f"-d{seconds}s", "-s", script.name, f"{url}/v1/runs/{run_id}/predict"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    if "Non-2xx" in out:
        raise RuntimeError(out)
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000, help="sequential 1-row requests per mode")
    parser.add_argument("--hidden", type=int, nargs="+", default=[128, 64], help="the MLP's hidden layers")
    parser.add_argument("--rounds", type=int, default=3, help="servers started per mode, alternating (median)")
    parser.add_argument("--seconds", type=int, default=8, help="length of each 64-client wrk run")
    parser.add_argument("--api-processes", type=int, default=1, help="uvicorn processes serving predictions")
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="trainyard-predict-"))
    modes = {"off (max_batch 1)": {"predict_max_batch": "1"}, "on (64 rows, 2 ms)": {}}
    latencies: dict[str, list[float]] = {label: [] for label in modes}
    rates: dict[str, list[float]] = {label: [] for label in modes}
    with server(data_dir, SERVICE) as url:
        run_id = train(url, args.hidden)
    for _ in range(args.rounds):  # alternating, so drift on a shared machine hits both modes alike
        for label, env in modes.items():
            with server(data_dir, [*API, "--workers", str(args.api_processes)], **env) as url:
                latencies[label] += one_row_latency(url, run_id, args.requests // args.rounds)
                rate = wrk_throughput(url, run_id, 64, args.seconds)
                rates[label].append(rate or asyncio.run(concurrent_throughput(url, run_id, 64, args.requests)))
    table = Table(
        title=f"POST /v1/runs/ID/predict, digits MLP {args.hidden}, {args.api_processes} API process(es): "
        f"{args.rounds} servers per mode, {'wrk' if shutil.which('wrk') else 'httpx'} with 64 connections"
    )
    for column in ("batching", "1-row p50 (ms)", "1-row p99 (ms)", "64 clients, median (req/s)", "range", "ratio"):
        table.add_column(column)
    base = statistics.median(rates["off (max_batch 1)"])
    for label in modes:
        rate = statistics.median(rates[label])
        table.add_row(
            label,
            f"{statistics.median(latencies[label]):.2f}",
            f"{percentile(latencies[label], 0.99):.2f}",
            f"{rate:.0f}",
            f"{min(rates[label]):.0f}–{max(rates[label]):.0f}",
            f"{rate / base:.2f}",
        )
    Console().print(table)


if __name__ == "__main__":
    main()
