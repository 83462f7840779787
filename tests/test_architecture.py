"""Imports run one way through the package's layers: every module of ``unimedi_monai`` is parsed with
``ast`` and none may import from a higher layer than its own (same layer is fine).

Layers, lowest first (a module takes the layer of the longest prefix of its name listed in ``LAYERS``):

0. ``io``: :mod:`unimedi_monai.io` (atomic file writes, checkpoint I/O and the one weight loader, rank 0),
   reading JSON (``json_files``), the lazy-export helper
   every ``__init__`` uses, and the helpers of :mod:`unimedi_monai.bundle` that import only the standard
   library and ``atomic_io`` (finding the bundle folder, reading the command line, checking values,
   the one-line error, guarding outputs, the run lock, output file names): they are called from the
   bundle YAML, but the inference stages also name their outputs with ``bundle.output_names``, so
   they sit at the bottom, where their imports put them;
1. ``networks/losses``, with ``networks.attention_selection`` (attention-guided masking and attentive slice selection as
   pure tensor functions, importing only torch: the pre-training network's forward calls them, so
   the pre-training network's forward calls them; the slice-selection *stage* is ``slice_selection``);
2. ``data``;
3. ``engines``;
4. ``stages``: ``evaluation``, ``classification``, ``segmentation``, ``slice_selection``;
5. ``packaging/label``: ``packaging``, ``label``, and the top of :mod:`unimedi_monai.bundle`
   (``bundle.overrides`` warns about package versions with ``packaging.metadata``; the package's
   ``__init__`` re-exports every helper).

The package root ``unimedi_monai`` (its version and lazy access to the subpackages) belongs to no layer.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "unimedi_monai"

LAYER_NAMES = ("io", "networks/losses", "data", "engines", "stages", "packaging/label")
LAYERS = {
    "unimedi_monai.io": 0,
    "unimedi_monai.lazy_exports": 0,
    "unimedi_monai.json_files": 0,
    "unimedi_monai.bundle": 5,
    "unimedi_monai.bundle.command_line": 0,
    "unimedi_monai.bundle.errors": 0,
    "unimedi_monai.bundle.output_names": 0,
    "unimedi_monai.bundle.outputs": 0,
    "unimedi_monai.bundle.root": 0,
    "unimedi_monai.bundle.run_lock": 0,
    "unimedi_monai.bundle.values": 0,
    "unimedi_monai.bundle.overrides": 5,
    "unimedi_monai.networks": 1,
    "unimedi_monai.losses": 1,
    "unimedi_monai.data": 2,
    "unimedi_monai.engines": 3,
    "unimedi_monai.evaluation": 4,
    "unimedi_monai.classification": 4,
    "unimedi_monai.segmentation": 4,
    "unimedi_monai.slice_selection": 4,
    "unimedi_monai.packaging": 5,
    "unimedi_monai.label": 5,
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> int | None:
    """The layer of ``module`` (longest listed prefix), None for the package root."""
    best = None
    for prefix, _layer in LAYERS.items():
        if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > len(best)):
            best = prefix
    if best is None and module != "unimedi_monai":
        raise AssertionError(f"{module} is in no layer: add its package to LAYERS in {Path(__file__).name}")
    return None if best is None else LAYERS[best]


def is_module(name: str) -> bool:
    path = PACKAGE.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imported_modules(path: Path) -> set[str]:
    """The ``unimedi_monai`` modules ``path`` imports anywhere (top level, in functions, under TYPE_CHECKING)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:  # `from pkg import submodule` imports the submodule
                found.add(f"{source}.{alias.name}" if is_module(f"{source}.{alias.name}") else source)
    return {m for m in found if m == "unimedi_monai" or m.startswith("unimedi_monai.")}


def layer_violations() -> list[str]:
    lines = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = module_name(path)
        own = layer_of(module)
        if own is None:
            continue
        for target in sorted(imported_modules(path)):
            other = layer_of(target)
            if other is not None and other > own:
                lines.append(f"{module} -> {target} ({LAYER_NAMES[own]} -> {LAYER_NAMES[other]})")
    return lines


def test_layer_map_resolves_imports():
    """The parser itself: relative imports, `from pkg import submodule` and function-level imports are seen."""
    bundle = imported_modules(PACKAGE / "bundle" / "overrides.py")
    assert "unimedi_monai.packaging.metadata" in bundle  # imported inside a function
    assert "unimedi_monai.bundle.command_line" in bundle
    assert layer_of("unimedi_monai.bundle.output_names") == 0 and layer_of("unimedi_monai.bundle") == 5
    assert layer_of("unimedi_monai.segmentation.xray_data") == 4 and layer_of("unimedi_monai") is None


def test_imports_never_run_from_a_lower_layer_to_a_higher_one():
    violations = layer_violations()
    for line in violations:
        print(line)
    assert not violations, f"{len(violations)} import(s) from a lower layer to a higher one:\n" + "\n".join(violations)


LICENCE_HEADER = "# SPDX-License-Identifier: Apache-2.0"  # LICENSE: Apache License 2.0


def test_every_module_starts_with_the_licence_header():
    missing = [
        str(p.relative_to(PACKAGE.parent))
        for p in sorted(PACKAGE.rglob("*.py"))
        if p.read_text(encoding="utf-8").splitlines()[:1] != [LICENCE_HEADER]
    ]
    for path in missing:
        print(path)
    assert not missing, f"{len(missing)} module(s) without the first line {LICENCE_HEADER!r}:\n" + "\n".join(missing)


def test_every_package_exports_its_names_lazily():
    """One ``__init__`` style: an ``_EXPORTS`` map and ``lazy_exports``, nothing imported eagerly."""
    eager = []
    for init in sorted(PACKAGE.rglob("__init__.py")):
        tree = ast.parse(init.read_text(encoding="utf-8"))
        imports = [ast.unparse(n) for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
        assigned = {
            t.id
            for n in tree.body
            if isinstance(n, (ast.Assign, ast.AnnAssign))
            for t in (n.targets if isinstance(n, ast.Assign) else [n.target])
            if isinstance(t, ast.Name)
        }
        expected = ["from __future__ import annotations", "from unimedi_monai.lazy_exports import lazy_exports"]
        if (
            imports != expected
            or not {"_EXPORTS", "__all__"} <= assigned
            or "__getattr__" not in init.read_text(encoding="utf-8")
        ):
            eager.append(f"{init.relative_to(PACKAGE.parent)}: imports {imports}")
    assert not eager, "packages not in the lazy_exports style:\n" + "\n".join(eager)


def test_no_exported_name_is_also_a_submodule_name():
    """A lazily exported name equal to a submodule's name is shadowed by that submodule once anything
    imports it (Python sets the package attribute), so ``$pkg.name(...)`` in a bundle YAML would call a module."""
    clashes = []
    for init in sorted(PACKAGE.rglob("__init__.py")):
        tree = ast.parse(init.read_text(encoding="utf-8"))
        exports: set[str] = set()
        for node in tree.body:
            target = node.targets[0] if isinstance(node, ast.Assign) else getattr(node, "target", None)
            if isinstance(target, ast.Name) and target.id == "_EXPORTS" and isinstance(node.value, ast.Dict):
                exports = {k.value for k in node.value.keys if isinstance(k, ast.Constant)}
        submodules = {p.stem for p in init.parent.glob("*.py")} | {
            p.parent.name for p in init.parent.glob("*/__init__.py")
        }
        clashes += [f"{init.relative_to(PACKAGE.parent)}: {name}" for name in sorted(exports & submodules)]
    assert not clashes, "exported names that are also submodules:\n" + "\n".join(clashes)
