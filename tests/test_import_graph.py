"""Imports run one way: no module of fvmatch/, models/ (fvmatch.models) or training/ (fvmatch.training) imports,
directly or through others, a module that imports it back. Read from the source with ast: every `import` and
`from ... import` at any depth counts (a lazy import inside a function still ties two modules), relative imports
resolved; and every import goes to a module of its own layer or one below (docs/architecture.md, "Layers", mirrored
in LAYERS)."""
from __future__ import annotations

import ast
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent
PACKAGE_ROOTS = {"fvmatch": REPOSITORY / "fvmatch", "fvmatch.models": REPOSITORY / "models",
                 "fvmatch.training": REPOSITORY / "training"}


def module_files(roots: dict[str, Path]) -> dict[str, Path]:
    """{dotted module name: its file} of every .py file under each package root."""
    modules = {}
    for package, root in roots.items():
        for path in sorted(root.rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join([package, *parts])] = path
    return modules


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """{module: the project's modules it imports}. `from X import name` counts as X.name where that is a module,
    else as X (a package's names are its __init__'s)."""

    def known(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for module, path in modules.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package
                    for _ in range(node.level - 1):
                        base = base.rpartition(".")[0]
                    source = f"{base}.{node.module}" if node.module else base
                else:
                    source = node.module
                targets.add(source)
                targets.update(f"{source}.{alias.name}" for alias in node.names)
        resolved = {known(target) for target in targets if target == "fvmatch" or target.startswith("fvmatch.")}
        graph[module] = {target for target in resolved if target and target != module}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of two or more modules (Tarjan's algorithm, iterative), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            for successor in successors:
                if successor not in index:
                    index[successor] = low[successor] = len(index)
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(sorted(graph[successor]))))
                    break
                if successor in on_stack:
                    low[node] = min(low[node], index[successor])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    group = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.append(member)
                        if member == node:
                            break
                    if len(group) > 1:
                        groups.append(sorted(group))
    return groups


def test_project_imports_have_no_cycle():
    modules = module_files(PACKAGE_ROOTS)
    assert "fvmatch.training.trainer" in modules and "fvmatch.models.checkpoint" in modules
    found = cycles(import_graph(modules))
    assert not found, "import cycles (a lower module must not import a higher one, lazily or not):\n" + "\n".join(
        ", ".join(group) for group in found)


def test_lazy_relative_and_package_imports_close_a_cycle(tmp_path):
    """The check sees what a cycle can hide behind: an import inside a function, a relative import, a name taken
    from a package's __init__, and a TYPE_CHECKING block."""
    package = tmp_path / "fvmatch"
    (package / "spaces").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "spaces" / "__init__.py").write_text("from .names import JOINT\n")
    (package / "spaces" / "names.py").write_text("JOINT = 'joint'\n")
    (package / "scoring.py").write_text("from fvmatch.spaces import JOINT\n")
    (package / "calibration.py").write_text("def fit():\n    from . import scoring\n")
    (package / "gallery.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                        "    from fvmatch.calibration import fit\n")
    modules = module_files({"fvmatch": package})
    graph = import_graph(modules)
    assert graph["fvmatch.calibration"] == {"fvmatch", "fvmatch.scoring"}
    assert graph["fvmatch.scoring"] == {"fvmatch.spaces"}
    assert graph["fvmatch.gallery"] == {"fvmatch.calibration"}
    assert cycles(graph) == []
    (package / "spaces" / "names.py").write_text("JOINT = 'joint'\n\ndef key():\n    from ..gallery import x\n")
    assert cycles(import_graph(module_files({"fvmatch": package}))) == [
        ["fvmatch.calibration", "fvmatch.gallery", "fvmatch.scoring", "fvmatch.spaces", "fvmatch.spaces.names"]]


# docs/architecture.md, "Layers", bottom to top: a module's layer is that of the longest name below that is its own
# name or a package above it
LAYERS = {
    1: ("fvmatch.errors", "fvmatch.paths", "fvmatch.extras", "fvmatch.progress", "fvmatch.corpus",
        "fvmatch.evaluation.metrics", "fvmatch.evaluation.trial", "fvmatch.models"),
    2: ("fvmatch.quality", "fvmatch.media"),
    3: ("fvmatch.spaces",),
    4: ("fvmatch.gallery", "fvmatch.evaluation", "fvmatch.calibration"),
    5: ("fvmatch", "fvmatch.evidence", "fvmatch.analysis", "fvmatch.evaluation.attribute_evidence"),
    6: ("fvmatch.enrollment", "fvmatch.audit", "fvmatch.case_report", "fvmatch.importers", "fvmatch.synth",
        "fvmatch.training"),
    # the one-off weight conversion reads media.torch_weights: a script over the layers, not a part of them
    7: ("fvmatch.commands", "fvmatch.cli", "fvmatch.models.weights.convert_pretrained"),
}


def layer_of(module: str) -> int:
    names = {name: layer for layer, names in LAYERS.items() for name in names}
    owner = max((name for name in names if module == name or module.startswith(name + ".")), key=len)
    return names[owner]


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """Each import of a module of a higher layer, in words (an import of the bare package `fvmatch`, a name of its
    __init__, is not counted: every layer's relative imports pass through it)."""
    return sorted(f"{module} (layer {layer_of(module)}) imports {target} (layer {layer_of(target)})"
                  for module, targets in graph.items() for target in targets
                  if target != "fvmatch" and layer_of(target) > layer_of(module))


def test_every_import_goes_to_the_same_layer_or_one_below():
    """The layer order itself, not only the absence of cycles."""
    upward = upward_imports(import_graph(module_files(PACKAGE_ROOTS)))
    assert not upward, "imports against the layer order (docs/architecture.md, Layers):\n" + "\n".join(upward)
    # the check sees one: media importing the gallery, lazily or not, would be refused
    assert upward_imports({"fvmatch.media.audio": {"fvmatch.gallery.scan", "fvmatch.errors"}}) == [
        "fvmatch.media.audio (layer 2) imports fvmatch.gallery.scan (layer 4)"]
    assert layer_of("fvmatch.evaluation.attribute_evidence") == 5 and layer_of("fvmatch.evaluation.report") == 4
