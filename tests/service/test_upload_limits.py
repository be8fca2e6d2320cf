"""Uploads that would eat the API (issue 14, items 8 and 9): an NPZ bomb, a CSV of NUL bytes, a CSV of
20k columns and 20 MB of CSV. Each is answered without the API process's peak memory (VmHWM, read
from /proc and reset before each upload) growing by more than 100 MiB."""

import io
import os
import re
import subprocess
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.service.conftest import api_alone

GROWTH_MIB = 100


def npz_bomb(rows: int) -> bytes:
    """An NPZ of a few hundred KB: ``x`` holds ``rows`` float64 zeros, ``y`` as many uint8 zeros (deflated)."""
    buffer = io.BytesIO()
    block = bytes(1 << 22)
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for name, descr, itemsize in (("x", "<f8", 8), ("y", "|u1", 1)):
            with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                header = {"descr": descr, "fortran_order": False, "shape": (rows,)}
                np.lib.format.write_array_header_1_0(member, header)
                left = rows * itemsize
                while left:
                    member.write(block[: min(left, len(block))])
                    left -= min(left, len(block))
    return buffer.getvalue()


class Api:
    """The API alone (uvicorn, no worker) as a process, and what its memory did."""

    def __init__(self, process: subprocess.Popen, client: httpx.Client) -> None:
        self.process, self.client = process, client

    def _status(self, key: str) -> int:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(re.search(rf"^{key}:\s+(\d+) kB", status, re.M).group(1)) >> 10  # type: ignore[union-attr]

    def upload(self, name: str, content: bytes | Path) -> tuple[httpx.Response, float, int]:
        """The answer to uploading ``content``, its seconds, and how far the peak memory rose above
        the memory in use before (MiB)."""
        Path(f"/proc/{self.process.pid}/clear_refs").write_text("5")  # the peak starts again from here
        before = self._status("VmRSS")
        started = time.perf_counter()
        if isinstance(content, Path):
            with content.open("rb") as stream:
                response = self.client.post("/v1/datasets", files={"file": (name, stream)})
        else:
            response = self.client.post("/v1/datasets", files={"file": (name, content)})
        elapsed = time.perf_counter() - started
        return response, elapsed, self._status("VmHWM") - before


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    data_dir = tmp_path_factory.mktemp("uploads")
    env = {**os.environ, "TRAINYARD_DATA_DIR": str(data_dir)}
    with api_alone(data_dir, env) as (process, url), httpx.Client(base_url=url, timeout=120) as client:
        served = Api(process, client)
        buffer = io.BytesIO()
        np.savez(buffer, x=np.ones((8, 2)), y=np.zeros(8))
        for name, content in (("warm.csv", b"a,b\n1,2\n"), ("warm.npz", buffer.getvalue())):
            assert served.upload(name, content)[0].status_code == 201  # first-use costs are not counted below
        yield served


def refusal(response: httpx.Response) -> str:
    assert response.status_code == 422, response.text[:500]
    error = response.json()["errors"][0]
    assert error["pointer"] == "/file"
    return error["message"]


def test_an_npz_bomb_is_refused_from_its_headers(api: Api) -> None:
    bomb = npz_bomb(40_000_000)  # 320 MB of float64 (and 40 MB of uint8) from a ~0.35 MB upload
    assert len(bomb) < 1 << 20
    response, elapsed, growth = api.upload("bomb.npz", bomb)
    message = refusal(response)
    assert "'x'" in message and "256 MiB" in message, message
    assert elapsed < 1.0 and growth < GROWTH_MIB, (elapsed, growth)


def test_a_csv_of_nul_bytes_is_refused_with_a_clear_message(api: Api, tmp_path: Path) -> None:
    path = tmp_path / "nul.csv"
    with path.open("wb") as stream:
        for _ in range(64):
            stream.write(bytes(1 << 20))
    response, _, growth = api.upload("nul.csv", path)
    assert refusal(response) == "line 1 contains a NUL byte (is this a binary file?)"
    assert growth < GROWTH_MIB, growth


def test_a_csv_of_20k_columns_is_refused_fast(api: Api) -> None:
    header = ",".join(f"c{i}" for i in range(20_000))
    response, elapsed, _ = api.upload("wide.csv", f"{header}\n{','.join(['1'] * 20_000)}\n".encode())
    message = refusal(response)
    assert "20000 columns" in message and "10000" in message, message
    assert elapsed < 1.0, elapsed


def test_a_20_mb_csv_is_read_as_a_stream(api: Api, tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    rows = 0
    with path.open("w") as stream:
        stream.write(",".join(f"f{i}" for i in range(10)) + ",label\n")
        line = ",".join(f"{0.1 * i:.6f}" for i in range(10)) + ",1\n"
        while stream.tell() < 20 << 20:
            stream.write(line)
            rows += 1
    response, _, growth = api.upload("big.csv", path)
    assert response.status_code == 201, response.text[:500]
    assert response.json()["rows"] == rows and response.json()["size"] == path.stat().st_size
    assert growth < GROWTH_MIB, growth
