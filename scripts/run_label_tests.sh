#!/usr/bin/env bash
# MONAI Label end-to-end test: sets up .venv-label (first run only, scripts/setup_label_env.sh),
# then starts the real MONAI Label server on 127.0.0.1 for each served bundle with a real CT from
# ../shared/data/totalsegmentator/ (a real chest X-ray from ../shared/data/covid_cxr_notes/ for the 2D
# bundle) and checks the label map its infer endpoint returns. Minutes on a
# CPU, so it is kept out of scripts/run_tests.sh; .ci/run calls both.
#   bash scripts/run_label_tests.sh            # extra pytest arguments pass through
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup_label_env.sh"
export UNIMEDI_LABEL_TESTS=1 UNIMEDI_LABEL_PYTHON="${UNIMEDI_LABEL_PYTHON:-$ROOT/.venv-label/bin/python}"
# the README's test command (main environment, exit code 5 refused) on the MONAI Label tests only
exec bash "$ROOT/scripts/run_tests.sh" tests/label "$@"
