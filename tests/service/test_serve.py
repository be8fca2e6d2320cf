"""`trainyard serve` as a user starts it: real uvicorn, real HTTP, concurrent prediction clients
batched, the OpenAPI document, and a SIGTERM that takes the worker down with the server."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.service.conftest import ROOT, TERMINAL, free_port, small_spec, wait_for
from tests.service.test_predict import digits_inputs

WIDE = {**os.environ, "COLUMNS": "200"}


def children(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[subprocess.Popen, httpx.Client]]:
    data_dir = tmp_path_factory.mktemp("serve")
    port = free_port()
    env = {
        **os.environ,
        "TRAINYARD_PREDICT_MAX_WAIT_MS": "20",
        "TRAINYARD_ACCESS_LOG": "false",
        "TRAINYARD_MAX_STREAM_S": "1",  # `submit --wait` must reopen the stream from its last event id
    }
    log = (data_dir / "serve.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "serve", "--port", str(port), "--data-dir", str(data_dir)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=log,
    )
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if client.get("/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        yield process, client
    finally:
        client.close()
        if process.poll() is None:
            process.kill()
            process.wait()


def forward_passes(client: httpx.Client) -> float:
    found = re.search(r"^trainyard_predict_forward_passes_total (\S+)$", client.get("/metrics").text, re.M)
    return float(found.group(1)) if found else 0.0


def test_concurrent_clients_over_real_http_are_batched(served: tuple[subprocess.Popen, httpx.Client]) -> None:
    _, client = served
    run_id = client.post("/v1/runs", json=small_spec(epochs=2, name="served")).json()["id"]
    assert wait_for(client, run_id, TERMINAL)["status"] == "succeeded"  # type: ignore[arg-type]
    inputs = digits_inputs(32)
    url = f"/v1/runs/{run_id}/predict"
    client.post(url, json={"inputs": inputs[:1]}).raise_for_status()  # loads the model
    before = forward_passes(client)
    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(lambda sample: client.post(url, json={"inputs": [sample]}), inputs))
    passes = forward_passes(client) - before
    assert all(a.status_code == 200 for a in answers)
    assert passes < len(inputs) / 2, f"{passes} forward passes for {len(inputs)} requests"
    together = client.post(url, json={"inputs": inputs}).json()
    assert [a.json()["predictions"][0] for a in answers] == together["predictions"]  # each caller its own row

    wrong = client.post(url, json={"inputs": [[1, 2, 3]]})
    assert wrong.status_code == 422 and wrong.headers["content-type"] == "application/problem+json"
    assert wrong.json()["errors"][0]["pointer"] == "/inputs/0"
    not_json = client.post(url, content=b"{", headers={"content-type": "application/json"})
    assert not_json.status_code == 422 and not_json.json()["errors"]
    assert client.get(url).status_code == 405
    assert client.post("/v1/runs/run_missing/predict", json={"inputs": [[1]]}).status_code == 404
    too_large = client.post(url, content=b" " * (33 * 2**20), headers={"content-type": "application/json"})
    assert too_large.status_code == 413

    operation = client.get("/openapi.json").json()["paths"]["/v1/runs/{run_id}/predict"]["post"]
    assert operation["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/PredictRequest")


def test_submit_wait_shows_progress_and_a_rounded_summary_table(
    served: tuple[subprocess.Popen, httpx.Client], tmp_path: Path
) -> None:
    _, client = served
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(small_spec(epochs=3, name="submitted")))
    command = [sys.executable, "-m", "cli.main", "submit", str(spec), "--url", str(client.base_url), "--wait"]
    shown = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=180, env=WIDE)
    assert shown.returncode == 0, shown.stderr
    assert "training" in shown.stderr and "3/3" in shown.stderr, shown.stderr  # the progress bar, as `train` shows
    assert re.search(r"val_accuracy\W+0\.\d{4}\b", shown.stdout), shown.stdout  # the summary table, rounded
    assert not re.search(r"\d\.\d{6,}", shown.stdout + shown.stderr), "no raw floats"
    scripted = subprocess.run([*command, "--json"], cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert scripted.returncode == 0, scripted.stderr
    summary = json.loads(scripted.stdout)
    assert summary["status"] == "succeeded" and summary["epochs"] == 3 and 0.0 <= summary["val_accuracy"] <= 1.0


def test_submit_wait_follows_a_sweep_child_by_child_and_ranks_them(
    served: tuple[subprocess.Popen, httpx.Client], tmp_path: Path
) -> None:
    _, client = served
    spec = tmp_path / "sweep.json"
    sweep = {"method": "grid", "max_concurrent": 1, "parameters": {"optimizer.lr": [0.001, 0.1]}}
    spec.write_text(json.dumps({**small_spec(epochs=2, name="submitted-sweep"), "sweep": sweep}))
    command = [sys.executable, "-m", "cli.main", "submit", str(spec), "--url", str(client.base_url), "--wait"]
    shown = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=180, env=WIDE)
    assert shown.returncode == 0, shown.stderr
    assert "trial 0 lr=0.001" in shown.stderr and "trial 1 lr=0.1" in shown.stderr, shown.stderr  # a bar per trial
    rows = [line for line in shown.stdout.splitlines() if line.startswith("│")]
    assert len(rows) == 2 and "★ best" in rows[0] and "0.1" in rows[0], shown.stdout  # best first, marked
    assert "grid sweep succeeded" in shown.stdout


def test_sigterm_stops_the_server_and_its_worker(served: tuple[subprocess.Popen, httpx.Client]) -> None:
    process, _ = served
    workers = children(process.pid)
    assert workers, "serve starts a worker process"
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=60)
    for pid in workers:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
