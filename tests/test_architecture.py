"""The house rules of docs/DESIGN.md, checked on every module: imports go down the layers only, no module reads
another's private names, no file grows past 450 lines."""

import ast
import pathlib

import pytest
from conftest import REPO

# folder -> the folders its modules may import from (itself included); cli is the face and may import anything
ALLOWED = {
    "errors": {"errors"},
    "core": {"errors", "core"},
    "io": {"errors", "core", "io"},
    "tokenize": {"errors", "core", "io", "tokenize"},
    "packers": {"errors", "core", "io", "tokenize", "packers"},  # tokenize lazily: a split decodes its rows
    "pipelines": {"errors", "core", "io", "tokenize", "packers", "pipelines"},
    "train_minimal": {"errors", "core", "io", "packers", "train_minimal"},
    "tools": {"errors", "core", "io", "tokenize", "packers", "pipelines", "tools"},
}
FOLDERS = {"pipelines": "pipelines", "tokenize": "tokenize", "packers": "packers", "train_minimal": "train_minimal"}
SHIMS = {"train_minimal/__main__.py"}  # `python -m slimpajama.train_minimal` is the command line's train
MAX_LINES = 450


def modules() -> dict[str, pathlib.Path]:
    """Dotted module name -> file, for every module of the installed namespace."""
    out = {}
    for top in ("slimpajama", *FOLDERS):
        for path in sorted((REPO / top).rglob("*.py")):
            rel = path.relative_to(REPO).with_suffix("")
            parts = list(rel.parts)
            if parts[0] != "slimpajama":
                parts = ["slimpajama", *parts]
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


MODULES = modules()


def folder(module: str) -> str:
    """slimpajama.io.storage -> io; slimpajama.pipelines.runner -> pipelines; slimpajama.errors -> errors."""
    return module.split(".")[1]


def imports(module: str, path: pathlib.Path) -> list[tuple[str, list[str], int]]:
    """(imported module, names imported from it, line) of every import of a project module, resolved."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, [], node.lineno) for a in node.names if a.name.split(".")[0] == "slimpajama"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "slimpajama":
                continue
            names = [a.name for a in node.names]
            # `from slimpajama.io import storage` imports the module slimpajama.io.storage
            subs = [n for n in names if f"{target}.{n}" in MODULES]
            out += [(f"{target}.{n}", [], node.lineno) for n in subs]
            rest = [n for n in names if n not in subs]
            if rest:
                out.append((target, rest, node.lineno))
    return out


def test_every_module_is_found():
    assert {"slimpajama.cli", "slimpajama.core.defaults", "slimpajama.io.discover", "slimpajama.pipelines.runner",
            "slimpajama.packers.format", "slimpajama.tokenize.encodings", "slimpajama.train_minimal.train",
            "slimpajama.tools.stats"} <= set(MODULES)


@pytest.mark.parametrize("module", sorted(m for m in MODULES if folder(m) in ALLOWED))
def test_imports_go_down_the_layers(module):
    path = MODULES[module]
    if path.relative_to(REPO).as_posix() in SHIMS:
        return
    wrong = [f"line {line}: {target}" for target, _, line in imports(module, path)
             if target.count(".") >= 1 and folder(target) not in ALLOWED[folder(module)]]
    assert not wrong, f"{module} ({folder(module)}) imports above its layer: {wrong}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_private_name_crosses_modules(module):
    path = MODULES[module]
    crossing = [f"line {line}: {target}.{n}" for target, names, line in imports(module, path) for n in names
                if n.startswith("_") and not n.startswith("__")]
    # attributes: a `_name` this module reads on another object, defined in another project module only
    tree = ast.parse(path.read_text())
    own = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute) and isinstance(n.ctx, ast.Store)}
    own |= {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.ClassDef | ast.AsyncFunctionDef)}
    own |= {t.id for n in ast.walk(tree) if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)}
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load) and node.attr.startswith("_")
                and not node.attr.startswith("__") and node.attr not in own
                and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
                and node.attr in PRIVATE_DEFINED):
            crossing.append(f"line {node.lineno}: .{node.attr}")
    assert not crossing, f"{module} reads private names of other modules: {crossing}"


def _private_definitions() -> set[str]:
    names = set()
    for path in MODULES.values():
        for n in ast.walk(ast.parse(path.read_text())):
            if isinstance(n, ast.Attribute) and isinstance(n.ctx, ast.Store) and n.attr.startswith("_"):
                names.add(n.attr)
            elif isinstance(n, ast.FunctionDef | ast.ClassDef) and n.name.startswith("_"):
                names.add(n.name)
    return {n for n in names if not n.startswith("__")}


PRIVATE_DEFINED = _private_definitions()


def test_no_file_is_over_450_lines():
    files = [p for top in ("slimpajama", *FOLDERS, "benchmarks", "tests") for p in (REPO / top).rglob("*.py")]
    long = {p.relative_to(REPO).as_posix(): n for p in files if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"split these by responsibility: {long}"


def test_the_checks_catch_what_they_are_for(tmp_path):
    """The import resolver sees relative and absolute imports of every spelling (else the checks pass vacuously)."""
    found = {t for t, _, _ in imports("slimpajama.pipelines.runner", MODULES["slimpajama.pipelines.runner"])}
    assert {"slimpajama.io.storage", "slimpajama.pipelines.markers", "slimpajama.core.ledger"} <= found
    assert "slimpajama.pipelines.faults" in found  # `from . import faults`


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports anywhere in its file (lazy and TYPE_CHECKING imports too)."""
    graph = {}
    for module, path in MODULES.items():
        deps = {t if t in MODULES else t.rsplit(".", 1)[0] for t, _, _ in imports(module, path)}
        graph[module] = {d for d in deps if d in MODULES and d != module}
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of two or more modules (Tarjan's algorithm, iterative)."""
    index, low, on_stack, stack, cycles, counter = {}, {}, set(), [], [], [0]
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            v, children = work[-1]
            w = next(children, None)
            if w is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    group = []
                    while True:
                        u = stack.pop()
                        on_stack.discard(u)
                        group.append(u)
                        if u == v:
                            break
                    if len(group) > 1:
                        cycles.append(sorted(group))
            elif w not in index:
                index[w] = low[w] = counter[0]
                counter[0] += 1
                stack.append(w)
                on_stack.add(w)
                work.append((w, iter(sorted(graph[w]))))
            elif w in on_stack:
                low[v] = min(low[v], index[w])
    return cycles


def test_no_import_circle_at_file_level():
    """documents -> paths -> export -> tokens -> documents and markers <-> stage were circles: a module's imports
    (lazy ones included) never lead back to it."""
    assert import_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]  # the check works
    assert not import_cycles(import_graph())
