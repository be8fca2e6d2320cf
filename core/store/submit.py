"""Submitting a run: idempotency, the tenant's quota, the service's size limits, what the live
workers can train, then the row."""

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.errors import SpecError, SpecInvalid
from core.settings import Settings
from core.spec.precision import refused, unsupported
from core.spec.trials import sweep_work
from core.status import RunStatus
from core.store import runs, tenants, workers
from core.store.models import Run, RunKind, Worker

if TYPE_CHECKING:
    from core.engine.plan import Plan


class IdempotencyConflict(Exception):
    """The Idempotency-Key was used before with a different request body."""


class QuotaExceeded(Exception):
    """The tenant already has as many runs queued as it may."""


@dataclass(frozen=True)
class Submission:
    run: Run
    created: bool  # False: the same Idempotency-Key and body returned the original run


def check_limits(plan: "Plan", settings: Settings) -> None:
    """The service's size limits: model parameters, epochs × samples (over all of a sweep's
    trials), and a sweep or k-fold run no larger than the queued-run quota."""
    if plan.params > settings.max_params:
        raise SpecInvalid(
            [
                SpecError(
                    "/model",
                    f"the model has {plan.params:,} parameters "
                    f"(~{plan.params * 4 / 2**30:.1f} GiB of weights); the limit is "
                    f"{settings.max_params:,}",
                    "use fewer or narrower layers",
                )
            ]
        )
    sweep = plan.spec.sweep
    work = plan.spec.epochs * len(plan.data) if sweep is None else sweep_work(plan.spec, len(plan.data))
    if work > settings.max_epoch_samples:
        what = "epochs × samples" if sweep is None else f"epochs × samples over the sweep's {sweep.trial_count} trials"
        raise SpecInvalid(
            [
                SpecError(
                    "/epochs" if sweep is None else "/sweep",
                    f"{what} = {work:,} exceeds the limit {settings.max_epoch_samples:,}",
                    "train fewer epochs" if sweep is None else "run fewer trials or epochs",
                )
            ]
        )
    _check_fits_quota(plan, settings)


def _check_fits_quota(plan: "Plan", settings: Settings) -> None:
    """A sweep or k-fold run larger than the whole queued-run quota can never be queued."""
    kind, count = kind_and_children(plan)
    if kind == RunKind.RUN or count <= settings.quota_queued:
        return
    sweep = plan.spec.sweep
    if sweep is None:
        where, what, hint = "/data/split/kfold", f"{count} folds are {count} runs", "use fewer folds"
    elif sweep.method == "grid":
        where, what, hint = "/sweep/parameters", f"the grid has {count} trials", "search fewer values"
    else:
        where, what, hint = "/sweep/trials", f"the sweep has {count} trials", "run fewer trials"
    raise SpecInvalid([SpecError(where, f"{what}; your quota is {settings.quota_queued} queued runs", hint)])


def check_workers(plan: "Plan", session: Session, settings: Settings) -> None:
    """What no live worker can train is refused: more devices (``resources.devices``) than the
    largest live worker has, naming that worker; a ``precision`` none of the live workers with
    enough devices computes in (their adverts' device kind and bfloat16 flag). With no worker
    alive (they may be restarting) nothing is refused: the run waits in the queue of its device
    count until a worker large enough consumes it (and one whose device cannot do its precision
    fails it, saying so)."""
    live = workers.live(session=session, within_s=workers.ALIVE_BEATS * settings.worker_beat_s)
    if not live:
        return
    needed = plan.spec.resources.devices
    if needed > live[0].devices:
        largest = live[0]
        raise SpecInvalid(
            [
                SpecError(
                    "/resources/devices",
                    f"the run asks for {needed} devices; the largest live worker ({largest.name}) has "
                    f"{largest.devices} {largest.device_kind} device(s)",
                    f"ask for at most {largest.devices}, or start a worker with at least {needed} devices",
                )
            ]
        )
    _check_precision(plan.spec.precision, [worker for worker in live if worker.devices >= needed])


def _check_precision(precision: str, able: list[Worker]) -> None:
    """Refuse ``precision`` when none of the live workers ``able`` to take the run can compute in it."""
    reasons = [unsupported(precision, device_kind=w.device_kind, bf16=w.bf16) for w in able]
    if all(reasons):
        kinds = ", ".join(sorted({f"{w.device_kind}{'' if w.bf16 else ' without bfloat16'}" for w in able}))
        raise SpecInvalid([refused(precision, f"{reasons[0]}; the live workers have {kinds} devices")])


def kind_and_children(plan: "Plan") -> tuple[RunKind, int]:
    """What a planned spec is stored as, and how many trainings it queues in all."""
    spec = plan.spec
    if spec.sweep is not None:
        return RunKind.SWEEP, spec.sweep.trial_count
    if spec.data.split.kfold:
        return RunKind.KFOLD, spec.data.split.kfold
    return RunKind.RUN, 1


def check_quota(plan: "Plan", session: Session, tenant: str, settings: Settings) -> None:
    """The tenant's quota of queued runs holds for the whole of a sweep or k-fold run: each of its
    trainings counts (a sweep's trials are queued as earlier ones end, but are counted up front);
    QuotaExceeded when they do not fit now."""
    queued = runs.count_active(session=session, tenant=tenant, status=RunStatus.QUEUED)
    count = kind_and_children(plan)[1]
    quota = tenants.quotas(
        session=session, tenant=tenant, running=settings.quota_running, queued=settings.quota_queued
    ).queued
    if queued + count > quota:
        room = max(quota - queued, 0)
        raise QuotaExceeded(f"{quota} runs may be queued for you and {queued} are; this needs {count}, {room} are free")


def scoped_idempotency_key(tenant: str, key: str) -> str:
    """The stored form of a tenant's Idempotency-Key: a digest of the (tenant, key) pair, so no
    tenant's key can spell another's (tenant ``a:x`` with ``K1`` against ``a`` with ``x:K1``)."""
    return hashlib.sha256(json.dumps([tenant, key]).encode()).hexdigest()


def submit_run(
    *,
    session: Session,
    tenant: str,
    document: dict[str, Any],
    plan: Callable[[dict[str, Any]], "Plan"],
    settings: Settings,
    idempotency_key: str | None = None,
    retry_of: str | None = None,
) -> Submission:
    """Store a queued run for ``document``, planned by ``plan`` (SpecInvalid when it does not fit
    its data or the limits). A repeated Idempotency-Key with the same body returns the original
    run, with another body raises IdempotencyConflict; a full queue raises QuotaExceeded. A sweep
    or k-fold run is stored as a parent; ``core.store.parents.advance`` creates its children.
    ``retry_of`` links a retried run to the run it retries."""
    request_hash = hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()
    scoped_key = scoped_idempotency_key(tenant, idempotency_key) if idempotency_key else None
    if scoped_key:
        earlier = runs.run_by_idempotency_key(session=session, key=scoped_key)
        if earlier is not None:
            return _repeat(earlier, request_hash)
    planned = plan(document)
    check_limits(planned, settings)
    check_workers(planned, session, settings)
    check_quota(planned, session, tenant, settings)
    try:
        run = runs.create_run(
            session=session,
            tenant=tenant,
            spec=planned.spec.model_dump(mode="json"),
            name=planned.spec.name,
            idempotency_key=scoped_key,
            request_hash=request_hash,
            kind=kind_and_children(planned)[0],
            document=document if planned.spec.sweep is not None else None,
            retry_of=retry_of,
        )
        session.commit()
    except IntegrityError:  # the same key raced in from another request
        session.rollback()
        return _repeat(runs.run_by_idempotency_key(session=session, key=scoped_key or ""), request_hash)
    return Submission(run, created=True)


def _repeat(run: Run | None, request_hash: str) -> Submission:
    if run is None or run.request_hash != request_hash:
        raise IdempotencyConflict("this Idempotency-Key was used with a different request body")
    return Submission(run, created=False)
