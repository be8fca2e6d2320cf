"""Plots and thinned metrics through the service, on both backends: a finished run's PNGs are
rendered once and kept in its folder, a running one's afresh each time; a sweep parent's curves are
its trials overlaid; another tenant's run is a 404; ``max_points`` thins every series."""

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from core.settings import Settings
from core.store.db import make_engine, migrate, session_factory
from core.store.keys import create_key
from tests.service.conftest import TERMINAL, Backend, small_spec, wait_for
from tests.service.test_sweeps import finished, sweep_spec

SIGNATURE = b"\x89PNG\r\n\x1a\n"
PLOTS = ("curves.png", "health.png")


def png(client: TestClient, run_id: str, name: str, **headers: str) -> bytes:
    response = client.get(f"/v1/runs/{run_id}/plots/{name}", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    assert response.content.startswith(SIGNATURE) and len(response.content) > 5_000
    return response.content


@pytest.fixture(scope="module")
def digits_run(client: TestClient) -> str:
    data = {"source": {"type": "builtin", "name": "digits"}, "batch_size": 16}  # ~200 steps: long step series
    run_id = client.post("/v1/runs", json=small_spec(name="plots", data=data)).json()["id"]
    assert wait_for(client, run_id, TERMINAL)["status"] == "succeeded"
    return run_id


def test_finished_runs_plots_are_rendered_once_and_kept(client: TestClient, backend: Backend, digits_run: str) -> None:
    folder = backend.settings.artifact_dir / digits_run / "plots"
    for name in PLOTS:
        first = png(client, digits_run, name)
        assert (folder / name).read_bytes() == first
        (folder / name).write_bytes(first + b"kept")  # the next request serves the kept file, not a new render
        assert client.get(f"/v1/runs/{digits_run}/plots/{name}").content == first + b"kept"
        (folder / name).write_bytes(first)
    assert png(client, digits_run, "curves.png") != png(client, digits_run, "health.png")


def test_a_running_runs_plots_are_fresh_on_every_request(client: TestClient, backend: Backend) -> None:
    run_id = client.post("/v1/runs", json=small_spec(name="plots-live", epochs=300)).json()["id"]
    wait_for(client, run_id, {"running"})
    for name in PLOTS:
        response = client.get(f"/v1/runs/{run_id}/plots/{name}")
        assert response.status_code == 200 and response.content.startswith(SIGNATURE)
        assert response.headers["cache-control"] == "no-store"
    assert not (backend.settings.artifact_dir / run_id / "plots").exists()
    client.post(f"/v1/runs/{run_id}/cancel")
    wait_for(client, run_id, TERMINAL)


def test_a_sweep_parents_curves_overlay_its_trials(client: TestClient, backend: Backend) -> None:
    grid = {"method": "grid", "parameters": {"optimizer.lr": [0.1, 0.001]}}
    parent, kids = finished(client, client.post("/v1/runs", json=sweep_spec(grid, epochs=2)).json()["id"])
    assert parent["status"] == "succeeded" and len(kids) == 2
    overlay = png(client, parent["id"], "curves.png")
    assert (backend.settings.artifact_dir / parent["id"] / "plots" / "curves.png").read_bytes() == overlay
    assert overlay != png(client, kids[0]["id"], "curves.png")  # a child's own curves are its single run's
    png(client, parent["id"], "health.png")


def test_an_unknown_run_has_no_plots(client: TestClient) -> None:
    for name in PLOTS:
        response = client.get(f"/v1/runs/nope/plots/{name}")
        assert response.status_code == 404 and response.headers["content-type"] == "application/problem+json"


def test_max_points_thins_every_series_and_keeps_its_extremes(client: TestClient, digits_run: str) -> None:
    full = client.get(f"/v1/runs/{digits_run}/metrics").json()["series"]
    longest = max(len(points["step"]) for points in full.values())
    limit = 10
    assert longest > 2 * limit  # a step series (diagnostics every 5 steps) is long enough to thin
    thin = client.get(f"/v1/runs/{digits_run}/metrics", params={"max_points": limit}).json()["series"]
    assert thin.keys() == full.keys()
    for name, points in full.items():
        kept = thin[name]
        assert len(kept["step"]) == len(kept["epoch"]) == len(kept["value"]) <= limit
        if len(points["step"]) <= limit:
            assert kept == points, name
            continue
        assert kept["step"] == sorted(kept["step"])
        assert (kept["step"][0], kept["step"][-1]) == (points["step"][0], points["step"][-1])
        at = dict(zip(points["step"], zip(points["epoch"], points["value"], strict=True), strict=True))
        assert all(at[s] == (e, v) for s, e, v in zip(kept["step"], kept["epoch"], kept["value"], strict=True))
        values = [v for v in points["value"] if v is not None]
        assert min(values) in kept["value"] and max(values) in kept["value"], name
    for bad in (1, 100_001):
        assert client.get(f"/v1/runs/{digits_run}/metrics", params={"max_points": bad}).status_code == 422


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, dict[str, dict[str, str]]]]:
    """An app with API keys for two tenants and no worker: runs stay queued."""
    settings = Settings(data_dir=tmp_path_factory.mktemp("plot-tenants"), auth="api_key", sweep_interval_s=3600)
    migrate(settings.resolved_database_url)
    with session_factory(make_engine(settings.resolved_database_url))() as session:
        keys = {tenant: create_key(session=session, tenant=tenant) for tenant in ("acme", "globex")}
    with TestClient(create_app(settings)) as client:
        yield client, {tenant: {"Authorization": f"Bearer {key}"} for tenant, key in keys.items()}


def test_another_tenants_plots_are_404(secured: tuple[TestClient, dict[str, dict[str, str]]]) -> None:
    client, auth = secured
    run_id = client.post("/v1/runs", json=small_spec(name="acme-plots"), headers=auth["acme"]).json()["id"]
    for name in PLOTS:
        assert png(client, run_id, name, **auth["acme"])  # queued: nothing recorded, each panel says so
        assert client.get(f"/v1/runs/{run_id}/plots/{name}", headers=auth["globex"]).status_code == 404
        assert client.get(f"/v1/runs/{run_id}/plots/{name}").status_code == 401
    assert client.get(f"/v1/runs/{run_id}/metrics", params={"max_points": 5}, headers=auth["globex"]).status_code == 404
