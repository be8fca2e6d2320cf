"""The serving cache counts models while they load: loads at once never reserve more than the
budget (issue 14, item 14), so a burst of first predictions for many runs cannot take the API's
memory; a load that fits beside the others starts at once."""

import asyncio
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from prometheus_client import CollectorRegistry

from api import serving
from api.serving import ModelCache


def peak_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, budget: int, models: int = 3) -> int:
    """How many of ``models`` first loads (600-byte weights each) ran at once under ``budget``."""
    folders = []
    for i in range(models):
        folder = tmp_path / f"run{i}"
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"0" * 600)
        folders.append(folder)
    active, peak, lock = [0], [0], threading.Lock()

    def slow_load(folder: Path) -> SimpleNamespace:
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.2)
        with lock:
            active[0] -= 1
        return SimpleNamespace(model=torch.nn.Linear(1, 1), fitted_preprocessing={}, fitted_target_preprocessing={})

    monkeypatch.setattr(serving, "load_trained", slow_load)

    async def burst() -> None:
        cache = ModelCache(budget, 8, 0.001, CollectorRegistry())
        await asyncio.gather(*(cache.get(f.name, f, "tenant") for f in folders))
        assert len(cache.loading) == 0 and cache.reserved == 0

    asyncio.run(burst())
    return peak[0]


def test_loads_in_flight_never_reserve_more_than_the_budget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert peak_loads(tmp_path, monkeypatch, budget=1000) == 1  # two 600-byte loads would not fit: one at a time


def test_loads_that_fit_together_run_together(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert peak_loads(tmp_path, monkeypatch, budget=10_000) == 3
