"""Throughput of independent short runs with 2 workers ÷ 1 worker (PostgreSQL + Redis). On one
machine, workers share its cores: with no setting each takes the cores ÷ the live workers on its
host; `TRAINYARD_TORCH_THREADS` = the machine's cores gives each torch's default instead (the
oversubscribed case the default avoids).

python bench/workers_scaling.py [--runs 24]
"""

import argparse
import os
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.local_service import local_service, tiny_spec, wait


def throughput(workers: int, runs: int, threads: int | None) -> float:
    settings = {"torch_threads": str(threads)} if threads else {}
    with local_service("redis", workers=workers, **settings) as client:
        spec = tiny_spec(epochs=20, data={"source": {"type": "builtin", "name": "digits"}})
        started = time.perf_counter()
        ids = [client.post("/v1/runs", json=spec).json()["id"] for _ in range(runs)]
        for run_id in ids:
            assert wait(client, run_id)["status"] == "succeeded"
        return runs / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=24)
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    table = Table(title=f"{args.runs} independent digits runs (20 epochs each), PostgreSQL + Redis, {cores} cores")
    for column in ("workers", "TRAINYARD_TORCH_THREADS", "threads each", "runs / minute", "ratio vs the first row"):
        table.add_column(column)
    base = None
    rows = ((1, None), (1, 1), (2, 1), (2, None), (2, cores))
    for workers, threads in rows:
        rate = throughput(workers, args.runs, threads) * 60
        base = base or rate
        each = threads or max(1, cores // workers)
        table.add_row(str(workers), str(threads or "not set"), str(each), f"{rate:.1f}", f"{rate / base:.2f}")
    Console().print(table)


if __name__ == "__main__":
    main()
