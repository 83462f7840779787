#!/usr/bin/env bash
# MONAI's own bundle checks on every bundles/*/ (or the bundle folders given), offline, as the model
# zoo's CI runs them:
#   1. python -m monai.bundle verify_metadata   against the schema shipped in the package (no download)
#   2. python -m unimedi_monai.packaging check  changelog entry for the version, versions of the lock
#   3. python -m monai.bundle verify_net_in_out network_def of configs/inference.yaml (if present)
#   4. python -m monai.bundle ckpt_export       to models/model.ts (TorchScript, traced) when
#                                               models/model.pt exists
# The test suite (tests/test_bundle_verify.py) runs the same checks, plus the export-vs-eager comparison.
#   bash scripts/verify_bundles.sh                        # every bundle
#   bash scripts/verify_bundles.sh bundles/pretrain       # one
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUTF8=1 CI=1
PY="${PYTHON:-$ROOT/.venv/bin/python}"
SCHEMA="$("$PY" -m unimedi_monai.packaging schema)"
if [ "$#" -gt 0 ]; then bundles=("$@"); else bundles=(bundles/*/); fi
for b in "${bundles[@]}"; do
  b="${b%/}"
  [ -f "$b/configs/metadata.json" ] || continue
  echo "== $b"
  "$PY" -m monai.bundle verify_metadata --meta_file "$b/configs/metadata.json" --filepath "$SCHEMA"
  "$PY" -m unimedi_monai.packaging check "$b" --lock constraints/lock.txt
  config=""
  for c in "$b/configs/inference.yaml" "$b/configs/inference.json"; do [ -f "$c" ] && config="$c" && break; done
  if [ -z "$config" ]; then
    echo "   no configs/inference.yaml: no inference network to verify"
    continue
  fi
  "$PY" -m monai.bundle verify_net_in_out network_def --meta_file "$b/configs/metadata.json" --config_file "$config" --bundle_root "$b"
  if [ -f "$b/models/model.pt" ]; then
    "$PY" -m monai.bundle ckpt_export network_def --filepath "$b/models/model.ts" --ckpt_file "$b/models/model.pt" \
      --meta_file "$b/configs/metadata.json" --config_file "$config" --bundle_root "$b" --use_trace True
  else
    echo "   no models/model.pt: TorchScript export skipped (train the bundle first)"
  fi
done
