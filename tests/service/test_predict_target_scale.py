"""A regression whose targets are scaled (``data.target_preprocess``) answers in the targets' units
over HTTP, in its ONNX graph and from its downloaded archive; the field is refused off regression."""

from pathlib import Path

import numpy as np
import onnxruntime
from fastapi.testclient import TestClient
from sklearn.datasets import load_diabetes

from tests.service.conftest import TERMINAL, small_spec, wait_for
from tests.service.test_predict import predict_offline

DIABETES_STANDARDIZED = small_spec(
    name="diabetes-target-standardize",
    task="regression",
    epochs=5,
    data={
        "source": {"type": "builtin", "name": "diabetes"},
        "batch_size": 32,
        "target_preprocess": [{"type": "standardize"}],
    },
    loss={"type": "mse"},
    optimizer={"type": "sgd", "lr": 0.01},
)


def test_predictions_onnx_and_archive_answer_in_the_targets_units(client: TestClient, tmp_path: Path) -> None:
    run_id = client.post("/v1/runs", json=DIABETES_STANDARDIZED).json()["id"]
    run = wait_for(client, run_id, TERMINAL)
    assert run["status"] == "succeeded", run.get("failure")
    assert run["summary"]["loss_scale"] == "targets after standardize"
    x, y = load_diabetes(return_X_y=True)
    inputs = x[:40].astype(np.float32)

    served = client.post(f"/v1/runs/{run_id}/predict", json={"inputs": inputs.tolist()})
    assert served.status_code == 200
    predictions = np.asarray(served.json()["predictions"])
    assert predictions.shape == (40,)
    assert abs(predictions.mean() - y.mean()) < 25 and predictions.std() > 10  # ~152, not the standardized ~0

    exported = client.get(f"/v1/runs/{run_id}/artifacts/onnx")
    assert exported.status_code == 200
    (values,) = onnxruntime.InferenceSession(exported.content).run(None, {"inputs": inputs})
    assert np.allclose(values, predictions, atol=1e-3)  # the inverse is inside the graph

    archive = client.get(f"/v1/runs/{run_id}/artifacts/model")
    offline = predict_offline(archive.content, inputs.tolist(), tmp_path)
    assert np.allclose(offline["predictions"], predictions, atol=1e-4)


def test_target_preprocess_off_regression_is_a_422(client: TestClient) -> None:
    bad = small_spec(
        data={"source": {"type": "builtin", "name": "digits"}, "target_preprocess": [{"type": "standardize"}]}
    )
    refused = client.post("/v1/runs", json=bad)
    assert refused.status_code == 422
    assert [e["pointer"] for e in refused.json()["errors"]] == ["/data/target_preprocess"]
