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

    A request that finds the model idle runs at once. Requests that arrive while a pass runs
    gather for the next one, which starts when it holds ``max_batch`` rows or ``max_wait_s``
    after its first request arrived. Per request the cost is a list append and a future; the
    one timer and the thread hop are per pass."""

    def __init__(self, trained: TrainedModel, max_batch: int, max_wait_s: float, passes: Counter) -> None:
        self.trained, self.max_batch, self.max_wait_s = trained, max_batch, max_wait_s
        self.passes = passes
        self.pending: list[tuple[torch.Tensor, asyncio.Future]] = []
        self.pending_rows = 0
        self.first_arrival = 0.0
        self.full: asyncio.Future | None = None
        self.task: asyncio.Task | None = None

    def _forward(self, inputs: torch.Tensor) -> dict[str, Any]:
        self.passes.inc()
        return self.trained.predict(inputs)

    async def predict(self, inputs: torch.Tensor) -> dict[str, Any]:
        if self.max_batch <= 1:
            return await asyncio.to_thread(self._forward, inputs)
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        if not self.pending:
            self.first_arrival = loop.time()
        self.pending.append((inputs, future))
        self.pending_rows += len(inputs)
        if self.task is None:
            self.task = loop.create_task(self._serve())
        elif self.pending_rows >= self.max_batch and self.full is not None and not self.full.done():
            self.full.set_result(None)
        return await future

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            await self._run(self._take())  # the model was idle: no waiting
            while self.pending:
                deadline = self.first_arrival + self.max_wait_s
                if self.pending_rows < self.max_batch and loop.time() < deadline:
                    self.full = loop.create_future()
                    timer = loop.call_at(deadline, _settle, self.full)
                    await self.full
                    timer.cancel()
                await self._run(self._take())
        finally:
            self.task = None

    def _take(self) -> list[tuple[torch.Tensor, asyncio.Future]]:
        """Pending requests up to ``max_batch`` rows (at least one), oldest first."""
        count, rows = 0, 0
        for inputs, _ in self.pending:
            if count and rows + len(inputs) > self.max_batch:
                break
            count, rows = count + 1, rows + len(inputs)
        batch, self.pending = self.pending[:count], self.pending[count:]
        self.pending_rows -= rows
        if self.pending:
            self.first_arrival = asyncio.get_running_loop().time()
        return batch

    async def _run(self, batch: list[tuple[torch.Tensor, asyncio.Future]]) -> None:
        try:
            result = await asyncio.to_thread(self._forward, torch.cat([inputs for inputs, _ in batch]))
        except Exception as exc:  # every caller of the failed pass gets the error
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        start = 0
        for inputs, future in batch:
            end = start + len(inputs)
            if not future.done():  # its caller may have gone (client disconnected)
                future.set_result({key: values[start:end] for key, values in result.items()})
            start = end


def _settle(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)


@dataclass
class ServedModel:
    tenant: str
    trained: TrainedModel
    batcher: Batcher
    size: int


def model_bytes(trained: TrainedModel) -> int:
    tensors = [
        *trained.model.state_dict().values(),
        *trained.fitted_preprocessing.values(),
        *trained.fitted_target_preprocessing.values(),
    ]
    return sum(t.numel() * t.element_size() for t in tensors)


@dataclass
class ModelCache:
    """Least-recently-used cache of loaded models; evicts until the total fits ``budget_bytes``
    (the newest model always stays). Loads in flight count too: each reserves its weights' size on
    disk before it starts and waits while the reservations already made would not leave it room,
    so models loading at once cannot take more than the budget (one always may)."""

    budget_bytes: int
    max_batch: int
    max_wait_s: float
    registry: CollectorRegistry
    models: OrderedDict[str, ServedModel] = field(default_factory=OrderedDict)
    loading: dict[str, asyncio.Lock] = field(default_factory=dict)
    reserved: int = 0  # bytes reserved by loads in flight
    room: asyncio.Condition = field(default_factory=asyncio.Condition)

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
                served = await self._load(run_id, folder, tenant)
        self.loading.pop(run_id, None)
        return served

    async def _load(self, run_id: str, folder: Path, tenant: str) -> ServedModel:
        estimate = sum(path.stat().st_size for path in folder.glob("*.safetensors"))
        async with self.room:
            await self.room.wait_for(lambda: self.reserved == 0 or self.reserved + estimate <= self.budget_bytes)
            self.reserved += estimate
        try:
            trained = await asyncio.to_thread(load_trained, folder)
        finally:
            async with self.room:
                self.reserved -= estimate
                self.room.notify_all()
        self.loads.inc()
        served = ServedModel(
            tenant, trained, Batcher(trained, self.max_batch, self.max_wait_s, self.passes), model_bytes(trained)
        )
        self.models[run_id] = served
        self._evict()
        return served

    def _evict(self) -> None:
        while len(self.models) > 1 and sum(m.size for m in self.models.values()) > self.budget_bytes:
            self.models.popitem(last=False)
