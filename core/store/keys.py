"""API keys: shown once at creation, stored as SHA-256 with a public prefix for lookup."""

import hashlib
import hmac
import re
import secrets

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from core.store.models import ApiKey, utcnow


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


TENANT_NAME = re.compile(r"[A-Za-z0-9._-]{1,100}")


def create_key(*, session: Session, tenant: str) -> str:
    """A new key for ``tenant``: ``ty_<prefix>_<secret>``; only its hash is stored. A tenant's
    name is 1–100 letters, digits, ``.``, ``_`` or ``-`` (ValueError otherwise)."""
    if not TENANT_NAME.fullmatch(tenant):
        raise ValueError(f"tenant name {tenant!r}: use 1-100 letters, digits, '.', '_' or '-'")
    prefix = secrets.token_hex(4)
    key = f"ty_{prefix}_{secrets.token_urlsafe(32)}"
    session.add(ApiKey(tenant=tenant, prefix=prefix, key_hash=_hash(key)))
    session.commit()
    return key


def revoke_key(*, session: Session, prefix: str) -> bool:
    result = session.execute(
        update(ApiKey).where(ApiKey.prefix == prefix, ApiKey.revoked_at.is_(None)).values(revoked_at=utcnow())
    )
    session.commit()
    return result.rowcount == 1


def list_keys(*, session: Session) -> list[ApiKey]:
    return list(session.scalars(select(ApiKey).order_by(ApiKey.tenant, ApiKey.created_at)))


def tenant_for_key(*, session: Session, key: str) -> str | None:
    """The tenant of a valid, unrevoked key; None otherwise (compared in constant time)."""
    parts = key.split("_")
    if len(parts) < 3 or parts[0] != "ty":
        return None
    row = session.scalar(select(ApiKey).where(ApiKey.prefix == parts[1]))
    if row is None or row.revoked_at is not None or not hmac.compare_digest(row.key_hash, _hash(key)):
        return None
    return row.tenant
