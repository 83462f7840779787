#!/usr/bin/env bash
# Install torch==2.13.0 into the virtual environment VENV unless it is there already; used by the
# set-up scripts. CPU build by default: a local wheel where pip is configured with one (find-links),
# otherwise PyTorch's CPU index, so no CUDA packages are pulled. UNIMEDI_TORCH_INDEX names another
# wheel index, e.g. https://download.pytorch.org/whl/cu128 for a CUDA build.
#   bash scripts/install_torch.sh VENV
set -euo pipefail
VENV="$1"
TORCH_VERSION="2.13.0"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
if "$VENV/bin/python" -c "import torch, sys; sys.exit(0 if torch.__version__.split('+')[0] == '$TORCH_VERSION' else 1)" 2>/dev/null; then
  exit 0
fi
if [ -n "${UNIMEDI_TORCH_INDEX:-}" ]; then
  "${PIP[@]}" install -q "torch==$TORCH_VERSION" --index-url "$UNIMEDI_TORCH_INDEX"
elif "${PIP[@]}" download -q --no-deps --no-index -d "$(mktemp -d)" "torch==$TORCH_VERSION" >/dev/null 2>&1; then
  # a local CPU wheel is configured (pip find-links): take it
  "${PIP[@]}" install -q "torch==$TORCH_VERSION"
else
  "${PIP[@]}" install -q "torch==$TORCH_VERSION" --index-url https://download.pytorch.org/whl/cpu
fi
