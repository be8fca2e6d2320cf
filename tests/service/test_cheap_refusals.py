"""A small request cannot make the API load or build something huge before refusing it (issue 14,
item 10): a generator asked for 100M values and a model of 10,000 layers are 422s in well under a
second, from the spec alone; a file or uploaded data set too large for the data set limit is a 422
from its NPZ headers or its CSV's line count, before any of its values is read; and the routes that
plan a spec against its data run in the threadpool, off the event loop."""

import inspect
import io
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from api.main import create_app
from api.routes import runs, specs
from core.data import files
from core.settings import Settings

HUGE = [
    (
        {
            "task": "regression",
            "data": {"source": {"type": "builtin", "name": "sine_series", "n_samples": 100_000, "length": 1000}},
        },
        "/data/source/n_samples",
    ),
    (
        {
            "data": {"source": {"type": "builtin", "name": "digits"}},
            "model": {"type": "sequential", "layers": [{"type": "dense", "units": 4}] * 10_000},
        },
        "/model/layers",
    ),
]


@pytest.mark.parametrize(("spec", "pointer"), HUGE, ids=["generated-values", "layers"])
@pytest.mark.parametrize("route", ["/v1/specs/validate", "/v1/runs"])
def test_a_huge_spec_is_refused_at_once(spec: dict, pointer: str, route: str, tmp_path: Path) -> None:
    with TestClient(create_app(Settings(data_dir=tmp_path, sweep_interval_s=3600))) as client:
        started = time.perf_counter()
        refused = client.post(route, json=spec)
        assert time.perf_counter() - started < 1.0
    assert refused.status_code == 422 and refused.json()["errors"][0]["pointer"] == pointer


def wide_csv(rows: int, columns: int) -> bytes:
    header = ",".join(f"c{i}" for i in range(columns)) + "\n"
    return (header + ("1," * (columns - 1) + "0\n") * rows).encode()


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, str]]:
    """An API whose data set limit is 1 MiB, its data root holding a CSV and an NPZ over it, and an
    upload over it (stored while the limit was the default 256 MiB): its client and that upload's id."""
    data_dir, root = tmp_path_factory.mktemp("service"), tmp_path_factory.mktemp("root")
    (root / "wide.csv").write_bytes(wide_csv(20_000, 100))  # 390 KB; 15.3 MiB as float64
    buffer = io.BytesIO()
    np.savez(buffer, x=np.zeros((2000, 100), np.uint8), y=np.zeros(2000, np.uint8))
    (root / "bytes.npz").write_bytes(buffer.getvalue())  # 200 KB of uint8; 1.5 MiB as float64
    with TestClient(create_app(Settings(data_dir=data_dir, sweep_interval_s=3600))) as client:
        upload = client.post("/v1/datasets", files={"file": ("wide.csv", wide_csv(20_000, 10))})
        assert upload.status_code == 201, upload.text
    settings = Settings(data_dir=data_dir, data_root=root, max_dataset_mb=1, sweep_interval_s=3600)
    with TestClient(create_app(settings)) as client:
        yield client, upload.json()["id"]


OVERSIZED = [
    ({"type": "file", "path": "wide.csv"}, "/data/source/path", "20000 lines of 100 columns hold up to 15.3 MiB"),
    ({"type": "file", "path": "bytes.npz"}, "/data/source/path", "(uint8) decodes to 1.5 MiB as float64"),
    ({"type": "dataset"}, "/data/source/id", "20000 lines of 10 columns hold up to 1.5 MiB"),
]


@pytest.mark.parametrize(("source", "pointer", "why"), OVERSIZED, ids=["csv-file", "npz-file", "uploaded-csv"])
@pytest.mark.parametrize("route", ["/v1/specs/validate", "/v1/runs"])
def test_a_data_set_over_the_limit_is_refused_before_it_is_loaded(
    limited: tuple[TestClient, str], source: dict, pointer: str, why: str, route: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, dataset_id = limited
    monkeypatch.setattr(files._CsvRows, "rows", lambda _: pytest.fail("the CSV's rows were parsed"))
    monkeypatch.setattr(files, "_read_array", lambda *_: pytest.fail("an NPZ array was read"))
    source = {**source, "id": dataset_id} if source["type"] == "dataset" else source
    spec = {"task": "regression", "data": {"source": source}, "model": {"type": "mlp", "hidden": [4]}}
    started = time.perf_counter()
    refused = client.post(route, json=spec)
    assert time.perf_counter() - started < 1.0
    assert refused.status_code == 422, refused.text
    error = refused.json()["errors"][0]
    assert error["pointer"] == pointer and why in error["message"] and "the limit is 1 MiB" in error["message"]
    assert error["hint"] == "a server sets this limit with TRAINYARD_MAX_DATASET_MB"


def test_the_routes_that_load_data_run_in_the_threadpool() -> None:
    """FastAPI runs a plain ``def`` route in its threadpool; an ``async def`` one that planned a spec
    against its data would hold the event loop (every other request) while the data loads."""
    planning = {("POST", "/v1/specs/validate"), ("POST", "/v1/runs"), ("POST", "/v1/runs/{run_id}/retry")}
    routes = [route for route in [*runs.router.routes, *specs.router.routes] if isinstance(route, APIRoute)]
    found = {(method, route.path): route.endpoint for route in routes for method in route.methods}
    assert planning <= set(found)
    assert not [key for key in planning if inspect.iscoroutinefunction(found[key])]
