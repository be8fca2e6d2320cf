"""What reading one CSV / NPZ may cost (issue 14, items 8 and 9): NPZ members are checked from the zip
directory and their .npy headers before anything is decoded; CSV is read as a stream with rows,
columns, cells and rows' length capped, NUL bytes refused, and the header's repeats counted in one
pass. The same caps apply where workers read a data set to train on it."""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from core.data import files
from core.data.files import ReadLimits, data_access, inspect_table, load_table
from core.engine.plan import plan_experiment
from core.errors import SpecInvalid
from core.settings import Settings
from core.spec.schema import parse_spec

ROOT = Path(__file__).resolve().parents[2]


def refused(source: bytes | Path, limits: ReadLimits | None = None, **options: object) -> str:
    """The message of the one error that inspecting ``source`` gives."""
    with pytest.raises(SpecInvalid) as info:
        inspect_table(source, limits=limits, **options)  # type: ignore[arg-type]
    assert len(info.value.errors) == 1
    return info.value.errors[0].message


def npz(members: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, content in members.items():
            archive.writestr(name, content, compress_type=compression)
    return buffer.getvalue()


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def npy_header(descr: str, shape: tuple[int, ...]) -> bytes:
    """A .npy header alone: it declares the array, no data follows."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": descr, "fortran_order": False, "shape": shape})
    return buffer.getvalue()


# --- NPZ: refused from the directory and the headers -------------------------------------------------


def test_an_array_declared_larger_than_the_limit_is_refused_from_its_header():
    started = time.perf_counter()
    message = refused(npz({"x.npy": npy_header("<f8", (10**9, 4)), "y.npy": npy(np.zeros(3))}))
    assert time.perf_counter() - started < 1.0
    assert message == "array 'x' of shape (1000000000, 4) (float64) decodes to 29.8 GiB; the limit is 256 MiB"


def test_a_small_deflated_bomb_is_refused_by_a_lower_limit():
    bomb = npz({"x.npy": npy(np.zeros((1 << 21, 2))), "y.npy": npy(np.zeros(1 << 21))}, zipfile.ZIP_DEFLATED)
    assert len(bomb) < 64 << 10  # 48 MiB of arrays in a few tens of KB
    message = refused(bomb, ReadLimits(decoded_bytes=40 << 20))
    assert message == "the NPZ archive decompresses to 48 MiB; the limit is 40 MiB", message
    assert inspect_table(bomb, limits=ReadLimits(decoded_bytes=64 << 20)).rows == 1 << 21


def test_members_are_checked_against_the_total_too():
    archive = npz({"x.npy": npy(np.zeros((1000, 2))), "y.npy": npy(np.zeros(1000))})  # 16,128 + 8,128 bytes
    message = refused(archive, ReadLimits(decoded_bytes=20 << 10))
    assert message == "the NPZ archive decompresses to 23.7 KiB; the limit is 20 KiB", message


def test_arrays_are_counted_as_they_are_loaded_float64_before_any_is_read(monkeypatch):
    monkeypatch.setattr(files, "_read_array", lambda *_: pytest.fail("an array was read"))
    small = npz({"x.npy": npy(np.zeros((1000, 100), np.uint8)), "y.npy": npy(np.zeros(1000, np.uint8))})
    assert len(small) < 110 << 10  # 100 KB of uint8 that loading makes 800 KB of float64
    limits = ReadLimits(decoded_bytes=512 << 10)
    with pytest.raises(SpecInvalid) as info:
        load_table(small, task="regression", limits=limits)
    message = info.value.errors[0].message
    assert message == "array 'x' of shape (1000, 100) (uint8) decodes to 781.2 KiB as float64; the limit is 512 KiB"
    assert "TRAINYARD_MAX_DATASET_MB" in (info.value.errors[0].hint or "")
    halves = npz({name: npy(np.zeros((1000, 30), np.uint8)) for name in ("a.npy", "b.npy", "y.npy")})
    message = refused(halves, limits)
    assert message == "the NPZ archive's arrays decode to 703.1 KiB (values as float64); the limit is 512 KiB"


def test_pickles_other_members_and_other_compressions_are_refused():
    assert "pickled" in refused(npz({"x.npy": npy(np.array([{"a": 1}], dtype=object)), "y.npy": npy(np.zeros(1))}))
    assert "'notes.txt', which is not a .npy array" in refused(npz({"x.npy": npy(np.zeros(2)), "notes.txt": b"hi"}))
    bzipped = npz({"x.npy": npy(np.zeros(4)), "y.npy": npy(np.zeros(4))}, zipfile.ZIP_BZIP2)
    assert "compressed with bzip2" in refused(bzipped)


def test_an_archive_listing_too_many_members_is_refused_before_zipfile_reads_its_directory():
    members = {f"a{i}.npy": npy(np.zeros(1)) for i in range(1001)}
    assert refused(npz(members)) == "the NPZ archive lists 1001 members; at most 1000 are read"
    end = npz({"x.npy": npy(np.zeros(1))})
    forged = end[:-12] + struct.pack("<LL", 0x10000000, 0) + end[-4:]  # a directory "of 256 MiB"
    assert "directory" in refused(forged)


def test_truncated_and_corrupt_members_are_unreadable():
    whole = npy(np.arange(100.0))
    assert "truncated" in refused(npz({"x.npy": whole[:-8], "y.npy": npy(np.zeros(100))}))
    archive = bytearray(npz({"x.npy": whole, "y.npy": npy(np.zeros(100))}))
    archive[archive.index(whole) + len(whole) - 1] ^= 0xFF  # a flipped byte in x's data: its CRC fails
    assert "not a valid NPZ archive" in refused(bytes(archive))


def test_rows_are_capped_in_npz_too():
    archive = npz({"x.npy": npy(np.zeros((50, 2))), "y.npy": npy(np.zeros(50))})
    assert refused(archive, ReadLimits(rows=49)) == "array 'x' has 50 rows; at most 49 are read"


# --- CSV: a stream with caps ---------------------------------------------------------------------------


def wide_csv(columns: int, repeat: str | None = None) -> bytes:
    names = [f"c{i}" for i in range(columns)]
    if repeat:
        names[-1] = names[-2] = repeat
    return (",".join(names) + "\n" + ",".join("1" for _ in names) + "\n").encode()


def test_20k_columns_are_refused_or_read_in_well_under_a_second():
    started = time.perf_counter()
    assert refused(wide_csv(20_000)).startswith("the header has 20000 columns; at most 10000 are read")
    assert time.perf_counter() - started < 0.5
    wide = ReadLimits(columns=50_000)
    started = time.perf_counter()
    assert len(inspect_table(wide_csv(20_000), limits=wide).columns) == 20_000
    assert refused(wide_csv(20_000, repeat="twice"), wide) == "the header repeats column(s) 'twice'"
    assert time.perf_counter() - started < 0.5


def test_nul_bytes_are_refused_naming_their_line():
    assert refused(b"a,b\n1,2\n3,\x004\n") == "line 3 contains a NUL byte (is this a binary file?)"
    assert refused(bytes(1 << 24)) == "line 1 contains a NUL byte (is this a binary file?)"


def test_rows_values_cells_and_records_are_capped():
    rows = b"a,b\n" + b"1,2\n" * 50
    assert inspect_table(rows, limits=ReadLimits(rows=50)).rows == 50
    assert refused(rows, ReadLimits(rows=49)) == "the file has 50 lines after its header; at most 49 rows are read"
    message = refused(rows, ReadLimits(decoded_bytes=799))
    assert message == "the file's 50 lines of 2 columns hold up to 800 B of values (8 bytes each); the limit is 799 B"
    assert inspect_table(rows, limits=ReadLimits(decoded_bytes=800)).rows == 50
    old_mac = rows.replace(b"\n", b"\r")  # no line feeds to count first: the rows are counted as they are read
    assert refused(old_mac, ReadLimits(rows=49)) == "line 51: the file has more than 49 rows"
    message = refused(old_mac, ReadLimits(decoded_bytes=512))
    assert message == "line 34: the file holds more than 512 B of values (8 bytes each)", message
    assert refused(b"a,b\n1," + b"2" * 200_000 + b"\n") == "line 2 has a cell longer than 131072 characters"
    too_long = "line 2: a row is longer than 16777216 characters"
    assert refused(b"a,b\n" + b"1," * (9 << 20) + b"\n") == too_long  # one line of 18 MiB
    cell = b'"' + (b"x" * 1000 + b"\n") * 100 + b'"'  # 100 KB over 100 lines: a cell within csv's limit
    assert refused(b"a,b\n" + b",".join([cell] * 170) + b"\n") == too_long, "the lines of a row's cells count"


def test_a_csv_too_large_for_its_lines_is_refused_before_a_row_is_parsed(monkeypatch, tmp_path):
    path = tmp_path / "wide.csv"
    path.write_bytes(b",".join(b"c%d" % i for i in range(100)) + b"\n" + (b"1," * 99 + b"1\n") * 20_000)
    monkeypatch.setattr(files._CsvRows, "rows", lambda _: pytest.fail("the rows were parsed"))
    started = time.perf_counter()
    with pytest.raises(SpecInvalid) as info:
        load_table(
            path,
            task="regression",
            at="/data/source",
            file_at="/data/source/path",
            limits=ReadLimits(decoded_bytes=1 << 20),
        )
    assert time.perf_counter() - started < 0.5
    error = info.value.errors[0]
    assert (
        error.pointer == "/data/source/path" and error.hint == "a server sets this limit with TRAINYARD_MAX_DATASET_MB"
    )
    assert (
        error.message
        == "the file's 20000 lines of 100 columns hold up to 15.3 MiB of values (8 bytes each); the limit is 1 MiB"
    )


def test_errors_keep_their_line_numbers_while_streaming():
    text = "a,b,label\n" + "1,2,0\n" * 5000 + "3,4,caf\xe9\n"
    message = refused(text.encode("latin-1"))
    assert message == "line 5002 is not utf-8 text (byte 0xe9 at column 8)", message
    data, report = load_table(text.encode("utf-16"), encoding="utf-16", task="classification")
    assert report.rows == 5001 and data.classes == ["0", "café"]
    bad = "a,b\n" + "1,2\n" * 30 + "1,2,3\n" * 2000  # thousands of bad lines: the first 1000 kept, all counted
    report = inspect_table(bad.encode())
    assert report.bad_line_count == 2000 and len(report.bad_lines) == 1000 and report.bad_lines[0]["line"] == 32


def test_string_labels_that_follow_numbers_keep_their_text():
    rows = "".join(f"{i},{i % 2}\n" for i in range(70_000)) + "1,cat\n2,cat\n"
    data, _ = load_table(("x,label\n" + rows).encode(), task="classification")
    assert data.classes == ["0", "1", "cat"] and len(data) == 70_002


# --- the same caps where a worker reads the data set, and from the settings ------------------------------


def test_caps_apply_where_the_data_is_read_for_training(tmp_path):
    (tmp_path / "data.csv").write_text("a,label\n" + "".join(f"{i},{i % 2}\n" for i in range(60)))
    document = {
        "task": "binary",
        "data": {"source": {"type": "file", "path": "data.csv", "target": "label"}},
        "model": {"type": "mlp", "hidden": [4]},
    }
    with data_access(data_root=tmp_path, limits=ReadLimits(rows=59)), pytest.raises(SpecInvalid) as info:
        plan_experiment(parse_spec(document))
    assert info.value.errors[0].pointer == "/data/source/path"
    assert info.value.errors[0].message == "the file has 60 lines after its header; at most 59 rows are read"
    assert "TRAINYARD_MAX_DATASET_ROWS" in (info.value.errors[0].hint or "")
    with data_access(data_root=tmp_path):
        assert len(plan_experiment(parse_spec(document)).data) == 60


def test_limits_come_from_the_settings():
    assert ReadLimits.of(Settings()) == ReadLimits()  # the defaults agree
    custom = Settings(max_dataset_rows=5, max_csv_columns=6, max_dataset_mb=7, max_upload_mb=9)
    assert ReadLimits.of(custom) == ReadLimits(rows=5, columns=6, decoded_bytes=7 << 20)
    assert ReadLimits.of(Settings(max_upload_mb=9)).decoded_bytes == 9 << 20


# --- memory: a worker reading 20 MB of CSV ---------------------------------------------------------------

MEASURE = """
import json, re, sys
from pathlib import Path
from core.data.files import load_table

def status(key):
    return int(re.search(rf"^{key}:\\s+(\\d+) kB", Path("/proc/self/status").read_text(), re.M).group(1)) >> 10

load_table(b"a,label\\n1,0\\n2,1\\n", task="binary")  # first-use costs are not counted
Path("/proc/self/clear_refs").write_text("5")
before = status("VmRSS")
data, report = load_table(Path(sys.argv[1]), task="binary")
print(json.dumps({"rows": len(data), "growth": status("VmHWM") - before}))
"""


def test_a_20_mb_csv_is_loaded_in_bounded_memory(tmp_path):
    path = tmp_path / "big.csv"
    rows = 0
    with path.open("w") as stream:
        stream.write(",".join(f"f{i}" for i in range(10)) + ",label\n")
        while stream.tell() < 20 << 20:
            stream.write(",".join(f"{0.1 * (i + rows % 7):.6f}" for i in range(10)) + f",{rows % 2}\n")
            rows += 1
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, str(path)], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    # 190k rows × 10 features: 15 MB as float64; the strings of a whole file would be ~0.9 GB
    assert measured["rows"] == rows and measured["growth"] < 100, measured
