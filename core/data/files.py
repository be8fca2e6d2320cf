"""CSV and NPZ files: where a spec may read them from, and how they become a Dataset.

``load_table`` turns CSV / NPZ bytes or a path into a Dataset plus a ``DataReport`` (rows read,
rows dropped and which lines, columns); the upload route reuses ``inspect_table``. Malformed CSV
rows (a different number of fields than the header) fail by default, naming the lines; on request
they are skipped (like pandas' ``on_bad_lines="skip"``) or cut to the header's width (like
``usecols=range(N)``). NPZ files are read with ``allow_pickle=False``.

Where ``file`` sources read from is set by ``data_access`` for the code run inside it, in one of
two modes (with none, file sources are refused):

- ``local_base`` (the CLI): the local user reads any file they can; a relative path is read from
  ``local_base``, the spec file's folder (as docker compose reads paths next to its file);
- ``data_root`` (the service, ``Settings.data_root`` / ``TRAINYARD_DATA_ROOT``): only files inside
  that folder; relative paths start there, and ``..``, absolute paths and symlinks that leave it
  are refused with an error naming the folder and the setting.

``data_access`` also sets the resolver of uploaded ``dataset`` ids."""

from __future__ import annotations

import codecs
import csv
import io
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from core.data.dataset import DataKind, Dataset, targets_for_task
from core.errors import SpecError, SpecInvalid
from core.registry import close_matches

FileFormat = Literal["csv", "npz"]
BadRows = Literal["error", "skip", "truncate"]
LISTED_BAD_LINES = 20  # bad lines named in an error message
MAX_FILE_BYTES = 1 << 30


# --- where files may be read from ------------------------------------------------------------------


@dataclass(frozen=True)
class DataAccess:
    """What data sources may read: any readable file, relative paths from ``local_base`` (the local
    user's mode), or only files under ``data_root`` (the service's); neither: file sources are
    refused. Uploaded data sets through ``resolve_dataset`` (id → path; KeyError for an unknown id)."""

    data_root: Path | None = None
    resolve_dataset: Callable[[str], Path] | None = None
    local_base: Path | None = None

    def __post_init__(self) -> None:
        if self.data_root is not None and self.local_base is not None:
            raise ValueError("data_access takes a data_root (the service) or a local_base (local reads), not both")


_ACCESS: ContextVar[DataAccess | None] = ContextVar("trainyard_data_access", default=None)
ROOT_SETTING = "TRAINYARD_DATA_ROOT"


def current_access() -> DataAccess:
    """What the code running now may read (by default: no files, no uploads)."""
    return _ACCESS.get() or DataAccess()


@contextmanager
def data_access(
    *,
    data_root: Path | str | None = None,
    local_base: Path | str | None = None,
    resolve_dataset: Callable[[str], Path] | None = None,
) -> Iterator[DataAccess]:
    """Inside the block, allow file sources under ``data_root`` (the service) or any readable file
    with relative paths from ``local_base`` (local use), and uploaded data sets via ``resolve_dataset``."""
    access = DataAccess(
        Path(data_root).resolve() if data_root is not None else None,
        resolve_dataset,
        Path(local_base).resolve() if local_base is not None else None,
    )
    token = _ACCESS.set(access)
    try:
        yield access
    finally:
        _ACCESS.reset(token)


def resolve_file(path: str, access: DataAccess, at: str) -> Path:
    """The existing file a ``file`` source names, as ``access`` allows it, or SpecInvalid at ``at``."""
    if access.local_base is not None:
        full = (access.local_base / Path(path).expanduser()).resolve()
        if not full.is_file():
            raise SpecInvalid(
                [
                    SpecError(
                        at,
                        f"no file {str(full)!r}",
                        f"a relative path is read from the spec file's folder, {access.local_base}",
                    )
                ]
            )
        return full
    root = access.data_root
    if root is None:
        raise SpecInvalid(
            [
                SpecError(
                    at,
                    f"file sources are not allowed here (no data root is configured: {ROOT_SETTING} is unset)",
                    f"set {ROOT_SETTING} to the folder the service may read files from, or upload the file "
                    '(POST /v1/datasets) and use {"type": "dataset", "id": ...}',
                )
            ]
        )
    full = (root / path).resolve()
    if not full.is_relative_to(root):
        raise SpecInvalid(
            [
                SpecError(
                    at,
                    f"{path!r} is outside the data folder {root}",
                    f"use a path inside {root} (relative paths start there); {ROOT_SETTING} sets that folder",
                )
            ]
        )
    if not full.is_file():
        raise SpecInvalid(
            [SpecError(at, f"no file {path!r} in the data folder", f"relative paths start at {ROOT_SETTING}")]
        )
    return full


# --- what reading a file found -----------------------------------------------------------------------


@dataclass
class DataReport:
    """How a file was read: data rows read (header excluded), rows kept and dropped, the malformed
    lines (1-based line number and field count), rows cut to the header's width, the columns."""

    format: FileFormat
    columns: list[str]
    rows_read: int = 0
    rows: int = 0
    rows_dropped: int = 0
    rows_truncated: int = 0
    bad_lines: list[dict[str, int]] = field(default_factory=list)
    bad_line_count: int = 0
    target: str | None = None
    features: list[str] | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Table:
    """A parsed file before targets are chosen: CSV cells (strings) with their line numbers, or NPZ arrays."""

    report: DataReport
    cells: list[list[str]] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)


def _read_bytes(source: bytes | Path, at: str) -> bytes:
    if isinstance(source, bytes):
        return source
    try:
        if source.stat().st_size > MAX_FILE_BYTES:
            raise SpecInvalid([SpecError(at, f"the file is larger than {MAX_FILE_BYTES >> 20} MiB")])
        return source.read_bytes()
    except OSError as exc:
        raise SpecInvalid([SpecError(at, f"cannot read the file: {exc.strerror or exc}")]) from None


def sniff_format(raw: bytes, name: str | None = None) -> FileFormat:
    """NPZ (a zip archive) or CSV, from the file name's suffix or else the content."""
    suffix = Path(name).suffix.lower() if name else ""
    if suffix in (".csv", ".npz"):
        return suffix[1:]  # type: ignore[return-value]
    return "npz" if raw[:4] == b"PK\x03\x04" else "csv"


def _decode(raw: bytes, encoding: str, at: str) -> str:
    try:
        text = raw.decode("utf-8-sig" if codecs.lookup(encoding).name == "utf-8" else encoding)
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise SpecInvalid(
            [
                SpecError(
                    at,
                    f"line {line} is not {encoding} text (byte 0x{raw[exc.start]:02x} at column {column})",
                    'save the file as UTF-8, or give its encoding (e.g. "encoding": "latin-1")',
                )
            ]
        ) from None
    return text


def _bad_lines_message(bad: list[tuple[int, int]], width: int) -> str:
    listed = ", ".join(f"line {line} has {fields} field{'s' if fields != 1 else ''}" for line, fields in bad[:20])
    more = f" … ({len(bad)} bad lines in all)" if len(bad) > LISTED_BAD_LINES else f" ({len(bad)} bad lines in all)"
    return f"the header has {width} columns but {listed}{more}"


def parse_csv(
    raw: bytes, *, bad_rows: BadRows = "error", delimiter: str = ",", encoding: str = "utf-8", at: str = ""
) -> Table:
    """Parse CSV bytes with a header row; malformed rows per ``bad_rows``; blank lines are ignored."""
    text = _decode(raw, encoding, at)
    if not text.strip():
        raise SpecInvalid([SpecError(at, "the file is empty")])
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header: list[str] | None = None
    cells: list[list[str]] = []
    lines: list[int] = []
    bad: list[tuple[int, int]] = []
    short: list[tuple[int, int]] = []
    truncated = rows_read = 0
    last_line = 0
    try:
        for row in reader:
            line, last_line = last_line + 1, reader.line_num
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if header is None:
                header = [name.strip() or f"column_{i + 1}" for i, name in enumerate(row)]
                continue
            rows_read += 1
            if len(row) == len(header):
                cells.append(row)
                lines.append(line)
            elif len(row) > len(header) and bad_rows == "truncate":
                cells.append(row[: len(header)])
                lines.append(line)
                truncated += 1
            else:
                bad.append((line, len(row)))
                if len(row) < len(header):
                    short.append((line, len(row)))
    except csv.Error as exc:
        problem = "contains a NUL byte (is this a binary file?)" if "NUL" in str(exc) else f"cannot be parsed: {exc}"
        raise SpecInvalid([SpecError(at, f"line {reader.line_num} {problem}")]) from None
    assert header is not None
    duplicated = sorted({name for name in header if header.count(name) > 1})
    if duplicated:
        raise SpecInvalid([SpecError(at, "the header repeats column(s) " + ", ".join(map(repr, duplicated)))])
    width = len(header)
    if bad and bad_rows != "skip":
        if bad_rows == "truncate":
            raise SpecInvalid(
                [
                    SpecError(
                        at,
                        _bad_lines_message(short, width) + "; truncating cannot fill missing fields",
                        'set "bad_rows": "skip" to drop them',
                    )
                ]
            )
        raise SpecInvalid(
            [
                SpecError(
                    at,
                    _bad_lines_message(bad, width),
                    f'fix the file, or set "bad_rows": "skip" to drop these lines or "truncate" '
                    f"to keep the first {width} columns of every row",
                )
            ]
        )
    if not cells:
        reason = f" (all {rows_read} were malformed and skipped)" if rows_read else ""
        raise SpecInvalid([SpecError(at, f"the file has a header but no data rows{reason}")])
    report = DataReport(
        format="csv",
        columns=header,
        rows_read=rows_read,
        rows=len(cells),
        rows_dropped=len(bad),
        rows_truncated=truncated,
        bad_lines=[{"line": line, "fields": fields} for line, fields in bad[:1000]],
        bad_line_count=len(bad),
    )
    return Table(report, cells, lines)


def parse_npz(raw: bytes, *, at: str = "") -> Table:
    """The arrays of an ``.npz`` archive (no pickled objects)."""
    if not raw:
        raise SpecInvalid([SpecError(at, "the file is empty")])
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except ValueError as exc:
        message = "holds pickled objects, which are not read" if "pickle" in str(exc) else f"is not a valid NPZ: {exc}"
        raise SpecInvalid(
            [SpecError(at, f"the file {message}", "save plain numeric arrays with numpy.savez")]
        ) from None
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise SpecInvalid([SpecError(at, f"the file is not a valid NPZ archive: {exc}")]) from None
    if not arrays:
        raise SpecInvalid([SpecError(at, "the NPZ archive holds no arrays")])
    lengths = {len(a) if a.ndim else 0 for a in arrays.values()}
    rows = min(lengths)
    return Table(DataReport(format="npz", columns=sorted(arrays), rows_read=rows, rows=rows), arrays=arrays)


def inspect_table(
    source: bytes | Path, *, format: FileFormat | None = None, name: str | None = None, at: str = ""
) -> DataReport:
    """What an upload holds (columns, rows, malformed lines), without failing on malformed lines."""
    raw = _read_bytes(source, at)
    fmt = format or sniff_format(raw, name or (source.name if isinstance(source, Path) else None))
    return (parse_csv(raw, bad_rows="skip", at=at) if fmt == "csv" else parse_npz(raw, at=at)).report


# --- from a parsed table to a Dataset -----------------------------------------------------------------


def _unknown(name: str, known: list[str], what: str, at: str) -> SpecInvalid:
    matches = close_matches(name, known)
    hint = f"did you mean {matches[0]!r}?" if matches else f"{what}s: " + ", ".join(known[:30])
    return SpecInvalid([SpecError(at, f"no {what} {name!r} in the file", hint)])


def _numbers(values: list[str], column: str, lines: list[int], at: str) -> np.ndarray:
    try:
        return np.asarray(values, dtype=np.float64)
    except ValueError:
        for value, line in zip(values, lines, strict=True):
            try:
                float(value)
            except ValueError:
                shown = "is empty" if not value.strip() else f"has {value.strip()[:40]!r}, which is not a number"
                raise SpecInvalid(
                    [
                        SpecError(
                            at,
                            f"line {line}, column {column!r} {shown}",
                            "fix the value, or leave the column out of 'features'",
                        )
                    ]
                ) from None
        raise


def _csv_columns(table: Table, target: str | None, features: list[str] | None, at: str) -> tuple[str, list[str]]:
    columns = table.report.columns
    if target is None:
        target = columns[-1]
    elif target not in columns:
        raise _unknown(target, columns, "column", f"{at}/target")
    if features is None:
        features = [c for c in columns if c != target]
    else:
        for i, name in enumerate(features):
            if name not in columns:
                raise _unknown(name, columns, "column", f"{at}/features/{i}")
            if name == target:
                raise SpecInvalid([SpecError(f"{at}/features/{i}", f"{name!r} is the target; it cannot be a feature")])
    if not features:
        raise SpecInvalid([SpecError(f"{at}/features", "no feature columns are left besides the target")])
    return target, features


def _table_arrays(
    table: Table, target: str | None, features: list[str] | None, at: str, file_at: str
) -> tuple[np.ndarray, np.ndarray, DataKind]:
    report = table.report
    if report.format == "csv":
        target, features = _csv_columns(table, target, features, at)
        position = {name: i for i, name in enumerate(report.columns)}
        columns = [
            _numbers([row[position[name]] for row in table.cells], name, table.lines, file_at) for name in features
        ]
        labels = [row[position[target]].strip() for row in table.cells]
        try:
            y: np.ndarray = np.asarray(labels, dtype=np.float64)
        except ValueError:
            y = np.asarray(labels)
        report.target, report.features = target, features
        return np.stack(columns, axis=1), y, "tabular"
    arrays = table.arrays
    target = target or "y"
    if target not in arrays:
        raise _unknown(target, sorted(arrays), "array", f"{at}/target")
    if features is None:
        features = ["x"] if "x" in arrays else [name for name in sorted(arrays) if name != target]
    for i, name in enumerate(features):
        if name not in arrays:
            raise _unknown(name, sorted(arrays), "array", f"{at}/features/{i}")
    parts = [arrays[name] for name in features]
    y = arrays[target]
    for name, part in zip([*features, target], [*parts, y], strict=True):
        if part.ndim == 0 or len(part) != len(y):
            raise SpecInvalid(
                [
                    SpecError(
                        file_at, f"array {name!r} has {len(part) if part.ndim else 0} rows; {target!r} has {len(y)}"
                    )
                ]
            )
        if part.dtype.kind not in "biuf" and name != target:
            raise SpecInvalid([SpecError(file_at, f"array {name!r} is not numeric (dtype {part.dtype})")])
    if len(parts) == 1:
        x = parts[0].astype(np.float64)
    else:
        x = np.concatenate([p.reshape(len(p), -1).astype(np.float64) for p in parts], axis=1)
    if x.ndim == 1:
        x = x[:, None]
    report.target, report.features = target, features
    kind: DataKind = {2: "tabular", 3: "sequence"}.get(x.ndim, "image")
    return x, y, kind


def load_table(
    source: bytes | Path,
    *,
    task: str,
    format: FileFormat | None = None,
    target: str | None = None,
    features: list[str] | None = None,
    bad_rows: BadRows = "error",
    delimiter: str = ",",
    encoding: str = "utf-8",
    at: str = "/data/source",
    file_at: str | None = None,
) -> tuple[Dataset, DataReport]:
    """A CSV / NPZ file (bytes or a path) as a Dataset for ``task``, and the report of its reading.

    ``target`` is a column (CSV; default the last) or an array (NPZ; default ``y``); ``features``
    default to every other column (CSV) or the array ``x``. Errors point at ``at`` (the source)
    and ``file_at`` (where the file is named, e.g. ``/data/source/path``)."""
    file_at = file_at or at
    raw = _read_bytes(source, file_at)
    fmt = format or sniff_format(raw, source.name if isinstance(source, Path) else None)
    if fmt == "csv":
        table = parse_csv(raw, bad_rows=bad_rows, delimiter=delimiter, encoding=encoding, at=file_at)
    else:
        table = parse_npz(raw, at=file_at)
    x, y, kind = _table_arrays(table, target, features, at, file_at)
    if not np.isfinite(x).all():
        raise SpecInvalid([SpecError(file_at, "the features hold NaN or infinite values")])
    targets, classes = targets_for_task(y, task, f"{at}/target")
    report = table.report.as_dict()
    return Dataset(torch.as_tensor(x, dtype=torch.float32), targets, kind, classes, report=report), table.report
