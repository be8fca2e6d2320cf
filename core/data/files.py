"""CSV and NPZ files: where a spec may read them from, and how they become a Dataset.

``load_table`` turns a CSV / NPZ (bytes, a path, or a seekable binary stream such as an upload)
into a Dataset plus a ``DataReport`` (rows read, rows dropped and which lines, columns); the upload
route reuses ``inspect_table``, which reads the file through without keeping its values. Malformed
CSV rows (a different number of fields than the header) fail by default, naming the lines; on
request they are skipped (like pandas' ``on_bad_lines="skip"``) or cut to the header's width (like
``usecols=range(N)``).

What reading one file may cost is capped by ``ReadLimits`` (the service's ``TRAINYARD_MAX_DATASET_*``
and ``TRAINYARD_MAX_CSV_COLUMNS`` settings), wherever it is read: the upload route, validation and
the worker that trains on it. A CSV is parsed as a stream of rows, never read whole: its rows,
columns, decoded size, cells (csv's field limit, 128 Ki characters) and rows (16 Mi characters) are
capped, and NUL bytes are refused; its line feeds are counted first (a fast pass over the bytes),
so a file whose lines × columns exceed the caps is refused before any row is parsed. An NPZ is
checked from its zip directory and each member's ``.npy`` header before anything is decompressed:
members' sizes, the arrays' sizes as loaded (shape × 8 bytes, the float64 their values become) and
rows within the caps, stored or deflated only, no object dtype (``allow_pickle`` stays False).

Where ``file`` sources read from is set by ``data_access`` for the code run inside it, in one of
two modes (with none, file sources are refused):

- ``local_base`` (the CLI): the local user reads any file they can; a relative path is read from
  ``local_base``, the spec file's folder (as docker compose reads paths next to its file);
- ``data_root`` (the service, ``Settings.data_root`` / ``TRAINYARD_DATA_ROOT``): only files inside
  that folder; relative paths start there, and ``..``, absolute paths and symlinks that leave it
  are refused with an error naming the folder and the setting.

``data_access`` also sets the resolver of uploaded ``dataset`` ids and the ``ReadLimits``."""

from __future__ import annotations

import codecs
import csv
import io
import math
import os
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass, field
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Literal

import numpy as np
import torch

from core.data.dataset import DataKind, Dataset, targets_for_task
from core.errors import SpecError, SpecInvalid
from core.registry import close_matches

if TYPE_CHECKING:
    from core.settings import Settings

FileFormat = Literal["csv", "npz"]
BadRows = Literal["error", "skip", "truncate"]
Source = bytes | Path | BinaryIO
LISTED_BAD_LINES = 20  # bad lines named in an error message
KEPT_BAD_LINES = 1000  # bad lines kept in the report (all are counted)
MAX_FILE_BYTES = 1 << 30  # a file source read from the data root
MAX_ROW_CHARS = 1 << 24  # one CSV row, the lines of its quoted cells included
CHUNK_VALUES = 1 << 18  # CSV cells held as text at a time while they become numbers
MAX_TEXT_LABELS = 1 << 16  # distinct labels of a CSV target that is not all numbers
NPZ_MEMBERS = 1000  # arrays an NPZ may hold
NPZ_DIRECTORY_BYTES = 1 << 20  # and the size of its zip directory
BLOCK = 1 << 20  # bytes read at a time
ROWS_SETTING, COLUMNS_SETTING, SIZE_SETTING = (
    "TRAINYARD_MAX_DATASET_ROWS",
    "TRAINYARD_MAX_CSV_COLUMNS",
    "TRAINYARD_MAX_DATASET_MB",
)


# --- what reading one file may cost ----------------------------------------------------------------


@dataclass(frozen=True)
class ReadLimits:
    """What reading one CSV / NPZ file may cost: its rows, a CSV's columns, and its decoded size (an
    NPZ's members decompressed, and the values of both formats at 8 bytes, the float64 they become:
    an NPZ's from its arrays' headers, a CSV's from its lines × columns before it is parsed, and
    again as its rows are read). The defaults are the service's settings'."""

    rows: int = 10_000_000
    columns: int = 10_000
    decoded_bytes: int = 256 << 20

    @classmethod
    def of(cls, settings: Settings) -> ReadLimits:
        """The limits a service's settings set (the decoded size defaults to the upload limit)."""
        megabytes = settings.max_dataset_mb or settings.max_upload_mb
        return cls(settings.max_dataset_rows, settings.max_csv_columns, megabytes << 20)


# --- where files may be read from ------------------------------------------------------------------


@dataclass(frozen=True)
class DataAccess:
    """What data sources may read: any readable file, relative paths from ``local_base`` (the local
    user's mode), or only files under ``data_root`` (the service's); neither: file sources are
    refused. Uploaded data sets through ``resolve_dataset`` (id → path; KeyError for an unknown id).
    ``limits`` caps what reading one file may cost."""

    data_root: Path | None = None
    resolve_dataset: Callable[[str], Path] | None = None
    local_base: Path | None = None
    limits: ReadLimits = ReadLimits()

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
    limits: ReadLimits | None = None,
) -> Iterator[DataAccess]:
    """Inside the block, allow file sources under ``data_root`` (the service) or any readable file
    with relative paths from ``local_base`` (local use), and uploaded data sets via ``resolve_dataset``;
    files are read within ``limits`` (default: ``ReadLimits()``, the service's default settings)."""
    access = DataAccess(
        Path(data_root).resolve() if data_root is not None else None,
        resolve_dataset,
        Path(local_base).resolve() if local_base is not None else None,
        limits or ReadLimits(),
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
    lines (1-based line number and field count; the first 1000, and their count), rows cut to the
    header's width, the columns."""

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


def _size(count: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if count >= 1 << shift:
            return f"{count / (1 << shift):.1f}".removesuffix(".0") + f" {unit}"
    return f"{count} B"


def _limit_hint(setting: str) -> str:
    return f"a server sets this limit with {setting}"


@contextmanager
def _opened(source: Source, at: str) -> Iterator[BinaryIO]:
    """``source`` as a seekable binary stream at its start (a path is opened here, and closed)."""
    if isinstance(source, bytes):
        yield io.BytesIO(source)
        return
    if not isinstance(source, Path):
        source.seek(0)
        yield source
        return
    try:
        stream = source.open("rb")
    except OSError as exc:
        raise SpecInvalid([SpecError(at, f"cannot read the file: {exc.strerror or exc}")]) from None
    with stream:
        if os.fstat(stream.fileno()).st_size > MAX_FILE_BYTES:
            raise SpecInvalid([SpecError(at, f"the file is larger than {MAX_FILE_BYTES >> 20} MiB")])
        yield stream


def _head(stream: BinaryIO) -> bytes:
    head = stream.read(4)
    stream.seek(0)
    return head


def sniff_format(raw: bytes, name: str | None = None) -> FileFormat:
    """NPZ (a zip archive) or CSV, from the file name's suffix or else the content (its first bytes)."""
    suffix = Path(name).suffix.lower() if name else ""
    if suffix in (".csv", ".npz"):
        return suffix[1:]  # type: ignore[return-value]
    return "npz" if raw[:4] == b"PK\x03\x04" else "csv"


# --- CSV, as a stream ----------------------------------------------------------------------------------


def _not_text(stream: BinaryIO, encoding: str, at: str) -> SpecInvalid:
    """Where ``stream`` first is not ``encoding`` text (the line and column of the byte), found by
    decoding it again in blocks."""
    hint = 'save the file as UTF-8, or give its encoding (e.g. "encoding": "latin-1")'
    decoder = codecs.getincrementaldecoder(encoding)()
    stream.seek(0)
    offset = newlines = line_start = pending = 0  # bytes before `block`, their newlines, the last line's start
    block = b""
    try:
        while block := stream.read(BLOCK):
            pending = len(decoder.getstate()[0])
            decoder.decode(block)
            newlines += block.count(b"\n")
            if (last := block.rfind(b"\n")) >= 0:
                line_start = offset + last + 1
            offset += len(block)
        pending = len(decoder.getstate()[0])
        decoder.decode(b"", final=True)
    except UnicodeDecodeError as exc:
        position = offset - pending + exc.start
        before = block[: max(0, position - offset)]
        last = before.rfind(b"\n")
        start = offset + last + 1 if last >= 0 else line_start
        line = newlines + before.count(b"\n") + 1
        message = (
            f"line {line} is not {encoding} text (byte 0x{exc.object[exc.start]:02x} at column {position - start + 1})"
        )
        return SpecInvalid([SpecError(at, message, hint)])
    return SpecInvalid([SpecError(at, f"the file is not {encoding} text", hint)])


class _Lines:
    """A CSV stream's text lines for ``csv.reader``: NUL bytes refused, and the lines of one row at
    most MAX_ROW_CHARS characters in all (never more is read into memory)."""

    def __init__(self, text: io.TextIOWrapper, at: str) -> None:
        self.text, self.at = text, at
        self.number = 0  # lines read
        self.row_start, self.row_chars = 1, 0  # the row being read: its first line, its characters
        self.content = False  # whether a character that is not whitespace was read

    def new_row(self) -> None:
        self.row_start, self.row_chars = self.number + 1, 0

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        line = self.text.readline(MAX_ROW_CHARS - self.row_chars + 1)
        if not line:
            raise StopIteration
        self.number += 1
        self.row_chars += len(line)
        if "\x00" in line:
            problem = f"line {self.number} contains a NUL byte (is this a binary file?)"
            raise SpecInvalid([SpecError(self.at, problem)])
        if self.row_chars > MAX_ROW_CHARS:
            problem = f"line {self.row_start}: a row is longer than {MAX_ROW_CHARS} characters"
            raise SpecInvalid([SpecError(self.at, problem, "is this a CSV file? check its quotes and delimiter")])
        self.content = self.content or not line.isspace()
        return line


def _bad_lines_message(listed: list[tuple[int, int]], count: int, width: int) -> str:
    named = ", ".join(
        f"line {line} has {fields} field{'s' if fields != 1 else ''}" for line, fields in listed[:LISTED_BAD_LINES]
    )
    more = " …" if count > LISTED_BAD_LINES else ""
    return f"the header has {width} columns but {named}{more} ({count} bad lines in all)"


class _CsvRows:
    """A CSV read as a stream: its ``header`` (read first), then its data rows (``rows()``), each
    kept, cut to the header's width or counted as malformed per ``bad_rows``; ``report()`` ends it.
    Blank lines are ignored."""

    def __init__(
        self,
        stream: BinaryIO,
        text: io.TextIOWrapper,
        *,
        bad_rows: BadRows,
        delimiter: str,
        encoding: str,
        at: str,
        limits: ReadLimits,
        data_lines: int | None,
    ) -> None:
        self.stream, self.bad_rows, self.encoding, self.at, self.limits = stream, bad_rows, encoding, at, limits
        self.lines = _Lines(text, at)
        self.reader = csv.reader(self.lines, delimiter=delimiter)
        self.records = self._records()
        self.rows_read = self.kept = self.truncated = 0
        self.bad: list[tuple[int, int]] = []  # the first KEPT_BAD_LINES (line, fields)
        self.short: list[tuple[int, int]] = []  # the first LISTED_BAD_LINES with too few fields
        self.bad_count = self.short_count = 0
        first = next(self.records, None)
        if first is None:
            raise SpecInvalid([SpecError(at, "the file is empty")])
        self.header = [name.strip() or f"column_{i + 1}" for i, name in enumerate(first[1])]
        if len(self.header) > limits.columns:
            problem = f"the header has {len(self.header)} columns; at most {limits.columns} are read"
            raise SpecInvalid([SpecError(at, problem, _limit_hint(COLUMNS_SETTING))])
        repeated = sorted(name for name, count in Counter(self.header).items() if count > 1)
        if repeated:
            raise SpecInvalid([SpecError(at, "the header repeats column(s) " + ", ".join(map(repr, repeated)))])
        if data_lines is not None:
            self._check_lines(data_lines)

    def _check_lines(self, data_lines: int) -> None:
        """Refuse, before any row is parsed, a file whose lines after the header could hold more rows
        or values than the caps allow (a row a line, of the header's width, 8 bytes a value): what
        parsing would find only after seconds. Blank lines and quoted line breaks count as lines."""
        limits, width = self.limits, len(self.header)
        if data_lines > limits.rows:
            problem = f"the file has {data_lines} lines after its header; at most {limits.rows} rows are read"
            raise SpecInvalid([SpecError(self.at, problem, _limit_hint(ROWS_SETTING))])
        values = data_lines * width * 8
        if values > limits.decoded_bytes:
            problem = (
                f"the file's {data_lines} lines of {width} columns hold up to {_size(values)} of values "
                f"(8 bytes each); the limit is {_size(limits.decoded_bytes)}"
            )
            raise SpecInvalid([SpecError(self.at, problem, _limit_hint(SIZE_SETTING))])

    def _records(self) -> Iterator[tuple[int, list[str]]]:
        """The rows that are not blank, with the line each starts on."""
        reader, lines = self.reader, self.lines
        try:
            for row in reader:
                line = lines.row_start
                lines.new_row()
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                yield line, row
        except csv.Error as exc:
            limit = csv.field_size_limit()
            problem = (
                f"has a cell longer than {limit} characters"
                if "field larger than field limit" in str(exc)
                else f"cannot be parsed: {exc}"
            )
            raise SpecInvalid([SpecError(self.at, f"line {reader.line_num} {problem}")]) from None
        except UnicodeDecodeError:
            raise _not_text(self.stream, self.encoding, self.at) from None

    def rows(self) -> Iterator[tuple[int, list[str]]]:
        """The data rows kept (cut to the header's width when truncating), with their line numbers."""
        width, limits = len(self.header), self.limits
        most = min(limits.rows, limits.decoded_bytes // (8 * width))
        for line, row in self.records:
            self.rows_read += 1
            if self.rows_read > most:
                raise self._too_large(line)
            if len(row) == width:
                self.kept += 1
                yield line, row
            elif len(row) > width and self.bad_rows == "truncate":
                self.kept += 1
                self.truncated += 1
                yield line, row[:width]
            else:
                self.bad_count += 1
                if len(self.bad) < KEPT_BAD_LINES:
                    self.bad.append((line, len(row)))
                if len(row) < width:
                    self.short_count += 1
                    if len(self.short) < LISTED_BAD_LINES:
                        self.short.append((line, len(row)))

    def _too_large(self, line: int) -> SpecInvalid:
        limits = self.limits
        if self.rows_read > limits.rows:
            problem, setting = f"the file has more than {limits.rows} rows", ROWS_SETTING
        else:
            problem = f"the file holds more than {_size(limits.decoded_bytes)} of values (8 bytes each)"
            setting = SIZE_SETTING
        return SpecInvalid([SpecError(self.at, f"line {line}: {problem}", _limit_hint(setting))])

    def report(self) -> DataReport:
        """What reading found, once every row was read: malformed rows fail unless skipped, and so
        does a file without data rows."""
        if not self.lines.content:
            raise SpecInvalid([SpecError(self.at, "the file is empty")])
        width = len(self.header)
        if self.short_count and self.bad_rows == "truncate":
            problem = (
                _bad_lines_message(self.short, self.short_count, width) + "; truncating cannot fill missing fields"
            )
            raise SpecInvalid([SpecError(self.at, problem, 'set "bad_rows": "skip" to drop them')])
        if self.bad_count and self.bad_rows == "error":
            hint = (
                f'fix the file, or set "bad_rows": "skip" to drop these lines or "truncate" '
                f"to keep the first {width} columns of every row"
            )
            raise SpecInvalid([SpecError(self.at, _bad_lines_message(self.bad, self.bad_count, width), hint)])
        if not self.kept:
            reason = f" (all {self.rows_read} were malformed and skipped)" if self.rows_read else ""
            raise SpecInvalid([SpecError(self.at, f"the file has a header but no data rows{reason}")])
        return DataReport(
            format="csv",
            columns=self.header,
            rows_read=self.rows_read,
            rows=self.kept,
            rows_dropped=self.bad_count,
            rows_truncated=self.truncated,
            bad_lines=[{"line": line, "fields": fields} for line, fields in self.bad],
            bad_line_count=self.bad_count,
        )


@contextmanager
def _csv(
    stream: BinaryIO, *, bad_rows: BadRows, delimiter: str, encoding: str, at: str, limits: ReadLimits
) -> Iterator[_CsvRows]:
    """The CSV in ``stream`` as ``_CsvRows`` (its header read, its lines counted first); the stream is
    left open."""
    codec = "utf-8-sig" if codecs.lookup(encoding).name == "utf-8" else encoding
    lines = _data_lines(stream, codec)
    text = io.TextIOWrapper(stream, encoding=codec, newline="")
    try:
        yield _CsvRows(
            stream,
            text,
            bad_rows=bad_rows,
            delimiter=delimiter,
            encoding=encoding,
            at=at,
            limits=limits,
            data_lines=lines,
        )
    finally:
        text.detach()


def _data_lines(stream: BinaryIO, encoding: str) -> int | None:
    """The lines of ``stream`` after its first, counted as line-feed bytes a block at a time, without
    decoding (1.3 GiB/s from the page cache, where parsing reads 11 MiB/s); None where a line feed
    is not the byte 0x0a (UTF-16, UTF-32). The stream is left at its start."""
    if "\n".encode(encoding).removeprefix(codecs.BOM_UTF8) != b"\n":
        return None
    stream.seek(0)
    breaks, last = 0, b""
    while block := stream.read(BLOCK):
        breaks += block.count(b"\n")
        last = block[-1:]
    stream.seek(0)
    lines = breaks + (last not in (b"", b"\n"))  # a last line without a line feed counts too
    return max(lines - 1, 0)


# --- NPZ, checked before it is decompressed ---------------------------------------------------------


@dataclass(frozen=True)
class _Member:
    """An array of an NPZ archive as its zip entry and its .npy header describe it."""

    info: zipfile.ZipInfo
    shape: tuple[int, ...]
    dtype: np.dtype

    @property
    def rows(self) -> int:
        return self.shape[0] if self.shape else 0

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize

    @property
    def loaded_bytes(self) -> int:
        """What the array takes once read: its values become float64 (8 bytes each; a wider dtype
        keeps its own width), so 100 MB of uint8 are 800 MB once loaded."""
        return math.prod(self.shape) * max(self.dtype.itemsize, 8)

    @property
    def widened(self) -> str:
        """How the loaded size was counted, for a message: " as float64" when it is wider than stored."""
        return " as float64" if self.dtype.itemsize < 8 else ""


def _npz_refused(at: str, problem: str, hint: str | None = None) -> SpecInvalid:
    return SpecInvalid([SpecError(at, problem, hint)])


def _check_directory(stream: BinaryIO, at: str) -> None:
    """Refuse an archive whose zip directory lists more than NPZ_MEMBERS members or takes more than
    NPZ_DIRECTORY_BYTES, before zipfile parses all of it into memory. The end record is found
    with zipfile's own reader, so both read the same numbers."""
    end = zipfile._EndRecData(stream)  # type: ignore[attr-defined]
    stream.seek(0)
    if end is None:
        return  # not a zip archive: zipfile says so
    members, directory = end[zipfile._ECD_ENTRIES_TOTAL], end[zipfile._ECD_SIZE]  # type: ignore[attr-defined]
    if members > NPZ_MEMBERS:
        raise _npz_refused(at, f"the NPZ archive lists {members} members; at most {NPZ_MEMBERS} are read")
    if directory > NPZ_DIRECTORY_BYTES:
        problem = f"the NPZ archive's directory takes {_size(directory)}; at most {_size(NPZ_DIRECTORY_BYTES)} is read"
        raise _npz_refused(at, problem)


def _members(archive: zipfile.ZipFile, limits: ReadLimits, at: str) -> dict[str, _Member]:
    """The archive's arrays by name, from its directory and their .npy headers (nothing past a header
    is decompressed), each checked: a .npy array, stored or deflated, not encrypted, not of an object
    dtype (no pickles), rows within ``limits``, and within the decoded size: the members' sizes
    decompressed (which bound what zipfile yields), each alone and all together, and the arrays as
    they are loaded (each header's shape, at 8 bytes a value or the dtype's width if wider), each
    alone and all together; each header's shape × itemsize must fit in its member."""
    limit, hint = limits.decoded_bytes, _limit_hint(SIZE_SETTING)
    infos = archive.infolist()
    for info in infos:
        name = info.filename.removesuffix(".npy")
        if info.is_dir() or name == info.filename:
            raise _npz_refused(at, f"the NPZ archive holds {info.filename!r}, which is not a .npy array")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            method = {zipfile.ZIP_BZIP2: "bzip2", zipfile.ZIP_LZMA: "lzma"}.get(info.compress_type, "another method")
            problem = f"array {name!r} is compressed with {method}; only deflate or no compression is read"
            raise _npz_refused(at, problem, "save it with numpy.savez or numpy.savez_compressed")
        if info.flag_bits & 0x1:
            raise _npz_refused(at, f"array {name!r} is encrypted")
        if info.file_size > limit:
            problem = f"array {name!r} decompresses to {_size(info.file_size)}; the limit is {_size(limit)}"
            raise _npz_refused(at, problem, hint)
    unpacked = sum(info.file_size for info in infos)
    if unpacked > limit:
        raise _npz_refused(at, f"the NPZ archive decompresses to {_size(unpacked)}; the limit is {_size(limit)}", hint)
    members: dict[str, _Member] = {}
    for info in infos:
        name = info.filename.removesuffix(".npy")
        with archive.open(info) as stream:
            version = np.lib.format.read_magic(stream)
            if version not in ((1, 0), (2, 0)):
                raise _npz_refused(
                    at, f"array {name!r} is a .npy of version {version[0]}.{version[1]}, which is not read"
                )
            read_header = (
                np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            )
            shape, _, dtype = read_header(stream)
            data_bytes = info.file_size - stream.tell()
        if dtype.hasobject:
            raise _npz_refused(
                at, "the file holds pickled objects, which are not read", "save plain numeric arrays with numpy.savez"
            )
        member = _Member(info, shape, dtype)
        if any(n < 0 for n in shape):
            raise _npz_refused(at, f"the file is not a valid NPZ: array {name!r} has the shape {shape}")
        if member.loaded_bytes > limit:
            declared = f"array {name!r} of shape {shape} ({dtype}) decodes to {_size(member.loaded_bytes)}"
            problem = f"{declared}{member.widened}; the limit is {_size(limit)}"
            raise _npz_refused(at, problem, hint)
        if member.nbytes > data_bytes:
            problem = f"array {name!r} is truncated: its header declares {member.nbytes} bytes, {data_bytes} follow"
            raise _npz_refused(at, f"the file is not a valid NPZ: {problem}")
        if member.rows > limits.rows:
            problem = f"array {name!r} has {member.rows} rows; at most {limits.rows} are read"
            raise _npz_refused(at, problem, _limit_hint(ROWS_SETTING))
        members[name] = member
    if not members:
        raise _npz_refused(at, "the NPZ archive holds no arrays")
    loaded = sum(member.loaded_bytes for member in members.values())
    if loaded > limit:
        problem = f"the NPZ archive's arrays decode to {_size(loaded)} (values as float64); the limit is {_size(limit)}"
        raise _npz_refused(at, problem, hint)
    return members


@contextmanager
def _npz(stream: BinaryIO, limits: ReadLimits, at: str) -> Iterator[tuple[zipfile.ZipFile, dict[str, _Member]]]:
    """The NPZ archive in ``stream`` and its checked arrays (``_members``); an archive that cannot be
    read, then or inside the block, is a SpecInvalid at ``at``."""
    if not _head(stream):
        raise SpecInvalid([SpecError(at, "the file is empty")])
    try:
        _check_directory(stream, at)
        with zipfile.ZipFile(stream) as archive:
            yield archive, _members(archive, limits, at)
    except SpecInvalid:
        raise
    except ValueError as exc:
        raise _npz_refused(
            at, f"the file is not a valid NPZ: {exc}", "save plain numeric arrays with numpy.savez"
        ) from None
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise _npz_refused(at, f"the file is not a valid NPZ archive: {exc}") from None


def _npz_report(members: dict[str, _Member]) -> DataReport:
    rows = min(member.rows for member in members.values())
    return DataReport(format="npz", columns=sorted(members), rows_read=rows, rows=rows)


def _read_array(archive: zipfile.ZipFile, member: _Member) -> np.ndarray:
    with archive.open(member.info) as stream:
        return np.lib.format.read_array(stream, allow_pickle=False)


def inspect_table(
    source: Source,
    *,
    format: FileFormat | None = None,
    name: str | None = None,
    at: str = "",
    limits: ReadLimits | None = None,
) -> DataReport:
    """What an upload holds (columns, rows, malformed lines), without failing on malformed lines and
    without keeping its values: a CSV is parsed through, an NPZ's members decompressed through
    (their checksums checked). ``limits``: default those of ``data_access``."""
    limits = limits or current_access().limits
    with _opened(source, at) as stream:
        fmt = format or sniff_format(_head(stream), name or (source.name if isinstance(source, Path) else None))
        if fmt == "csv":
            with _csv(stream, bad_rows="skip", delimiter=",", encoding="utf-8", at=at, limits=limits) as table:
                for _ in table.rows():
                    pass
                return table.report()
        with _npz(stream, limits, at) as (archive, members):
            for member in members.values():
                with archive.open(member.info) as data:
                    while data.read(BLOCK):
                        pass
        return _npz_report(members)


# --- from a file to a Dataset ---------------------------------------------------------------------------


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


def _csv_columns(columns: list[str], target: str | None, features: list[str] | None, at: str) -> tuple[str, list[str]]:
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


class _Labels:
    """A CSV target column, chunk by chunk: numbers while every label is one, and text labels while
    they have at most MAX_TEXT_LABELS distinct values (each row an index into them)."""

    def __init__(self, column: str, at: str) -> None:
        self.column, self.at = column, at
        self.numbers: list[np.ndarray] | None = []
        self.codes: list[np.ndarray] | None = []
        self.names: dict[str, int] = {}

    def add(self, labels: list[str], line: int) -> None:
        if self.numbers is not None:
            try:
                self.numbers.append(np.asarray(labels, dtype=np.float64))
            except ValueError:
                self.numbers = None
        if self.codes is not None:
            names = self.names
            self.codes.append(np.fromiter((names.setdefault(label, len(names)) for label in labels), np.int64))
            if len(names) > MAX_TEXT_LABELS:
                self.codes, self.names = None, {}
        if self.numbers is None and self.codes is None:
            problem = (
                f"column {self.column!r} (the target) is not all numbers and has more than "
                f"{MAX_TEXT_LABELS} distinct labels by line {line}"
            )
            raise SpecInvalid([SpecError(self.at, problem, "class labels have fewer; regression targets are numbers")])

    def values(self) -> np.ndarray:
        if self.numbers is not None:
            return np.concatenate(self.numbers)
        assert self.codes is not None
        names = np.empty(len(self.names), dtype=object)
        names[:] = list(self.names)
        return names[np.concatenate(self.codes)]


def _csv_arrays(
    table: _CsvRows, target: str | None, features: list[str] | None, at: str, file_at: str
) -> tuple[np.ndarray, np.ndarray, DataReport]:
    """Features (float64) and targets of a CSV, converted a chunk of rows at a time. Errors in the
    file come first (read to its end), then those in the columns asked for, then values that are
    not numbers."""
    problem: SpecInvalid | None = None
    try:
        target, features = _csv_columns(table.header, target, features, at)
    except SpecInvalid as exc:
        problem = exc
    position = {name: i for i, name in enumerate(table.header)}
    parts: list[np.ndarray] = []
    labels = _Labels(target or "", file_at)
    rows = table.rows()
    chunk_rows = max(1, CHUNK_VALUES // len(table.header))
    while chunk := list(islice(rows, chunk_rows)):
        if problem is not None:
            continue
        assert target is not None and features is not None
        lines = [line for line, _ in chunk]
        try:
            columns = [_numbers([row[position[name]] for _, row in chunk], name, lines, file_at) for name in features]
            parts.append(np.stack(columns, axis=1))
            labels.add([row[position[target]].strip() for _, row in chunk], lines[-1])
        except SpecInvalid as exc:
            problem = exc
    report = table.report()
    if problem is not None:
        raise problem
    report.target, report.features = target, features
    return np.concatenate(parts), labels.values(), report


def _npz_arrays(
    archive: zipfile.ZipFile,
    members: dict[str, _Member],
    target: str | None,
    features: list[str] | None,
    at: str,
    file_at: str,
) -> tuple[np.ndarray, np.ndarray, DataKind, DataReport]:
    """Features (float64) and targets of an NPZ: its arrays checked from their headers, then read."""
    names = sorted(members)
    target = target or "y"
    if target not in members:
        raise _unknown(target, names, "array", f"{at}/target")
    if features is None:
        features = ["x"] if "x" in members else [name for name in names if name != target]
    if not features:
        raise SpecInvalid([SpecError(f"{at}/features", "no feature arrays are left besides the target")])
    for i, name in enumerate(features):
        if name not in members:
            raise _unknown(name, names, "array", f"{at}/features/{i}")
    rows = members[target].rows
    for name in [*features, target]:
        member = members[name]
        if not member.shape or member.rows != rows:
            raise SpecInvalid([SpecError(file_at, f"array {name!r} has {member.rows} rows; {target!r} has {rows}")])
        if member.dtype.kind not in "biuf" and name != target:
            raise SpecInvalid([SpecError(file_at, f"array {name!r} is not numeric (dtype {member.dtype})")])
    parts = [_read_array(archive, members[name]) for name in features]
    y = _read_array(archive, members[target])
    if len(parts) == 1:
        x = parts[0].astype(np.float64)
    else:
        x = np.concatenate([p.reshape(len(p), -1).astype(np.float64) for p in parts], axis=1)
    if x.ndim == 1:
        x = x[:, None]
    report = _npz_report(members)
    report.target, report.features = target, features
    kind: DataKind = {2: "tabular", 3: "sequence"}.get(x.ndim, "image")
    return x, y, kind, report


def load_table(
    source: Source,
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
    limits: ReadLimits | None = None,
) -> tuple[Dataset, DataReport]:
    """A CSV / NPZ file (bytes, a path or a seekable stream) as a Dataset for ``task``, and the report
    of its reading.

    ``target`` is a column (CSV; default the last) or an array (NPZ; default ``y``); ``features``
    default to every other column (CSV) or the array ``x``. Errors point at ``at`` (the source)
    and ``file_at`` (where the file is named, e.g. ``/data/source/path``). ``limits``: default
    those of ``data_access``."""
    file_at = file_at or at
    limits = limits or current_access().limits
    kind: DataKind = "tabular"
    with _opened(source, file_at) as stream:
        fmt = format or sniff_format(_head(stream), source.name if isinstance(source, Path) else None)
        if fmt == "csv":
            with _csv(
                stream, bad_rows=bad_rows, delimiter=delimiter, encoding=encoding, at=file_at, limits=limits
            ) as table:
                x, y, report = _csv_arrays(table, target, features, at, file_at)
        else:
            with _npz(stream, limits, file_at) as (archive, members):
                x, y, kind, report = _npz_arrays(archive, members, target, features, at, file_at)
    if not np.isfinite(x).all():
        raise SpecInvalid([SpecError(file_at, "the features hold NaN or infinite values")])
    targets, classes = targets_for_task(y, task, f"{at}/target")
    return Dataset(torch.as_tensor(x, dtype=torch.float32), targets, kind, classes, report=report.as_dict()), report
