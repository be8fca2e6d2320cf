"""Transient errors give a run back rather than fail it (issue 14, item 6): a full disk or a
database error while a run trains or saves requeues it (and fails it once its attempts are spent,
with the reason); a save cut short leaves no half-written model; a resumed run skips a corrupt
checkpoint for the one before; an error of the run's own still fails it at once."""

import errno
import os
import sqlite3
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.exc import DBAPIError, OperationalError

from core.engine import checkpoint
from core.settings import Settings
from core.store import runs
from core.store.models import Artifact, Run, utcnow
from tests.service.conftest import small_spec
from worker.execution import WorkerContext, execute_run, worker_context

ENOSPC = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def context_for(tmp_path: Path, **settings) -> WorkerContext:
    defaults = {"checkpoint_min_interval_s": 0, "report_interval_s": 0}
    return replace(worker_context(Settings(data_dir=tmp_path, **{**defaults, **settings})), send=lambda *a, **k: None)


def stored_run(context: WorkerContext, **spec) -> str:
    with context.sessions() as session:
        run_id = runs.create_run(session=session, tenant="local", spec=small_spec(**spec), name="transient").id
        session.commit()
        return run_id


def stored(context: WorkerContext, run_id: str) -> Run:
    with context.sessions() as session:
        return session.get(Run, run_id)


def test_a_full_disk_mid_training_requeues_the_run_then_fails_it_after_max_attempts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    context = context_for(tmp_path, max_attempts=2)
    run_id = stored_run(context, epochs=4)
    save, saved = checkpoint.save_checkpoint, []

    def disk_full_after_epoch_1(folder: Path, snapshot: dict) -> None:
        saved.append(snapshot["epoch"])
        if snapshot["epoch"] > 1:
            raise ENOSPC
        save(folder, snapshot)

    monkeypatch.setattr(checkpoint, "save_checkpoint", disk_full_after_epoch_1)
    assert execute_run(run_id=run_id, context=context) == "queued"
    run = stored(context, run_id)
    assert (run.status, run.attempt, run.failure, run.worker) == ("queued", 1, None, None)
    assert execute_run(run_id=run_id, context=context) == "failed"
    assert saved == [1, 2, 2]  # the second attempt went on from the first one's checkpoint
    run = stored(context, run_id)
    assert run.attempt == 2
    assert "No space left on device" in run.failure and "gave up after 2 attempts" in run.failure


@pytest.mark.parametrize(
    "error",
    [
        OperationalError("UPDATE runs", {}, sqlite3.OperationalError("database is locked")),
        DBAPIError("UPDATE runs", {}, ConnectionError("server closed the connection"), connection_invalidated=True),
    ],
    ids=["operational", "connection-invalidated"],
)
def test_a_database_error_from_the_reporter_requeues_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    context = context_for(tmp_path)
    run_id = stored_run(context)
    report, calls = runs.report_progress, []

    def failing_once(**kwargs) -> bool:
        calls.append(kwargs["epoch"])
        if len(calls) == 1:
            raise error
        return report(**kwargs)

    monkeypatch.setattr(runs, "report_progress", failing_once)
    assert execute_run(run_id=run_id, context=context) == "queued"
    run = stored(context, run_id)
    assert (run.status, run.attempt, run.failure) == ("queued", 1, None)
    assert execute_run(run_id=run_id, context=context) == "succeeded"
    run = stored(context, run_id)
    assert (run.status, run.attempt) == ("succeeded", 2)
    assert calls[:2] == [1, 2]  # the second attempt resumed after epoch 1


def test_a_requeue_the_database_refuses_too_is_left_to_the_sweeper(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    context = context_for(tmp_path)
    run_id = stored_run(context)

    def database_gone(**kwargs) -> None:
        raise OperationalError("UPDATE runs", {}, sqlite3.OperationalError("unable to open database file"))

    monkeypatch.setattr(runs, "report_progress", database_gone)
    monkeypatch.setattr(runs, "requeue", database_gone)
    assert execute_run(run_id=run_id, context=context) == "running"  # logged; nothing more it can do
    assert stored(context, run_id).status == "running"
    monkeypatch.undo()
    with context.sessions() as session:
        session.execute(update(Run).where(Run.id == run_id).values(lease_expires_at=utcnow() - timedelta(seconds=1)))
        session.commit()
        assert run_id in runs.sweep(session=session, max_attempts=3, requeue_after_s=300)
    assert stored(context, run_id).status == "queued"


def test_an_error_of_the_runs_own_still_fails_it_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    context = context_for(tmp_path)
    run_id = stored_run(context)

    def bug(**kwargs) -> None:
        raise ValueError("a bug in a callback")

    monkeypatch.setattr(runs, "report_progress", bug)
    assert execute_run(run_id=run_id, context=context) == "failed"
    run = stored(context, run_id)
    assert (run.attempt, run.failure) == (1, "ValueError: a bug in a callback")


def test_a_save_cut_short_leaves_no_model_and_requeues_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    context = context_for(tmp_path)
    run_id = stored_run(context)
    from core import durable

    write = durable.write_synced

    def disk_full_half_way(path: Path, data: bytes) -> None:
        if path.name == "model.safetensors":
            path.write_bytes(data[: len(data) // 2])
            raise ENOSPC
        write(path, data)

    monkeypatch.setattr("core.durable.write_synced", disk_full_half_way)
    assert execute_run(run_id=run_id, context=context) == "queued"
    assert stored(context, run_id).attempt == 1
    folder = context.artifact_dir / run_id
    names = {path.name for path in folder.iterdir()}
    assert "model.safetensors" not in names and "summary.json" not in names
    assert {"metrics.jsonl", "checkpoint"} <= names  # what training wrote is kept for the next attempt
    assert sorted(path.name for path in context.artifact_dir.iterdir()) == [run_id]  # no temporary folder left
    with context.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Artifact)) == 0

    monkeypatch.undo()
    assert execute_run(run_id=run_id, context=context) == "succeeded"
    assert (folder / "model.safetensors").is_file() and (folder / "summary.json").is_file()


def test_a_corrupt_newest_checkpoint_is_skipped_for_the_one_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    context = context_for(tmp_path)
    run_id = stored_run(context, epochs=5)
    report, reported = runs.report_progress, []

    def dies_at_epoch_3(**kwargs) -> bool:  # after its checkpoint of epoch 3 was written
        reported.append((kwargs["attempt"], kwargs["epoch"]))
        if kwargs["attempt"] == 1 and kwargs["epoch"] == 3:
            raise OperationalError("UPDATE runs", {}, sqlite3.OperationalError("disk I/O error"))
        return report(**kwargs)

    monkeypatch.setattr(runs, "report_progress", dies_at_epoch_3)
    assert execute_run(run_id=run_id, context=context) == "queued"
    newest = context.artifact_dir / run_id / "checkpoint" / "attempt-1" / checkpoint.TENSORS
    os.truncate(newest, newest.stat().st_size // 2)  # as a crash before the data reached the disk would
    assert execute_run(run_id=run_id, context=context) == "succeeded"
    assert next(epoch for attempt, epoch in reported if attempt == 2) == 3  # on from epoch 2's checkpoint
    run = stored(context, run_id)
    assert (run.status, run.attempt, run.summary["epochs"]) == ("succeeded", 2, 5)
