"""Request dependencies as Annotated aliases: ``ServiceDep``, ``SessionDep``, ``TenantDep``."""

import asyncio
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Annotated

from celery import Celery
from fastapi import Depends, Header, Request
from sqlalchemy.orm import Session, sessionmaker

from api.problems import Problem
from api.serving import ModelCache
from api.streams import Streams
from core.data.files import DataAccess, ReadLimits, data_access
from core.settings import Settings
from core.store.datasets import dataset_resolver
from core.store.keys import tenant_for_key
from core.store.models import LOCAL_TENANT


@dataclass
class Service:
    """What the app holds for its lifetime: settings, sessions, the queue, the served models and the
    open event streams."""

    settings: Settings
    sessions: sessionmaker[Session]
    queue: Celery
    models: ModelCache
    streams: Streams = field(default_factory=Streams)


async def get_service(request: Request) -> Service:
    return request.app.state.service


def get_session(service: Annotated[Service, Depends(get_service)]) -> Iterator[Session]:
    with service.sessions() as session:
        yield session


async def get_tenant(request: Request, authorization: Annotated[str | None, Header()] = None) -> str:
    """The caller's tenant, found by ``api.auth.Authenticate`` from ``Authorization: Bearer <key>``
    (or the local user when auth is off) before the body was read. The header is declared here for
    the OpenAPI document."""
    return request.state.tenant


async def tenant_for(service: Service, authorization: str | None) -> str:
    """The tenant an ``Authorization`` header names (401 without a valid key), or the local user."""
    if service.settings.auth == "off":
        return LOCAL_TENANT
    scheme, _, key = (authorization or "").partition(" ")
    tenant = None
    if scheme.lower() == "bearer" and key:
        tenant = await asyncio.to_thread(_tenant_for_key, service, key.strip())
    if tenant is None:
        raise Problem(
            401,
            "Unauthorized",
            "a valid API key is required: Authorization: Bearer <key>",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return tenant


def _tenant_for_key(service: Service, key: str) -> str | None:
    with service.sessions() as session:
        return tenant_for_key(session=session, key=key)


ServiceDep = Annotated[Service, Depends(get_service)]
SessionDep = Annotated[Session, Depends(get_session)]
TenantDep = Annotated[str, Depends(get_tenant)]


def data_access_for(service: Service, tenant: str) -> AbstractContextManager[DataAccess]:
    """Let data sources read the configured data root and the tenant's uploads."""
    return data_access(
        data_root=service.settings.data_root,
        resolve_dataset=dataset_resolver(service.sessions, tenant),
        limits=ReadLimits.of(service.settings),
    )
