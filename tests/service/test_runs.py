"""Runs through the whole service on both backends: submit → queued → running → succeeded,
metrics and curves, live events, artifacts, cancellation, failures, bad input, idempotency."""

import json
import time
from datetime import datetime, timedelta

from fastapi.testclient import TestClient

from tests.service.conftest import TERMINAL, Backend, small_spec, wait_for

DIVERGING = {
    "name": "diverges",
    "task": "regression",
    "epochs": 50,
    "data": {
        "source": {"type": "inline", "x": [[100], [200], [300], [400], [500], [600]], "y": [1, 2, 3, 4, 5, 6]},
        "preprocess": [],
        "split": {"validation": 0, "test": 0},
        "batch_size": 2,
    },
    "model": {"type": "linear"},
    "optimizer": {"type": "sgd", "lr": 1.0},
    "regularization": {"early_stopping": None},
}


def read_events(client: TestClient, run_id: str) -> list[tuple[str, dict]]:
    events, kind = [], ""
    with client.stream("GET", f"/v1/runs/{run_id}/events") as stream:
        for line in stream.iter_lines():
            if line.startswith("event: "):
                kind = line.removeprefix("event: ")
            elif line.startswith("data: "):
                events.append((kind, json.loads(line.removeprefix("data: "))))
    return events


def test_submit_runs_to_success_with_metrics_events_and_artifacts(client: TestClient, backend: Backend) -> None:
    submitted = client.post("/v1/runs", json=small_spec())
    assert submitted.status_code == 202
    run_id = submitted.json()["id"]
    assert submitted.json()["status"] == "queued"

    events = read_events(client, run_id)  # streams until the run finishes
    statuses = [data["status"] for kind, data in events if kind == "status"]
    assert statuses[-1] == "succeeded"
    assert "running" in statuses
    assert statuses == sorted(statuses, key=["queued", "running", "succeeded"].index)
    epochs_seen = [data["epoch"] for kind, data in events if kind == "metric" and data["name"] == "train_loss"]
    assert epochs_seen == [1, 2, 3]
    assert events[-1][0] == "status"

    run = client.get(f"/v1/runs/{run_id}").json()
    assert run["status"] == "succeeded"
    assert run["started_at"] and run["finished_at"] and run["worker"]
    for moment in ("created_at", "started_at", "finished_at"):  # RFC 3339: with an offset, on SQLite too
        assert datetime.fromisoformat(run[moment]).utcoffset() == timedelta(0), run[moment]
    assert run["summary"]["test_accuracy"] > 0.5
    series = client.get(f"/v1/runs/{run_id}/metrics").json()["series"]
    assert series["train_loss"]["epoch"] == [1, 2, 3]
    assert len(series["val_accuracy"]["value"]) == 3
    assert any(name.startswith("grad_norm/") for name in series)
    only = client.get(f"/v1/runs/{run_id}/metrics", params={"names": ["val_loss"]}).json()["series"]
    assert list(only) == ["val_loss"]
    folder = backend.settings.artifact_dir / run_id
    assert (folder / "model.safetensors").stat().st_size > 0
    assert json.loads((folder / "spec.json").read_text())["name"] == "service-test"


def test_diverging_run_fails_with_its_reason(client: TestClient) -> None:
    run_id = client.post("/v1/runs", json=DIVERGING).json()["id"]
    run = wait_for(client, run_id, TERMINAL)
    assert run["status"] == "failed"
    assert "diverged" in run["failure"]
    assert client.get(f"/v1/runs/{run_id}/metrics").status_code == 200  # a NaN/inf point still serialises


def test_cancel_running_run_stops_within_an_epoch(client: TestClient) -> None:
    run_id = client.post("/v1/runs", json=small_spec(epochs=400, name="long")).json()["id"]
    wait_for(client, run_id, {"running"})
    wait_for_epoch = client.get(f"/v1/runs/{run_id}").json()
    response = client.post(f"/v1/runs/{run_id}/cancel")
    assert response.status_code == 200
    run = wait_for(client, run_id, TERMINAL, timeout=60)
    assert run["status"] == "cancelled"
    assert run["summary"]["epochs"] < 400
    assert wait_for_epoch["epoch"] <= run["summary"]["epochs"]
    again = client.post(f"/v1/runs/{run_id}/cancel")
    assert again.status_code == 409
    assert again.headers["content-type"] == "application/problem+json"


def test_cancel_queued_run_never_starts(client: TestClient) -> None:
    blocker = client.post("/v1/runs", json=small_spec(epochs=60, name="blocker")).json()["id"]
    queued = client.post("/v1/runs", json=small_spec(name="never")).json()["id"]
    cancelled = client.post(f"/v1/runs/{queued}/cancel").json()
    assert cancelled["status"] == "cancelled"
    client.post(f"/v1/runs/{blocker}/cancel")
    wait_for(client, blocker, TERMINAL)
    run = client.get(f"/v1/runs/{queued}").json()
    assert run["status"] == "cancelled" and run["started_at"] is None


def test_bad_spec_is_422_with_pointers_and_creates_no_run(client: TestClient) -> None:
    before = len(client.get("/v1/runs", params={"limit": 200}).json()["items"])
    bad = small_spec(optimizer={"type": "adam", "lr": -1}, loss={"type": "bce"})
    response = client.post("/v1/runs", json=bad)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    pointers = {e["pointer"] for e in response.json()["errors"]}
    assert "/optimizer/lr" in pointers
    shrinking = small_spec(model={"type": "cnn", "layers": [{"type": "conv", "filters": 4, "kernel": 9}]})
    response = client.post("/v1/runs", json=shrinking)
    assert response.status_code == 422
    assert response.json()["errors"][0]["pointer"] == "/model/layers/0"
    assert client.post("/v1/runs", content=b"[1, 2]", headers={"content-type": "application/json"}).status_code == 422
    assert len(client.get("/v1/runs", params={"limit": 200}).json()["items"]) == before


def test_unknown_run_is_404_problem(client: TestClient) -> None:
    for response in (
        client.get("/v1/runs/run_nope"),
        client.post("/v1/runs/run_nope/cancel"),
        client.get("/v1/runs/run_nope/metrics"),
    ):
        assert response.status_code == 404
        assert response.json()["status"] == 404


def test_idempotency_key_returns_the_original_run(client: TestClient) -> None:
    headers = {"Idempotency-Key": f"key-{client.app.state.service.settings.queue}"}
    first = client.post("/v1/runs", json=small_spec(epochs=1), headers=headers)
    second = client.post("/v1/runs", json=small_spec(epochs=1), headers=headers)
    assert first.status_code == second.status_code == 202
    assert first.json()["id"] == second.json()["id"]
    different = client.post("/v1/runs", json=small_spec(epochs=2), headers=headers)
    assert different.status_code == 409
    wait_for(client, first.json()["id"], TERMINAL)


def test_list_filters_and_paginates(client: TestClient) -> None:
    ids = [client.post("/v1/runs", json=small_spec(epochs=1, name="page-me")).json()["id"] for _ in range(3)]
    first = client.get("/v1/runs", params={"name": "page-me", "limit": 2}).json()
    assert [r["id"] for r in first["items"]] == ids[::-1][:2]
    rest = client.get("/v1/runs", params={"name": "page-me", "limit": 2, "cursor": first["next_cursor"]}).json()
    assert [r["id"] for r in rest["items"]] == [ids[0]]
    for run_id in ids:
        wait_for(client, run_id, TERMINAL)
    assert {
        r["id"] for r in client.get("/v1/runs", params={"status": "succeeded", "name": "page-me"}).json()["items"]
    } == set(ids)
    assert client.get("/v1/runs", params={"status": "bogus"}).status_code == 422


def test_a_list_leaves_out_inline_data(client: TestClient) -> None:
    rows = [[float(i), float(i % 7)] for i in range(20_000)]  # ~0.5 MB of JSON
    spec = small_spec(
        name="inline-big", epochs=1, data={"source": {"type": "inline", "x": rows, "y": [i % 2 for i in range(20_000)]}}
    )
    run_id = client.post("/v1/runs", json=spec).json()["id"]
    listed = client.get("/v1/runs", params={"name": "inline-big"})
    assert listed.json()["items"][0]["spec"]["data"]["source"] == {"type": "inline", "rows": 20_000}
    assert len(listed.content) < 20_000  # not the rows
    assert client.get(f"/v1/runs/{run_id}").json()["spec"]["data"]["source"]["x"] == rows  # the run itself has them
    wait_for(client, run_id, TERMINAL)


def test_validate_schema_health_and_metrics_routes(client: TestClient) -> None:
    report = client.post("/v1/specs/validate", json=small_spec()).json()
    assert report["params"] == 64 * 32 + 32 + 32 * 10 + 10
    assert [row["output_shape"] for row in report["layers"]][-1] == [10]
    assert "properties" in client.get("/v1/specs/schema").json()
    deadline = time.monotonic() + 60
    while (health := client.get("/healthz")).status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.1)  # 503 until the module's worker has started and beat
    assert health.status_code == 200, health.json()
    assert health.json()["database"] == health.json()["queue"] == health.json()["worker"] == "ok"
    assert health.json()["workers"] == 1
    assert "trainyard_runs" in client.get("/metrics").text
    assert client.get("/openapi.json").json()["paths"]["/v1/runs"]


def test_kfold_run_reports_each_fold_and_mean_std(client: TestClient) -> None:
    spec = {
        "name": "kfold",
        "epochs": 3,
        "data": {"source": {"type": "builtin", "name": "iris"}, "split": {"kfold": 3, "test": 0.2}},
        "model": {"type": "mlp", "hidden": [8]},
        "regularization": {"early_stopping": None},
        "diagnostics": {"activations": False, "gradients": False},
    }
    run_id = client.post("/v1/runs", json=spec).json()["id"]
    run = wait_for(client, run_id, TERMINAL)
    assert run["status"] == "succeeded"
    assert [fold["fold"] for fold in run["summary"]["folds"]] == [1, 2, 3]
    assert set(run["summary"]["mean"]) >= {"val_loss", "val_accuracy"} and "val_loss" in run["summary"]["std"]
    folds = client.get(f"/v1/runs/{run_id}/children").json()["items"]
    assert [fold["summary"] for fold in folds] == run["summary"]["folds"]
    assert client.post(f"/v1/runs/{run_id}/predict", json={"inputs": [[1, 2, 3, 4]]}).status_code == 409
