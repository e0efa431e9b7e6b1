"""The package's layers, read from the code's own imports (docs/architecture.md, "Layers").

    cli -> run -> stages -> adapters -> formats -> model -> core

A module imports from its own layer or the layers below it, never above it (the run layer
composes stages, as `etl plan` does; a stage knows nothing of the run); a stage never imports
another stage (the modules of one stage's package, stages/transform/, may import each other);
model is pure logic and imports only core's errors; no import cycles, function-level imports
included; an import inside a function says why it is deferred. `checked_modules()` is the
test's input, so each rule is also shown to fail on a module that breaks it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "scripts" / "etl"
LAYERS = ("core", "model", "formats", "adapters", "stages", "run", "cli")
RANK = {"core": 0, "model": 1, "formats": 2, "adapters": 3, "stages": 4, "run": 5, "cli": 6}
# model is pure: of the rest of the package it may use only these (errors, and hashes of data).
MODEL_MAY_USE = {"etl.core.errors", "etl.core.hashing"}
DEFERRED = "deferred:"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def checked_modules() -> dict[str, str]:
    return {module_name(p): p.read_text(encoding="utf-8") for p in sorted(PACKAGE.rglob("*.py"))}


def deferred_imports(source: str) -> list[tuple[int, str]]:
    """(line, text) of every import inside a function (any module, not only etl's) that no
    `# deferred: why` comment explains: the comment block right above it, or above the run of
    import lines it belongs to."""
    lines = source.splitlines()
    tree = ast.parse(source)
    top = {id(node) for node in tree.body}
    for node in tree.body:  # optional imports (try) and TYPE_CHECKING blocks count as module level
        if isinstance(node, (ast.If, ast.Try)):
            top |= {id(n) for n in ast.walk(node)}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in top:
            start = node.lineno - 1
            while start > 0 and lines[start - 1].lstrip().startswith(("#", "from ", "import ")):
                start -= 1
            if DEFERRED not in "\n".join(lines[start:node.lineno]):
                out.append((node.lineno, lines[node.lineno - 1].strip()))
    return out


def imports_of(name: str, source: str) -> list[tuple[str, int, bool, str]]:
    """(imported etl module, line, at module level, the line and the one above) for each import."""
    lines = source.splitlines()
    tree = ast.parse(source)
    top_level = {id(node) for node in tree.body}
    # Imports under `if TYPE_CHECKING:` or `try:` at module level count as module level.
    for node in tree.body:
        if isinstance(node, (ast.If, ast.Try)):
            top_level |= {id(n) for n in ast.walk(node)}
    found = []
    package = name if source and name.count(".") and (PACKAGE / Path(*name.split(".")[1:]) / "__init__.py").exists() \
        else name.rpartition(".")[0]
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            if base == "etl" or base.startswith("etl."):
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    targets.append(full if _is_module(full) else base)
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names if a.name.startswith("etl.")]
        context = ""
        if targets:  # the import's own line and the comment block right above it
            start = node.lineno - 1
            while start > 0 and lines[start - 1].lstrip().startswith("#"):
                start -= 1
            context = "\n".join(lines[start:node.lineno])
        for target in targets:
            found.append((_owning_module(target), node.lineno, id(node) in top_level, context))
    return found


def _is_module(dotted: str) -> bool:
    rel = Path(*dotted.split(".")[1:])
    return (PACKAGE / rel).with_suffix(".py").is_file() or (PACKAGE / rel / "__init__.py").is_file() \
        or any((PACKAGE / rel.parent).glob(f"{rel.name}.*.so"))


def _owning_module(dotted: str) -> str:
    while dotted.count(".") > 1 and not _is_module(dotted):
        dotted = dotted.rpartition(".")[0]
    return dotted


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else None


def stage_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[2] if len(parts) > 2 and parts[1] == "stages" else None


def violations(modules: dict[str, str]) -> list[str]:
    out = []
    graph: dict[str, set[str]] = {}
    for name, source in modules.items():
        own = layer_of(name)
        if own is None and name != "etl":
            out.append(f"{name}: not in any layer ({', '.join(LAYERS)})")
        for target, line, top, context in imports_of(name, source):
            graph.setdefault(name, set()).add(target)
            theirs = layer_of(target)
            where = f"{name}:{line} imports {target}"
            if own and theirs and (RANK[theirs] > RANK[own] or (RANK[theirs] == RANK[own] and theirs != own)):
                out.append(f"{where}: {own} may not import {theirs}")
            if own == "stages" and theirs == "stages" and stage_of(name) != stage_of(target):
                out.append(f"{where}: a stage imports another stage")
            if own == "model" and theirs != "model" and target not in MODEL_MAY_USE:
                out.append(f"{where}: model is pure and may use only {sorted(MODEL_MAY_USE)}")
        for line, text in deferred_imports(source):
            out.append(f"{name}:{line} `{text}` inside a function without a '# {DEFERRED} why' comment")
    out += [f"import cycle: {' -> '.join(cycle)}" for cycle in cycles(graph)]
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt == node:
                continue
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_package_keeps_its_layers():
    problems = violations(checked_modules())
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("module, source, expected", [
    ("etl.stages.load", "from etl.stages.validate import validate\n", "a stage imports another stage"),
    ("etl.model.diff", "from etl.adapters.mongodb import connect\n", "model may not import adapters"),
    ("etl.formats.stamps", "from etl.cli import main\n", "formats may not import cli"),
    ("etl.stages.load", "from etl.run.runlog import current_stage\n", "stages may not import run"),
    ("etl.model.diff", "from etl.core.paths import paths\n", "model is pure"),
    ("etl.stages.load", "def f():\n    from etl.core.paths import paths\n", "inside a function without"),
    ("etl.stages.load", "def f():\n    import psycopg\n", "inside a function without"),
])
def test_each_rule_fails_on_a_module_that_breaks_it(module, source, expected):
    modules = checked_modules()
    modules[module] = modules.get(module, "") + "\n" + source
    assert any(expected in v for v in violations(modules)), violations(modules)


def test_a_cycle_is_found():
    modules = checked_modules()
    modules["etl.core.fsutil"] += "\nfrom etl.core.lock import acquire\n"
    modules["etl.core.lock"] += "\nfrom etl.core.fsutil import write_atomic\n"
    assert any(v.startswith("import cycle: ") and "etl.core.fsutil" in v for v in violations(modules))


def test_deferred_imports_are_allowed_when_they_say_why():
    modules = checked_modules()
    modules["etl.stages.load"] += "\ndef f():\n    # deferred: a heavy import only this path needs\n    from etl.core.paths import paths\n"
    assert not [v for v in violations(modules) if "etl.stages.load:" in v and "inside a function" in v]
