"""The worker's domain function without a queue: failure classes. Out of memory is retried (up to
max_attempts) and says why when it gives up; a spec that diverges fails at once."""

from pathlib import Path

import pytest
import torch

from core.engine.trainer import Trainer
from core.settings import Settings
from core.store import runs
from core.store.models import Run
from tests.service.conftest import small_spec
from tests.service.test_runs import DIVERGING
from worker.execution import execute_run, worker_context


def stored_run(context, spec: dict) -> str:
    with context.sessions() as session:
        run = runs.create_run(session=session, tenant="local", spec=spec, name="execution")
        session.commit()
        return run.id


def test_out_of_memory_is_retried_then_gives_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    context = worker_context(Settings(data_dir=tmp_path, max_attempts=2))
    run_id = stored_run(context, small_spec())

    def out_of_memory(self, *args, **kwargs) -> None:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(Trainer, "fit", out_of_memory)
    assert execute_run(run_id=run_id, context=context) == "queued"
    assert execute_run(run_id=run_id, context=context) == "failed"
    with context.sessions() as session:
        run = session.get(Run, run_id)
        assert run.status == "failed" and run.attempt == 2
        assert "out of memory" in run.failure and "gave up after 2 attempts" in run.failure
    assert execute_run(run_id=run_id, context=context) == "skipped"


def test_divergence_is_not_retried(tmp_path: Path) -> None:
    context = worker_context(Settings(data_dir=tmp_path))
    run_id = stored_run(context, DIVERGING)
    assert execute_run(run_id=run_id, context=context) == "failed"
    with context.sessions() as session:
        run = session.get(Run, run_id)
        assert run.attempt == 1 and "diverged" in run.failure


def test_running_quota_defers_a_tenants_next_run(tmp_path: Path) -> None:
    context = worker_context(Settings(data_dir=tmp_path, quota_running=1))
    first, second = stored_run(context, small_spec()), stored_run(context, small_spec())
    with context.sessions() as session:
        other = runs.create_run(session=session, tenant="someone-else", spec=small_spec(), name="other").id
        session.commit()
        assert runs.claim_run(session=session, run_id=first, worker="w1", lease_s=30, max_running=1)
        assert not runs.claim_run(session=session, run_id=second, worker="w2", lease_s=30, max_running=1)
        assert runs.claim_run(session=session, run_id=other, worker="w2", lease_s=30, max_running=1)
    assert execute_run(run_id=second, context=context) == "deferred"
    with context.sessions() as session:
        runs.finish_run(session=session, run_id=first, status="succeeded", summary={}, failure=None, stop_reason=None)
    assert execute_run(run_id=second, context=context) == "succeeded"
