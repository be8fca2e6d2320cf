"""Uploads: a CSV with the notes' malformed rows is stored with its report and trains by id;
an unreadable upload is a 422 and stores nothing."""

import pytest
from fastapi.testclient import TestClient

from tests.service.conftest import TERMINAL, Backend, wait_for

pytestmark = pytest.mark.parametrize("backend", ["embedded"], indirect=True)


def seed_csv(rows: int = 60) -> bytes:
    """11 columns (10 features + label); rows 5 and 9 carry 21 fields, as in the notes."""
    lines = [",".join([f"f{i}" for i in range(10)] + ["label"])]
    for r in range(rows):
        width = 21 if r in (5, 9) else 11
        lines.append(",".join(str((r * 7 + c) % 13 / 3) for c in range(width - 1)) + f",{r % 2}")
    return ("\n".join(lines) + "\n").encode()


def test_upload_reports_bad_lines_and_trains_by_id(client: TestClient, backend: Backend) -> None:
    response = client.post("/v1/datasets", files={"file": ("seed.csv", seed_csv(), "text/csv")})
    assert response.status_code == 201, response.text
    dataset = response.json()
    assert dataset["id"].startswith("ds_")
    assert dataset["columns"][-1] == "label"
    assert [b["line"] for b in dataset["bad_lines"]] == [7, 11]
    assert client.get(f"/v1/datasets/{dataset['id']}").json()["rows"] == dataset["rows"]

    spec = {
        "name": "from-upload",
        "epochs": 2,
        "data": {"source": {"type": "dataset", "id": dataset["id"], "target": "label", "bad_rows": "skip"}},
        "model": {"type": "mlp", "hidden": [8]},
        "regularization": {"early_stopping": None},
    }
    run_id = client.post("/v1/runs", json=spec).json()["id"]
    assert wait_for(client, run_id, TERMINAL)["status"] == "succeeded"

    strict = {**spec, "data": {"source": {"type": "dataset", "id": dataset["id"], "target": "label"}}}
    refused = client.post("/v1/runs", json=strict)
    assert refused.status_code == 422
    assert "7" in refused.json()["errors"][0]["message"] and "21" in refused.json()["errors"][0]["message"]
    unknown = client.post("/v1/runs", json={**spec, "data": {"source": {"type": "dataset", "id": "ds_nope"}}})
    assert unknown.status_code == 422 and unknown.json()["errors"][0]["pointer"] == "/data/source/id"


def test_bad_upload_stores_nothing(client: TestClient, backend: Backend) -> None:
    folder = backend.settings.data_dir / "datasets"
    before = sorted(folder.iterdir()) if folder.exists() else []
    for name, content in (
        ("empty.csv", b""),
        ("latin.csv", "a,b\n\xe9,1\n".encode("latin-1")),
        ("broken.npz", b"PK\x03\x04 not a zip"),
    ):
        response = client.post("/v1/datasets", files={"file": (name, content, "application/octet-stream")})
        assert response.status_code == 422, (name, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["type"] == "/problems/invalid-upload", "an upload is not a spec"
        assert response.json()["title"] == "Unreadable data set" and response.json()["errors"][0]["pointer"] == "/file"
    after = sorted(folder.iterdir()) if folder.exists() else []
    assert after == before
    assert client.post("/v1/datasets", data={"format": "xls"}, files={"file": ("x.csv", b"a\n1\n")}).status_code == 422


def test_file_sources_are_refused_without_a_data_root(client: TestClient) -> None:
    spec = {"data": {"source": {"type": "file", "path": "/etc/passwd", "format": "csv"}}}
    response = client.post("/v1/runs", json=spec)
    assert response.status_code == 422
    assert response.json()["errors"][0]["pointer"] == "/data/source/path"
