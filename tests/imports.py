"""The import closure of a stage script: every file of ours that runs when the stage runs.

dvc.yaml lists each stage's source deps by hand; tests/test_dvc_yaml.py compares those lists
with the closure computed here, so a new import cannot leave a stage stale. Imports inside
functions count too (a lazy import still changes what the stage computes).

    python tests/imports.py stages/e1.py    # print the closure, one path per line
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src"


def _module_file(dotted: str) -> Path | None:
    """reprodl.experiments.e1 -> src/reprodl/experiments/e1.py (or the package's __init__.py)."""
    base = PACKAGE.joinpath(*dotted.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _dotted_of(path: Path) -> str:
    rel = path.relative_to(PACKAGE).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imported(path: Path) -> set[Path]:
    """Files of ours that `path` imports directly (package __init__ files included)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    in_package = PACKAGE in path.parents
    here = _dotted_of(path) if in_package else ""
    is_init = path.name == "__init__.py"
    names: set[str] = set()
    found: set[Path] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                package = here.split(".") if is_init else here.split(".")[:-1]
                package = package[: len(package) - (node.level - 1)]
                base = ".".join(package + ([node.module] if node.module else []))
            else:
                base = node.module or ""
                if not in_package and base == "common" and (path.parent / "common.py").is_file():
                    found.add(path.parent / "common.py")  # stages/common.py, imported by name
                    continue
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)  # `from pkg import module`
    for name in names:
        if name.split(".")[0] != "reprodl":
            continue
        parts = name.split(".")
        for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__ first
            file = _module_file(".".join(parts[:i]))
            if file is not None:
                found.add(file)
    return found


def import_closure(script: Path) -> set[Path]:
    """`script` and every file of ours it imports, directly or not."""
    script = Path(script).resolve()
    seen, todo = {script}, [script]
    while todo:
        for file in _imported(todo.pop()):
            if file not in seen:
                seen.add(file)
                todo.append(file)
    return seen


def relative_closure(script: str | Path) -> list[str]:
    return sorted(str(p.relative_to(ROOT)) for p in import_closure(ROOT / script))


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        print(f"{arg}:")
        for rel in relative_closure(arg):
            print(f"  - {rel}")
