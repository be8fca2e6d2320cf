"""A small request cannot make the API load or build something huge before refusing it (issue 14,
item 10): a generator asked for 100M values and a model of 10,000 layers are 422s in well under a
second, from the spec alone."""

import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
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
