"""The layout of a run's folder, in one place: what each file is called, what the downloadable
archive holds, where checkpoints and a k-fold run's folds go.

A single run's folder holds its trained model (``WEIGHTS``, ``PREPROCESSING``,
``TARGET_PREPROCESSING`` when the spec scales its targets, ``TOKENIZER`` for text, ``META``),
the resolved ``SPEC``, its ``METRICS`` and ``SUMMARY``; ``CHECKPOINT`` while it trains, and
``ONNX`` once exported. A k-fold run's folder holds ``SPEC``, ``SUMMARY`` and one
single-run folder per fold (``fold_1/``, ...)."""

import json
from pathlib import Path
from typing import Any

WEIGHTS = "model.safetensors"
PREPROCESSING = "preprocessing.safetensors"
TARGET_PREPROCESSING = "target_preprocessing.safetensors"
SPEC = "spec.json"
META = "meta.json"
METRICS = "metrics.jsonl"
SUMMARY = "summary.json"
TOKENIZER = "tokenizer.json"
PLOTS = "plots"  # the subfolder of a finished run's plots, rendered on their first request
ONNX = "model.onnx"
ARCHIVE_FILE = "model.zip"  # the archive of ARCHIVE, built on its first download
CHECKPOINT = "checkpoint"

# `GET .../artifacts/model` (those present)
ARCHIVE = (WEIGHTS, PREPROCESSING, TARGET_PREPROCESSING, SPEC, META, SUMMARY, TOKENIZER)


def fold_folder(folder: Path, fold: int) -> Path:
    """The folder of fold ``fold`` (1-based) of a k-fold run."""
    return folder / f"fold_{fold}"


def checkpoint_folder(folder: Path, attempt: int | None = None) -> Path:
    """Where a training in ``folder`` checkpoints: one subfolder per attempt of a service run (so
    a stale attempt never overwrites the next one's), ``checkpoint/`` itself otherwise."""
    base = folder / CHECKPOINT
    return base if attempt is None else base / f"attempt-{attempt}"


def checkpoint_candidates(folder: Path) -> list[Path]:
    """The checkpoint folders a resumed training may continue from, newest attempt first."""
    base = folder / CHECKPOINT
    attempts = [path for path in base.glob("attempt-*") if path.name.removeprefix("attempt-").isdigit()]
    return [*sorted(attempts, key=lambda path: int(path.name.removeprefix("attempt-")), reverse=True), base]


def has_model(folder: Path) -> bool:
    """Whether the folder holds one trained model (a k-fold run's top folder does not)."""
    return (folder / WEIGHTS).is_file()


def stored_files(folder: Path) -> list[Path]:
    """Every file of a finished run, checkpoints and partial writes excluded, in sorted order."""
    return sorted(
        path
        for path in folder.rglob("*")
        if path.is_file()
        and not any(part.startswith(CHECKPOINT) for part in path.relative_to(folder).parts)
        and not path.name.endswith(".partial")
    )


def finished_summary(folder: Path) -> dict[str, Any] | None:
    """The summary of a training that finished and saved itself in ``folder``, else None."""
    path = folder / SUMMARY
    if not (path.is_file() and has_model(folder)):
        return None
    summary = json.loads(path.read_text())
    return summary if summary.get("status") == "succeeded" else None
