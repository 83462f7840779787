#!/usr/bin/env bash
# MONAI Label end-to-end test: sets up .venv-label (first run only, scripts/setup_label_env.sh),
# then starts the real MONAI Label server on 127.0.0.1 for each served bundle with a real CT from
# ../shared/data/totalsegmentator/ and checks the label map its infer endpoint returns. Minutes on a
# CPU, so it is kept out of scripts/run_tests.sh; .ci/run calls both.
#   bash scripts/run_label_tests.sh            # extra pytest arguments pass through
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup_env.sh"
bash "$ROOT/scripts/setup_label_env.sh"
cd "$ROOT"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUTF8=1
export UNIMEDI_LABEL_TESTS=1 UNIMEDI_LABEL_PYTHON="${UNIMEDI_LABEL_PYTHON:-$ROOT/.venv-label/bin/python}"
set +e
"$ROOT/.venv/bin/python" -m pytest tests/label "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "error: pytest collected no tests" >&2
  exit 1
fi
exit "$status"
