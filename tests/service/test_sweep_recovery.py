"""Exactly once for sweeps: on PostgreSQL + Redis with two workers the trials of one sweep train
at the same time, each once; a worker SIGKILLed mid-trial is resumed from its checkpoint and the
study ends with exactly ``trials`` trials. Callers racing to advance a sweep never add a trial,
and a trial asked for by a caller that died is carried on by the next."""

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import optuna
import sqlalchemy
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.main import create_app
from core.settings import Settings
from core.spec.schema import parse_spec
from core.store import parents, runs
from core.store.db import make_engine, migrate, session_factory
from core.store.models import Base, Run, RunKind
from core.store.studies import study_storage
from core.sweep import search
from tests.service.conftest import TERMINAL, postgres_database, small_spec, start_worker, wait_for
from tests.service.test_recovery import app_settings, environment, series

SWEEP = {
    **small_spec(  # long enough (~4 s a trial) that the trial killed at epoch 3 has not finished first
        name="parallel-sweep", epochs=30, data={"source": {"type": "builtin", "name": "digits"}, "batch_size": 32}
    ),
    "sweep": {
        "method": "random",
        "trials": 4,
        "max_concurrent": 2,
        "parameters": {"optimizer.lr": {"type": "log_uniform", "low": 1e-3, "high": 1e-1}},
    },
}


def test_two_workers_train_trials_at_once_and_a_killed_trial_resumes(tmp_path: Path) -> None:
    with postgres_database("trainyard_sweeps") as url:
        env = environment(tmp_path, TRAINYARD_DATABASE_URL=url, TRAINYARD_BROKER_URL="redis://127.0.0.1:6379/0")
        workers = [start_worker(env), start_worker(env)]
        try:
            with TestClient(create_app(app_settings(env))) as client:
                deadline = time.monotonic() + 120
                while client.get("/healthz").json()["workers"] < 2:  # both consume before the first trial is sent
                    assert time.monotonic() < deadline, "the two workers never both started"
                    time.sleep(0.1)
                parent_id = client.post("/v1/runs", json=SWEEP).json()["id"]
                deadline = time.monotonic() + 180
                while True:  # a trial well under way while another trains too: kill its worker
                    kids = client.get(f"/v1/runs/{parent_id}/children").json()["items"]
                    running = [kid for kid in kids if kid["status"] == "running"]
                    victim = next((kid for kid in running if kid["epoch"] >= 3), None)
                    if victim is not None and len(running) == 2:  # trials at the same time
                        break
                    assert time.monotonic() < deadline, "no trial reached epoch 3 while another trained"
                    time.sleep(0.05)
                dead = next(w for w in workers if victim["worker"].endswith(f":{w.pid}"))
                os.kill(dead.pid, signal.SIGKILL)
                dead.wait()
                workers.append(start_worker(env))
                parent = wait_for(client, parent_id, TERMINAL, timeout=300)
                kids = client.get(f"/v1/runs/{parent_id}/children").json()["items"]
                curves = {kid["id"]: series(client, kid["id"])["train_loss"]["epoch"] for kid in kids}
        finally:
            for worker in workers:
                if worker.poll() is None:
                    worker.terminate()
                    worker.wait(timeout=30)
        assert parent["status"] == "succeeded" and parent["summary"]["trials"] == 4
        assert [kid["status"] for kid in kids] == ["succeeded"] * 4
        resumed = next(kid for kid in kids if kid["id"] == victim["id"])
        assert resumed["attempt"] == 2 and [kid["attempt"] for kid in kids].count(1) == 3
        assert all(epochs == list(range(1, 31)) for epochs in curves.values())  # every epoch exactly once
        assert len({kid["worker"] for kid in kids}) >= 2
        engine = sqlalchemy.create_engine(url)
        try:  # Optuna's tables live in their own schema, never among Trainyard's
            ours = set(sqlalchemy.inspect(engine).get_table_names())
            theirs = set(sqlalchemy.inspect(engine).get_table_names(schema="optuna"))
        finally:
            engine.dispose()
        assert ours == {*Base.metadata.tables, "alembic_version"}
        assert {"studies", "trials", "trial_params", "alembic_version"} <= theirs
        study = optuna.load_study(study_name=parent_id, storage=study_storage(url))
        assert len(study.trials) == 4
        assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 4
        lrs = sorted(kid["params"]["optimizer.lr"] for kid in kids)
        assert sorted(t.params["optimizer.lr"] for t in study.trials) == lrs and len(set(lrs)) == 4


def stored_sweep(tmp_path: Path, sweep: dict) -> tuple[Settings, object, str]:
    settings = Settings(data_dir=tmp_path)
    migrate(settings.resolved_database_url)
    sessions = session_factory(make_engine(settings.resolved_database_url))
    document = {**small_spec(), "sweep": sweep}
    with sessions() as session:
        spec = parse_spec(document).model_dump(mode="json")
        parent = runs.create_run(
            session=session, tenant="local", spec=spec, name="sweep", kind=RunKind.SWEEP, document=document
        )
        session.commit()
        return settings, sessions, parent.id


def advance(settings: Settings, sessions, parent_id: str) -> list[str]:
    with sessions() as session:
        return parents.advance(session=session, parent_id=parent_id, optuna_url=settings.resolved_optuna_url)


def test_racing_advances_never_add_a_trial_and_an_orphaned_trial_is_carried_on(tmp_path: Path) -> None:
    sweep = {"method": "random", "trials": 3, "max_concurrent": 2, "parameters": {"optimizer.lr": [0.1, 0.01]}}
    settings, sessions, parent_id = stored_sweep(tmp_path, sweep)
    with ThreadPoolExecutor(max_workers=6) as pool:
        created = [ids for ids in pool.map(lambda _: advance(settings, sessions, parent_id), range(6))]
    assert sum(len(ids) for ids in created) == 2  # max_concurrent, however many callers
    study = optuna.load_study(study_name=parent_id, storage=study_storage(settings.resolved_optuna_url))
    assert len(study.trials) == 2

    with sessions() as session:  # both trials end; then a caller asks for the third and dies before storing it
        for child in session.scalars(select(Run).where(Run.parent_id == parent_id)):
            runs.claim_run(session=session, run_id=child.id, worker="w", lease_s=60, max_running=10)
            runs.finish_run(
                session=session, run_id=child.id, status="failed", summary=None, failure="x", stop_reason=None
            )
    orphan = search.ask(study, parents.sweep_of_spec(parse_spec({**small_spec(), "sweep": sweep}).model_dump()))
    carried = advance(settings, sessions, parent_id)
    assert len(carried) == 1
    with sessions() as session:
        child = session.get(Run, carried[0])
        assert child.trial == orphan.number == 2
        assert child.params == search.decode(parents.sweep_of(session.get(Run, parent_id)), orphan.params)
    assert advance(settings, sessions, parent_id) == [] and len(study.trials) == 3  # never more than `trials`
