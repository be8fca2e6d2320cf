"""Tenants: API keys, isolation on every route with a path id (another tenant's things are 404),
401 without a valid key, quotas and size limits. No worker runs here: runs stay queued."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from api.main import create_app
from cli.main import app
from core.settings import Settings
from core.store import runs
from core.store.db import make_engine, migrate, session_factory
from core.store.keys import create_key, revoke_key
from tests.service.conftest import small_spec

PATH_ROUTES = [
    ("GET", "/v1/runs/{run}"),
    ("GET", "/v1/runs/{run}/metrics"),
    ("GET", "/v1/runs/{run}/children"),
    ("GET", "/v1/runs/{run}/plots/curves.png"),
    ("GET", "/v1/runs/{run}/plots/health.png"),
    ("POST", "/v1/runs/{run}/retry"),
    ("GET", "/v1/runs/{run}/events"),
    ("POST", "/v1/runs/{run}/cancel"),
    ("POST", "/v1/runs/{run}/predict"),
    ("GET", "/v1/runs/{run}/artifacts/model"),
    ("GET", "/v1/datasets/{dataset}"),
]


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, dict[str, str], Settings]]:
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("tenants"),
        auth="api_key",
        quota_queued=3,
        max_params=1_000_000,
        max_request_mb=1,
        sweep_interval_s=3600,
    )
    migrate(settings.resolved_database_url)
    with session_factory(make_engine(settings.resolved_database_url))() as session:
        keys = {tenant: create_key(session=session, tenant=tenant) for tenant in ("acme", "globex", "revoked")}
        revoke_key(session=session, prefix=keys["revoked"].split("_")[1])
    with TestClient(create_app(settings)) as client:
        yield client, {t: {"Authorization": f"Bearer {k}"} for t, k in keys.items()}, settings


def test_every_path_route_hides_other_tenants_things(secured: tuple[TestClient, dict, Settings]) -> None:
    client, auth, _ = secured
    run_id = client.post("/v1/runs", json=small_spec(name="acme-run"), headers=auth["acme"]).json()["id"]
    upload = client.post("/v1/datasets", files={"file": ("d.csv", b"a,b\n1,0\n2,1\n3,0\n4,1\n")}, headers=auth["acme"])
    dataset_id = upload.json()["id"]
    body = {"inputs": [[1.0]]}
    for method, template in PATH_ROUTES:
        path = template.format(run=run_id, dataset=dataset_id)
        other = client.request(method, path, headers=auth["globex"], json=body if method == "POST" else None)
        assert other.status_code == 404, (method, path, other.status_code)
        assert other.headers["content-type"] == "application/problem+json"
        nobody = client.request(method, path, json=body if method == "POST" else None)
        assert nobody.status_code == 401, (method, path)
        assert nobody.headers["www-authenticate"] == "Bearer"
        revoked = client.request(method, path, headers=auth["revoked"], json=body if method == "POST" else None)
        assert revoked.status_code == 401, (method, path)
    assert client.get(f"/v1/runs/{run_id}", headers=auth["acme"]).status_code == 200
    assert client.get(f"/v1/datasets/{dataset_id}", headers=auth["acme"]).status_code == 200
    assert client.post(f"/v1/runs/{run_id}/predict", json=body, headers=auth["acme"]).status_code == 409
    assert [r["id"] for r in client.get("/v1/runs", headers=auth["globex"]).json()["items"]] == []
    assert run_id in [r["id"] for r in client.get("/v1/runs", headers=auth["acme"]).json()["items"]]
    stolen = small_spec(data={"source": {"type": "dataset", "id": dataset_id, "target": "b"}})
    refused = client.post("/v1/runs", json=stolen, headers=auth["globex"])
    assert refused.status_code == 422 and refused.json()["errors"][0]["pointer"] == "/data/source/id"
    for key in ("Bearer ty_nope_nope", "Basic abc", "Bearer"):
        assert client.get("/v1/runs", headers={"Authorization": key}).status_code == 401
    client.post(f"/v1/runs/{run_id}/cancel", headers=auth["acme"])


def test_a_sweep_and_its_children_are_the_tenants_own(secured: tuple[TestClient, dict, Settings]) -> None:
    client, auth, settings = secured
    grid = {"method": "grid", "parameters": {"optimizer.lr": [0.1, 0.01, 0.001, 0.0001]}}
    over = client.post("/v1/runs", json={**small_spec(), "sweep": grid}, headers=auth["acme"])
    assert over.status_code == 422 and settings.quota_queued < 4  # larger than the whole quota: never fits
    error = over.json()["errors"][0]
    assert error["pointer"] == "/sweep/parameters" and "quota" in error["message"]
    dry_run = client.post("/v1/specs/validate", json={**small_spec(), "sweep": grid}, headers=auth["acme"])
    assert dry_run.status_code == 422 and dry_run.json()["errors"] == over.json()["errors"]
    grid["parameters"]["optimizer.lr"] = [0.1, 0.01]
    parent = client.post("/v1/runs", json={**small_spec(), "sweep": grid}, headers=auth["acme"]).json()["id"]
    kids = client.get(f"/v1/runs/{parent}/children", headers=auth["acme"]).json()["items"]
    assert [kid["params"] for kid in kids] == [{"optimizer.lr": 0.1}, {"optimizer.lr": 0.01}]
    for path in (f"/v1/runs/{parent}/children", f"/v1/runs?parent={parent}", *(f"/v1/runs/{k['id']}" for k in kids)):
        assert client.get(path, headers=auth["globex"]).status_code == 404, path
    assert client.post(f"/v1/runs/{parent}/cancel", headers=auth["globex"]).status_code == 404
    assert client.post(f"/v1/runs/{parent}/cancel", headers=auth["acme"]).json()["status"] == "cancelled"
    kids = client.get(f"/v1/runs?parent={parent}", headers=auth["acme"]).json()["items"]
    assert {kid["status"] for kid in kids} == {"cancelled"}


def test_idempotency_keys_are_per_tenant(secured: tuple[TestClient, dict, Settings]) -> None:
    client, auth, _ = secured
    headers = {"Idempotency-Key": "same"}
    first = client.post("/v1/runs", json=small_spec(), headers={**auth["acme"], **headers}).json()["id"]
    second = client.post("/v1/runs", json=small_spec(epochs=9), headers={**auth["globex"], **headers}).json()["id"]
    assert first != second
    for run_id, tenant in ((first, "acme"), (second, "globex")):
        client.post(f"/v1/runs/{run_id}/cancel", headers=auth[tenant])


def test_the_idempotency_matrix_across_tenants(secured: tuple[TestClient, dict, Settings]) -> None:
    """(tenant, key, body): the same tenant's key with the same body is its original run, with another
    body a 409; another tenant's same key is a key of its own, whatever the body. (Tenants whose
    names would spell each other's keys, ``a:x`` + ``K1`` and ``a`` + ``x:K1``: test_fencing.)"""
    client, auth, _ = secured
    body, other_body = small_spec(epochs=1), small_spec(epochs=2)

    def submit(tenant: str, document: dict) -> tuple[int, str | None]:
        answer = client.post("/v1/runs", json=document, headers={**auth[tenant], "Idempotency-Key": "matrix"})
        return answer.status_code, answer.json().get("id")

    first = submit("acme", body)
    assert first[0] == 202
    assert submit("acme", body) == first  # the same tenant, key and body: the original run
    assert submit("acme", other_body)[0] == 409  # the same tenant and key, another body
    theirs = submit("globex", body)  # another tenant, the same key and body: a run of its own
    assert theirs[0] == 202 and theirs[1] != first[1]
    assert submit("globex", body) == theirs and submit("globex", other_body)[0] == 409
    assert client.get(f"/v1/runs/{theirs[1]}", headers=auth["acme"]).status_code == 404
    for run_id, tenant in ((first[1], "acme"), (theirs[1], "globex")):
        client.post(f"/v1/runs/{run_id}/cancel", headers=auth[tenant])


def test_queued_quota_and_size_limits(secured: tuple[TestClient, dict, Settings]) -> None:
    client, auth, settings = secured
    accepted = [
        client.post("/v1/runs", json=small_spec(), headers=auth["globex"]) for _ in range(settings.quota_queued)
    ]
    assert all(r.status_code == 202 for r in accepted)
    over = client.post("/v1/runs", json=small_spec(), headers=auth["globex"])
    assert over.status_code == 429
    assert client.post("/v1/runs", json=small_spec(), headers=auth["acme"]).status_code == 202  # another tenant's quota
    huge = client.post(
        "/v1/specs/validate", json=small_spec(model={"type": "mlp", "hidden": [4096, 4096]}), headers=auth["acme"]
    )
    assert huge.status_code == 422
    assert huge.json()["errors"][0]["pointer"] == "/model" and "parameters" in huge.json()["errors"][0]["message"]
    big_body = small_spec(data={"source": {"type": "inline", "x": [[0.5] * 64] * 5000, "y": [0, 1] * 2500}})
    too_large = client.post("/v1/runs", json=big_body, headers=auth["acme"])
    assert too_large.status_code == 413 and too_large.json()["status"] == 413


def test_a_tenants_own_quotas_replace_the_services(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, quota_queued=10, quota_running=4, sweep_interval_s=3600)
    env = {"TRAINYARD_DATA_DIR": str(tmp_path)}
    admin = CliRunner()
    assert (
        admin.invoke(app, ["tenants", "set-quota", "local", "--queued", "1", "--running", "1"], env=env).exit_code == 0
    )
    assert admin.invoke(app, ["tenants", "set-quota", "a:b", "--queued", "1"], env=env).exit_code == 2  # a bad name
    assert "local" in admin.invoke(app, ["tenants", "list"], env=env, terminal_width=200).output
    with TestClient(create_app(settings)) as client:
        first = client.post("/v1/runs", json=small_spec()).json()["id"]
        assert client.post("/v1/runs", json=small_spec()).status_code == 429  # its own 1, not the service's 10
    with session_factory(make_engine(settings.resolved_database_url))() as session:
        assert runs.claim_run(session=session, run_id=first, worker="w", lease_s=60, max_running=4) == "claimed"
        second = runs.create_run(session=session, tenant="local", spec=small_spec(), name="second")
        session.commit()
        # its own running quota of 1, not the service's 4
        assert runs.claim_run(session=session, run_id=second.id, worker="w", lease_s=60, max_running=4) == "deferred"


def test_metrics_count_every_tenant_so_they_need_their_own_token(tmp_path: Path) -> None:
    token = "m" * 32
    settings = Settings(data_dir=tmp_path, auth="api_key", metrics_token=token, sweep_interval_s=3600)
    with TestClient(create_app(settings)) as client:
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers={"Authorization": "Bearer ty_wrong"}).status_code == 401
        scraped = client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
        assert scraped.status_code == 200 and "trainyard_runs" in scraped.text
