"""Persistence models (SQLAlchemy 2.x, typed). The only place in core that imports SQLAlchemy."""

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar

from sqlalchemy import JSON, BigInteger, DateTime, Float, ForeignKey, Index, Integer, String, Text, false
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

LOCAL_TENANT = "local"  # the single user of a service running with auth off


class RunKind(StrEnum):
    """What a run row is: one training, or a parent whose children are the trainings."""

    RUN = "run"  # trains (alone, or as a sweep's trial or a k-fold run's fold)
    SWEEP = "sweep"  # a parent whose children are the sweep's trials
    KFOLD = "kfold"  # a parent whose children are the folds


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar = {dict[str, Any]: JSON, datetime: DateTime(timezone=True)}


class Run(Base):
    """A run. A child (``parent_id`` set) is a sweep's trial or a k-fold run's fold: ``trial`` is its
    trial number (from 0) or fold (from 1), ``params`` the values its trial set; (parent, trial) is
    unique, so no trial or fold is ever created twice."""

    __tablename__ = "runs"
    __table_args__ = (Index("ix_runs_parent_trial", "parent_id", "trial", unique=True),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(100), index=True, default=LOCAL_TENANT)
    name: Mapped[str] = mapped_column(String(200), index=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    spec: Mapped[dict[str, Any]]
    summary: Mapped[dict[str, Any] | None]
    failure: Mapped[str | None] = mapped_column(Text)
    stop_reason: Mapped[str | None] = mapped_column(Text)
    cancel_requested: Mapped[bool] = mapped_column(default=False)
    worker: Mapped[str | None] = mapped_column(String(200))
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    epoch: Mapped[int] = mapped_column(Integer, default=0)
    idempotency_key: Mapped[str | None] = mapped_column(String(300), unique=True)  # tenant-qualified
    request_hash: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    lease_expires_at: Mapped[datetime | None] = mapped_column(index=True)
    enqueued_at: Mapped[datetime | None]
    kind: Mapped[str] = mapped_column(String(16), index=True, default=RunKind.RUN, server_default=RunKind.RUN)
    parent_id: Mapped[str | None] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE", name="fk_runs_parent_id"))
    trial: Mapped[int | None]
    params: Mapped[dict[str, Any] | None]
    document: Mapped[dict[str, Any] | None]  # a sweep's spec as submitted: its trials apply their values to it
    verdicts: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)  # live while it trains, final at its end
    retry_of: Mapped[str | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL", name="fk_runs_retry_of"))


class Metric(Base):
    """One point; (run, name, step) is unique so a resumed or repeated write never duplicates it."""

    __tablename__ = "metrics"
    __table_args__ = (Index("ix_metrics_run_name_step", "run_id", "name", "step", unique=True),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    step: Mapped[int]
    epoch: Mapped[int]
    name: Mapped[str] = mapped_column(String(200))
    value: Mapped[float] = mapped_column(Float)


class Artifact(Base):
    __tablename__ = "artifacts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(300))  # the file's path in the run folder
    uri: Mapped[str] = mapped_column(Text)
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class DatasetFile(Base):
    """An uploaded CSV / NPZ and what reading it found."""

    __tablename__ = "datasets"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(100), index=True, default=LOCAL_TENANT)
    filename: Mapped[str] = mapped_column(String(300))
    format: Mapped[str] = mapped_column(String(8))
    uri: Mapped[str] = mapped_column(Text)
    size: Mapped[int] = mapped_column(BigInteger)
    rows: Mapped[int]
    columns: Mapped[dict[str, Any]]
    report: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiKey(Base):
    """A tenant's API key, stored as its SHA-256 with a short public prefix for lookup."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(100), index=True)
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]


class Worker(Base):
    """A worker process that is alive, or was: it renews ``seen_at`` every few seconds
    (``TRAINYARD_WORKER_BEAT_S``) and removes its row when it stops cleanly; one killed leaves its
    row behind, stale. ``/healthz`` counts the workers seen within three beats. Each advertises
    what it can train (``devices``, ``device_kind``, ``bf16``): a submitted run is checked against
    the live workers, and the live workers of one host share its cores."""

    __tablename__ = "workers"

    name: Mapped[str] = mapped_column(String(300), primary_key=True)  # host:pid, as a run names its worker
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int]
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    seen_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    devices: Mapped[int] = mapped_column(default=1, server_default="1")  # GPUs, or CPU ranks (TRAINYARD_DEVICES)
    device_kind: Mapped[str] = mapped_column(String(16), default="cpu", server_default="cpu")  # torch's: cpu, cuda
    bf16: Mapped[bool] = mapped_column(default=False, server_default=false())  # its devices compute in bfloat16


class TenantQuota(Base):
    """A tenant's own quotas; a null one (or no row) means the service's setting."""

    __tablename__ = "tenant_quotas"

    tenant: Mapped[str] = mapped_column(String(100), primary_key=True)
    running: Mapped[int | None]
    queued: Mapped[int | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
