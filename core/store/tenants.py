"""Per-tenant quotas: set by an operator (`trainyard tenants set-quota`), the settings' values
where a tenant has none."""

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.store.keys import TENANT_NAME
from core.store.models import TenantQuota, utcnow


@dataclass(frozen=True)
class Quotas:
    running: int
    queued: int


def quotas(*, session: Session, tenant: str, running: int, queued: int) -> Quotas:
    """The tenant's quotas: its own where set, else ``running`` / ``queued`` (the settings')."""
    own = session.get(TenantQuota, tenant)
    return Quotas(
        own.running if own is not None and own.running is not None else running,
        own.queued if own is not None and own.queued is not None else queued,
    )


def set_quota(*, session: Session, tenant: str, running: int | None, queued: int | None) -> TenantQuota:
    """Set (or, with None, reset to the default) a tenant's quotas; ValueError for a bad name or count."""
    if not TENANT_NAME.fullmatch(tenant):
        raise ValueError(f"tenant name {tenant!r}: use 1-100 letters, digits, '.', '_' or '-'")
    if any(value is not None and value < 0 for value in (running, queued)):
        raise ValueError("a quota is a count of runs: 0 or more")
    row = session.get(TenantQuota, tenant) or TenantQuota(tenant=tenant)
    row.running, row.queued, row.updated_at = running, queued, utcnow()
    session.add(row)
    session.commit()
    return row


def list_quotas(*, session: Session) -> list[TenantQuota]:
    return list(session.scalars(select(TenantQuota).order_by(TenantQuota.tenant)))
