"""Imports flow one way: no module imports a module that imports it back, and no package imports
a package above it. Every import counts, lazy and type-only ones too: a lazy import still ties
the two modules together, it only defers the cost."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import tuning

PACKAGE = Path(tuning.__file__).parent

# Lowest first. A module may import its own package and the packages below it, never above.
LAYERS = [
    ("errors", "redaction", "files", "logs", "interrupts", "payload"),
    ("config",),
    ("data",),
    ("model",),
    ("study",),  # engine-neutral study records: trials, identity, selection, the summary
    ("search",),  # engines (ask/tell), the runner that owns each trial's life
    ("results",),  # the trials table and the fast study readers of `tuning report`
    ("final",),  # best.yaml, the refit, the saved pipeline
    ("tracking",),  # MLflow: the sweep, its trials and the final model
    ("service",),  # a command's phases in order (the sweep: check, open, search, summarise, export)
    ("commands",),
    ("cli", "__main__"),
]
LAYER_OF = {name: level for level, names in enumerate(LAYERS) for name in names}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """The ``tuning`` modules a file imports, wherever the import stands."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # `from tuning.search import runner` imports the module tuning.search.runner.
            submodules = {f"{node.module}.{a.name}" for a in node.names} & MODULES
            found |= submodules or {node.module}
    return found & MODULES


MODULES = {module_name(p) for p in PACKAGE.rglob("*.py")}
GRAPH = {module_name(p): imports(p) - {module_name(p)} for p in PACKAGE.rglob("*.py")}


def package_of(module: str) -> str:
    return module.split(".")[1] if module != "tuning" else ""


def test_every_package_is_placed_in_a_layer():
    assert {package_of(m) for m in MODULES} - {""} <= set(LAYER_OF)


def test_no_package_imports_a_package_above_it():
    upward = sorted(
        f"{source} -> {target}"
        for source, targets in GRAPH.items()
        for target in targets
        if "tuning" not in (source, target) and LAYER_OF[package_of(target)] > LAYER_OF[package_of(source)]
    )
    assert upward == []


def test_no_circle_of_module_imports():
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    circles: list[list[str]] = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(GRAPH[module]):
            if target == "tuning" or package_of(target) == "":
                continue
            if state.get(target) == 1:
                circles.append([*path[path.index(target) :], target] if target in path else [module, target])
            elif target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [module])
    assert circles == []


def test_every_function_fits_on_a_screen():
    """One job per function: none in the package is over 60 lines (docstring included)."""
    long = sorted(
        f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for path in PACKAGE.rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > 60
    )
    assert long == []


def test_no_private_module_of_keras_tuner_or_keras_and_no_output_capture():
    """Libraries are used through their public modules; nothing swaps the process's streams."""
    banned = re.compile(
        r"^\s*(from|import)\s+(keras_tuner\.src|keras\.src)\b|redirect_stdout|sys\.argv\s*=", re.M
    )
    offenders = [
        f"{path.relative_to(PACKAGE)}: {match.group(0).strip()}"
        for path in PACKAGE.rglob("*.py")
        for match in banned.finditer(path.read_text())
    ]
    assert offenders == []
