"""The import graph of src/ keeps the layers of docs/architecture.md, and has no cycle.

A small AST walk: every `import` in every module counts, those inside functions included (a cycle
hidden behind a function-level import is still a cycle). No tool to install.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

# Each group of modules and the groups it may import (its own group is always allowed). A module
# belongs to the longest group name that prefixes it. Keep in step with docs/architecture.md.
ALLOWED: dict[str, set[str]] = {
    "latentsweep.errors": set(),
    "latentsweep.parallel": set(),
    "latentsweep.threads": {"latentsweep.parallel"},
    "latentsweep.figures": set(),
    "latentsweep.tables": set(),  # the one markdown-table renderer (tabulate)
    "latentsweep.timing": set(),  # where a run's wall time goes (PhaseClock)
    "latentsweep.cli": {"latentsweep.errors"},
    "latentsweep.choices": set(),  # allowed values checked by schemas and used by data and models
    "latentsweep.config": {"latentsweep.choices", "latentsweep.errors", "latentsweep.parallel"},
    "latentsweep.data": {"latentsweep.choices", "latentsweep.errors"},
    "latentsweep.models": {"latentsweep.choices", "latentsweep.data", "latentsweep.errors"},
    "latentsweep.training": {"latentsweep.data", "latentsweep.errors", "latentsweep.training.checkpoint"},
    # the checkpoint file format: the sweeper reads which epoch a killed trial's checkpoint holds
    "latentsweep.training.checkpoint": {"latentsweep.errors"},
    # the model side of tasks: the classifier head, its metrics and figures, wrap_for_task
    "latentsweep.tasks": {"latentsweep.config", "latentsweep.data", "latentsweep.errors",
                          "latentsweep.figures", "latentsweep.models"},
    "latentsweep.build": {"latentsweep.config", "latentsweep.data", "latentsweep.errors",
                          "latentsweep.models", "latentsweep.tasks"},
    "latentsweep.model_files": {"latentsweep.build"},
    "latentsweep.tracking": {"latentsweep.data", "latentsweep.errors", "latentsweep.model_files"},
    "latentsweep.analysis": {"latentsweep.data", "latentsweep.errors", "latentsweep.figures",
                             "latentsweep.models", "latentsweep.tables"},
    "latentsweep.objectives": {"latentsweep.analysis", "latentsweep.errors"},
    # the run side of tasks: the pipeline's hooks and task.pretrained
    "latentsweep.tasks.setup": {"latentsweep.build", "latentsweep.config", "latentsweep.data",
                                "latentsweep.errors", "latentsweep.objectives", "latentsweep.tasks",
                                "latentsweep.tasks.pretrained", "latentsweep.tracking"},
    "latentsweep.tasks.pretrained": {"latentsweep.config", "latentsweep.data", "latentsweep.errors",
                                     "latentsweep.tracking"},
    "latentsweep.loading": {"latentsweep.build", "latentsweep.config", "latentsweep.data",
                            "latentsweep.errors"},
    "latentsweep.pipeline": {"latentsweep.build", "latentsweep.config", "latentsweep.data",
                             "latentsweep.errors", "latentsweep.figures", "latentsweep.loading",
                             "latentsweep.objectives", "latentsweep.tasks.setup", "latentsweep.threads",
                             "latentsweep.timing", "latentsweep.tracking", "latentsweep.training",
                             "latentsweep.training.checkpoint"},
    "latentsweep.analysis.run": {"latentsweep.analysis", "latentsweep.config", "latentsweep.data",
                                 "latentsweep.errors", "latentsweep.figures", "latentsweep.loading",
                                 "latentsweep.tracking", "latentsweep.training", "latentsweep.training.checkpoint"},
    "latentsweep.sweeps": {"latentsweep.cli", "latentsweep.errors", "latentsweep.objectives",
                           "latentsweep.parallel", "latentsweep.tables", "latentsweep.tracking",
                           "latentsweep.training.checkpoint"},
    "hydra_plugins.latentsweep_sweeper": {"latentsweep.sweeps"},
    "latentsweep": set(),  # the package's __init__: a docstring and a version
}

# Third-party packages a layer must not touch: models know nothing of Hydra or MLflow, the loop
# nothing of a particular model, and no config or training code knows the sweep machinery.
FORBIDDEN_PACKAGES: dict[str, set[str]] = {
    "latentsweep.models": {"hydra", "omegaconf", "mlflow", "optuna"},
    "latentsweep.training": {"hydra", "omegaconf", "mlflow", "optuna", "latentsweep.models"},
    "latentsweep.data": {"hydra", "mlflow", "optuna"},
    "latentsweep.config": {"mlflow", "optuna", "torch", "hydra_plugins"},
}


def _modules(root: Path = SRC) -> dict[str, tuple[Path, bool]]:
    found = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        found[".".join(parts[:-1] if is_pkg else parts)] = (path, is_pkg)
    return found


def _imported_names(module: str, path: Path, is_pkg: bool) -> set[str]:
    """Dotted names `module` imports anywhere in its file (absolute; `from X import n` gives X.n)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_pkg else module.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            names.update(f"{prefix}.{alias.name}" for alias in node.names)
    return names


def import_graph(root: Path = SRC) -> dict[str, set[str]]:
    """module -> the modules of src/ it imports (the longest existing module of each name)."""
    modules = _modules(root)
    graph: dict[str, set[str]] = {}
    for module, (path, is_pkg) in modules.items():
        targets = set()
        for name in _imported_names(module, path, is_pkg):
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != module:
                targets.add(name)
        graph[module] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def group_of(module: str) -> str | None:
    matches = [g for g in ALLOWED if module == g or module.startswith(g + ".")]
    return max(matches, key=len) if matches else None


def layering_violations(graph: dict[str, set[str]]) -> list[str]:
    bad = []
    for module, targets in sorted(graph.items()):
        group = group_of(module)
        if group is None:
            bad.append(f"{module} belongs to no layer: add it to ALLOWED and docs/architecture.md")
            continue
        for target in sorted(targets):
            target_group = group_of(target)
            if target_group != group and target_group not in ALLOWED[group]:
                bad.append(f"{module} imports {target} ({group} may not import {target_group})")
    return bad


def forbidden_imports(root: Path = SRC) -> list[str]:
    bad = []
    for module, (path, is_pkg) in sorted(_modules(root).items()):
        banned = next((b for g, b in FORBIDDEN_PACKAGES.items() if module == g or module.startswith(g + ".")), set())
        for name in sorted(_imported_names(module, path, is_pkg)):
            hit = next((b for b in banned if name == b or name.startswith(b + ".")), None)
            if hit:
                bad.append(f"{module} imports {name} (no {hit} in this layer)")
    return bad


def test_src_has_no_import_cycle_even_through_imports_inside_functions():
    assert cycles(import_graph()) == []


def test_every_import_follows_the_layers():
    assert layering_violations(import_graph()) == []
    assert forbidden_imports() == []


def test_the_layer_table_itself_has_no_cycle():
    assert cycles({g: {a for a in allowed if a != g} for g, allowed in ALLOWED.items()}) == []


def test_the_walk_sees_cycles_and_violations_hidden_in_functions(tmp_path):
    """The checks above can fail: a function-level import that closes a cycle and breaks a layer."""
    pkg = tmp_path / "latentsweep"
    (pkg / "models").mkdir(parents=True)
    (pkg / "sweeps").mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "models" / "__init__.py").write_text("")
    (pkg / "sweeps" / "__init__.py").write_text("")
    (pkg / "models" / "net.py").write_text("def f():\n    from ..sweeps import loop\n")
    (pkg / "sweeps" / "loop.py").write_text("from latentsweep.models.net import f\nimport mlflow\n")
    graph = import_graph(tmp_path)
    assert graph["latentsweep.models.net"] == {"latentsweep.sweeps.loop"}
    assert cycles(graph) == [["latentsweep.models.net", "latentsweep.sweeps.loop"]]
    assert layering_violations(graph) == [
        "latentsweep.models.net imports latentsweep.sweeps.loop "
        "(latentsweep.models may not import latentsweep.sweeps)",
        "latentsweep.sweeps.loop imports latentsweep.models.net "
        "(latentsweep.sweeps may not import latentsweep.models)"]
    (pkg / "models" / "net.py").write_text("import omegaconf\n")
    assert forbidden_imports(tmp_path) == ["latentsweep.models.net imports omegaconf (no omegaconf in this layer)"]
