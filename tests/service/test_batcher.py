"""The dynamic batcher on its own: when a pass starts, how many rows it takes, and who gets what."""

import asyncio
import threading
import time
from typing import Any

import torch
from prometheus_client import CollectorRegistry, Counter

from api.serving import Batcher


class RecordingModel:
    """Answers each row with its own sum, after ``delay`` seconds; records every pass's size."""

    def __init__(self, delay: float = 0.0, fail: bool = False) -> None:
        self.delay, self.fail = delay, fail
        self.passes: list[int] = []
        self.started = threading.Event()

    def predict(self, inputs: torch.Tensor) -> dict[str, Any]:
        self.passes.append(len(inputs))
        self.started.set()
        time.sleep(self.delay)
        if self.fail:
            raise RuntimeError("the forward pass failed")
        return {"predictions": inputs.sum(dim=1).tolist()}


def batcher(model: RecordingModel, max_batch: int = 64, max_wait_s: float = 0.002) -> Batcher:
    passes = Counter("passes", "forward passes", registry=CollectorRegistry())
    return Batcher(model, max_batch, max_wait_s, passes)  # type: ignore[arg-type]


def row(value: float) -> torch.Tensor:
    return torch.tensor([[value, 0.0]])


def test_a_lone_request_does_not_wait_for_company() -> None:
    model = RecordingModel()
    started = time.perf_counter()
    answer = asyncio.run(batcher(model, max_wait_s=5.0).predict(row(3)))
    assert time.perf_counter() - started < 1.0  # not the 5 s window
    assert answer == {"predictions": [3.0]} and model.passes == [1]


def test_requests_arriving_during_a_pass_share_the_next_one() -> None:
    model = RecordingModel(delay=0.2)

    async def scenario() -> list[dict[str, Any]]:
        gathering = batcher(model, max_wait_s=0.05)
        first = asyncio.create_task(gathering.predict(row(0)))
        await asyncio.to_thread(model.started.wait)  # the first pass is running
        rest = [asyncio.create_task(gathering.predict(row(i))) for i in range(1, 10)]
        return await asyncio.gather(first, *rest)

    answers = asyncio.run(scenario())
    assert model.passes == [1, 9]
    assert [a["predictions"] for a in answers] == [[float(i)] for i in range(10)]  # each caller its own row


def test_a_pass_takes_at_most_max_batch_rows() -> None:
    model = RecordingModel(delay=0.01)

    async def scenario() -> list[dict[str, Any]]:
        gathering = batcher(model, max_batch=4)
        return await asyncio.gather(*(gathering.predict(row(i)) for i in range(10)))

    answers = asyncio.run(scenario())
    assert max(model.passes) <= 4 and sum(model.passes) == 10
    assert [a["predictions"] for a in answers] == [[float(i)] for i in range(10)]


def test_a_failed_pass_fails_each_of_its_callers() -> None:
    async def scenario() -> list[Any]:
        gathering = batcher(RecordingModel(fail=True))
        return await asyncio.gather(*(gathering.predict(row(i)) for i in range(3)), return_exceptions=True)

    assert all(isinstance(a, RuntimeError) for a in asyncio.run(scenario()))


def test_a_caller_that_goes_away_does_not_disturb_the_others() -> None:
    model = RecordingModel(delay=0.1)

    async def scenario() -> list[Any]:
        gathering = batcher(model, max_wait_s=0.05)
        first = asyncio.create_task(gathering.predict(row(0)))
        await asyncio.to_thread(model.started.wait)
        gone, kept = asyncio.create_task(gathering.predict(row(1))), asyncio.create_task(gathering.predict(row(2)))
        await asyncio.sleep(0)
        gone.cancel()
        return await asyncio.gather(first, gone, kept, return_exceptions=True)

    first, gone, kept = asyncio.run(scenario())
    assert first == {"predictions": [0.0]} and kept == {"predictions": [2.0]}
    assert isinstance(gone, asyncio.CancelledError)


def test_max_batch_1_turns_batching_off() -> None:
    model = RecordingModel()

    async def scenario() -> None:
        gathering = batcher(model, max_batch=1)
        await asyncio.gather(*(gathering.predict(row(i)) for i in range(5)))

    asyncio.run(scenario())
    assert model.passes == [1] * 5
