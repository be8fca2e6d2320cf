"""Verdicts through the service on both backends: computed while a run trains (sent over SSE) and
at its end (kept with the run), and a verdict's suggestion retried as a new run whose spec differs
only where the suggestion points."""

from typing import Any

from fastapi.testclient import TestClient

from tests.service.conftest import TERMINAL, small_spec, wait_for
from tests.service.test_runs import read_events

LR_2 = small_spec(
    name="lr-2",
    epochs=5,
    data={"source": {"type": "builtin", "name": "digits"}, "batch_size": 64},
    model={"type": "mlp", "hidden": [128, 64], "init": {"type": "kaiming", "nonlinearity": "relu"}},
    optimizer={"type": "sgd", "lr": 2.0, "momentum": 0.0},
    regularization={"l1": 0.0, "l2": 0.0, "early_stopping": None},
    diagnostics={"every_n_steps": 20},
)


def leaves(document: Any, at: str = "") -> dict[str, Any]:
    """Every scalar of a JSON document by its pointer."""
    if isinstance(document, dict):
        return {k: v for key, value in document.items() for k, v in leaves(value, f"{at}/{key}").items()}
    if isinstance(document, list):
        return {k: v for i, value in enumerate(document) for k, v in leaves(value, f"{at}/{i}").items()}
    return {at: document}


def test_a_too_high_lr_is_named_live_and_kept_and_its_suggestion_retries(client: TestClient) -> None:
    run_id = client.post("/v1/runs", json=LR_2).json()["id"]
    events = read_events(client, run_id)
    live = [data for kind, data in events if kind == "verdicts"]
    assert live and all(data["run_id"] == run_id for data in live)
    assert any("lr_too_high" in {v["code"] for v in data["verdicts"]} for data in live)
    run = wait_for(client, run_id, TERMINAL)
    verdict = next(v for v in run["verdicts"] if v["code"] == "lr_too_high")
    assert verdict["severity"] in ("warning", "error") and verdict["pointer"] == "/optimizer/lr"
    assert verdict["evidence"] and verdict["message"]
    assert "overfitting" not in {v["code"] for v in run["verdicts"]}  # one cause, named once

    retried = client.post(f"/v1/runs/{run_id}/retry", json={"patch": verdict["suggestion"]})
    assert retried.status_code == 202, retried.text
    new = retried.json()
    assert new["retry_of"] == run_id and new["id"] != run_id
    before, after = leaves(run["spec"]), leaves(new["spec"])
    assert {p for p in before.keys() | after.keys() if before.get(p) != after.get(p)} == {"/optimizer/lr"}
    assert after["/optimizer/lr"] == 0.2
    finished = wait_for(client, new["id"], TERMINAL)
    assert finished["status"] == "succeeded"
    assert not [v for v in finished["verdicts"] if v["severity"] != "info"], finished["verdicts"]


def test_a_retry_with_a_bad_patch_is_a_422_that_names_the_op(client: TestClient) -> None:
    run_id = client.post("/v1/runs", json=small_spec(epochs=1)).json()["id"]
    missing = client.post(f"/v1/runs/{run_id}/retry", json={"patch": [{"op": "replace", "path": "/nope", "value": 1}]})
    assert missing.status_code == 422 and missing.json()["errors"][0]["pointer"] == "/patch/0"
    refused = client.post(
        f"/v1/runs/{run_id}/retry", json={"patch": [{"op": "replace", "path": "/optimizer/lr", "value": -1}]}
    )
    assert refused.status_code == 422 and refused.json()["errors"][0]["pointer"] == "/optimizer/lr"
    assert "patch" in refused.json()["detail"]
    again = client.post(f"/v1/runs/{run_id}/retry")  # no patch: the same spec once more
    assert again.status_code == 202 and again.json()["spec"] == client.get(f"/v1/runs/{run_id}").json()["spec"]
    wait_for(client, again.json()["id"], TERMINAL)
    wait_for(client, run_id, TERMINAL)
