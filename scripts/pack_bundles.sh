#!/usr/bin/env bash
# Pack every bundle (or the folders given) for the model zoo: dist/<name>_v<version>.zip, each
# unpacking to <name>/; weights over 25 MB are left out and listed in the zip's large_files.yml
# with their URL (UNIMEDI_LARGE_FILE_URL, placeholders {name} {version} {path} {filename}) and
# sha256, to be uploaded there. Runtime outputs (eval/, logs/, cache/, demo_data/, checkpoints)
# are never packed.
#   UNIMEDI_LARGE_FILE_URL='https://github.com/OWNER/REPO/releases/download/{name}_v{version}/{filename}' \
#     bash scripts/pack_bundles.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
OUT="${UNIMEDI_DIST:-dist}"
args=(--out "$OUT")
[ -n "${UNIMEDI_LARGE_FILE_URL:-}" ] && args+=(--url_template "$UNIMEDI_LARGE_FILE_URL")
if [ "$#" -gt 0 ]; then
  for b in "$@"; do "$PY" -m unimedi_monai.packaging pack "$b" "${args[@]}"; done
else
  "$PY" -m unimedi_monai.packaging pack_all "${args[@]}"
fi
