"""``precision`` in the service: submit refuses (422 at ``/precision``) a precision that none of the
live workers able to take the run computes in, judged from their adverts (device kind, bfloat16);
with no worker alive the run is accepted and waits. A worker whose device cannot do a run's
precision fails it with that reason, at once (not retried)."""

from pathlib import Path

from fastapi.testclient import TestClient

from api.main import create_app
from core.settings import Settings
from core.store import runs, workers
from core.store.db import make_engine, migrate, session_factory
from core.store.models import Run
from tests.service.conftest import small_spec
from worker.execution import execute_run, worker_context


def test_submit_checks_precision_against_the_live_workers(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, worker_beat_s=60)  # a beat stays alive for the whole test
    migrate(settings.resolved_database_url)
    sessions = session_factory(make_engine(settings.resolved_database_url))

    def start(name: str, devices: int, kind: str, bf16: bool) -> None:
        with sessions() as session:
            workers.beat(session=session, name=name, host=name, pid=1, advert=workers.Advert(devices, kind, bf16))

    with TestClient(create_app(settings)) as client:

        def submit(precision: str, devices: int = 1) -> tuple[int, dict]:
            answer = client.post("/v1/runs", json=small_spec(precision=precision, resources={"devices": devices}))
            return answer.status_code, answer.json()

        assert submit("fp16")[0] == 202  # no worker alive: it waits for one
        start("cpu-a", 2, "cpu", True)
        status, body = submit("fp16")
        assert status == 422, body
        (error,) = body["errors"]
        assert error["pointer"] == "/precision"
        assert error["message"] == (
            "fp16 (float16 autocast with a GradScaler) needs a CUDA device; the live workers have cpu devices"
        )
        assert "bf16" in error["hint"]
        assert submit("bf16")[0] == submit("fp32")[0] == 202

        start("cuda-old", 1, "cuda", False)  # a GPU without bfloat16
        assert submit("fp16")[0] == 202
        status, body = submit("fp16", devices=2)  # the one worker with 2 devices is a CPU worker
        assert status == 422 and body["errors"][0]["pointer"] == "/precision", body
        with sessions() as session:
            workers.leave(session=session, name="cpu-a")
        status, body = submit("bf16")
        assert status == 422, body
        assert body["errors"][0]["message"] == (
            "bf16 (bfloat16 autocast) needs a device that computes in bfloat16; "
            "the live workers have cuda without bfloat16 devices"
        )


def test_a_worker_fails_a_run_its_device_cannot_do(tmp_path: Path) -> None:
    context = worker_context(Settings(data_dir=tmp_path, device="cpu"))
    with context.sessions() as session:
        run_id = runs.create_run(session=session, tenant="local", spec=small_spec(precision="fp16"), name="fp16").id
        session.commit()
    assert execute_run(run_id=run_id, context=context) == "failed"
    with context.sessions() as session:
        run = session.get(Run, run_id)
        assert run.attempt == 1 and run.status == "failed"
        assert run.failure == (
            "invalid spec: /precision: fp16 (float16 autocast with a GradScaler) needs a CUDA device; "
            "this run's device is cpu"
        )
