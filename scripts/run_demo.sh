#!/usr/bin/env bash
# Set up the environment (first run only), pre-train UniMedI on the built-in demo data, evaluate it.
# Outputs: bundles/pretrain/models/model.pt, bundles/pretrain/eval/metrics.json and eval/*.png,
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
echo "[demo] done in $(( $(date +%s) - start )) s; pictures in bundles/pretrain/eval/"
