"""A stale worker writes nothing (issue 14, items 2–5, 7 and 15): every write an attempt makes is
fenced on (run, worker, attempt); a worker whose lease was lost stops training and leaves the
next attempt's run alone; the heartbeat that renews the lease outlives database errors; a cancel
survives a requeue; a deferred run is noted as sent; the running quota holds against simultaneous
claims on PostgreSQL; the service's time limit caps a run; an Idempotency-Key never collides
across tenants."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.exc import OperationalError

from core.engine.plan import plan_experiment
from core.settings import Settings
from core.spec.schema import parse_spec
from core.store import keys, runs, submit
from core.store.db import make_engine, migrate, session_factory
from core.store.models import Artifact, Metric, Run, utcnow
from tests.service.conftest import postgres_database, small_spec
from worker.execution import Heartbeat, dispatch, execute_run, worker_context


@pytest.fixture
def sessions(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'trainyard.db'}"
    migrate(url)
    return session_factory(make_engine(url))


def new_run(sessions, spec: dict | None = None) -> str:
    with sessions() as session:
        run = runs.create_run(session=session, tenant="local", spec=spec or small_spec(), name="fenced")
        session.commit()
        return run.id


def requeue_lost(session, run_id: str) -> None:
    """What the sweeper does to a run whose worker stopped renewing its lease."""
    session.execute(update(Run).where(Run.id == run_id).values(lease_expires_at=utcnow() - timedelta(seconds=1)))
    session.commit()
    runs.sweep(session=session, max_attempts=5, requeue_after_s=300)


def claim(session, run_id: str, worker: str) -> None:
    assert runs.claim_run(session=session, run_id=run_id, worker=worker, lease_s=60, max_running=10) == "claimed"


def test_a_stale_attempt_can_write_nothing_and_the_next_one_can(sessions) -> None:
    run_id = new_run(sessions)
    with sessions() as session:
        claim(session, run_id, "a")
        requeue_lost(session, run_id)
        claim(session, run_id, "b")  # attempt 2
        with pytest.raises(runs.LeaseLost):
            runs.report_progress(
                session=session, run_id=run_id, worker="a", attempt=1, epoch=9, points=[(1, 1, "x", 1.0)]
            )
        assert not runs.renew_lease(session=session, run_id=run_id, worker="a", attempt=1, lease_s=60)
        stale = dict(status="succeeded", summary={"by": "a"}, failure=None, stop_reason=None)
        assert not runs.finish_run(session=session, run_id=run_id, held_by=("a", 1), artifacts=[("m", "u", 1)], **stale)
        assert session.scalar(select(func.count()).select_from(Metric)) == 0
        assert session.scalar(select(func.count()).select_from(Artifact)) == 0
        assert session.get(Run, run_id).epoch == 0

        assert runs.report_progress(session=session, run_id=run_id, worker="b", attempt=2, epoch=1, points=[]) is False
        done = dict(status="succeeded", summary={"by": "b"}, failure=None, stop_reason=None)
        assert runs.finish_run(session=session, run_id=run_id, held_by=("b", 2), artifacts=[("m", "u", 1)], **done)
        run = session.get(Run, run_id)
        session.refresh(run)
        assert run.status == "succeeded" and run.summary == {"by": "b"}
        assert session.scalar(select(func.count()).select_from(Artifact)) == 1


def test_a_worker_that_lost_its_lease_stops_and_leaves_the_next_attempt_alone(tmp_path: Path) -> None:
    context = worker_context(Settings(data_dir=tmp_path, lease_seconds=1.5, report_interval_s=0.1))
    spec = small_spec(epochs=2000, data={"source": {"type": "builtin", "name": "iris"}}, model={"type": "linear"})
    run_id = new_run(context.sessions, spec)
    outcome: list[str] = []
    worker = threading.Thread(target=lambda: outcome.append(execute_run(run_id=run_id, context=context)))
    worker.start()
    deadline = time.monotonic() + 60
    with context.sessions() as session:
        while session.scalar(select(Run.epoch).where(Run.id == run_id)) < 3:
            assert time.monotonic() < deadline, "the run never reached epoch 3"
            time.sleep(0.05)
        requeue_lost(session, run_id)  # as if the worker had stalled past its lease
        claim(session, run_id, "another-worker")
        reached = session.scalar(select(Run.epoch).where(Run.id == run_id))
    worker.join(timeout=60)
    assert not worker.is_alive() and outcome == ["skipped"]
    with context.sessions() as session:
        run = session.get(Run, run_id)
        assert (run.status, run.worker, run.attempt, run.summary) == ("running", "another-worker", 2, None)
        assert run.epoch == reached  # no progress written after the requeue
        assert session.scalar(select(func.max(Metric.epoch)).where(Metric.run_id == run_id)) <= reached
        assert session.scalar(select(func.count()).select_from(Artifact)) == 0
    folder = context.artifact_dir / run_id
    assert not (folder / "model.safetensors").exists()  # the stale attempt saved nothing
    assert not (folder / "checkpoint" / "attempt-2").exists()  # and never touched the next one's checkpoints


def test_the_runs_heartbeat_outlives_database_errors_and_stops_once_the_lease_is_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    answers: list[bool | Exception] = [OperationalError("UPDATE runs", {}, Exception("database is locked"))] * 2
    answers += [True, False]  # renewed, then the run is another attempt's
    calls: list[int] = []

    def renew_lease(**_: object) -> bool:
        calls.append(len(calls))
        answer = answers[min(len(calls) - 1, len(answers) - 1)]
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(runs, "renew_lease", renew_lease)
    context = worker_context(Settings(data_dir=tmp_path, lease_seconds=0.15))  # a beat every 0.05 s
    with Heartbeat(context, "run_x", attempt=1) as heartbeat:
        assert heartbeat.lost.wait(timeout=10), f"the lease was never found lost after {len(calls)} beat(s)"
        heartbeat.thread.join(timeout=10)
    assert len(calls) == 4 and not heartbeat.thread.is_alive()  # two errors survived; it stopped beating once lost
    assert caplog.text.count("could not renew the lease of run run_x") == 2


def test_a_cancel_asked_of_a_stalled_run_survives_its_requeue(sessions) -> None:
    run_id = new_run(sessions)
    with sessions() as session:
        claim(session, run_id, "a")
        assert runs.cancel_run(session=session, run_id=run_id) == "running"  # asked; the worker would stop it
        requeue_lost(session, run_id)  # but it stalled past its lease
        run = session.get(Run, run_id)
        session.refresh(run)
        assert run.status == "cancelled" and run.stop_reason == "cancelled by request"


def test_a_deferred_run_is_noted_as_sent_so_the_sweeper_adds_no_copy(tmp_path: Path) -> None:
    context = worker_context(Settings(data_dir=tmp_path, quota_running=1))
    first, second = new_run(context.sessions), new_run(context.sessions)
    with context.sessions() as session:
        claim(session, first, "busy")
    outcome = execute_run(run_id=second, context=context)
    assert outcome == "deferred"
    dispatch(context, second, outcome)
    with context.sessions() as session:
        assert second not in runs.sweep(session=session, max_attempts=3, requeue_after_s=300)


def test_an_idempotency_key_never_spells_another_tenants(sessions) -> None:
    document = small_spec(epochs=1, data={"source": {"type": "builtin", "name": "iris"}})

    def plan(spec: dict):
        return plan_experiment(parse_spec(spec))

    with sessions() as session:
        first = submit.submit_run(
            session=session, tenant="a:x", document=document, plan=plan, settings=Settings(), idempotency_key="K1"
        )
        second = submit.submit_run(
            session=session, tenant="a", document=document, plan=plan, settings=Settings(), idempotency_key="x:K1"
        )
        assert first.created and second.created and first.run.id != second.run.id
        with pytest.raises(ValueError, match="tenant name"):
            keys.create_key(session=session, tenant="a:x")


def test_the_running_quota_holds_against_claims_at_the_same_instant_on_postgresql() -> None:
    with postgres_database("trainyard_quota") as url:
        migrate(url)
        engine = make_engine(url)
        sessions = session_factory(engine)
        ids = [new_run(sessions) for _ in range(8)]
        barrier = threading.Barrier(len(ids))

        def race(run_id: str) -> str:
            with sessions() as session:
                barrier.wait()
                return runs.claim_run(session=session, run_id=run_id, worker=run_id, lease_s=60, max_running=2)

        with ThreadPoolExecutor(len(ids)) as pool:
            outcomes = list(pool.map(race, ids))
        engine.dispose()
    assert sorted(outcomes).count("claimed") == 2 and outcomes.count("deferred") == 6


def test_the_services_time_limit_caps_a_run_that_asks_for_none(tmp_path: Path) -> None:
    context = worker_context(Settings(data_dir=tmp_path, max_runtime_s=0.5))
    spec = small_spec(epochs=100_000, data={"source": {"type": "builtin", "name": "iris"}}, model={"type": "linear"})
    run_id = new_run(context.sessions, spec)
    assert execute_run(run_id=run_id, context=context) == "failed"
    with context.sessions() as session:
        assert "time limit" in session.get(Run, run_id).failure
