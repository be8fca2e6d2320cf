"""Reliability: a worker killed with SIGKILL mid-run is replaced and the run resumes from its
checkpoint to the very weights of an uninterrupted run; a broker that loses its messages loses no
run; 200 concurrent submissions with 2 workers each train exactly once."""

import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient
from safetensors.torch import load_file

from api.main import create_app
from core.settings import Settings
from tests.service.conftest import TERMINAL, Backend, free_port, start_worker, wait_for

SEEDED = {
    "name": "resume-me",
    "seed": 7,
    "epochs": 8,
    "data": {"source": {"type": "builtin", "name": "moons", "n_samples": 12000, "noise": 0.2}, "batch_size": 64},
    "model": {"type": "mlp", "hidden": [128, 128], "dropout": 0.2},
    "regularization": {"early_stopping": {"monitor": "val_loss", "patience": 20}},
    "diagnostics": {"every_n_steps": 25},
}


def environment(data_dir: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "TRAINYARD_DATA_DIR": str(data_dir),
        "TRAINYARD_QUEUE": f"q-{secrets.token_hex(4)}",
        "TRAINYARD_LEASE_SECONDS": "2",
        "TRAINYARD_CHECKPOINT_MIN_INTERVAL_S": "0",
        **extra,
    }


def app_settings(env: dict[str, str]) -> Settings:
    return Settings(
        data_dir=Path(env["TRAINYARD_DATA_DIR"]),
        queue=env["TRAINYARD_QUEUE"],
        broker_url=env.get("TRAINYARD_BROKER_URL"),
        database_url=env.get("TRAINYARD_DATABASE_URL"),
        lease_seconds=2,
        sweep_interval_s=0.5,
        requeue_after_s=2,
    )


def series(client: TestClient, run_id: str) -> dict[str, dict]:
    return client.get(f"/v1/runs/{run_id}/metrics").json()["series"]


def test_killed_worker_resumes_from_checkpoint_to_identical_weights(tmp_path: Path) -> None:
    env = environment(tmp_path)
    with TestClient(create_app(app_settings(env))) as client:
        first = start_worker(env)
        run_id = client.post("/v1/runs", json=SEEDED).json()["id"]
        deadline = time.monotonic() + 120
        while client.get(f"/v1/runs/{run_id}").json()["epoch"] < 3:
            assert time.monotonic() < deadline, "the run never reached epoch 3"
            time.sleep(0.02)
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        assert client.get(f"/v1/runs/{run_id}").json()["status"] == "running"  # until its lease runs out
        second = start_worker(env)
        try:
            resumed = wait_for(client, run_id, TERMINAL, timeout=180)
            reference_id = client.post("/v1/runs", json=SEEDED).json()["id"]
            reference = wait_for(client, reference_id, TERMINAL, timeout=180)
        finally:
            second.terminate()
            second.wait(timeout=30)
        assert resumed["status"] == reference["status"] == "succeeded"
        assert resumed["attempt"] == 2 and reference["attempt"] == 1
        artifacts = app_settings(env).artifact_dir
        weights = load_file(artifacts / run_id / "model.safetensors")
        expected = load_file(artifacts / reference_id / "model.safetensors")
        assert weights.keys() == expected.keys()
        for name, tensor in expected.items():
            assert torch.equal(weights[name], tensor), name
        got, want = series(client, run_id), series(client, reference_id)
        assert got.keys() == want.keys()
        for name, points in want.items():
            assert got[name]["step"] == points["step"], name  # every step exactly once, none lost
            assert got[name]["value"] == pytest.approx(points["value"], rel=1e-6), name
        assert got["train_loss"]["epoch"] == list(range(1, 9))
        assert not (artifacts / run_id / "checkpoint").exists()


@pytest.fixture
def own_redis() -> Iterator[tuple[int, callable]]:
    """A redis-server of this test's own on a free port (nothing kept on disk)."""
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail("redis-server is not installed")
        pytest.skip("redis-server is not installed")
    port = free_port()
    processes: list[subprocess.Popen] = []

    def start() -> None:
        processes.append(
            subprocess.Popen(
                [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                stdout=subprocess.DEVNULL,
            )
        )
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)

    def restart() -> None:
        processes[-1].terminate()
        processes[-1].wait(timeout=10)
        start()

    start()
    yield port, restart
    for process in processes:
        process.terminate()
        process.wait(timeout=10)


def test_broker_restart_loses_no_queued_run(tmp_path: Path, own_redis: tuple[int, callable]) -> None:
    port, restart = own_redis
    env = environment(tmp_path, TRAINYARD_BROKER_URL=f"redis://127.0.0.1:{port}/0")
    spec = {
        "epochs": 2,
        "data": {"source": {"type": "builtin", "name": "iris"}},
        "model": {"type": "mlp", "hidden": [8]},
        "regularization": {"early_stopping": None},
    }
    with TestClient(create_app(app_settings(env))) as client:
        ids = [client.post("/v1/runs", json=spec).json()["id"] for _ in range(5)]
        restart()  # the queued messages are gone with the old server
        worker = start_worker(env)
        try:
            finished = [wait_for(client, run_id, TERMINAL, timeout=120) for run_id in ids]
        finally:
            worker.terminate()
            worker.wait(timeout=30)
        assert [run["status"] for run in finished] == ["succeeded"] * 5
        assert [run["attempt"] for run in finished] == [1] * 5
        for run_id in ids:
            assert series(client, run_id)["train_loss"]["epoch"] == [1, 2]


@pytest.mark.parametrize("backend", ["production"], indirect=True)
def test_200_concurrent_submissions_each_train_exactly_once(backend: Backend) -> None:
    second = start_worker(backend.env)  # the fixture's worker plus this one
    spec = {
        "epochs": 1,
        "data": {"source": {"type": "builtin", "name": "iris"}},
        "model": {"type": "linear"},
        "regularization": {"early_stopping": None},
        "diagnostics": {"activations": False, "gradients": False},
    }
    try:
        with TestClient(create_app(backend.settings)) as client:
            with ThreadPoolExecutor(max_workers=16) as pool:
                answers = list(
                    pool.map(lambda i: client.post("/v1/runs", json={**spec, "name": f"burst-{i}"}), range(200))
                )
            assert [a.status_code for a in answers] == [202] * 200
            ids = [a.json()["id"] for a in answers]
            assert len(set(ids)) == 200
            finished = [wait_for(client, run_id, TERMINAL, timeout=300) for run_id in ids]
            assert {run["status"] for run in finished} == {"succeeded"}
            assert {run["attempt"] for run in finished} == {1}
            assert len({run["worker"] for run in finished}) == 2  # both workers took runs
    finally:
        second.terminate()
        second.wait(timeout=30)
