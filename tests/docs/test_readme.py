"""The README's spec reference is the schema's: regenerate it with scripts/spec_reference.py."""

from pathlib import Path

from scripts.spec_reference import README, with_reference

ROOT = Path(__file__).resolve().parents[2]


def test_readme_spec_reference_matches_the_schema() -> None:
    text = README.read_text()
    assert "<!-- spec-reference:start -->" in text
    assert with_reference(text) == text, "README's spec reference is stale: run python scripts/spec_reference.py"


def test_readme_names_the_two_commands_and_ci_runs_the_test_one() -> None:
    text = README.read_text()
    assert "bash scripts/dev.sh serve" in text
    assert "bash scripts/dev.sh test" in text
    assert "bash scripts/dev.sh test" in (ROOT / ".ci" / "run").read_text()
