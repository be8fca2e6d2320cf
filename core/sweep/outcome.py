"""How a sweep came out: its trials' outcomes and the summary that names the best one. The CLI's
local sweeps and the service's parent runs both summarise through ``sweep_summary``."""

from collections import Counter
from dataclasses import dataclass
from typing import Any

from core.spec.sweep import SweepSpec
from core.status import RunStatus


@dataclass(frozen=True)
class TrialOutcome:
    """One trial as it ended (or stands): ``run`` is its child run's id, or its folder locally."""

    trial: int
    run: str
    params: dict[str, Any]
    status: RunStatus
    epochs: int
    value: float | None  # the best finite value of the sweep's metric over its epochs


def best_trial(sweep: SweepSpec, trials: list[TrialOutcome]) -> TrialOutcome | None:
    """The succeeded trial with the best metric (a pruned trial never is the best)."""
    ranked = [t for t in trials if t.status == RunStatus.SUCCEEDED and t.value is not None]
    if not ranked:
        return None
    sign = -1.0 if sweep.mode == "max" else 1.0
    return min(ranked, key=lambda t: (sign * t.value, t.trial))  # type: ignore[operator]


def ranked(sweep: SweepSpec, trials: list[TrialOutcome]) -> list[TrialOutcome]:
    """Trials best first: by metric (trials without one last), then trial number."""
    sign = -1.0 if sweep.mode == "max" else 1.0
    return sorted(trials, key=lambda t: (t.value is None, sign * (t.value or 0.0), t.trial))


def sweep_summary(sweep: SweepSpec, trials: list[TrialOutcome], seconds: float | None = None) -> dict[str, Any]:
    """The parent's summary: the best trial (its run, parameters and metric), how many trials
    ended how, and the epochs trained in all."""
    best = best_trial(sweep, trials)
    summary: dict[str, Any] = {
        "status": RunStatus.SUCCEEDED if best is not None else RunStatus.FAILED,
        "method": sweep.method,
        "metric": sweep.metric,
        "mode": sweep.mode,
        "trials": len(trials),
        "outcomes": dict(Counter(str(t.status) for t in trials)),
        "epochs": sum(t.epochs for t in trials),
        "best": None
        if best is None
        else {"trial": best.trial, "run": best.run, "params": best.params, sweep.metric: best.value},
    }
    if seconds is not None:
        summary["seconds"] = round(seconds, 3)
    return summary
