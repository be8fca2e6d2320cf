"""The OpenAPI document tells the truth: schemathesis (every check but positive_data_acceptance, a
fixed seed and a bounded example count) finds nothing against a real API process with API keys on,
and a client generated from the document by openapi-python-client submits, waits and predicts; what
schemathesis found before is checked directly too."""

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

import httpx
from fastapi.testclient import TestClient

from api.main import create_app
from core.settings import Settings
from core.store.db import make_engine, migrate, session_factory
from core.store.keys import create_key
from tests.service.conftest import api_alone, small_spec, start_worker

HERE = Path(__file__).parent
BIN = Path(sys.executable).parent
SEED, EXAMPLES = "20261202", "25"


@contextmanager
def keyed_api(data_dir: Path, **env: str) -> Iterator[tuple[str, str, dict[str, str]]]:
    """uvicorn serving the app with API keys on; yields its URL, a tenant's key and the environment."""
    settings = Settings(data_dir=data_dir)
    migrate(settings.resolved_database_url)
    engine = make_engine(settings.resolved_database_url)
    with session_factory(engine)() as session:
        key = create_key(session=session, tenant="acme")
    engine.dispose()
    environment = {**os.environ, "TRAINYARD_DATA_DIR": str(data_dir), "TRAINYARD_AUTH": "api_key", **env}
    with api_alone(data_dir, environment) as (_, url):
        yield url, key, environment


def test_schemathesis_finds_no_failure(tmp_path: Path) -> None:
    # no worker: runs stay queued (and /healthz answers its documented 503); streams end after 1 s
    with keyed_api(tmp_path, TRAINYARD_MAX_STREAM_S="1", TRAINYARD_SWEEP_INTERVAL_S="3600") as (url, key, _):
        argv = [
            str(BIN / "schemathesis"),
            "--no-color",
            "--config-file",
            str(HERE / "schemathesis.toml"),
            "run",
            f"{url}/openapi.json",
            "--max-examples",
            EXAMPLES,
            "--seed",
            SEED,
            "--generation-database",
            "none",
            "--header",
            f"Authorization: Bearer {key}",
        ]
        found = subprocess.run(argv, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    report = found.stdout + found.stderr
    assert found.returncode == 0, report[-8000:]
    assert "Stateful" in report and "passed" in report, report[-2000:]


def test_generated_client_submits_waits_and_predicts(tmp_path: Path) -> None:
    with keyed_api(tmp_path) as (url, key, environment):
        worker = start_worker(environment)
        try:
            document = httpx.get(f"{url}/openapi.json", timeout=30).raise_for_status().json()
            (tmp_path / "openapi.json").write_text(json.dumps(document))
            generate = [
                str(BIN / "openapi-python-client"),
                "generate",
                "--path",
                "openapi.json",
                "--meta",
                "none",
                "--output-path",
                "trainyard_client",
            ]
            made = subprocess.run(generate, capture_output=True, text=True, timeout=120, cwd=tmp_path)
            assert (tmp_path / "trainyard_client" / "client.py").is_file(), made.stdout + made.stderr
            use = [sys.executable, str(HERE / "use_generated_client.py"), url, key, json.dumps(small_spec())]
            env = {**os.environ, "PYTHONPATH": str(tmp_path)}
            used = subprocess.run(use, capture_output=True, text=True, timeout=300, env=env)
        finally:
            worker.terminate()
            worker.wait(timeout=60)
    assert used.returncode == 0, used.stdout + used.stderr
    answer = json.loads(used.stdout.strip().splitlines()[-1])
    assert answer["status"] == "succeeded"
    predictions = answer["prediction"]["predictions"]
    assert len(predictions) == 2 and all(p in [str(d) for d in range(10)] for p in predictions)


def test_the_findings_of_schemathesis_stay_fixed(tmp_path: Path) -> None:
    """What schemathesis found before, checked without its sampling: a metric name outside the
    documented pattern is a 422 (it was answered as if valid), a 405 names every method of its path,
    and a timestamp carries its UTC offset."""
    with TestClient(create_app(Settings(data_dir=tmp_path, sweep_interval_s=3600))) as client:
        run = client.post("/v1/runs", json=small_spec(epochs=1)).json()
        refused = client.get(f"/v1/runs/{run['id']}/metrics", params={"names": ["val loss\n"]})
        assert refused.status_code == 422 and refused.headers["content-type"] == "application/problem+json"
        assert client.get(f"/v1/runs/{run['id']}/metrics", params={"names": ["act/0.relu"]}).status_code == 200
        wrong_method = client.delete("/v1/runs")
        assert wrong_method.status_code == 405 and set(wrong_method.headers["allow"].split(", ")) == {"GET", "POST"}
        assert datetime.fromisoformat(run["created_at"]).utcoffset() == timedelta(0)
