"""The cheap refusals of issue 14 against the API alone under uvicorn (API keys on, no worker): each
case's status, milliseconds and how far the API process's peak memory rose above what it used
before (VmHWM, reset before each request through /proc/PID/clear_refs). Target: every refusal
in < 1 s.

The uploaded data set of the ``dataset source`` case is stored first by an API with the default
limits; the API measured runs with ``TRAINYARD_MAX_DATASET_MB=64``, under which that upload is too
large (no upload can be too large under the limits it was stored with).

The bodies are built by the same helpers as the tests of these limits.

    python bench/refusals.py [--keep-files]
"""

import argparse
import io
import json
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from core.settings import Settings
from core.store.db import make_engine, migrate, session_factory
from core.store.keys import create_key
from tests.service.conftest import api_alone
from tests.service.test_request_limits import chunked, json_body
from tests.service.test_upload_limits import npz_bomb

MEASURED_LIMIT_MB = 64
JSON = {"content-type": "application/json"}


@dataclass(frozen=True)
class Case:
    name: str
    method: str
    path: str
    body: bytes | None = None  # JSON, or a file to upload when ``upload`` names it
    upload: str | None = None
    authenticated: bool = True
    chunked: bool = False


@dataclass(frozen=True)
class Measured:
    status: int
    ms: float
    growth_mib: int


def spec(source: dict, model: dict | None = None) -> bytes:
    document = {"task": "regression", "data": {"source": source}, "model": model or {"type": "mlp", "hidden": [4]}}
    return json.dumps(document).encode()


def write_wide_csv(path: Path, rows: int, columns: int) -> None:
    """``rows`` lines of ``columns`` ones: 400k × 100 is 76 MiB of text and 305 MiB as float64."""
    line = ("1," * (columns - 1) + "1\n").encode()
    with path.open("wb") as stream:
        stream.write((",".join(f"c{i}" for i in range(columns)) + "\n").encode())
        for _ in range(rows // 1000):
            stream.write(line * 1000)


def uint8_npz(rows: int, width: int) -> bytes:
    """An NPZ of ``rows`` × ``width`` uint8 zeros, deflated: 30 MB of arrays in ~30 KB, within the limit
    as stored, 240 MB once loaded as float64."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, x=np.zeros((rows, width), np.uint8), y=np.zeros(rows, np.uint8))
    return buffer.getvalue()


def cases(root: Path, dataset_id: str) -> list[Case]:
    wide = ",".join(f"c{i}" for i in range(20_000))
    return [
        Case(
            "generated set: sine_series 100k × 1000",
            "POST",
            "/v1/specs/validate",
            spec({"type": "builtin", "name": "sine_series", "n_samples": 100_000, "length": 1000}),
        ),
        Case(
            "10,000 layers",
            "POST",
            "/v1/runs",
            spec(
                {"type": "builtin", "name": "digits"},
                {"type": "sequential", "layers": [{"type": "dense", "units": 4}] * 10_000},
            ),
        ),
        Case(
            "file source: CSV, 400k lines × 100 columns (76 MiB)",
            "POST",
            "/v1/specs/validate",
            spec({"type": "file", "path": "wide.csv"}),
        ),
        Case(
            "file source: NPZ, 30 MB of uint8 (240 MB as float64)",
            "POST",
            "/v1/specs/validate",
            spec({"type": "file", "path": "bytes.npz"}),
        ),
        Case(
            "dataset source: uploaded CSV over the limit",
            "POST",
            "/v1/runs",
            spec({"type": "dataset", "id": dataset_id}),
        ),
        Case("upload: NPZ bomb (320 MB declared)", "POST", "/v1/datasets", npz_bomb(40_000_000), upload="bomb.npz"),
        Case(
            "upload: NPZ, 30 MB of uint8 (240 MB as float64)",
            "POST",
            "/v1/datasets",
            (root / "bytes.npz").read_bytes(),
            upload="u8.npz",
        ),
        Case(
            "upload: CSV of 20k columns",
            "POST",
            "/v1/datasets",
            f"{wide}\n{','.join(['1'] * 20_000)}\n".encode(),
            upload="wide.csv",
        ),
        Case("30 MB body without a key", "POST", "/v1/runs", json_body(30), authenticated=False),
        Case("10 MB JSON body, chunked", "POST", "/v1/specs/validate", json_body(10), chunked=True),
    ]


class Api:
    """The API process and a client with a key for it."""

    def __init__(self, pid: int, client: httpx.Client, key: str) -> None:
        self.pid, self.client, self.auth = pid, client, {"Authorization": f"Bearer {key}"}

    def _status(self, key: str) -> int:
        text = Path(f"/proc/{self.pid}/status").read_text()
        return int(re.search(rf"^{key}:\s+(\d+) kB", text, re.M).group(1)) >> 10  # type: ignore[union-attr]

    def send(self, case: Case) -> Measured:
        headers = self.auth if case.authenticated else {}
        body: bytes | Iterable[bytes] | None = chunked(case.body or b"") if case.chunked else case.body
        Path(f"/proc/{self.pid}/clear_refs").write_text("5")
        before = self._status("VmRSS")
        started = time.perf_counter()
        if case.upload:
            response = self.client.post(case.path, files={"file": (case.upload, case.body or b"")}, headers=headers)
        else:
            response = self.client.request(case.method, case.path, content=body, headers={**JSON, **headers})
        elapsed = time.perf_counter() - started
        return Measured(response.status_code, elapsed * 1000, self._status("VmHWM") - before)


def with_key(data_dir: Path) -> str:
    settings = Settings(data_dir=data_dir)
    migrate(settings.resolved_database_url)
    with session_factory(make_engine(settings.resolved_database_url))() as session:
        return create_key(session=session, tenant="bench")


def upload_with_default_limits(data_dir: Path, env: dict[str, str], key: str) -> str:
    """A CSV of 1M rows × 10 columns (22 MB; 76 MiB as float64) stored by an API with the default
    limits: its data set id."""
    content = io.BytesIO()
    content.write(b"a,b,c,d,e,f,g,h,i,label\n" + b"0.5,1,2,3,4,5,6,7,8,1\n" * 1_000_000)
    with api_alone(data_dir, env) as (_, url), httpx.Client(base_url=url, timeout=300) as client:
        stored = client.post(
            "/v1/datasets",
            files={"file": ("table.csv", content.getvalue())},
            headers={"Authorization": f"Bearer {key}"},
        )
        stored.raise_for_status()
        return stored.json()["id"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep-files", action="store_true", help="leave the data folder in place")
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="trainyard-bench-refusals-"))
    root = data_dir / "root"
    root.mkdir()
    write_wide_csv(root / "wide.csv", 400_000, 100)
    (root / "bytes.npz").write_bytes(uint8_npz(30_000, 1000))
    key = with_key(data_dir)
    env = {
        **os.environ,
        "TRAINYARD_DATA_DIR": str(data_dir),
        "TRAINYARD_AUTH": "api_key",
        "TRAINYARD_DATA_ROOT": str(root),
        "TRAINYARD_SWEEP_INTERVAL_S": "3600",
    }
    dataset_id = upload_with_default_limits(data_dir, env, key)
    measured_env = {**env, "TRAINYARD_MAX_DATASET_MB": str(MEASURED_LIMIT_MB)}
    table = Table(title=f"Cheap refusals (API alone under uvicorn, TRAINYARD_MAX_DATASET_MB={MEASURED_LIMIT_MB})")
    for column in ("case", "status", "ms", "API peak growth (MiB)"):
        table.add_column(column, justify="left" if column == "case" else "right")
    with api_alone(data_dir, measured_env) as (process, url), httpx.Client(base_url=url, timeout=300) as client:
        api = Api(process.pid, client, key)
        api.send(Case("warm", "POST", "/v1/specs/validate", spec({"type": "builtin", "name": "iris"})))
        api.send(Case("warm", "POST", "/v1/datasets", b"a,b\n1,2\n", upload="warm.csv"))
        api.send(Case("warm", "POST", "/v1/runs", b"{}", authenticated=False))
        slowest = 0.0
        for case in cases(root, dataset_id):
            result = api.send(case)
            slowest = max(slowest, result.ms)
            table.add_row(case.name, str(result.status), f"{result.ms:.0f}", str(result.growth_mib))
    Console(width=120).print(table)
    print(f"slowest refusal: {slowest:.0f} ms (target < 1000 ms)")
    if not args.keep_files:
        shutil.rmtree(data_dir)


if __name__ == "__main__":
    main()
