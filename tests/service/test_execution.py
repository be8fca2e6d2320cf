"""The worker's domain function without a queue: failure classes (out of memory is retried up to
max_attempts and says why when it gives up; a spec that diverges fails at once), and the one way
to run a run: a k-fold run leaves the same files and checkpoints from the CLI as from its fold
children on the workers."""

import json
import threading
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from sqlalchemy import select
from typer.testing import CliRunner

from cli.main import app
from core.engine import checkpoint
from core.engine.checkpoint import save_checkpoint
from core.engine.trainer import Trainer
from core.settings import Settings
from core.store import parents, runs
from core.store.models import Artifact, Run, RunKind
from tests.service.conftest import small_spec
from tests.service.test_runs import DIVERGING
from worker.execution import DatabaseReporter, execute_run, worker_context


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
        claimed, deferred = runs.ClaimOutcome.CLAIMED, runs.ClaimOutcome.DEFERRED
        assert runs.claim_run(session=session, run_id=first, worker="w1", lease_s=30, max_running=1) == claimed
        assert runs.claim_run(session=session, run_id=second, worker="w2", lease_s=30, max_running=1) == deferred
        assert runs.claim_run(session=session, run_id=other, worker="w2", lease_s=30, max_running=1) == claimed
    assert execute_run(run_id=second, context=context) == "deferred"
    with context.sessions() as session:
        runs.finish_run(session=session, run_id=first, status="succeeded", summary={}, failure=None, stop_reason=None)
    assert execute_run(run_id=second, context=context) == "succeeded"


def test_a_kfold_run_gives_the_same_files_and_checkpoints_from_the_cli_as_from_its_fold_children(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = small_spec(epochs=2, data={"source": {"type": "builtin", "name": "iris"}, "split": {"kfold": 3}})
    saved: list[tuple[str, int]] = []  # (run folder/checkpoint, epoch) per save

    roots = (tmp_path / "service" / "artifacts", tmp_path / "cli")  # the workers' run folders, the CLI's

    def recording(folder: Path, snapshot: dict) -> None:
        root = next(root for root in roots if folder.is_relative_to(root))
        saved.append((str(folder.relative_to(root)), snapshot["epoch"]))
        save_checkpoint(folder, snapshot)

    monkeypatch.setattr(checkpoint, "save_checkpoint", recording)
    sent: list[str] = []
    context = replace(
        worker_context(Settings(data_dir=tmp_path / "service", checkpoint_min_interval_s=0)), send=sent.extend
    )
    with context.sessions() as session:
        parent_id = runs.create_run(session=session, tenant="local", spec=spec, name="kfold", kind=RunKind.KFOLD).id
        session.commit()
        folds = parents.advance(session=session, parent_id=parent_id, optuna_url=context.optuna_url)
    assert len(folds) == 3
    for fold in folds:
        assert execute_run(run_id=fold, context=context) == "succeeded"
    assert all(name.endswith("/checkpoint/attempt-1") for name, _ in saved)  # a service run's: per attempt
    from_worker = [(f"fold_{folds.index(name.split('/')[0]) + 1}/checkpoint", epoch) for name, epoch in saved]
    saved.clear()
    with context.sessions() as session:
        assert session.get(Run, parent_id).status == "succeeded"  # the last fold's end finished its parent

    (tmp_path / "spec.json").write_text(json.dumps(spec))
    monkeypatch.setenv("TRAINYARD_CHECKPOINT_MIN_INTERVAL_S", "0")
    cli = CliRunner().invoke(app, ["train", str(tmp_path / "spec.json"), "--json", "--out", str(tmp_path / "cli")])
    assert cli.exit_code == 0, cli.output
    expected = [(f"fold_{fold}/checkpoint", epoch) for fold in (1, 2, 3) for epoch in (1, 2)]
    assert from_worker == saved == expected

    def files(folder: Path) -> list[str]:
        return sorted(str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file())

    for number, fold in enumerate(folds, start=1):
        fold_folder = context.artifact_dir / fold
        assert files(fold_folder) == files(tmp_path / "cli" / f"fold_{number}")
        assert "model.safetensors" in files(fold_folder) and "metrics.jsonl" in files(fold_folder)
        assert not any("checkpoint" in name for name in files(fold_folder))  # removed once the run finished
        with context.sessions() as session:
            stored = {artifact.kind for artifact in session.scalars(select(Artifact).where(Artifact.run_id == fold))}
        assert stored == set(files(fold_folder))


def test_the_folds_of_a_kfold_run_share_its_max_runtime_s(tmp_path: Path) -> None:
    spec = small_spec(epochs=20, data={"source": {"type": "builtin", "name": "iris"}, "split": {"kfold": 2}})
    context = replace(worker_context(Settings(data_dir=tmp_path)), send=lambda *_, **__: None)
    with context.sessions() as session:
        parent_id = runs.create_run(session=session, tenant="local", spec=spec, name="kfold", kind=RunKind.KFOLD).id
        session.commit()
        first, second = parents.advance(session=session, parent_id=parent_id, optuna_url=context.optuna_url)
    assert execute_run(run_id=first, context=context) == "succeeded"
    with context.sessions() as session:
        taken = session.get(Run, first).summary
    assert taken["epochs"] == 20
    # a budget of just what fold 1 took leaves fold 2 nothing (alone, it would have had all of it)
    capped = replace(context, max_runtime_s=taken["seconds"])
    assert execute_run(run_id=second, context=capped) == "failed"
    with context.sessions() as session:
        fold, parent = session.get(Run, second), session.get(Run, parent_id)
        assert f"{taken['seconds']:.1f} s of it by the other folds" in fold.failure
        assert fold.summary["epochs"] <= 1
        assert parent.status == "failed" and parent.failure.startswith("fold 2: time limit")


def test_a_resumed_attempt_stores_the_checkpointed_epochs_the_dead_one_never_reported(tmp_path: Path) -> None:
    """The attempt that died checkpointed epoch 2 but had stored only epoch 1 (reports are a few
    seconds apart): the next attempt starts after epoch 2, so it stores epoch 2 from the run
    folder's metrics file (kept through the checkpoint), and nothing twice."""
    metrics = tmp_path / "metrics.jsonl"
    lines = [{"step": 17 * epoch, "epoch": epoch, "name": "train_loss", "value": 1.0 / epoch} for epoch in (1, 2)]
    metrics.write_text("".join(json.dumps(line) + "\n" for line in lines))
    reporter = DatabaseReporter(
        None,  # type: ignore[arg-type]  # nothing is stored before the first report
        "run_x",
        held_by=("w", 2),
        interval_s=60,
        lost=threading.Event(),
        earlier=[(17, 1, "train_loss", 1.0)],
        metrics_file=metrics,
    )
    reporter.on_fit_start(SimpleNamespace(step=34))
    assert reporter.points == [(34, 2, "train_loss", 0.5)]
    fresh = DatabaseReporter(
        None,  # type: ignore[arg-type]
        "run_y",
        held_by=("w", 1),
        interval_s=60,
        lost=threading.Event(),
        metrics_file=metrics,
    )
    fresh.on_fit_start(SimpleNamespace(step=0))
    assert fresh.points == []  # a first attempt reports as it trains
