"""Bodies that would eat the API (issue 14, item 12) and what /healthz tells (item 14): a key is checked
before any body is read, so 30 MB from a caller without one costs the server no memory; a JSON body
over ``max_request_mb`` is a 413 before it is parsed, with a Content-Length or chunked; uploads keep
their own limit; /healthz never answers with an exception's text. The API runs under uvicorn (no
worker), and its peak memory (VmHWM, reset before each request) is read from /proc."""

import logging
import os
import re
import subprocess
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import sessionmaker

from api.main import create_app
from core.settings import Settings
from core.store.db import make_engine, migrate, session_factory
from core.store.keys import create_key
from tests.service.conftest import api_alone, free_port
from worker.celery_app import make_celery

GROWTH_MIB = 50
JSON = {"content-type": "application/json"}
UPLOAD_MB = 16


@dataclass
class Api:
    """The API alone under uvicorn, a client and a key for it; what the process's memory did."""

    process: subprocess.Popen
    client: httpx.Client
    auth: dict[str, str]

    def _status(self, key: str) -> int:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(re.search(rf"^{key}:\s+(\d+) kB", status, re.M).group(1)) >> 10  # type: ignore[union-attr]

    def post(
        self, path: str, body: bytes | Iterable[bytes], headers: dict[str, str]
    ) -> tuple[httpx.Response, float, int]:
        """The answer, its seconds, and how far the peak memory rose above the memory in use before (MiB)."""
        Path(f"/proc/{self.process.pid}/clear_refs").write_text("5")  # the peak starts again from here
        before = self._status("VmRSS")
        started = time.perf_counter()
        response = self.client.post(path, content=body, headers=headers)
        return response, time.perf_counter() - started, self._status("VmHWM") - before


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    data_dir = tmp_path_factory.mktemp("limits")
    env = {
        **os.environ,
        "TRAINYARD_DATA_DIR": str(data_dir),
        "TRAINYARD_AUTH": "api_key",
        "TRAINYARD_MAX_UPLOAD_MB": str(UPLOAD_MB),
        "TRAINYARD_MAX_DATASET_MB": "64",
        "TRAINYARD_SWEEP_INTERVAL_S": "3600",
    }
    settings = Settings(data_dir=data_dir)
    migrate(settings.resolved_database_url)
    with session_factory(make_engine(settings.resolved_database_url))() as session:
        key = create_key(session=session, tenant="acme")
    with api_alone(data_dir, env) as (process, url), httpx.Client(base_url=url, timeout=120) as client:
        served = Api(process, client, {"Authorization": f"Bearer {key}"})
        for headers in (served.auth, {}):  # first-use costs are not counted below
            served.post("/v1/specs/validate", b'{"x": [[0.5, 0.25]]}', {**JSON, **headers})
        yield served


def json_body(megabytes: float) -> bytes:
    """A JSON document of about ``megabytes`` MB: pairs of floats, which parsed take ~13× their bytes."""
    pair = b"[0.5,0.25],"
    return b'{"x":[' + pair * int(megabytes * 2**20 / len(pair)) + b"[0.5,0.25]]}"


def chunked(body: bytes, size: int = 1 << 16) -> Iterator[bytes]:
    """``body`` as a generator, so httpx sends it chunked, without a Content-Length."""
    for start in range(0, len(body), size):
        yield body[start : start + size]


def assert_problem(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, (response.status_code, response.text[:300])
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == status
    return response.json()


@pytest.mark.parametrize("send", ["content-length", "chunked"])
def test_an_unauthenticated_30_mb_body_is_a_401_before_it_is_read(api: Api, send: str) -> None:
    body = json_body(30)
    for path in ("/v1/runs", "/v1/specs/validate", "/v1/runs/run_x/predict", "/v1/datasets"):
        response, elapsed, growth = api.post(path, body if send == "content-length" else chunked(body), JSON)
        assert_problem(response, 401)
        assert response.headers["www-authenticate"] == "Bearer"
        assert elapsed < 2.0 and growth < GROWTH_MIB, (path, elapsed, growth)


def test_the_public_paths_need_no_key(api: Api) -> None:
    for path in ("/healthz", "/docs", "/openapi.json", "/ui", "/ui/static/app.js"):
        assert api.client.get(path).status_code in (200, 503), path  # /healthz: 503 without a worker
    assert api.client.get("/metrics").status_code == 404  # every tenant's counts: off until a token is set
    assert api.client.get("/v1/runs").status_code == 401
    assert api.client.get("/v1/runs", headers=api.auth).status_code == 200


@pytest.mark.parametrize("send", ["content-length", "chunked"])
def test_an_authenticated_json_body_over_the_limit_is_a_413_before_it_is_parsed(api: Api, send: str) -> None:
    limit = Settings().max_request_mb
    assert limit <= 8  # parsed JSON takes many times its size: the default is well below the old 32 MiB
    body = json_body(limit + 2)
    for path in ("/v1/runs", "/v1/specs/validate", "/v1/runs/run_x/predict"):
        response, _, growth = api.post(path, body if send == "content-length" else chunked(body), {**JSON, **api.auth})
        assert f"{limit} MiB" in assert_problem(response, 413)["detail"]
        assert growth < GROWTH_MIB, (path, growth)
    under = api.post("/v1/specs/validate", json_body(limit - 1), {**JSON, **api.auth})[0]
    assert_problem(under, 422)  # read and parsed: not a spec


def multipart(content: bytes, boundary: str = "trainyard-test-boundary") -> tuple[bytes, dict[str, str]]:
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.csv"\r\n\r\n'.encode()
    body = head + content + f"\r\n--{boundary}--\r\n".encode()
    return body, {"content-type": f"multipart/form-data; boundary={boundary}"}


def csv_of(megabytes: int) -> bytes:
    line = b"0.123456,0.654321,1\n"
    return b"a,b,label\n" + line * (megabytes * 2**20 // len(line))


def test_uploads_keep_their_own_limit_and_a_chunked_one_over_it_is_a_413(api: Api) -> None:
    body, headers = multipart(csv_of(UPLOAD_MB + 4))
    response, _, growth = api.post("/v1/datasets", chunked(body), {**headers, **api.auth})
    assert f"{UPLOAD_MB} MiB" in assert_problem(response, 413)["detail"]
    assert growth < GROWTH_MIB, growth
    assert_problem(api.post("/v1/datasets", body, {**headers, **api.auth})[0], 413)
    body, headers = multipart(csv_of(Settings().max_request_mb + 2))  # over the JSON limit, under the upload's
    response = api.post("/v1/datasets", chunked(body), {**headers, **api.auth})[0]
    assert response.status_code == 201, response.text[:300]


def test_healthz_never_answers_with_exception_text(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    nobody = free_port()  # nothing listens here: the database and the broker are unreachable
    settings = Settings(data_dir=tmp_path, sweep_interval_s=3600)
    with TestClient(create_app(settings)) as client:
        service = client.app.state.service  # type: ignore[attr-defined]
        service.sessions = sessionmaker(make_engine(f"postgresql+psycopg://postgres@127.0.0.1:{nobody}/trainyard"))
        service.queue = make_celery(Settings(data_dir=tmp_path, broker_url=f"redis://127.0.0.1:{nobody}/0"))
        with caplog.at_level(logging.WARNING, logger="trainyard.api"):
            health = client.get("/healthz")
    body = assert_problem(health, 503)
    assert (body["database"], body["queue"], body["worker"]) == ("unavailable", "unavailable", "none alive")
    assert body["detail"] == "database: unavailable; queue: unavailable; worker: none alive"
    assert str(nobody) not in health.text and "refused" not in health.text.lower()
    logged = " ".join(record.getMessage() for record in caplog.records)
    assert "database is unavailable" in logged and "queue is unavailable" in logged and str(nobody) in logged
