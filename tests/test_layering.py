"""Imports run one way: io -> networks, losses -> data -> engines -> downstream stages -> packaging, label."""

from __future__ import annotations

import ast
from pathlib import Path

import unimedi_monai

PACKAGE = Path(unimedi_monai.__file__).parent

#: the layers, lowest first; a module may import its own layer and the ones below it.
LAYERS = {
    "io": 0,
    "networks": 1,
    "losses": 1,
    "data": 2,
    "engines": 3,
    "evaluation": 4,
    "classification": 4,
    "segmentation": 4,
    "slice_selection": 4,
    "packaging": 5,
    "label": 5,
}


def _imports(path: Path) -> list[tuple[int, str]]:
    """``(line, subpackage)`` of every ``unimedi_monai.<subpackage>`` import in a file, function-level ones included."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module] + ([f"{node.module}.{a.name}" for a in node.names] if node.module == "unimedi_monai" else [])
        elif isinstance(node, ast.Import):
            modules = [a.name for a in node.names]
        else:
            continue
        found += [(node.lineno, m.split(".")[1]) for m in modules if m.startswith("unimedi_monai.")]
    return found


def test_no_layer_imports_a_higher_one():
    assert (PACKAGE / "io" / "checkpoint.py").is_file(), PACKAGE
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        own = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
        if own not in LAYERS:
            continue
        for line, other in _imports(path):
            if other in LAYERS and LAYERS[other] > LAYERS[own]:
                upward.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports unimedi_monai.{other} ({own} is below {other})")
    assert upward == [], "\n".join(upward)


def test_the_check_sees_an_upward_import(tmp_path):
    """The scan finds function-level and ``from unimedi_monai import x`` imports (what the layering test relies on)."""
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from unimedi_monai.engines.handlers import CheckpointHandler\nfrom unimedi_monai import packaging\n", encoding="utf-8")
    assert sorted(_imports(probe)) == [(2, "engines"), (3, "packaging")]
