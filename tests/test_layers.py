"""The source's shape: runtime's modules import each other without a
circle, and no module reaches into another module's private names.

Pure source checks (ast), no kernel needed.
"""

import ast
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("runtime", "lowlevel")

# private names of the standard library used on purpose: os._exit is the
# documented way out of a forked child; argparse has no public way to list
# a parser's actions (the CLI's Go-style flag rewriting needs them)
STDLIB_PRIVATE = {"_exit", "_actions", "_SubParsersAction"}


def _modules():
    for pkg in PACKAGES:
        for dirpath, _dirs, files in os.walk(os.path.join(REPO, pkg)):
            for fn in sorted(files):
                if fn.endswith(".py"):
                    path = os.path.join(dirpath, fn)
                    rel = os.path.relpath(path, REPO)[:-3].replace(os.sep, ".")
                    if rel.endswith(".__init__"):
                        rel = rel[: -len(".__init__")]
                    yield rel, path


def _parse(path):
    with open(path) as f:
        return ast.parse(f.read(), path)


def _absolute(module, node):
    """The module an ImportFrom names, made absolute."""
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    if not _is_package(module):
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _is_package(dotted):
    return os.path.isdir(os.path.join(REPO, *dotted.split(".")))


def _private(name):
    return name.startswith("_") and not name.startswith("__")


def _package_of(module):
    return module.split(".")[0]


def _runtime_nodes(tree):
    """Every node but those under ``if TYPE_CHECKING:`` (never run: an
    import there is for the type checker, it makes no circle)."""
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) \
                and node.test.id == "TYPE_CHECKING":
            for sub in node.body:
                skip.update(id(n) for n in ast.walk(sub))
    return [n for n in ast.walk(tree) if id(n) not in skip]


def test_runtime_imports_have_no_circle():
    graph = {}
    for module, path in _modules():
        if not module.startswith("runtime"):
            continue
        deps = set()
        for node in _runtime_nodes(_parse(path)):
            if isinstance(node, ast.ImportFrom):
                target = _absolute(module, node)
                if not target.startswith("runtime"):
                    continue
                if target == "runtime":  # from . import x: x is a module
                    deps |= {f"runtime.{a.name}" for a in node.names}
                else:
                    deps.add(target)
        graph[module] = deps - {module, "runtime"}
    circles = []

    def visit(node, stack):
        for dep in sorted(graph.get(node, ())):
            if dep in stack:
                circles.append(stack[stack.index(dep):] + [dep])
            elif dep not in done:
                visit(dep, stack + [dep])
        done.add(node)

    done = set()
    for module in sorted(graph):
        visit(module, [module])
    assert not circles, "import circles: " + "; ".join(" -> ".join(c) for c in circles)


def _is_module(dotted):
    base = os.path.join(REPO, *dotted.split("."))
    return os.path.exists(base + ".py") or os.path.isdir(base)


def _defined_here(tree):
    """Private names this module defines or assigns (as attributes too)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.alias):
            names.add(node.asname or node.name.split(".")[0])
    return {n for n in names if _private(n)}


def test_no_module_uses_another_modules_private_names():
    found = []
    for module, path in _modules():
        tree = _parse(path)
        mine = _defined_here(tree)
        pkg = _package_of(module)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                target = _absolute(module, node)
                if _package_of(target) not in PACKAGES:
                    continue
                names = [a.name for a in node.names]
                if _package_of(target) != pkg:
                    # another package: only its public modules and names
                    if any(_private(p) for p in target.split(".") + names):
                        found.append(f"{path}:{node.lineno}: from {target} import "
                                     + ", ".join(names))
                    continue
                # this package: its private modules, not another module's private names
                for name in names:
                    if _private(name) and not _is_module(f"{target}.{name}"):
                        found.append(f"{path}:{node.lineno}: from {target} import {name}")
            elif isinstance(node, ast.Attribute) and _private(node.attr):
                if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                    continue
                if node.attr in mine or node.attr in STDLIB_PRIVATE:
                    continue
                found.append(f"{path}:{node.lineno}: {ast.unparse(node)}")
    assert not found, "private names used across modules:\n" + "\n".join(found)


@pytest.mark.parametrize("pkg", PACKAGES)
def test_the_package_names_no_absolute_machine_path(pkg):
    """Nothing in the source names a path of one machine's checkout."""
    for module, path in _modules():
        if _package_of(module) != pkg:
            continue
        with open(path) as f:
            text = f.read()
        for bad in ("/work/", "/home/", "/root/"):
            assert bad not in text, f"{path} names {bad}"
