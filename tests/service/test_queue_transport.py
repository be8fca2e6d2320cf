"""The embedded queue never shows a consumer a message before it is written whole: kombu's
filesystem transport wrote it in place under the name a worker reads, and a worker that read an
empty file died of the JSON error (a run then stayed queued; seen in the test suite)."""

import os
from pathlib import Path

import pytest

from core.settings import Settings
from worker import queue_transport
from worker.celery_app import TRAIN_TASK, make_celery


def test_a_message_appears_under_its_name_only_once_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = make_celery(Settings(data_dir=tmp_path, queue="q"))
    messages = tmp_path / "queue" / "messages"
    seen_while_writing: list[list[str]] = []
    encode = queue_transport.str_to_bytes

    def watched(text: str) -> bytes:
        seen_while_writing.append(sorted(os.listdir(messages)))
        return encode(text)

    monkeypatch.setattr(queue_transport, "str_to_bytes", watched)
    with app.connection_for_write() as connection:
        assert connection.get_transport_cls() is queue_transport.Transport
    app.send_task(TRAIN_TASK, args=["run_1"], queue="q")
    (during,) = seen_while_writing
    assert [name for name in during if name.endswith(".msg")] == [], during  # only the partial file
    (written,) = os.listdir(messages)
    assert written.endswith(".q.msg") and (messages / written).read_bytes().startswith(b"{")


def test_redis_keeps_kombus_own_transport() -> None:
    app = make_celery(Settings(broker_url="redis://127.0.0.1:6379/0", queue="q"))
    assert app.conf.broker_transport is None
