"""Serving trained models in the API process: an LRU cache under a memory budget, and dynamic
batching that gathers concurrent requests for one model into one forward pass."""

import asyncio
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from prometheus_client import CollectorRegistry, Counter

from core.artifacts import TrainedModel, load_trained


class Batcher:
    """Gathers concurrent requests for one model into one forward pass.

    A request alone runs at once; while other callers are in flight, a batch waits up to
    ``max_wait_s`` for them (or until ``max_batch`` rows), and requests that arrive during a
    forward pass form the next batch."""

    def __init__(self, trained: TrainedModel, max_batch: int, max_wait_s: float, passes: Counter) -> None:
        self.trained, self.max_batch, self.max_wait_s = trained, max_batch, max_wait_s
        self.passes = passes
        self.forward_passes = 0
        self.in_flight = 0
        self.queue: asyncio.Queue[tuple[torch.Tensor, asyncio.Future]] = asyncio.Queue()
        self.task: asyncio.Task | None = None

    def _forward(self, inputs: torch.Tensor) -> dict[str, Any]:
        self.forward_passes += 1
        self.passes.inc()
        return self.trained.predict(inputs)

    async def predict(self, inputs: torch.Tensor) -> dict[str, Any]:
        if self.max_batch <= 1:
            return await asyncio.to_thread(self._forward, inputs)
        future = asyncio.get_running_loop().create_future()
        self.in_flight += 1
        try:
            self.queue.put_nowait((inputs, future))
            if self.task is None or self.task.done():
                self.task = asyncio.create_task(self._gather())
            return await future
        finally:
            self.in_flight -= 1

    async def _gather(self) -> None:
        loop = asyncio.get_running_loop()
        while not self.queue.empty():
            batch = [self.queue.get_nowait()]
            rows = len(batch[0][0])
            deadline = loop.time() + self.max_wait_s
            while rows < self.max_batch and (not self.queue.empty() or self.in_flight > len(batch)):
                if self.queue.empty():
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    try:
                        item = await asyncio.wait_for(self.queue.get(), remaining)
                    except TimeoutError:
                        break
                else:
                    item = self.queue.get_nowait()
                batch.append(item)
                rows += len(item[0])
            await self._run(batch)

    async def _run(self, batch: list[tuple[torch.Tensor, asyncio.Future]]) -> None:
        try:
            result = await asyncio.to_thread(self._forward, torch.cat([inputs for inputs, _ in batch]))
        except Exception as exc:  # every caller of the failed pass gets the error
            for _, future in batch:
                future.set_exception(exc)
            return
        start = 0
        for inputs, future in batch:
            end = start + len(inputs)
            future.set_result({key: values[start:end] for key, values in result.items()})
            start = end


@dataclass
class ServedModel:
    tenant: str
    trained: TrainedModel
    batcher: Batcher
    size: int


def model_bytes(trained: TrainedModel) -> int:
    tensors = [*trained.model.state_dict().values(), *trained.fitted_preprocessing.values()]
    return sum(t.numel() * t.element_size() for t in tensors)


@dataclass
class ModelCache:
    """Least-recently-used cache of loaded models; evicts until the total fits ``budget_bytes``
    (the newest model always stays)."""

    budget_bytes: int
    max_batch: int
    max_wait_s: float
    registry: CollectorRegistry
    models: OrderedDict[str, ServedModel] = field(default_factory=OrderedDict)
    loading: dict[str, asyncio.Lock] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.passes = Counter(
            "trainyard_predict_forward_passes", "forward passes run for predictions", registry=self.registry
        )
        self.loads = Counter("trainyard_model_loads", "models loaded into the serving cache", registry=self.registry)

    def cached(self, run_id: str) -> ServedModel | None:
        served = self.models.get(run_id)
        if served is not None:
            self.models.move_to_end(run_id)
        return served

    async def get(self, run_id: str, folder: Path, tenant: str) -> ServedModel:
        served = self.cached(run_id)
        if served is not None:
            return served
        lock = self.loading.setdefault(run_id, asyncio.Lock())
        async with lock:
            served = self.cached(run_id)
            if served is None:
                trained = await asyncio.to_thread(load_trained, folder)
                self.loads.inc()
                served = ServedModel(
                    tenant,
                    trained,
                    Batcher(trained, self.max_batch, self.max_wait_s, self.passes),
                    model_bytes(trained),
                )
                self.models[run_id] = served
                self._evict()
        self.loading.pop(run_id, None)
        return served

    def _evict(self) -> None:
        while len(self.models) > 1 and sum(m.size for m in self.models.values()) > self.budget_bytes:
            self.models.popitem(last=False)
