"""A sweep's search on Optuna: the study's sampler and pruner from the ``sweep`` field, asking for
the next trial's parameters, telling a trial's outcome, and the engine callback by which a trial
reports its metric each epoch and learns whether it was pruned. Optuna samples and prunes; the
only code here maps the spec onto it. Choices are stored as JSON text (a choice may be a list, such
as ``model.hidden``); grid points are enqueued one by one as trials are asked for."""

import json
import math
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from core.engine.events import Callback, State
from core.spec.sweep import SweepSpec
from core.spec.trials import grid
from core.status import RunStatus

optuna.logging.set_verbosity(optuna.logging.WARNING)


def distributions(sweep: SweepSpec) -> dict[str, BaseDistribution]:
    """Each parameter as an Optuna distribution (choices as categorical JSON text)."""
    result: dict[str, BaseDistribution] = {}
    for key, values in sweep.parameters.items():
        if isinstance(values, list):
            result[key] = CategoricalDistribution([json.dumps(value) for value in values])
        elif values.type == "int":
            result[key] = IntDistribution(values.low, values.high, step=values.step)
        else:
            result[key] = FloatDistribution(values.low, values.high, log=values.type == "log_uniform")
    return result


def sampler(sweep: SweepSpec, seed: int) -> optuna.samplers.BaseSampler:
    """TPE for ``tpe``; random for ``random`` (and for ``grid``, whose points are enqueued)."""
    if sweep.method == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    return optuna.samplers.RandomSampler(seed=seed)


def pruner(sweep: SweepSpec, epochs: int) -> optuna.pruners.BasePruner:
    """Asynchronous successive halving (``asha``) or Hyperband over epochs; none without ``early_stop``."""
    stop = sweep.early_stop
    if stop is None:
        return optuna.pruners.NopPruner()
    if stop.type == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=stop.grace_epochs, max_resource=epochs, reduction_factor=stop.reduction_factor
        )
    return optuna.pruners.SuccessiveHalvingPruner(
        min_resource=stop.grace_epochs, reduction_factor=stop.reduction_factor
    )


def open_study(
    storage: str | optuna.storages.BaseStorage, name: str, sweep: SweepSpec, *, seed: int, epochs: int
) -> optuna.Study:
    """The sweep's study, created on first use (a second caller loads the same one). Its sampler
    is seeded by ``seed`` and the number of trials the study already holds: a study opened anew
    for each ask (as the service does) draws new values, and a sweep is the same sweep when run
    again."""
    study = optuna.create_study(
        storage=storage,
        study_name=name,
        pruner=pruner(sweep, epochs),
        direction="maximize" if sweep.mode == "max" else "minimize",
        load_if_exists=True,
    )
    study.sampler = sampler(sweep, seed + len(study.get_trials(deepcopy=False)))
    return study


def decode(sweep: SweepSpec, params: dict[str, Any]) -> dict[str, Any]:
    """A trial's Optuna parameters as spec values (choices back from JSON text), in the sweep's order."""
    return {
        key: json.loads(params[key]) if isinstance(values, list) else params[key]
        for key, values in sweep.parameters.items()
    }


def ask(study: optuna.Study, sweep: SweepSpec) -> optuna.Trial:
    """The next trial: a grid's next point (enqueued unless an earlier one still waits), else the
    sampler's suggestion. Ask only while the study holds fewer than ``sweep.trial_count`` trials."""
    if sweep.method == "grid" and not study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        point = grid(sweep)[len(study.get_trials(deepcopy=False))]
        study.enqueue_trial({key: json.dumps(value) for key, value in point.items()})
    return study.ask(distributions(sweep))


def tell(study: optuna.Study, number: int, status: RunStatus, value: float | None) -> None:
    """Record how a trial's run ended: succeeded with a finite ``value`` → complete, pruned →
    pruned, anything else → failed. Telling a trial that has already ended changes nothing."""
    if status == RunStatus.SUCCEEDED and value is not None and math.isfinite(value):
        study.tell(number, value, skip_if_finished=True)
    else:
        state = TrialState.PRUNED if status == RunStatus.PRUNED else TrialState.FAIL
        study.tell(number, state=state, skip_if_finished=True)


def best_value(values: list[float], mode: str) -> float | None:
    """The best finite value of a metric's per-epoch series (None when there is none)."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return None
    return max(finite) if mode == "max" else min(finite)


class TrialReporter(Callback):
    """Reports the sweep's metric to the trial after every epoch and asks the pruner whether to go
    on; a pruned trial stops with status ``pruned`` and a reason that names the rung."""

    def __init__(self, study: optuna.Study, number: int, sweep: SweepSpec) -> None:
        self.sweep = sweep
        self.trial = optuna.Trial(study, study.get_trials(deepcopy=False)[number]._trial_id)

    def on_epoch_end(self, state: State) -> None:
        value = state.epoch_metrics.get(self.sweep.metric)
        if value is None or self.sweep.early_stop is None:
            return
        self.trial.report(value if math.isfinite(value) else math.nan, state.epoch)
        if self.trial.should_prune():
            state.stop(self.reason(state.epoch, value), status=RunStatus.PRUNED)

    def reason(self, epoch: int, value: float) -> str:
        stop = self.sweep.early_stop
        assert stop is not None
        attrs = self.trial.study._storage.get_trial_system_attrs(self.trial._trial_id)
        rung = max(sum(name.startswith("completed_rung_") for name in attrs) - 1, 0)
        return (
            f"pruned by {stop.type} at rung {rung} (epoch {epoch}): {self.sweep.metric} {value:.4g} "
            f"was not in the top 1/{stop.reduction_factor} of the trials that reached it"
        )
