"""Writes that survive a crash or a full disk: a file is complete and on the disk (fsynced) before
it takes the place of the old one, so no reader ever finds it half written."""

import os
import shutil
import tempfile
from pathlib import Path


def write_synced(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` and flush it to the disk (a full disk raises OSError here)."""
    with open(path, "wb") as stream:
        stream.write(data)
        stream.flush()
        os.fsync(stream.fileno())


def sync_folder(folder: Path) -> None:
    """Flush ``folder``'s entries (the names created, renamed or removed in it) to the disk."""
    descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def replace_files(folder: Path, files: dict[str, bytes]) -> None:
    """Put ``files`` (name → content) in ``folder``, replacing those of the same name and keeping
    the others: each is written and synced in a temporary sibling folder first, then moved in, in
    the order given (so the last one can say the others are complete). A write cut short leaves
    none of them in ``folder``, and no temporary folder behind."""
    folder.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{folder.name}.", suffix=".partial", dir=folder.parent))
    try:
        for name, data in files.items():
            write_synced(staging / name, data)
        for name in files:
            os.replace(staging / name, folder / name)
        sync_folder(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
