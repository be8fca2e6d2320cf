"""Sweeps through the whole service on both backends: a sweep is a parent whose trials are child
runs, asked of Optuna as earlier ones end and pruned at rungs; bad sweeps are 422s with pointers;
cancelling the parent cancels every child; a k-fold run's folds are children too. (A grid over
the tenant's quota: tests/service/test_tenants.py.)"""

import math
import tempfile
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from core.engine.plan import plan_experiment
from core.engine.run import train_run
from core.spec.schema import parse_spec
from tests.service.conftest import TERMINAL, small_spec, wait_for
from tests.service.test_runs import read_events

DIGITS = {"type": "builtin", "name": "digits", "n_samples": 400}


def sweep_spec(sweep: dict, **overrides) -> dict:
    base = small_spec(name="sweep", data={"source": DIGITS}, diagnostics={"activations": False, "gradients": False})
    return {**base, **overrides, "sweep": sweep}


def children(client: TestClient, run_id: str, **params) -> dict:
    response = client.get(f"/v1/runs/{run_id}/children", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def finished(client: TestClient, run_id: str, timeout: float = 240.0) -> tuple[dict, list[dict]]:
    parent = wait_for(client, run_id, TERMINAL | {"pruned"}, timeout=timeout)
    return parent, children(client, run_id, limit=200)["items"]


def test_grid_of_three_lrs_gives_three_children_with_the_best_marked(client: TestClient) -> None:
    lrs = [0.1, 0.01, 0.001]
    submitted = client.post("/v1/runs", json=sweep_spec({"method": "grid", "parameters": {"optimizer.lr": lrs}}))
    assert submitted.status_code == 202, submitted.text
    assert submitted.json()["kind"] == "sweep" and submitted.json()["status"] in ("queued", "running")
    parent, kids = finished(client, submitted.json()["id"])
    assert parent["status"] == "succeeded"
    assert [kid["params"] for kid in kids] == [{"optimizer.lr": lr} for lr in lrs]
    assert [kid["spec"]["optimizer"]["lr"] for kid in kids] == lrs
    assert [kid["trial"] for kid in kids] == [0, 1, 2] and {kid["status"] for kid in kids} == {"succeeded"}
    best = min(kids, key=lambda kid: kid["metric"])
    assert [kid["best"] for kid in kids] == [kid is best for kid in kids]
    assert parent["summary"]["best"] == {
        "trial": best["trial"],
        "run": best["id"],
        "params": best["params"],
        "val_loss": best["metric"],
    }
    assert parent["summary"]["trials"] == 3 and parent["summary"]["epochs"] == 9
    val_losses = client.get(f"/v1/runs/{best['id']}/metrics", params={"names": ["val_loss"]}).json()["series"]
    assert best["metric"] == min(val_losses["val_loss"]["value"])
    listed = [run["id"] for run in client.get("/v1/runs").json()["items"]]
    assert parent["id"] in listed and not set(listed) & {kid["id"] for kid in kids}  # top level only
    by_parent = client.get("/v1/runs", params={"parent": parent["id"]}).json()["items"]
    assert {run["id"] for run in by_parent} == {kid["id"] for kid in kids}
    page = children(client, parent["id"], limit=2)
    rest = children(client, parent["id"], limit=2, cursor=page["next_cursor"])
    assert [kid["id"] for kid in page["items"] + rest["items"]] == [kid["id"] for kid in kids]
    inputs = {"inputs": [[0.0] * 64]}
    assert client.post(f"/v1/runs/{best['id']}/predict", json=inputs).status_code == 200
    assert client.post(f"/v1/runs/{parent['id']}/predict", json=inputs).status_code == 409
    events = read_events(client, parent["id"])  # a finished family replays its story
    tagged = {data["run_id"] for kind, data in events if kind == "metric"}
    assert tagged == {kid["id"] for kid in kids}
    assert {data["run_id"] for kind, data in events if kind == "status"} == {parent["id"], *tagged}


def test_random_log_uniform_trials_stay_inside_the_range(client: TestClient) -> None:
    sweep = {
        "method": "random",
        "trials": 3,
        "max_concurrent": 3,
        "parameters": {"optimizer.lr": {"type": "log_uniform", "low": 1e-4, "high": 1e-1}},
    }
    parent, kids = finished(client, client.post("/v1/runs", json=sweep_spec(sweep)).json()["id"])
    assert parent["status"] == "succeeded" and len(kids) == 3
    lrs = [kid["params"]["optimizer.lr"] for kid in kids]
    assert all(1e-4 <= lr <= 1e-1 for lr in lrs) and len(set(lrs)) == 3
    assert [kid["spec"]["optimizer"]["lr"] for kid in kids] == lrs


def test_asha_prunes_poor_trials_and_never_the_best(client: TestClient) -> None:
    grid = [0.01, 0.003, 1.0, 1e-4, 1e-5, 1e-6]  # good ones first: later, poorer ones meet them at the rungs
    sweep = {
        "method": "grid",
        "max_concurrent": 1,
        "parameters": {"optimizer.lr": grid},
        "early_stop": {"type": "asha", "grace_epochs": 1, "reduction_factor": 2},
    }
    parent, kids = finished(client, client.post("/v1/runs", json=sweep_spec(sweep, epochs=12)).json()["id"])
    assert parent["status"] == "succeeded"
    pruned = [kid for kid in kids if kid["status"] == "pruned"]
    assert pruned and all("rung" in kid["stop_reason"] for kid in pruned)
    best = next(kid for kid in kids if kid["best"])
    assert best["status"] == "succeeded" and best["epoch"] == 12
    assert sum(kid["epoch"] for kid in kids) < 6 * 12 == parent["summary"]["trials"] * 12
    assert parent["summary"]["outcomes"]["pruned"] == len(pruned)


def test_cancelling_a_running_sweep_cancels_every_child(client: TestClient) -> None:
    sweep = {"method": "grid", "max_concurrent": 2, "parameters": {"optimizer.lr": [0.1, 0.05, 0.01, 0.005]}}
    run_id = client.post("/v1/runs", json=sweep_spec(sweep, epochs=300)).json()["id"]
    wait_for(client, run_id, {"running"})
    cancelled = client.post(f"/v1/runs/{run_id}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    for kid in children(client, run_id)["items"]:
        wait_for(client, kid["id"], TERMINAL)
    kids = children(client, run_id)["items"]
    assert kids and {kid["status"] for kid in kids} == {"cancelled"}
    assert client.get(f"/v1/runs/{run_id}").json()["status"] == "cancelled"
    assert len(children(client, run_id)["items"]) == len(kids)  # no trial is asked for after the cancel
    assert client.post(f"/v1/runs/{run_id}/cancel").status_code == 409


@pytest.mark.parametrize(
    ("sweep", "pointer", "says"),
    [
        ({"parameters": {"optimizer.learning_rate": [0.1]}}, "/sweep/parameters/optimizer.learning_rate", "lr"),
        ({"parameters": {"optimizer.lr": [-1]}}, "/sweep/parameters/optimizer.lr/0", "greater than 0"),
    ],
    ids=["missing-path", "refused-value"],
)
def test_bad_sweeps_are_422_with_pointers(client: TestClient, sweep: dict, pointer: str, says: str) -> None:
    before = client.get("/v1/runs", params={"limit": 200}).json()["items"]
    response = client.post("/v1/runs", json=sweep_spec({"method": "grid", **sweep}))
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    error = response.json()["errors"][0]
    assert error["pointer"] == pointer and says in error["message"] + (error["hint"] or "")
    assert client.get("/v1/runs", params={"limit": 200}).json()["items"] == before  # nothing stored


def test_the_dry_run_reports_the_trials_and_their_work(client: TestClient) -> None:
    sweep = {"method": "grid", "parameters": {"optimizer.lr": [0.1, 0.01], "epochs": [2, 4]}}
    report = client.post("/v1/specs/validate", json=sweep_spec(sweep))
    assert report.status_code == 200, report.text
    assert report.json()["sweep"]["trials"] == 4
    assert report.json()["sweep"]["epochs_x_samples"] == (2 + 4) * 2 * report.json()["samples"]


def test_kfold_folds_are_children_and_the_mean_and_std_are_todays(client: TestClient) -> None:
    spec = {
        "name": "kfold",
        "epochs": 3,
        "data": {"source": {"type": "builtin", "name": "iris"}, "split": {"kfold": 5, "test": 0.2}},
        "model": {"type": "mlp", "hidden": [8]},
        "regularization": {"early_stopping": None},
        "diagnostics": {"activations": False, "gradients": False},
    }
    submitted = client.post("/v1/runs", json=spec).json()
    assert submitted["kind"] == "kfold"
    parent, folds = finished(client, submitted["id"])
    assert parent["status"] == "succeeded"
    assert [fold["trial"] for fold in folds] == [1, 2, 3, 4, 5] and {f["status"] for f in folds} == {"succeeded"}
    assert [fold["fold"] for fold in parent["summary"]["folds"]] == [1, 2, 3, 4, 5]
    for fold in folds:
        series = client.get(f"/v1/runs/{fold['id']}/metrics").json()["series"]
        assert series["train_loss"]["epoch"] == [1, 2, 3]
    assert client.post(f"/v1/runs/{folds[0]['id']}/predict", json={"inputs": [[1, 2, 3, 4]]}).status_code == 200
    assert client.post(f"/v1/runs/{parent['id']}/predict", json={"inputs": [[1, 2, 3, 4]]}).status_code == 409
    with tempfile.TemporaryDirectory() as folder:  # today's way: every fold in one process
        today = train_run(plan_experiment(parse_spec(spec)), folder=Path(folder)).summary()
    for name, mean in today["mean"].items():
        assert math.isclose(parent["summary"]["mean"][name], mean, rel_tol=1e-5, abs_tol=1e-6), name
        assert math.isclose(parent["summary"]["std"][name], today["std"][name], rel_tol=1e-4, abs_tol=1e-6), name
