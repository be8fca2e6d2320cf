"""Property-based fuzzing of the API with hypothesis: specs mutated at random places, random JSON
bodies and query strings never cause a 5xx, and a rejected request stores nothing."""

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.main import create_app
from core.settings import Settings
from tests.service.conftest import small_spec

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**12), 10**12)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
KEYS = st.sampled_from(
    [
        "type",
        "lr",
        "epochs",
        "hidden",
        "layers",
        "source",
        "name",
        "x",
        "y",
        "kernel",
        "filters",
        "padding",
        "activation",
        "init",
        "split",
        "validation",
        "kfold",
        "bogus",
    ]
)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings_ = Settings(data_dir=tmp_path_factory.mktemp("fuzz"), sweep_interval_s=3600)
    with TestClient(create_app(settings_), raise_server_exceptions=False) as test_client:
        yield test_client


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _paths(value, (*prefix, index))
    return found


@st.composite
def mutated_specs(draw: st.DrawFn) -> dict[str, Any]:
    spec = json.loads(
        json.dumps(
            small_spec(
                epochs=1,
                model={
                    "type": "cnn",
                    "layers": [{"type": "conv", "filters": 4, "kernel": 3, "padding": "same"}, {"type": "max_pool"}],
                },
            )
        )
    )
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(spec)))
        if not path:
            continue
        parent = spec
        for part in path[:-1]:
            parent = parent[part]
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "replace":
            parent[path[-1]] = draw(JSON_VALUES)
        elif action == "delete" and isinstance(parent, dict):
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(KEYS)] = draw(JSON_VALUES)
    return spec


def run_count(client: TestClient) -> int:
    return len(client.get("/v1/runs", params={"limit": 200}).json()["items"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=mutated_specs())
def test_mutated_specs_never_5xx_and_rejections_store_nothing(client: TestClient, spec: dict[str, Any]) -> None:
    validated = client.post("/v1/specs/validate", json=spec)
    assert validated.status_code in (200, 422), validated.text
    before = run_count(client)
    submitted = client.post("/v1/runs", json=spec)
    assert submitted.status_code in (202, 422), submitted.text
    assert run_count(client) == before + (submitted.status_code == 202)
    if submitted.status_code == 422:
        assert validated.status_code == 422
        errors = submitted.json()["errors"]
        assert errors and all(e["pointer"] == "" or e["pointer"].startswith("/") for e in errors)
    else:
        client.post(f"/v1/runs/{submitted.json()['id']}/cancel")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=JSON_VALUES,
    query=st.dictionaries(st.sampled_from(["limit", "cursor", "status", "name"]), st.text(max_size=10), max_size=3),
)
def test_random_bodies_and_queries_never_5xx(client: TestClient, body: Any, query: dict[str, str]) -> None:
    for method, path in (
        ("POST", "/v1/runs"),
        ("POST", "/v1/specs/validate"),
        ("POST", "/v1/runs/run_x/predict"),
        ("GET", "/v1/runs"),
        ("GET", "/v1/runs/run_x/metrics"),
    ):
        response = client.request(method, path, json=body if method == "POST" else None, params=query)
        assert response.status_code < 500, (method, path, response.status_code, response.text)
