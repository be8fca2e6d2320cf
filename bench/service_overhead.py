"""Service overhead: wall time submit→succeeded through the API ÷ `trainyard train` of the same
~10 s spec (÷ the whole CLI process, which also starts Python and imports torch, and ÷ the run's own
training time), and queue latency submit→running (p50 / p95) on Redis and on the embedded broker.

    python bench/service_overhead.py [--quick]
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.local_service import ROOT, local_service, tiny_spec, wait


def ten_second_spec(epochs: int) -> dict:
    return {
        "name": "bench-10s",
        "epochs": epochs,
        "data": {"source": {"type": "builtin", "name": "digits"}},
        "model": {"type": "mlp", "hidden": [512, 256]},
        "regularization": {"early_stopping": None},
    }


def cli_seconds(spec: dict) -> tuple[float, float]:
    """(wall time of the `trainyard train` process, the run's own training time from its summary)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "spec.json"
        path.write_text(json.dumps(spec))
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "cli.main", "train", str(path), "--json", "--out", f"{folder}/run"],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        return time.perf_counter() - started, json.loads(done.stdout)["seconds"]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = parser.parse_args()
    epochs, repeats, probes = (10, 1, 8) if args.quick else (160, 3, 30)
    spec = ten_second_spec(epochs)
    console = Console()
    overhead = Table(title=f"submit→succeeded through the API vs `trainyard train` (digits MLP, {epochs} epochs)")
    columns = ("backend", "train: process (s)", "train: run (s)", "API submit→succeeded (s)", "÷ process", "÷ run")
    for column in columns:
        overhead.add_column(column)
    latency = Table(title=f"queue latency submit→running over {probes} runs, worker idle")
    for column in ("backend", "p50 (ms)", "p95 (ms)"):
        latency.add_column(column)
    for backend in ("redis", "embedded"):
        with local_service(backend) as client:
            api_times, cli_times, run_times = [], [], []
            for _ in range(repeats):
                process_seconds, run_seconds = cli_seconds(spec)
                cli_times.append(process_seconds)
                run_times.append(run_seconds)
                run = wait(client, client.post("/v1/runs", json=spec).json()["id"], poll=0.5)
                assert run["status"] == "succeeded", run
                finished = datetime.fromisoformat(run["finished_at"]) - datetime.fromisoformat(run["created_at"])
                api_times.append(finished.total_seconds())  # the server's own clock: polling adds nothing
            cli, own, api = (statistics.median(v) for v in (cli_times, run_times, api_times))
            overhead.add_row(backend, f"{cli:.2f}", f"{own:.2f}", f"{api:.2f}", f"{api / cli:.3f}", f"{api / own:.3f}")
            delays = []
            for _ in range(probes):
                run = wait(client, client.post("/v1/runs", json=tiny_spec()).json()["id"])
                started = datetime.fromisoformat(run["started_at"])
                delays.append((started - datetime.fromisoformat(run["created_at"])).total_seconds() * 1000)
            latency.add_row(backend, f"{percentile(delays, 0.5):.1f}", f"{percentile(delays, 0.95):.1f}")
    console.print(overhead)
    console.print(latency)


if __name__ == "__main__":
    main()
