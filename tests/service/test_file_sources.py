"""File sources through the API: read only under the service's data root (TRAINYARD_DATA_ROOT),
relative paths from it; a path outside it is a 422 naming the folder and the setting."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from core.settings import Settings


def csv_spec(path: str) -> dict:
    return {
        "task": "binary",
        "epochs": 1,
        "data": {"source": {"type": "file", "path": path, "target": "label"}},
        "model": {"type": "mlp", "hidden": [4]},
    }


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("files")
    (folder / "root").mkdir()
    table = "a,b,label\n" + "".join(f"{i},{i % 3},{i % 2}\n" for i in range(40))
    (folder / "root" / "data.csv").write_text(table)
    (folder / "outside.csv").write_text(table)
    return folder / "root"


@pytest.fixture(scope="module")
def client(root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("service"), data_root=root, sweep_interval_s=3600)
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def test_a_relative_path_reads_from_the_data_root(client: TestClient) -> None:
    response = client.post("/v1/specs/validate", json=csv_spec("data.csv"))
    assert response.status_code == 200, response.text
    assert response.json()["samples"] == 40


@pytest.mark.parametrize("where", ["../outside.csv", "absolute"])
def test_a_path_outside_the_data_root_names_the_root_and_its_setting(client: TestClient, root: Path, where) -> None:
    path = str(root.parent / "outside.csv") if where == "absolute" else where
    response = client.post("/v1/specs/validate", json=csv_spec(path))
    assert response.status_code == 422, response.text
    [error] = response.json()["errors"]
    assert error["pointer"] == "/data/source/path"
    assert f"outside the data folder {root.resolve()}" in error["message"]
    assert "TRAINYARD_DATA_ROOT" in error["hint"]
