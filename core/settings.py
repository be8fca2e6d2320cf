"""Service settings from ``TRAINYARD_*`` environment variables; a bad value fails at start.

The embedded default keeps everything under one data folder: a SQLite database, a
filesystem message queue and the artifact store."""

from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TRAINYARD_", extra="ignore")

    data_dir: Path = Field(Path("trainyard-data"), description="folder for the embedded database, queue and artifacts")
    database_url: str | None = Field(None, description="SQLAlchemy URL; default: SQLite in data_dir")
    broker_url: str | None = Field(None, description="Celery broker; default: filesystem queue in data_dir")
    artifacts: Path | None = Field(None, description="artifact folder; default: data_dir/artifacts")
    optuna_url: str | None = Field(
        None,
        description="sweeps' Optuna storage; default: data_dir/optuna.db with SQLite, "
        "else schema 'optuna' of the PostgreSQL database (never Trainyard's own tables)",
    )
    queue: str = Field("trainyard", min_length=1, description="the Celery queue runs are sent to")
    auth: Literal["off", "api_key"] = Field("off", description="off: single local user; api_key: Bearer keys")
    data_root: Path | None = Field(None, description="folder `file` data sources may read from (none: refused)")
    device: str | None = Field(None, description="training device for workers (default: cuda if present)")
    torch_threads: int | None = Field(
        None, ge=1, description="CPU threads per worker; default: the cores it may use ÷ the live workers on its host"
    )
    devices: int | None = Field(
        None,
        ge=1,
        description="devices a worker advertises and trains a run on: default the CUDA devices it sees (1 when "
        "TRAINYARD_DEVICE names one, as cuda:1), on the CPU 1; a CPU worker given N runs a run as up to N gloo ranks",
    )
    sse_poll_seconds: float = Field(0.25, gt=0.0, le=10.0)
    max_streams_per_tenant: int = Field(16, ge=1, description="event streams a tenant may have open (per API process)")
    max_stream_s: float = Field(
        3600.0, gt=0.0, description="longest an event stream stays open; a client reconnects with Last-Event-ID"
    )
    predict_max_batch: int = Field(64, ge=1, le=65536, description="rows per batched forward pass (1: no batching)")
    predict_max_wait_ms: float = Field(2.0, ge=0.0, le=1000.0, description="how long a request waits for company")
    checkpoint_every: int = Field(1, ge=1, description="epochs between a run's checkpoints")
    checkpoint_min_interval_s: float = Field(10.0, ge=0.0, description="and at least this long between two")
    report_interval_s: float = Field(0.5, ge=0.0, description="how often a worker stores metrics and checks cancels")
    lease_seconds: float = Field(30.0, gt=0.0, description="a running run's lease; its worker renews it every third")
    max_attempts: int = Field(3, ge=1, description="tries of a run whose worker was lost")
    worker_beat_s: float = Field(
        5.0, gt=0.0, description="how often a worker records that it is alive; /healthz counts those seen in 3 beats"
    )
    sweep_interval_s: float = Field(10.0, gt=0.0, description="how often the API looks for lost runs")
    requeue_after_s: float = Field(300.0, gt=0.0, description="a queued run's message is sent again after this")
    max_request_mb: int = Field(
        8, ge=1, description="largest JSON request body (uploads: max_upload_mb); parsed, it takes up to ~25× that"
    )
    max_params: int = Field(500_000_000, ge=1, description="largest model a spec may ask for")
    max_runtime_s: float | None = Field(
        None,
        gt=0.0,
        description="longest a run may train, every attempt counted and a k-fold run's folds together "
        "(a spec may ask for less)",
    )
    max_epoch_samples: int = Field(10_000_000_000, ge=1, description="epochs × samples a run may train on")
    quota_running: int = Field(4, ge=1, description="runs a tenant may have running at once")
    quota_queued: int = Field(1000, ge=1, description="runs a tenant may have waiting")
    max_upload_mb: int = Field(256, ge=1, description="largest dataset upload")
    max_dataset_mb: int | None = Field(
        None,
        ge=1,
        description="largest data set once decoded, wherever it is read (upload, validation, training): an NPZ's "
        "members decompressed, and its values (from its headers) or a CSV's (from its lines × columns, before "
        "parsing) at 8 bytes, the float64 they become; default: max_upload_mb",
    )
    max_dataset_rows: int = Field(10_000_000, ge=1, description="rows a CSV / NPZ data set may have")
    max_csv_columns: int = Field(10_000, ge=1, description="columns a CSV data set may have")
    access_log: bool = Field(True, description="`trainyard serve` logs each request")
    metrics_token: str | None = Field(
        None, min_length=16, description="with auth api_key: the token /metrics asks for (unset: /metrics is off)"
    )
    otel: bool = Field(False, description="FastAPI's OpenTelemetry traces/metrics/logs, for providers you configure")
    model_cache_mb: int = Field(1024, ge=1, description="memory budget of the API's model cache")

    @cached_property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'trainyard.db').resolve()}"

    @cached_property
    def resolved_optuna_url(self) -> str:
        if self.optuna_url:
            return self.optuna_url
        if self.resolved_database_url.startswith("sqlite"):
            return f"sqlite:///{(self.data_dir / 'optuna.db').resolve()}"
        return self.resolved_database_url

    @cached_property
    def resolved_broker_url(self) -> str:
        return self.broker_url or "filesystem://"

    @property
    def broker_folder(self) -> Path:
        return (self.data_dir / "queue").resolve()

    @cached_property
    def artifact_dir(self) -> Path:
        return (self.artifacts or self.data_dir / "artifacts").resolve()
