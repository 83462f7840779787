#!/usr/bin/env bash
# MONAI Label tests: sets up .venv-label (first run only, scripts/setup_label_env.sh), runs the infer-task
# tests (they import monailabel) in that environment, then starts the real MONAI Label server on 127.0.0.1
# for each served bundle with a real CT from ../shared/data/totalsegmentator/ (a real chest X-ray from
# ../shared/data/covid_cxr_notes/ for the 2D bundle) and checks the label map its infer endpoint returns.
# Minutes on a CPU, so it is kept out of scripts/run_tests.sh; .ci/run calls both.
#   bash scripts/run_label_tests.sh            # extra pytest arguments pass through
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup_label_env.sh"
export UNIMEDI_MAX_SKIPPED=0 UNIMEDI_LABEL_TESTS=1 UNIMEDI_LABEL_PYTHON="${UNIMEDI_LABEL_PYTHON:-$ROOT/.venv-label/bin/python}"
cd "$ROOT"
# the tests that import monailabel in-process run in its environment; none may skip, none may be missing
set +e
HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 "$UNIMEDI_LABEL_PYTHON" -m pytest -p no:cacheprovider \
  tests/label/test_infer_task_weights.py "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "error: pytest collected no MONAI Label infer-task tests" >&2
  exit 1
fi
[ "$status" -eq 0 ] || exit "$status"
# the server tests: the README's test command (main environment, exit code 5 refused); each test starts the
# server with the MONAI Label environment's python
exec bash "$ROOT/scripts/run_tests.sh" tests/label/test_label_server.py "$@"
