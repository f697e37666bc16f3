"""The package's import structure as docs/architecture.md draws it: every import of every module (those
inside functions too) read from the source, no module in an import circle, and each room importing only the
rooms below it."""

import ast
from pathlib import Path

import vidpred

PACKAGE = Path(vidpred.__file__).parent
# rooms from the bottom up (docs/architecture.md); a room may import its own modules and any lower floor's
FLOORS = [{"config", "raycompat", "net"}, {"console", "storage", "model"}, {"data", "cluster"}, {"train"},
          {"eval"}, {"tune"}, {"cli"}, {"__main__"}]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports() -> dict[str, set[str]]:
    """module → the vidpred modules it imports anywhere in its body."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found = set()
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
                targets = [base, *(f"{base}.{a.name}" for a in node.names)]
            else:
                continue
            found |= {t for t in targets if t in modules and t not in (name, "vidpred")}  # the package itself: a docstring
        graph[name] = found
    return graph


def room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_no_module_is_in_an_import_circle():
    graph = imports()
    circles = []

    def visit(node, stack, done):
        if node in stack:
            circles.append(stack[stack.index(node):] + [node])
            return
        if node in done:
            return
        for nxt in sorted(graph[node]):
            visit(nxt, stack + [node], done)
        done.add(node)

    done: set[str] = set()
    for node in sorted(graph):
        visit(node, [], done)
    assert not circles, "import circles: " + "; ".join(" -> ".join(c) for c in circles)


def test_rooms_import_only_the_floors_below():
    floor = {r: i for i, rooms in enumerate(FLOORS) for r in rooms}
    graph = imports()
    assert {room(m) for m in graph} - {"__init__"} <= set(floor), "a room docs/architecture.md does not place"
    upward = sorted(f"{m} -> {t}" for m, targets in graph.items() for t in targets
                    if room(m) != "__init__" and room(t) != room(m) and floor[room(t)] >= floor[room(m)])
    assert not upward, "imports that point up or sideways: " + ", ".join(upward)
