#!/usr/bin/env bash
# Set up the environment (first run only) and run the whole test suite.
#   bash scripts/run_tests.sh            # everything
#   bash scripts/run_tests.sh -k losses  # extra pytest arguments pass through
# The whole suite (no arguments) first runs ruff (format check and lint), and fails when it skips more
# tests than the README states ("skips exactly N tests"), so a test that silently stops running turns CI red.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup_env.sh"
cd "$ROOT"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUTF8=1
if [ "$#" -eq 0 ]; then
  max_skipped="$(grep -o -E 'skips exactly [0-9]+ tests' "$ROOT/README.md" | head -n 1 | grep -o -E '[0-9]+' || true)"
  if [ -z "$max_skipped" ]; then
    echo "error: README.md does not state how many tests the suite skips ('skips exactly N tests')" >&2
    exit 1
  fi
  export UNIMEDI_MAX_SKIPPED="$max_skipped"
  # the one formatter and linter (config: pyproject.toml [tool.ruff]); `ruff format .` fixes the first
  if ! "$ROOT/.venv/bin/ruff" format --check --quiet . || ! "$ROOT/.venv/bin/ruff" check --quiet .; then
    echo "error: ruff found the problems above; run '.venv/bin/ruff format . && .venv/bin/ruff check --fix .'" >&2
    exit 1
  fi
fi
set +e
"$ROOT/.venv/bin/python" -m pytest "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "error: pytest collected no tests" >&2
  exit 1
fi
exit "$status"
