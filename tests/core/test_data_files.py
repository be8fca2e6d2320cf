"""CSV / NPZ sources: the seed's malformed CSV (an 11-column header with rows of 21 fields), the
clear errors for broken files, the data root that file sources may not leave, uploaded data sets
resolved by id, and the report of what was read."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from cli.main import app
from core.data.files import data_access, inspect_table, load_table
from core.engine.plan import plan_experiment
from core.engine.run import run_experiment
from core.errors import SpecInvalid
from core.run_folder import META
from core.spec.schema import parse_spec
from tests.core.helpers import QUIET

COLUMNS = [f"f{i}" for i in range(10)] + ["label"]
BAD_LINES = (5, 17, 40)  # 1-based file lines (line 1 is the header)


def seed_csv(path: Path, *, rows: int = 80, bad_lines: tuple[int, ...] = BAD_LINES, short: bool = False) -> Path:
    """An 11-column CSV whose rows at ``bad_lines`` have 21 fields (two records run together, as in
    the seed's 2018_2019_2020.csv), or 6 fields when ``short``. The label is 1 when f0 > 0."""
    rng = np.random.default_rng(0)
    lines = [",".join(COLUMNS)]
    for _ in range(rows):
        values = rng.normal(size=10).round(4)
        record = [str(v) for v in values] + [str(int(values[0] > 0))]
        line_number = len(lines) + 1
        if line_number in bad_lines:
            record = record[:6] if short else record + [str(v) for v in rng.normal(size=10).round(4)]
        lines.append(",".join(record))
    path.write_text("\n".join(lines) + "\n")
    return path


def csv_spec(path: str = "data.csv", **source: object) -> dict:
    return {
        "task": "binary",
        "epochs": 3,
        "data": {"source": {"type": "file", "path": path, "format": "csv", "target": "label", **source}},
        "model": {"type": "mlp", "hidden": [16], "dropout": 0.0},
        "schedule": {"type": "constant"},
        "regularization": {"early_stopping": None},
        "diagnostics": QUIET,
    }


def plan_in(root: Path, document: dict):
    with data_access(data_root=root):
        return plan_experiment(parse_spec(document))


def error_of(root: Path | None, document: dict):
    with pytest.raises(SpecInvalid) as info, data_access(data_root=root):
        plan_experiment(parse_spec(document))
    assert len(info.value.errors) == 1
    return info.value.errors[0]


# --- the seed's case: 11 columns, some rows of 21 fields ---------------------------------------


def test_malformed_rows_fail_by_default_naming_their_lines(tmp_path):
    seed_csv(tmp_path / "data.csv")
    error = error_of(tmp_path, csv_spec())
    assert error.pointer == "/data/source/path"
    assert "the header has 11 columns" in error.message
    for line in BAD_LINES:
        assert f"line {line} has 21 fields" in error.message
    assert "(3 bad lines in all)" in error.message
    assert "skip" in error.hint and "truncate" in error.hint and "11" in error.hint


def test_the_error_lists_the_first_20_bad_lines_and_the_total(tmp_path):
    bad = tuple(range(3, 53, 2))  # 25 bad lines
    seed_csv(tmp_path / "data.csv", bad_lines=bad)
    message = error_of(tmp_path, csv_spec()).message
    named = [line for line in bad if f"line {line} has" in message]
    assert named == list(bad[:20])
    assert "(25 bad lines in all)" in message


def test_skip_drops_the_bad_rows_trains_and_records_them(tmp_path):
    seed_csv(tmp_path / "data.csv")
    plan = plan_in(tmp_path, csv_spec(bad_rows="skip"))
    assert len(plan.data) == 80 - 3 and plan.data.sample_shape == (10,)
    report = plan.data.report
    assert report["rows_read"] == 80 and report["rows"] == 77 and report["rows_dropped"] == 3
    assert report["bad_lines"] == [{"line": line, "fields": 21} for line in BAD_LINES]
    assert report["columns"] == COLUMNS and report["target"] == "label" and report["features"] == COLUMNS[:10]
    assert plan.report()["data"]["file"]["rows_dropped"] == 3

    result = run_experiment(plan.spec, plan=plan, device="cpu")
    assert result.status == "succeeded"
    result.save(tmp_path / "run")
    meta = json.loads((tmp_path / "run" / META).read_text())
    assert meta["data_report"]["bad_lines"][0] == {"line": 5, "fields": 21}


def test_truncate_keeps_every_row_cut_to_the_header_width(tmp_path):
    seed_csv(tmp_path / "data.csv")
    plan = plan_in(tmp_path, csv_spec(bad_rows="truncate"))
    assert len(plan.data) == 80 and plan.data.report["rows_truncated"] == 3 and plan.data.report["rows_dropped"] == 0
    # a truncated row keeps its own first 11 fields (its label too)
    lines = (tmp_path / "data.csv").read_text().splitlines()
    first_bad = [float(v) for v in lines[BAD_LINES[0] - 1].split(",")[:10]]
    torch.testing.assert_close(plan.data.x[BAD_LINES[0] - 2], torch.tensor(first_bad))
    assert run_experiment(plan.spec, plan=plan, device="cpu").status == "succeeded"


def test_truncate_cannot_fill_short_rows(tmp_path):
    seed_csv(tmp_path / "data.csv", short=True)
    error = error_of(tmp_path, csv_spec(bad_rows="truncate"))
    assert "line 5 has 6 fields" in error.message and "skip" in error.hint
    assert len(plan_in(tmp_path, csv_spec(bad_rows="skip")).data) == 77


# --- other broken files: each a clear error naming the column or line -----------------------------


def test_missing_target_column_is_named_with_a_suggestion(tmp_path):
    seed_csv(tmp_path / "data.csv")
    error = error_of(tmp_path, csv_spec(target="lable", bad_rows="skip"))
    assert error.pointer == "/data/source/target"
    assert "'lable'" in error.message and error.hint == "did you mean 'label'?"
    error = error_of(tmp_path, csv_spec(features=["f0", "f11"], bad_rows="skip"))
    assert error.pointer == "/data/source/features/1" and "'f11'" in error.message


def test_non_numeric_and_empty_values_name_line_and_column(tmp_path):
    (tmp_path / "data.csv").write_text("a,b,label\n1,2,0\n3,x7,1\n5,6,0\n")
    error = error_of(tmp_path, csv_spec())
    assert error.pointer == "/data/source/path"
    assert error.message == "line 3, column 'b' has 'x7', which is not a number"
    (tmp_path / "data.csv").write_text("a,b,label\n1,2,0\n3,4,1\n,6,0\n")
    assert error_of(tmp_path, csv_spec()).message == "line 4, column 'a' is empty"


def test_empty_header_only_and_wrong_encoding_files(tmp_path):
    (tmp_path / "data.csv").write_text("")
    assert error_of(tmp_path, csv_spec()).message == "the file is empty"
    (tmp_path / "data.csv").write_text("a,b,label\n")
    assert "no data rows" in error_of(tmp_path, csv_spec()).message
    (tmp_path / "data.csv").write_bytes("a,b,label\n1,2,0\n3,4,1\n5,6,caf\xe9\n".encode("latin-1"))
    error = error_of(tmp_path, csv_spec())
    assert error.message.startswith("line 4 is not utf-8 text (byte 0xe9") and "encoding" in error.hint
    plan = plan_in(tmp_path, {**csv_spec(encoding="latin-1"), "task": "classification"})
    assert plan.data.classes == ["0", "1", "café"]


def test_string_labels_classify_and_a_bom_is_ignored(tmp_path):
    rows = "\n".join(f"{i},{i % 7},{'yes' if i % 2 else 'no'}" for i in range(30))
    (tmp_path / "data.csv").write_bytes(("\ufeffx1,x2,answer\n" + rows + "\n").encode("utf-8"))
    plan = plan_in(tmp_path, csv_spec(target="answer"))
    assert plan.data.classes == ["no", "yes"] and plan.data.report["columns"][0] == "x1"


def test_semicolon_delimiter_and_blank_lines(tmp_path):
    (tmp_path / "data.csv").write_text("a;b;label\n1;2;0\n\n3;4;1\n5;6;0\n7;8;1\n")
    plan = plan_in(tmp_path, csv_spec(delimiter=";"))
    assert plan.data.x.tolist() == [[1, 2], [3, 4], [5, 6], [7, 8]]


# --- where files may be read from ------------------------------------------------------------------


def test_file_sources_are_refused_without_a_data_root(tmp_path):
    seed_csv(tmp_path / "data.csv")
    error = error_of(None, csv_spec(bad_rows="skip"))
    assert error.pointer == "/data/source/path" and "not allowed" in error.message
    assert "TRAINYARD_DATA_ROOT" in error.message and "TRAINYARD_DATA_ROOT" in error.hint
    assert "dataset" in error.hint


def test_paths_may_not_leave_the_data_root(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    seed_csv(tmp_path / "outside.csv")
    (root / "link.csv").symlink_to(tmp_path / "outside.csv")
    for path in ("../outside.csv", str(tmp_path / "outside.csv"), "link.csv"):
        error = error_of(root, csv_spec(path, bad_rows="skip"))
        assert error.pointer == "/data/source/path" and "outside the data folder" in error.message, path
        assert f"data folder {root.resolve()}" in error.message and "TRAINYARD_DATA_ROOT" in error.hint, path
    missing = error_of(root, csv_spec("missing.csv"))
    assert str(tmp_path) not in missing.message  # only the configured root is named, never a resolved path
    assert "TRAINYARD_DATA_ROOT" in missing.hint
    (root / "sub").mkdir()
    seed_csv(root / "sub" / "data.csv")
    assert len(plan_in(root, csv_spec("sub/../sub/data.csv", bad_rows="skip")).data) == 77


def test_local_reads_take_any_path_relative_ones_from_the_base(tmp_path, monkeypatch):
    base, elsewhere = tmp_path / "specs", tmp_path / "elsewhere"
    base.mkdir()
    elsewhere.mkdir()
    seed_csv(base / "data.csv")
    seed_csv(tmp_path / "outside.csv")
    monkeypatch.chdir(elsewhere)
    for path in ("data.csv", "../outside.csv", str(tmp_path / "outside.csv")):
        with data_access(local_base=base):
            assert len(plan_experiment(parse_spec(csv_spec(path, bad_rows="skip"))).data) == 77, path
    with pytest.raises(SpecInvalid) as info, data_access(local_base=base):
        plan_experiment(parse_spec(csv_spec("missing.csv")))
    error = info.value.errors[0]
    assert error.pointer == "/data/source/path" and str(base / "missing.csv") in error.message
    assert str(base) in error.hint
    with pytest.raises(ValueError, match="not both"), data_access(data_root=base, local_base=base):
        pass


def test_uploaded_data_sets_resolve_through_the_resolver(tmp_path):
    seed_csv(tmp_path / "ds_1.csv")
    document = csv_spec()
    document["data"]["source"] = {"type": "dataset", "id": "ds_1", "target": "label", "bad_rows": "skip"}

    def resolve(dataset_id: str) -> Path:
        path = tmp_path / f"{dataset_id}.csv"
        if not path.exists():
            raise KeyError(dataset_id)
        return path

    with data_access(resolve_dataset=resolve):
        assert len(plan_experiment(parse_spec(document)).data) == 77
        document["data"]["source"]["id"] = "ds_2"
        with pytest.raises(SpecInvalid) as info:
            plan_experiment(parse_spec(document))
    assert info.value.errors[0].pointer == "/data/source/id" and "'ds_2'" in info.value.errors[0].message
    with pytest.raises(SpecInvalid) as info:
        plan_experiment(parse_spec(document))
    assert info.value.errors[0].pointer == "/data/source/id"


# --- NPZ and bytes (what the upload route reuses) --------------------------------------------------


def _npz(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def test_npz_bytes_load_with_the_kind_their_rank_implies():
    rng = np.random.default_rng(0)
    images = rng.normal(size=(20, 1, 4, 4)).astype(np.float32)
    data, report = load_table(_npz(x=images, y=np.arange(20) % 2), task="binary")
    assert data.kind == "image" and data.sample_shape == (1, 4, 4) and report.rows == 20
    assert report.format == "npz" and report.columns == ["x", "y"]
    data, _ = load_table(_npz(a=np.ones((6, 2)), b=np.zeros(6), t=np.arange(6.0)), task="regression", target="t")
    assert data.sample_shape == (3,) and data.kind == "tabular"
    with pytest.raises(SpecInvalid) as info:
        load_table(_npz(x=np.array([{"a": 1}] * 3, dtype=object), y=np.zeros(3)), task="regression")
    assert "pickled" in info.value.errors[0].message
    with pytest.raises(SpecInvalid) as info:
        load_table(_npz(x=np.ones((3, 2))), task="regression")
    assert info.value.errors[0].pointer == "/data/source/target"


def test_npz_file_source_trains(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 3))
    np.savez(tmp_path / "data.npz", x=x, y=(x[:, 0] > 0).astype(np.int64))
    document = csv_spec("data.npz")
    document["data"]["source"] = {"type": "file", "path": "data.npz"}
    plan = plan_in(tmp_path, document)
    assert run_experiment(plan.spec, plan=plan, device="cpu").status == "succeeded"


def test_inspect_reports_an_upload_without_failing_on_bad_lines(tmp_path):
    raw = seed_csv(tmp_path / "data.csv").read_bytes()
    report = inspect_table(raw, name="upload.csv")
    assert report.columns == COLUMNS and report.rows == 77 and report.bad_line_count == 3
    assert [b["line"] for b in report.bad_lines] == list(BAD_LINES)
    assert inspect_table(_npz(x=np.ones((4, 2)), y=np.zeros(4))).rows == 4
    with pytest.raises(SpecInvalid):
        inspect_table(b"")


# --- the CLI reads files next to the spec file, or anywhere by an absolute path ----------------------


def test_cli_trains_a_csv_in_the_current_folder(tmp_path, monkeypatch):
    seed_csv(tmp_path / "data.csv")
    (tmp_path / "spec.json").write_text(json.dumps(csv_spec(bad_rows="skip")))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["train", "spec.json", "--json", "--out", "run", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.strip().splitlines()[-1])["status"] == "succeeded"
    (tmp_path / "bad.json").write_text(json.dumps(csv_spec()))
    result = CliRunner().invoke(app, ["validate", "bad.json", "--json"])
    assert result.exit_code == 2 and "line 5 has 21 fields" in result.stdout


def trainyard(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """The ``trainyard`` command run as a process in ``cwd``."""
    command = [sys.executable, "-m", "cli.main", *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300)


def test_cli_reads_a_relative_path_next_to_the_spec_from_another_folder(tmp_path):
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    project.mkdir()
    elsewhere.mkdir()
    seed_csv(project / "data.csv")
    spec = project / "spec.json"
    spec.write_text(json.dumps({**csv_spec(bad_rows="skip"), "epochs": 1}))
    validated = trainyard("validate", str(spec), "--json", cwd=elsewhere)
    assert validated.returncode == 0, validated.stdout + validated.stderr
    assert json.loads(validated.stdout)["valid"] is True
    trained = trainyard("train", str(spec), "--json", "--out", "run", "--device", "cpu", cwd=elsewhere)
    assert trained.returncode == 0, trained.stdout + trained.stderr
    assert json.loads(trained.stdout.strip().splitlines()[-1])["status"] == "succeeded"
    assert (elsewhere / "run").is_dir()
    (elsewhere / "data.csv").write_text("a,label\n1,0\n")  # a file of that name in the working folder is not read
    (project / "data.csv").unlink()
    missing = trainyard("validate", str(spec), "--json", cwd=elsewhere)
    assert missing.returncode == 2
    error = json.loads(missing.stdout)["errors"][0]
    assert error["pointer"] == "/data/source/path" and str(project / "data.csv") in error["message"]


def test_cli_reads_an_absolute_path_outside_the_spec_and_working_folders(tmp_path):
    data, specs = tmp_path / "data", tmp_path / "specs"
    data.mkdir()
    specs.mkdir()
    seed_csv(data / "data.csv")
    spec = specs / "spec.json"
    spec.write_text(json.dumps({**csv_spec(str(data / "data.csv"), bad_rows="skip"), "epochs": 1}))
    trained = trainyard("train", "spec.json", "--json", "--out", str(tmp_path / "run"), "--device", "cpu", cwd=specs)
    assert trained.returncode == 0, trained.stdout + trained.stderr
    assert json.loads(trained.stdout.strip().splitlines()[-1])["status"] == "succeeded"
