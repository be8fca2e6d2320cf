"""Predictions over HTTP: the run's stored preprocessing applied, seed 001's logistic regression,
dynamic batching of concurrent requests, the model archive, and the error cases."""

import io
import json
import subprocess
import sys
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch
from fastapi.testclient import TestClient
from safetensors.torch import load_file

from core.artifacts import load_trained
from tests.service.conftest import ROOT, TERMINAL, Backend, small_spec, wait_for

pytestmark = pytest.mark.parametrize("backend", ["embedded"], indirect=True)

SEED_001 = {
    "name": "seed-001-logistic",
    "task": "binary",
    "epochs": 300,
    "data": {
        "source": {"type": "inline", "x": [[1, 2], [2, 3], [3, 4], [4, 4], [5, 3], [6, 2]], "y": [0, 0, 0, 1, 1, 1]},
        "split": {"validation": 0, "test": 0},
        "preprocess": [],
        "batch_size": 6,
    },
    "model": {"type": "linear"},
    "loss": {"type": "bce"},
    "optimizer": {"type": "sgd", "lr": 0.1},
    "schedule": {"type": "constant"},
    "regularization": {"l2": 0.0, "early_stopping": None},
}


@pytest.fixture(scope="module")
def digits_run(client: TestClient) -> str:
    run_id = client.post("/v1/runs", json=small_spec(epochs=4, name="predict-me")).json()["id"]
    assert wait_for(client, run_id, TERMINAL)["status"] == "succeeded"
    return run_id


def digits_inputs(count: int) -> list:
    from sklearn.datasets import load_digits

    return load_digits().data[:count].reshape(count, 1, 8, 8).tolist()


def test_http_predictions_apply_the_stored_standardization(
    client: TestClient, backend: Backend, digits_run: str
) -> None:
    inputs = digits_inputs(5)
    answer = client.post(f"/v1/runs/{digits_run}/predict", json={"inputs": inputs})
    assert answer.status_code == 200
    http_probabilities = torch.tensor(answer.json()["probabilities"])

    folder = backend.settings.artifact_dir / digits_run
    trained = load_trained(folder)
    stats = load_file(folder / "preprocessing.safetensors")
    raw = torch.tensor(inputs, dtype=torch.float32)
    with torch.no_grad():
        expected = torch.softmax(trained.model((raw - stats["0.mean"]) / stats["0.std"]), dim=-1)
        unprocessed = torch.softmax(trained.model(raw), dim=-1)
    assert torch.allclose(http_probabilities, expected, atol=1e-5)
    assert not torch.allclose(http_probabilities, unprocessed, atol=1e-2)  # the statistics matter
    assert answer.json()["predictions"] == [str(i) for i in expected.argmax(-1).tolist()]


def test_seed_001_logistic_regression_predicts_6_4(client: TestClient) -> None:
    run_id = client.post("/v1/runs", json=SEED_001).json()["id"]
    assert wait_for(client, run_id, TERMINAL)["status"] == "succeeded"
    answer = client.post(f"/v1/runs/{run_id}/predict", json={"inputs": [[6, 4], [1, 2]]}).json()
    assert answer["predictions"] == ["1", "0"]
    assert answer["probabilities"][0][1] > 0.5 > answer["probabilities"][1][1]


def test_concurrent_requests_share_forward_passes(client: TestClient, digits_run: str) -> None:
    service = client.app.state.service
    service.models.models.pop(digits_run, None)
    service.models.max_wait_s = 0.05  # a generous window so the test's threads land in it
    inputs = digits_inputs(48)
    single = [client.post(f"/v1/runs/{digits_run}/predict", json={"inputs": [row]}).json() for row in inputs[:1]]
    registry = service.models.registry
    before = registry.get_sample_value("trainyard_predict_forward_passes_total")
    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(
            pool.map(lambda row: client.post(f"/v1/runs/{digits_run}/predict", json={"inputs": [row]}), inputs)
        )
    passes = registry.get_sample_value("trainyard_predict_forward_passes_total") - before
    assert all(a.status_code == 200 for a in answers)
    assert passes < len(inputs) / 2, f"{passes} forward passes for {len(inputs)} requests"
    together = client.post(f"/v1/runs/{digits_run}/predict", json={"inputs": inputs}).json()
    assert [a.json()["predictions"][0] for a in answers] == together["predictions"]  # each caller got its own row
    assert single[0]["predictions"][0] == together["predictions"][0]
    assert "trainyard_predict_forward_passes_total" in client.get("/metrics").text


def test_onnx_export_predicts_what_the_service_predicts(client: TestClient, digits_run: str) -> None:
    exported = client.get(f"/v1/runs/{digits_run}/artifacts/onnx")
    assert exported.status_code == 200 and exported.headers["content-type"] == "application/octet-stream"
    session = onnxruntime.InferenceSession(exported.content)
    inputs = digits_inputs(7)  # raw samples: the graph standardizes them itself
    (probabilities,) = session.run(None, {"inputs": np.asarray(inputs, dtype=np.float32)})
    served = client.post(f"/v1/runs/{digits_run}/predict", json={"inputs": inputs}).json()
    assert np.allclose(probabilities, served["probabilities"], atol=1e-5)
    assert client.get(f"/v1/runs/{digits_run}/artifacts/onnx").content == exported.content  # kept, not redone


def test_predicts_below_a_root_path(client: TestClient, digits_run: str) -> None:
    behind_proxy = TestClient(client.app, root_path="/trainyard")  # the path includes it, as under uvicorn
    answer = behind_proxy.post(f"/trainyard/v1/runs/{digits_run}/predict", json={"inputs": digits_inputs(2)})
    assert answer.status_code == 200 and len(answer.json()["predictions"]) == 2


def test_flat_rows_are_read_in_row_major_order(client: TestClient, digits_run: str) -> None:
    shaped = digits_inputs(4)
    flat = np.asarray(shaped).reshape(4, 64).tolist()
    expected = client.post(f"/v1/runs/{digits_run}/predict", json={"inputs": shaped}).json()["probabilities"]
    for inputs in (flat, [flat[0], *shaped[1:]]):  # all flat, or mixed: each row is read on its own
        answer = client.post(f"/v1/runs/{digits_run}/predict", json={"inputs": inputs})
        assert answer.status_code == 200 and np.allclose(answer.json()["probabilities"], expected, atol=1e-6)
    transposed = np.asarray(shaped).transpose(0, 1, 3, 2).reshape(4, 64).tolist()  # column-major rows
    answer = client.post(f"/v1/runs/{digits_run}/predict", json={"inputs": transposed}).json()
    assert not np.allclose(answer["probabilities"], expected, atol=1e-3)
    for bad in ([flat[0][:63]], [[*flat[0], 0.0]], [np.asarray(shaped[0]).reshape(8, 8).tolist()]):
        refused = client.post(f"/v1/runs/{digits_run}/predict", json={"inputs": bad})
        assert refused.status_code == 422 and refused.json()["type"] == "/problems/invalid-input"
        (error,) = refused.json()["errors"]
        assert error["pointer"] == "/inputs/0" and "or a flat row of 64 values" in error["message"]
    flat_null = [flat[0], [*flat[1][:10], None, *flat[1][11:]]]
    null = client.post(f"/v1/runs/{digits_run}/predict", json={"inputs": flat_null})
    assert null.status_code == 422 and null.json()["errors"][0]["pointer"] == "/inputs/1"


def test_openapi_says_flat_rows_are_accepted(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    operation = document["paths"]["/v1/runs/{run_id}/predict"]["post"]
    assert "flat row" in operation["description"]
    assert "/problems/invalid-input" in operation["responses"]["422"]["description"]
    assert "flat rows" in document["components"]["schemas"]["PredictRequest"]["properties"]["inputs"]["description"]


def test_bad_inputs_and_unready_runs(client: TestClient, digits_run: str) -> None:
    wrong = client.post(f"/v1/runs/{digits_run}/predict", json={"inputs": [digits_inputs(1)[0], [1, 2, 3]]})
    assert wrong.status_code == 422 and wrong.headers["content-type"] == "application/problem+json"
    assert (wrong.json()["type"], wrong.json()["title"]) == ("/problems/invalid-input", "Invalid prediction input")
    assert wrong.json()["errors"][0]["pointer"] == "/inputs/1"
    assert "[1, 8, 8] or a flat row of 64 values, got [3]" in wrong.json()["errors"][0]["message"]
    with_null = digits_inputs(2)
    with_null[1][0][3][3] = None
    null = client.post(f"/v1/runs/{digits_run}/predict", json={"inputs": with_null})
    assert null.status_code == 422 and null.json()["errors"][0]["pointer"] == "/inputs/1"
    assert null.json()["title"] == "Invalid prediction input"
    empty = client.post(f"/v1/runs/{digits_run}/predict", json={"inputs": []})
    assert empty.status_code == 422 and empty.json()["title"] == "Invalid request"  # the body itself is wrong
    assert client.post("/v1/runs/run_missing/predict", json={"inputs": [[1]]}).status_code == 404
    queued = client.post("/v1/runs", json=small_spec(epochs=200, name="not-yet")).json()["id"]
    assert client.post(f"/v1/runs/{queued}/predict", json={"inputs": [[1]]}).status_code == 409
    assert client.get(f"/v1/runs/{queued}/artifacts/model").status_code == 409
    client.post(f"/v1/runs/{queued}/cancel")
    wait_for(client, queued, TERMINAL)


def predict_offline(archive: bytes, inputs: list, folder: Path) -> dict:
    """`trainyard predict` on a downloaded model archive, as a user runs it."""
    (folder / "model.zip").write_bytes(archive)
    (folder / "inputs.json").write_text(json.dumps({"inputs": inputs}))
    command = [sys.executable, "-m", "cli.main", "predict", str(folder / "model.zip"), str(folder / "inputs.json")]
    return json.loads(subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True).stdout)


def test_model_archive_predicts_offline(client: TestClient, backend: Backend, digits_run: str, tmp_path: Path) -> None:
    archive = client.get(f"/v1/runs/{digits_run}/artifacts/model")
    assert archive.status_code == 200 and archive.headers["content-type"] == "application/zip"
    names = set(zipfile.ZipFile(io.BytesIO(archive.content)).namelist())
    assert {"model.safetensors", "preprocessing.safetensors", "spec.json", "meta.json"} <= names
    kept = backend.settings.artifact_dir / digits_run / "model.zip"  # built on disk once, not in memory
    assert kept.read_bytes() == archive.content
    assert client.get(f"/v1/runs/{digits_run}/artifacts/model").content == archive.content
    inputs = digits_inputs(3)
    flat = np.asarray(inputs).reshape(3, 64).tolist()  # offline predictions take flat rows too
    offline = predict_offline(archive.content, flat, tmp_path)
    online = client.post(f"/v1/runs/{digits_run}/predict", json={"inputs": inputs}).json()
    assert offline["predictions"] == online["predictions"]
