#!/usr/bin/env bash
# Trainyard's developer entry point: `bash scripts/dev.sh setup|serve|test`.
#   setup  create .venv (Python 3.11) and install Trainyard with its test tools
#   serve  set up, then start the service on the embedded default
#   test   set up, then run ruff and the whole test suite
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${TRAINYARD_VENV:-.venv}
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}

setup() {
  if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
  fi
  local stamp="$VENV/.installed"
  if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    "$VENV/bin/python" -m pip install -q --upgrade pip
    # torch first and exactly: a CPU build where one is on disk; the range in pyproject admits it.
    "$VENV/bin/python" -m pip install -q "torch==2.13.0"
    "$VENV/bin/python" -m pip install -q -e ".[dev]"
    touch "$stamp"
  fi
}

case "${1:-}" in
  setup) setup ;;
  serve)
    setup
    shift
    exec "$VENV/bin/trainyard" serve "$@"
    ;;
  test)
    setup
    shift
    "$VENV/bin/ruff" check .
    "$VENV/bin/python" -m pytest -q "$@"
    ;;
  *) echo "usage: bash scripts/dev.sh setup|serve|test" >&2; exit 2 ;;
esac
