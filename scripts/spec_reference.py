"""Rewrite the spec reference in README.md from the schema: `python scripts/spec_reference.py`."""

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from core.spec.reference import spec_reference

START, END = "<!-- spec-reference:start -->", "<!-- spec-reference:end -->"
README = Path(__file__).resolve().parents[1] / "README.md"


def with_reference(text: str) -> str:
    block = f"{START}\n{spec_reference()}\n{END}"
    return re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _: block, text, flags=re.S)


if __name__ == "__main__":
    README.write_text(with_reference(README.read_text()))
