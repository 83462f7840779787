#!/usr/bin/env bash
# Refresh the environment locks and rerun the tests:
#   1. resolve the newest versions that setup.cfg allows in a new venv (setup_env.sh with
#      UNIMEDI_RESOLVE=1) and write them to constraints/lock.txt;
#   2. the same for the MONAI Label environment (setup_label_env.sh, under constraints/label.txt)
#      into constraints/label-lock.txt;
#   3. write the new versions into every bundle's metadata.json (a bundle whose versions moved gets
#      a patch version and a changelog entry);
#   4. rebuild .venv and .venv-label from the new locks and run the suite and the MONAI Label test.
# Commit the locks and the metadata only when it ends green.
#   bash scripts/update_lock.sh     # then: git diff constraints/ bundles/*/configs/metadata.json
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

freeze() {  # freeze VENV LOCK: the venv's packages (not the project itself) under LOCK's header comment
  { sed -n '/^#/p' "$2"
    "$1/bin/python" -m pip --disable-pip-version-check freeze --all --exclude-editable \
      | grep -v -i -E '^unimedi[-_]monai' | sed -E 's/^torch==([0-9.]+)\+.*/torch==\1/'
  } > "$WORK/lock.tmp"
  mv "$WORK/lock.tmp" "$2"
  echo "[lock] $2: $(grep -c -v '^#' "$2") packages"
}

UNIMEDI_RESOLVE=1 UNIMEDI_VENV="$WORK/main" bash scripts/setup_env.sh
freeze "$WORK/main" constraints/lock.txt
UNIMEDI_RESOLVE=1 UNIMEDI_LABEL_VENV="$WORK/label" bash scripts/setup_label_env.sh
freeze "$WORK/label" constraints/label-lock.txt
"$WORK/main/bin/python" -m unimedi_monai.packaging sync_versions --lock constraints/lock.txt --bundles_dir bundles
rm -rf .venv .venv-label   # new environments from the new locks: nothing of the old sets stays behind
bash scripts/run_tests.sh
bash scripts/run_label_tests.sh
echo "[lock] the locks and the bundles' metadata are updated, and the tests are green"
