"""Request dependencies as Annotated aliases: ``SessionDep``, ``ServiceDep``."""

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from celery import Celery
from fastapi import Depends, Request
from sqlalchemy.orm import Session, sessionmaker

from api.serving import ModelCache
from core.settings import Settings


@dataclass
class Service:
    """What the app holds for its lifetime: settings, sessions, the queue and the served models."""

    settings: Settings
    sessions: sessionmaker[Session]
    queue: Celery
    models: ModelCache


def get_service(request: Request) -> Service:
    return request.app.state.service


def get_session(service: Annotated[Service, Depends(get_service)]) -> Iterator[Session]:
    with service.sessions() as session:
        yield session


ServiceDep = Annotated[Service, Depends(get_service)]
SessionDep = Annotated[Session, Depends(get_session)]
