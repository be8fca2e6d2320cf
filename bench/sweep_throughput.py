"""Sweep throughput and pruning.

1. A 12-trial grid sweep over ``optimizer.lr`` of small digits runs (about 2 s each) with
   ``max_concurrent`` = workers, against the same 12 trial specs posted one by one as plain runs,
   on PostgreSQL + Redis with 1 and 2 workers (torch threads = cores ÷ workers). Wall time runs
   from the first POST to the server's ``finished_at`` of the last run (for the sweep: of the
   parent, which the worker finishing the last trial closes). The two orders alternate over
   ``--rounds``; medians are reported. Other jobs on a shared machine move a run's own duration
   by more than the 5 % being judged, so the last column compares the two at equal run times: the
   pooled median run's training time plus each one's idle time (wall − training time ÷ workers).
   A second table shows where the time goes, from the runs' timestamps: each worker's idle gap
   between the end of one run and the start of its next, and for the sweep that gap's two parts
   (a child's end → the next child stored by ``parents.advance``, its Optuna tell and ask;
   stored → claimed by a worker).
2. ASHA on a 7-value lr grid (1e-6 … 1, 16 epochs, one trial at a time) on the embedded
   backend: epochs trained with and without ``early_stop``, the share saved, and whether the best
   child is the one the unpruned sweep finds; in ascending and descending grid order (ASHA judges
   a trial against those that reached the rung before it), with grace 1 epoch and 4.

    python bench/sweep_throughput.py [--rounds 3]
"""

import argparse
import itertools
import os
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.local_service import local_service

LRS = [1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 0.1, 0.2, 0.5]
ASHA_LRS = [1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0]
ASHA_ROWS = [  # grid order, reduction factor, grace epochs
    ("ascending", 2, 1),
    ("ascending", 3, 1),
    ("descending", 2, 1),
    ("descending", 3, 1),
    ("descending", 2, 4),
]
ENDED = ("succeeded", "failed", "cancelled", "pruned")
POLL_S = 0.25  # the waiting client shares the 2 cores with the workers: poll slowly


def base_spec(epochs: int) -> dict[str, Any]:
    return {
        "name": "bench-sweep",
        "epochs": epochs,
        "data": {"source": {"type": "builtin", "name": "digits"}},
        "model": {"type": "mlp", "hidden": [128]},
        "optimizer": {"type": "adam", "lr": 0.01},
        "regularization": {"early_stopping": None},
        "diagnostics": {"activations": False, "gradients": False},
    }


def sweep_spec(epochs: int, lrs: list[float], max_concurrent: int, **sweep: Any) -> dict[str, Any]:
    grid = {"method": "grid", "parameters": {"optimizer.lr": lrs}, "max_concurrent": max_concurrent}
    return {**base_spec(epochs), "sweep": {**grid, **sweep}}


def trial_spec(epochs: int, lr: float) -> dict[str, Any]:
    """A sweep trial's spec written by hand: the base spec with its lr."""
    spec = base_spec(epochs)
    return {**spec, "optimizer": {**spec["optimizer"], "lr": lr}}


def at(stamp: str) -> float:
    """A server timestamp as epoch seconds (SQLite gives naive UTC)."""
    moment = datetime.fromisoformat(stamp)
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def post(client: TestClient, spec: dict[str, Any]) -> str:
    response = client.post("/v1/runs", json=spec)
    assert response.status_code == 202, response.text
    return response.json()["id"]


def wait_ended(client: TestClient, ids: list[str], timeout: float = 900.0) -> list[dict[str, Any]]:
    """Every run of ``ids`` once it has ended, polled one at a time in the order given (each poll
    one small request, as for a sweep's parent)."""
    deadline = time.monotonic() + timeout
    ended = []
    for run_id in ids:
        while (run := client.get(f"/v1/runs/{run_id}").json())["status"] not in ENDED:
            if time.monotonic() > deadline:
                raise TimeoutError(run_id)
            time.sleep(POLL_S)
        ended.append(run)
    return ended


def children(client: TestClient, parent_id: str) -> list[dict[str, Any]]:
    return client.get(f"/v1/runs/{parent_id}/children", params={"limit": 200}).json()["items"]


def one_by_one(client: TestClient, epochs: int) -> tuple[float, float, list[dict[str, Any]]]:
    """(start, wall seconds, the runs) of the 12 trial specs posted as plain runs."""
    start = time.time()
    runs = wait_ended(client, [post(client, trial_spec(epochs, lr)) for lr in LRS])
    assert {run["status"] for run in runs} == {"succeeded"}
    return start, max(at(run["finished_at"]) for run in runs) - start, runs


def sweep(client: TestClient, epochs: int, workers: int) -> tuple[float, float, list[dict[str, Any]]]:
    """(start, wall seconds, the children) of the 12-trial grid sweep."""
    start = time.time()
    [parent] = wait_ended(client, [post(client, sweep_spec(epochs, LRS, workers))])
    kids = children(client, parent["id"])
    assert parent["status"] == "succeeded" and len(kids) == len(LRS), parent
    return start, at(parent["finished_at"]) - start, kids


def idle_gaps(runs: list[dict[str, Any]]) -> list[float]:
    """Per worker, the seconds from the end of each run to the start of its next."""
    by_worker: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        by_worker.setdefault(run["worker"], []).append(run)
    gaps = []
    for own in by_worker.values():
        own.sort(key=lambda run: at(run["started_at"]))
        gaps += [at(b["started_at"]) - at(a["finished_at"]) for a, b in itertools.pairwise(own)]
    return gaps


def advance_parts(kids: list[dict[str, Any]]) -> tuple[list[float], list[float]]:
    """For each child created after another ended: (that end → the child stored), (stored → started)."""
    ends = sorted(at(kid["finished_at"]) for kid in kids)
    stored, claimed = [], []
    for kid in kids:
        created = at(kid["created_at"])
        before = [end for end in ends if end <= created]
        if before:
            stored.append(created - before[-1])
            claimed.append(at(kid["started_at"]) - created)
    return stored, claimed


def ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:.0f} / {statistics.mean(values) * 1000:.0f}"


def timed_rounds(client: TestClient, workers: int, rounds: int, epochs: int) -> dict[str, dict[str, list[float]]]:
    """Per submission mode: each round's wall time and idle time (wall − training time ÷ workers),
    and every run's duration and gaps, over ``rounds`` rounds of alternating order. Both train
    the very same resolved specs."""
    specs: dict[str, list[dict[str, Any]]] = {}
    stats: dict[str, dict[str, list[float]]] = {
        mode: {key: [] for key in ("wall", "idle", "run", "gap", "first", "tail", "stored", "claimed")}
        for mode in ("one by one", "sweep")
    }
    for round_ in range(rounds):
        for mode in ("sweep", "one by one") if round_ % 2 == 0 else ("one by one", "sweep"):
            start, wall, runs = sweep(client, epochs, workers) if mode == "sweep" else one_by_one(client, epochs)
            durations = [at(run["finished_at"]) - at(run["started_at"]) for run in runs]
            specs[mode] = [run["spec"] for run in runs]
            mine = stats[mode]
            mine["wall"].append(wall)
            mine["idle"].append(wall - sum(durations) / workers)
            mine["run"] += durations
            mine["gap"] += idle_gaps(runs)
            mine["first"].append(min(at(run["started_at"]) for run in runs) - start)
            mine["tail"].append(start + wall - max(at(run["finished_at"]) for run in runs))
            if mode == "sweep":
                stored, claimed = advance_parts(runs)
                mine["stored"] += stored
                mine["claimed"] += claimed
    assert specs["sweep"] == specs["one by one"]
    return stats


def throughput(rounds: int, epochs: int) -> tuple[Table, Table]:
    cores = os.cpu_count() or 1
    table = Table(title=f"{len(LRS)}-trial lr grid sweep vs the same specs one by one, PostgreSQL + Redis")
    columns = ("workers", "torch threads", "one-by-one (s)", "sweep (s)", "sweep ÷ one-by-one (range)")
    for column in (*columns, "÷ at equal run times", "each round: one-by-one / sweep (s)"):
        table.add_column(column)
    parts = Table(title="where the time goes (ms, median / mean over all rounds)")
    columns = ("workers", "submission", "run (s)", "idle per worker", "worker's gap between runs")
    for column in (*columns, "POST → first start", "last run's end → done", "child end → next stored", "→ started"):
        parts.add_column(column)
    for workers in (1, 2):
        threads = max(cores // workers, 1)
        with local_service("redis", workers=workers, torch_threads=str(threads)) as client:
            # every worker and the API open their Optuna storage once: do that before timing
            wait_ended(client, [post(client, sweep_spec(1, LRS[: 2 * workers], workers))])
            stats = timed_rounds(client, workers, rounds, epochs)
        sweep_, alone = stats["sweep"], stats["one by one"]
        ratios = [s / o for s, o in zip(sweep_["wall"], alone["wall"], strict=True)]
        training = statistics.median(sweep_["run"] + alone["run"]) * len(LRS) / workers
        equal = (training + statistics.median(sweep_["idle"])) / (training + statistics.median(alone["idle"]))
        table.add_row(
            str(workers),
            str(threads),
            f"{statistics.median(alone['wall']):.2f}",
            f"{statistics.median(sweep_['wall']):.2f}",
            f"{statistics.median(ratios):.3f} ({min(ratios):.3f}–{max(ratios):.3f})",
            f"{equal:.3f}",
            ", ".join(f"{o:.1f} / {s:.1f}" for o, s in zip(alone["wall"], sweep_["wall"], strict=True)),
        )
        for mode, mine in stats.items():
            parts.add_row(
                str(workers),
                mode,
                f"{statistics.median(mine['run']):.2f}",
                *(ms(mine[key]) if mine[key] else "" for key in ("idle", "gap", "first", "tail", "stored", "claimed")),
            )
    return table, parts


def finished_sweep(client: TestClient, spec: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    [parent] = wait_ended(client, [post(client, spec)])
    assert parent["status"] == "succeeded", parent
    return parent, children(client, parent["id"])


def pruning(epochs: int) -> Table:
    title = f"ASHA on a {len(ASHA_LRS)}-value lr grid (1e-6 … 1), {epochs} epochs, 1 trial at a time, embedded"
    table = Table(title=title)
    columns = ("grid order", "reduction factor", "grace epochs", "epochs trained", "saved", "pruned", "best lr")
    for column in (*columns, "its val_loss", "same best child", "the unpruned best here"):
        table.add_column(column)
    with local_service("embedded", workers=1) as client:
        _, full = finished_sweep(client, sweep_spec(epochs, ASHA_LRS, 1))
        full_best = next(kid for kid in full if kid["best"])
        total = sum(kid["epoch"] for kid in full)
        assert total == epochs * len(ASHA_LRS)
        lr = full_best["params"]["optimizer.lr"]
        table.add_row("any (no early_stop)", "", "", str(total), "", "0", f"{lr:g}", f"{full_best['metric']:.4f}")
        for name, factor, grace in ASHA_ROWS:
            lrs = ASHA_LRS if name == "ascending" else ASHA_LRS[::-1]
            asha = {"type": "asha", "grace_epochs": grace, "reduction_factor": factor}
            _, kids = finished_sweep(client, sweep_spec(epochs, lrs, 1, early_stop=asha))
            best = next(kid for kid in kids if kid["best"])
            trained = sum(kid["epoch"] for kid in kids)
            same = next(kid for kid in kids if kid["params"] == full_best["params"])
            table.add_row(
                name,
                str(factor),
                str(grace),
                str(trained),
                f"{1 - trained / total:.0%}",
                str(sum(kid["status"] == "pruned" for kid in kids)),
                f"{best['params']['optimizer.lr']:g}",
                f"{best['metric']:.4f}",
                "yes" if best["params"] == full_best["params"] else "no",
                f"{same['status']} at epoch {same['epoch']}",
            )
    return table


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=250, help="epochs of each throughput trial")
    parser.add_argument("--asha-epochs", type=int, default=16)
    args = parser.parse_args()
    console = Console()
    for table in (*throughput(args.rounds, args.epochs), pruning(args.asha_epochs)):
        console.print(table)


if __name__ == "__main__":
    main()
