"""Live event streams over real HTTP, on an API process with no worker (runs stay queued): open
streams hold neither a request thread nor a database connection, their threads are gone once the
clients leave, each tenant's streams are capped, and a stream ends after max_stream_s."""

import json
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx

from api.streams import READERS
from core.settings import Settings
from core.store.db import make_engine, migrate, session_factory
from core.store.keys import create_key
from tests.service.conftest import api_alone, small_spec

STREAMS = 24  # over the 15 connections of the SQLite engine's pool (5 + 10 overflow)


@contextmanager
def api_process(data_dir: Path, **env: str) -> Iterator[tuple[subprocess.Popen, dict[str, httpx.Client]]]:
    """uvicorn serving the app with auth on and ``env`` settings; a client per tenant (acme, globex)."""
    settings = Settings(data_dir=data_dir)
    migrate(settings.resolved_database_url)
    engine = make_engine(settings.resolved_database_url)
    with session_factory(engine)() as session:
        keys = {tenant: create_key(session=session, tenant=tenant) for tenant in ("acme", "globex")}
    engine.dispose()
    quiet = {"TRAINYARD_AUTH": "api_key", "TRAINYARD_SWEEP_INTERVAL_S": "3600"}  # no sweeper thread mid-count
    environment = {**os.environ, "TRAINYARD_DATA_DIR": str(data_dir), **quiet, **env}
    with api_alone(data_dir, environment) as (process, url), ExitStack() as stack:
        clients = {
            tenant: stack.enter_context(
                httpx.Client(
                    base_url=url,
                    headers={"Authorization": f"Bearer {key}"},
                    timeout=10,
                    limits=httpx.Limits(max_connections=2 * STREAMS),
                )
            )
            for tenant, key in keys.items()
        }
        yield process, clients


def threads(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("Threads:")).split()[1])


def open_stream(stack: ExitStack, client: httpx.Client, run_id: str) -> httpx.Response:
    """A stream held open in ``stack`` once it has sent its first event (the queued run's status)."""
    response = stack.enter_context(client.stream("GET", f"/v1/runs/{run_id}/events"))
    if response.status_code == 200:
        lines = response.iter_lines()
        stack.callback(lines.close)  # held: an iterator dropped mid-body closes the connection
        data = next(line for line in lines if line.startswith("data: "))
        assert json.loads(data.removeprefix("data: "))["status"] == "queued"
    return response


def queued_run(client: httpx.Client) -> str:
    submitted = client.post("/v1/runs", json=small_spec())
    assert submitted.status_code == 202
    return submitted.json()["id"]


def test_open_streams_hold_no_thread_or_connection_and_are_capped_per_tenant(tmp_path: Path) -> None:
    with api_process(tmp_path, TRAINYARD_MAX_STREAMS_PER_TENANT=str(STREAMS)) as (process, clients):
        acme, globex = clients["acme"], clients["globex"]
        run_id, other_run = queued_run(acme), queued_run(globex)
        with ExitStack() as warm_up:  # the threads a stream and a request need are in the base; more
            # streams share at most READERS more
            open_stream(warm_up, acme, run_id)
            acme.get("/v1/runs").raise_for_status()
        base = threads(process.pid)

        with ExitStack() as streams:
            for _ in range(STREAMS):
                assert open_stream(streams, acme, run_id).status_code == 200
            started = time.monotonic()
            assert acme.get("/v1/runs").status_code == 200
            assert time.monotonic() - started < 2.0
            assert acme.get(f"/v1/runs/{run_id}").status_code == 200

            refused = acme.get(f"/v1/runs/{run_id}/events")
            assert refused.status_code == 429
            assert refused.headers["content-type"] == "application/problem+json"
            assert f"{STREAMS} event streams" in refused.json()["detail"]
            assert open_stream(streams, globex, other_run).status_code == 200  # the cap is per tenant
            busy = threads(process.pid)
            assert busy <= base + READERS, f"{busy} threads with {STREAMS + 1} streams open, {base} before"

        deadline = time.monotonic() + 15
        while threads(process.pid) > base:  # the clients left: any reader thread they added goes too
            assert time.monotonic() < deadline, f"{threads(process.pid)} threads, {base} before {busy} with streams"
            time.sleep(0.5)
            acme.get("/v1/runs")

        deadline, opened = time.monotonic() + 5, 0
        with ExitStack() as again:  # and the tenant's streams were released (the server noticed they left)
            while opened < STREAMS:
                status = open_stream(again, acme, run_id).status_code
                if status == 200:
                    opened += 1
                    continue
                assert status == 429 and time.monotonic() < deadline
                time.sleep(0.1)


def test_a_stream_ends_after_max_stream_s_and_frees_its_slot(tmp_path: Path) -> None:
    env = {"TRAINYARD_MAX_STREAM_S": "1", "TRAINYARD_MAX_STREAMS_PER_TENANT": "1"}
    with api_process(tmp_path, **env) as (_, clients):
        acme = clients["acme"]
        run_id = queued_run(acme)
        for _ in range(2):  # the second stream is not refused: the first one's slot was released
            started = time.monotonic()
            with acme.stream("GET", f"/v1/runs/{run_id}/events") as stream:
                assert stream.status_code == 200
                lines = [line for line in stream.iter_lines() if line]
            assert 1.0 <= time.monotonic() - started < 5.0
            assert lines[:2] == ["event: status", f"data: {json.dumps(status_of(acme, run_id))}"]
            assert lines[-1].startswith(": ")  # a comment says why it ended; the run is still queued


def status_of(client: httpx.Client, run_id: str) -> dict:
    run = client.get(f"/v1/runs/{run_id}").json()
    return {"run_id": run_id, "status": run["status"], "epoch": run["epoch"], "failure": run["failure"]}
