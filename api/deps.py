"""Request dependencies as Annotated aliases: ``SessionDep``, ``ServiceDep``."""

from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Annotated

from celery import Celery
from fastapi import Depends, Request
from sqlalchemy.orm import Session, sessionmaker

from api.serving import ModelCache
from core.data.files import DataAccess, data_access
from core.settings import Settings
from core.store.datasets import dataset_resolver


@dataclass
class Service:
    """What the app holds for its lifetime: settings, sessions, the queue and the served models."""

    settings: Settings
    sessions: sessionmaker[Session]
    queue: Celery
    models: ModelCache


def data_access_for(service: Service) -> AbstractContextManager[DataAccess]:
    """Let data sources read the configured data root and this service's uploads."""
    return data_access(data_root=service.settings.data_root, resolve_dataset=dataset_resolver(service.sessions))


def get_service(request: Request) -> Service:
    return request.app.state.service


def get_session(service: Annotated[Service, Depends(get_service)]) -> Iterator[Session]:
    with service.sessions() as session:
        yield session


ServiceDep = Annotated[Service, Depends(get_service)]
SessionDep = Annotated[Session, Depends(get_session)]
