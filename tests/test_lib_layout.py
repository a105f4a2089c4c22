"""lib/'s layers: no module imports one above it and the import graph has no circle (a function-level
import counts), every file is short enough to read, and the configuration imports no torch."""
import ast
import subprocess
import sys
from pathlib import Path

LIB = Path(__file__).resolve().parent.parent / "lib"
MAX_LINES = 450  # a lib file longer than this has more than one job (a chapter's figures live beside it)

# The layers, bottom to top (README, "Layout", draws them). A module imports only modules of its own
# layer or of a layer below; a name stands for the module and, unless it is "lib", every module under it.
# evaluate and stats are computations on arrays, below the models (divide's k-means is evaluate's); the
# analyses (tables, claims, verdicts, figures) read results and import nothing that trains.
LAYERS = [
    ("base", ["lib", "lib.errors", "lib.paths", "lib.arms"]),
    ("config", ["lib.config"]),
    ("data and computations", ["lib.data", "lib.augment", "lib.evaluate", "lib.geometry", "lib.stats", "lib.mechanics",
                               "lib.diagnostics", "lib.miners", "lib.cache"]),
    ("models and components", ["lib.models", "lib.components", "lib.splits", "lib.batching", "lib.divide"]),
    ("trainer", ["lib.trainer"]),
    ("scoring", ["lib.scoring", "lib.results", "lib.reid"]),
    ("train and runs", ["lib.train", "lib.runs"]),
    ("analysis", ["lib.records", "lib.compare", "lib.confirmatory", "lib.claims", "lib.ledger", "lib.plots",
                  "lib.report"]),
    ("study", ["lib.study", "lib.derived"]),
    ("chapters", ["lib.chapters", "lib.takeaways", "lib.runs.__main__"]),
]


def _module_name(path: Path) -> str:
    rel = path.relative_to(LIB.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path, name: str) -> set[str]:
    """lib modules imported at module level or inside functions (a late import is still a
    dependency); imports for type checkers only (`if TYPE_CHECKING:`) are not."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            node.body = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("lib")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            if base == "lib":  # from lib import data, train
                found |= {f"lib.{a.name}" for a in node.names}
            elif base.startswith("lib"):
                found.add(base)
    return found


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in LIB.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        deps = set()
        for imported in _imports(path, name):
            while imported not in modules and "." in imported:  # from lib.data.datasets import Split
                imported = imported.rsplit(".", 1)[0]
            if imported in modules and imported != name and not name.startswith(imported + "."):
                deps.add(imported)
        graph[name] = deps
    return graph


def test_lib_import_graph_has_no_cycle():
    graph = _graph()
    state: dict[str, int] = {}

    def visit(node, trail):
        if state.get(node) == 1:
            raise AssertionError("import cycle: " + " -> ".join(trail[trail.index(node):] + [node]))
        if state.get(node) == 2:
            return
        state[node] = 1
        for dep in sorted(graph[node]):
            visit(dep, trail + [node])
        state[node] = 2

    for node in sorted(graph):
        visit(node, [])


def test_the_graph_sees_known_edges():  # so the cycle test cannot pass by seeing nothing
    graph = _graph()
    assert "lib.trainer" in graph["lib.train"] and "lib.config" in graph["lib.trainer"]
    assert "lib.data" in graph["lib.splits"]
    assert "lib.config.run" in graph["lib.config.profile"] and "lib.evaluate.search" in graph["lib.evaluate.metrics"]
    assert "lib.train" in graph["lib.runs.schedule"]  # a function-level import


def _layer(module: str) -> int | None:
    """The index in LAYERS of `module`'s layer: its longest listed prefix."""
    best = None
    for index, (_, names) in enumerate(LAYERS):
        for name in names:
            if module == name or (name != "lib" and module.startswith(name + ".")):
                if best is None or len(name) > len(best[1]):
                    best = (index, name)
    return None if best is None else best[0]


def test_every_module_has_a_layer():
    unplaced = sorted(m for m in _graph() if _layer(m) is None)
    assert not unplaced, f"add {unplaced} to LAYERS in tests/test_lib_layout.py (and to README's drawing)"


def test_no_module_imports_a_layer_above_its_own():
    upward = [f"{m} ({LAYERS[_layer(m)][0]}) imports {d} ({LAYERS[_layer(d)][0]})"
              for m, deps in sorted(_graph().items()) for d in sorted(deps)
              if _layer(m) is not None and _layer(d) is not None and _layer(d) > _layer(m)]
    assert not upward, "\n".join(upward)


def test_no_lib_file_is_longer_than_its_limit():
    long = {str(p.relative_to(LIB.parent)): n for p in sorted(LIB.rglob("*.py"))
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"split these along their seams (at most {MAX_LINES} lines): {long}"


def test_the_configuration_imports_no_torch():
    """lib.config validates a profile with pydantic alone; what needs torch, pml, timm or lib.data
    (a run's components, backbone, augmentation and data options) is lib.train.check_run's."""
    graph = _graph()
    config = {m for m in graph if m == "lib.config" or m.startswith("lib.config.")}
    assert {d for m in config for d in graph[m]} <= config | {"lib.errors", "lib.paths"}
    probe = ("import sys, lib.config; print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in "
             "('torch', 'pytorch_metric_learning', 'timm', 'numpy') or m in ('lib.components', 'lib.data', 'lib.train'))))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=LIB.parent, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [], f"import lib.config imported {out.stdout.split()}"
