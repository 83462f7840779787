#!/usr/bin/env bash
# Set up the environment (first run only), pre-train UniMedI on the built-in demo data, evaluate it.
# Outputs: bundles/pretrain/models/model.pt, bundles/pretrain/eval/metrics.json and eval/*.png,
# bundles/slice_selection/eval/ (the slice-selection check on the demo CTs),
# bundles/pretrain/logs/ (TensorBoard). Extra arguments are passed to both bundle runs as overrides,
# e.g. `bash scripts/run_demo.sh --max_epochs 5`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup_env.sh"
cd "$ROOT"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUTF8=1
PY="$ROOT/.venv/bin/python"
CONFIGS=bundles/pretrain/configs
start=$(date +%s)
"$PY" -m monai.bundle run --config_file "$CONFIGS/train.yaml" "$@"
"$PY" -m monai.bundle run --config_file "['$CONFIGS/train.yaml','$CONFIGS/evaluate.yaml']" "$@"
"$PY" -m unimedi_monai.evaluation.summary bundles/pretrain/eval/metrics.json
# downstream check: report-guided slice selection on the demo CTs (best slice within 3 slices of the
# lesion, whole CT, each CT's report as the query) against random selection; demo defaults only
if [ "$#" -eq 0 ]; then
  S=bundles/slice_selection/configs
  "$PY" -m monai.bundle run --config_file "['$S/inference.yaml','$S/evaluate.yaml']" \
    --model_path bundles/pretrain/models/model.pt --backbone demo --demo_dir bundles/pretrain/demo_data \
    --demo_sections "['training','validation']" --mode text --top_k 1 --top_fraction '$None' --window_slices '$None'
  "$PY" -c "import json; m = json.load(open('bundles/slice_selection/eval/metrics.json')); print(f\"slice selection (text, best slice, {m['num_cases']} CTs): hit {m['accuracy']:.3f} vs random {m['accuracy_random_expected']:.3f} expected, p = {m['p_value_vs_random']:.1e}; best fixed position {m['accuracy_position_prior']:.3f}\")"
else
  echo "[demo] slice-selection check skipped: it assumes the demo defaults (no extra arguments)"
fi
echo "[demo] done in $(( $(date +%s) - start )) s; pictures in bundles/pretrain/eval/"
