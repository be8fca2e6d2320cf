"""Submitting a run: idempotency, the tenant's quota, the service's size limits, then the row."""

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.errors import SpecError, SpecInvalid
from core.settings import Settings
from core.status import RunStatus
from core.store import runs
from core.store.models import Run

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
    """The service's size limits: model parameters and epochs × samples."""
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
    work = plan.spec.epochs * len(plan.data)
    if work > settings.max_epoch_samples:
        raise SpecInvalid(
            [
                SpecError(
                    "/epochs",
                    f"epochs × samples = {work:,} exceeds the limit {settings.max_epoch_samples:,}",
                    "train fewer epochs",
                )
            ]
        )


def submit_run(
    *,
    session: Session,
    tenant: str,
    document: dict[str, Any],
    plan: Callable[[dict[str, Any]], "Plan"],
    settings: Settings,
    idempotency_key: str | None = None,
) -> Submission:
    """Store a queued run for ``document``, planned by ``plan`` (SpecInvalid when it does not fit
    its data or the limits). A repeated Idempotency-Key with the same body returns the original
    run, with another body raises IdempotencyConflict; a full queue raises QuotaExceeded."""
    request_hash = hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()
    scoped_key = f"{tenant}:{idempotency_key}" if idempotency_key else None
    if scoped_key:
        earlier = runs.run_by_idempotency_key(session=session, key=scoped_key)
        if earlier is not None:
            return _repeat(earlier, request_hash)
    planned = plan(document)
    check_limits(planned, settings)
    if runs.count_active(session=session, tenant=tenant, status=RunStatus.QUEUED) >= settings.quota_queued:
        raise QuotaExceeded(f"{settings.quota_queued} runs are already queued for you")
    try:
        run = runs.create_run(
            session=session,
            tenant=tenant,
            spec=planned.spec.model_dump(mode="json"),
            name=planned.spec.name,
            idempotency_key=scoped_key,
            request_hash=request_hash,
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
