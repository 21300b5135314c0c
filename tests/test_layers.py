"""The allowed import directions (docs/ARCHITECTURE.md, "Layers"), read from
the source with an AST walk: every ``import`` statement of every module in
backend/, workers/, bench/ and devtools/, at module level or inside a
function alike.

- the event contract (``workers.envelope``, ``workers.topics``,
  ``workers.journal``) imports neither Celery nor kombu, nor the Django
  project's views or models, nor the handlers;
- the Django project (backend/) never imports Celery or kombu, and reaches
  the Celery side through one named seam only: ``workers.replay``, imported
  lazily by ``core.deadletters``;
- no two modules import each other, directly or around a longer circle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# Where each root's modules are importable from (PYTHONPATH = the repo root and backend/).
ROOTS = {"workers": REPO, "bench": REPO, "devtools": REPO, "core": REPO / "backend",
         "e_clean_backend": REPO / "backend"}
CONTRACT = {"workers.envelope", "workers.topics", "workers.journal"}
# What backend/ may import from workers/: the contract, the Redis credential
# check every process shares, and the seam.
BACKEND_MAY_USE = CONTRACT | {"workers.preflight"}
SEAM = ("core.deadletters", "workers.replay")
CELERY = ("celery", "kombu")


def _module_name(path: Path) -> str:
    for root, base in ROOTS.items():
        top = base / root
        if path.is_relative_to(top):
            parts = path.relative_to(base).with_suffix("").parts
            return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    raise AssertionError(path)


def _modules() -> dict[str, Path]:
    found = {}
    for root, base in ROOTS.items():
        for path in sorted((base / root).rglob("*.py")):
            if "migrations" not in path.parts:
                found[_module_name(path)] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> list[tuple[str, bool]]:
    """(imported module, at module level?) for every import in ``path``."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(), str(path))
    top_level = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, id(node) in top_level) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([node.module] if node.module else []))
            for alias in node.names:
                # `from workers import envelope` imports the module workers.envelope.
                target = f"{base}.{alias.name}"
                found.append((target if target in MODULES else base, id(node) in top_level))
    return found


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _is(target: str, prefix: str) -> bool:
    return target == prefix or target.startswith(prefix + ".")


@pytest.mark.parametrize("module", sorted(CONTRACT))
def test_the_contract_imports_neither_celery_nor_django_nor_the_handlers(module):
    assert module in MODULES
    bad = [t for t, _ in GRAPH[module]
           if any(_is(t, p) for p in (*CELERY, "django", "core", "workers.handlers", "workers.tasks",
                                      "workers.celery"))]
    assert bad == [], f"{module} imports {bad}"


def test_the_django_project_reaches_celery_only_through_the_seam():
    wrong = []
    for name, imports in GRAPH.items():
        if not (_is(name, "core") or _is(name, "e_clean_backend")):
            continue
        for target, top_level in imports:
            if any(_is(target, p) for p in CELERY):
                wrong.append(f"{name} imports {target}")
            elif _is(target, "workers") and target not in BACKEND_MAY_USE:
                if (name, target) == SEAM and not top_level:
                    continue
                wrong.append(f"{name} imports {target}" + (" at module level" if top_level else ""))
    assert wrong == []


def test_the_web_side_of_workers_imports_no_celery():
    """What backend/ imports from workers/ (the contract, the preflight check)
    builds no Celery app: the web process stays free of Celery."""
    def reaches(module, seen):
        for target, _ in GRAPH.get(module, ()):
            if target not in seen:
                seen.add(target)
                reaches(target, seen)
        return seen

    for module in sorted(BACKEND_MAY_USE):
        reached = reaches(module, set())
        assert not [t for t in reached if any(_is(t, p) for p in CELERY) or _is(t, "workers.celery")], module


def test_workers_package_imports_nothing():
    """`celery -A workers` finds workers/celery.py by Celery's convention."""
    assert GRAPH["workers"] == []


def test_no_import_cycle():
    edges = {name: sorted({t for t, _ in imports if t in MODULES and t != name})
             for name, imports in GRAPH.items()}
    cycles, state = [], {}

    def visit(node, stack):
        state[node] = "open"
        stack.append(node)
        for nxt in edges[node]:
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = "done"

    for name in sorted(edges):
        if name not in state:
            visit(name, [])
    # A package importing its own submodules (`workers.handlers` listing its
    # modules) is not a circle unless the submodule imports the package back.
    assert cycles == []


def test_the_walk_sees_the_imports_it_must_see():
    """The walk itself: a known lazy import and a known relative one are found."""
    assert ("workers.replay", False) in GRAPH["core.deadletters"]
    assert ("workers.envelope", True) in GRAPH["workers.tasks"]
