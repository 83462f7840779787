"""Declared dependencies equal the imports: every third-party module the package imports belongs to a
distribution that ``setup.cfg`` declares (``install_requires``, or an extra for an optional import), and
every declared requirement is used."""

from __future__ import annotations

import ast
import configparser
import re
import sys
from importlib import metadata as importlib_metadata
from pathlib import Path

from conftest import REPO_ROOT

PACKAGE = REPO_ROOT / "unimedi_monai"
#: imports that are not in install_requires, where they live, and why
OPTIONAL = {
    "monailabel": (
        "unimedi_monai/label/",
        None,
        "MONAI Label runs in its own environment (scripts/setup_label_env.sh, constraints/label.txt)",
    ),
    "sklearn": (
        "unimedi_monai/evaluation/embedding_plot.py",
        "tsne",
        "t-SNE plots, behind the 'tsne' extra; PCA needs nothing",
    ),
}
#: declared requirements that no module imports, and why they are needed
USED_INDIRECTLY = {
    "tensorboard": "the bundles' TensorBoard handlers (monai.handlers / torch.utils.tensorboard) write through it",
}


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(line: str) -> str:
    return _canonical(re.split(r"[<>=!~\[; ]", line.strip(), maxsplit=1)[0])


def _declared() -> tuple[set[str], dict[str, set[str]]]:
    cfg = configparser.ConfigParser()
    cfg.read(REPO_ROOT / "setup.cfg")
    required = {_requirement_name(line) for line in cfg["options"]["install_requires"].splitlines() if line.strip()}
    extras = {
        k: {_requirement_name(line) for line in v.splitlines() if line.strip()}
        for k, v in cfg["options.extras_require"].items()
    }
    return required, extras


def _imports(package: Path = PACKAGE) -> dict[str, set[str]]:
    """``{top-level module: {files importing it}}`` for absolute imports outside the standard library."""
    found: dict[str, set[str]] = {}
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package.parent).as_posix()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), rel)):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else ([node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else [])
            )
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in ("unimedi_monai", "__future__"):
                    found.setdefault(top, set()).add(rel)
    return found


def _distributions(module: str) -> set[str]:
    return {_canonical(d) for d in importlib_metadata.packages_distributions().get(module, [])}


def _undeclared_imports(package: Path = PACKAGE) -> list[str]:
    """One line per import that no declared requirement provides (or an optional one used elsewhere)."""
    required, extras = _declared()
    problems = []
    for module, files in sorted(_imports(package).items()):
        if module in OPTIONAL:
            where, extra, _ = OPTIONAL[module]
            outside = sorted(f for f in files if not f.startswith(where))
            if outside:
                problems.append(f"{module} (optional: {where}) is also imported by {outside}")
            if extra is not None and not _distributions(module) & extras.get(extra, set()):
                problems.append(f"{module} is not declared in the '{extra}' extra")
            continue
        dists = _distributions(module)
        if not dists:
            problems.append(f"{module} (imported by {sorted(files)[0]}) belongs to no installed distribution")
        elif not dists & required:
            problems.append(
                f"{module} (distribution {sorted(dists)}, imported by {sorted(files)[0]}) is not in install_requires"
            )
    return problems


def test_every_import_is_declared():
    assert {"torch", "monai", "transformers", "nibabel", "SimpleITK", "ignite", "numpy", "yaml"} <= set(_imports())
    assert _undeclared_imports() == []


def test_every_declared_requirement_is_used():
    required, _ = _declared()
    imported = set().union(*(_distributions(m) for m in _imports()))
    unused = sorted(required - imported - set(USED_INDIRECTLY))
    assert unused == [], f"declared in setup.cfg but never imported: {unused}"
    assert "einops" not in required
    assert set(USED_INDIRECTLY) <= required


def test_the_check_catches_undeclared_and_misplaced_imports(tmp_path):
    fake = tmp_path / "unimedi_monai"
    (fake / "evaluation").mkdir(parents=True)
    (fake / "extra.py").write_text("import numpy\nimport pytest\nfrom os import path\n")
    (fake / "evaluation" / "plots.py").write_text("import monailabel\n")
    problems = _undeclared_imports(fake)
    assert len(problems) == 2, problems
    assert problems[0].startswith(
        "monailabel (optional: unimedi_monai/label/) is also imported by ['unimedi_monai/evaluation/plots.py']"
    )
    assert problems[1].startswith(
        "pytest (distribution ['pytest'], imported by unimedi_monai/extra.py) is not in install_requires"
    )
