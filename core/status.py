"""A run's status: one enum for the engine, the store, the API and the CLI."""

from enum import StrEnum


class RunStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    PRUNED = "pruned"  # a sweep trial stopped early at a rung

    @property
    def terminal(self) -> bool:
        return self not in (RunStatus.QUEUED, RunStatus.RUNNING)


TERMINAL_STATUSES = tuple(status for status in RunStatus if status.terminal)
