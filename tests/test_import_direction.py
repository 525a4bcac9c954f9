"""Imports point one way: the base never imports a method (by an import statement, `importlib`, `__import__` or a
module path in a string), a method never imports a sibling method, and the modules of adlib form no circle."""
import ast
import graphlib
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "adlib"
METHODS = PKG / "methods"
DYNAMIC_IMPORTERS = {"import_module", "__import__", "find_spec", "run_module"}  # importlib.*, builtins, runpy


def _method_of(path: Path) -> str | None:
    """'dpa' for adlib/methods/dpa/x.py, 'egbad' for adlib/methods/egbad.py, None outside methods/."""
    try:
        rel = path.relative_to(METHODS)
    except ValueError:
        return None
    return rel.parts[0].removesuffix(".py") if rel.parts[0] != "__init__.py" else "__init__"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _package_of(path: Path) -> str:
    """The package a relative import in ``path`` starts from (the module's own package; for __init__.py itself)."""
    name = ".".join(path.relative_to(PKG.parent).with_suffix("").parts)
    return name.rsplit(".", 1)[0]


def imported_modules(source: str, package: str) -> set[str]:
    """Absolute dotted names of every adlib module a source file imports, by any route: ``import``/``from``
    statements anywhere (top level or inside functions, relative ones resolved against ``package``), calls of
    ``importlib.import_module`` / ``__import__`` / ``find_spec`` / ``runpy.run_module`` with a string, and any
    string constant that is a module path of adlib (e.g. ``"adlib.methods"`` handed to a loader)."""
    names = set()

    def resolve(module: str, level: int) -> str:
        if not level:
            return module
        parent = package.split(".")[: len(package.split(".")) - level + 1]
        return ".".join(parent + ([module] if module else []))

    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            base = resolve(node.module or "", node.level)
            names.add(base)
            names.update(f"{base}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.Call):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if called in DYNAMIC_IMPORTERS and node.args and isinstance(node.args[0], ast.Constant) \
                    and isinstance(node.args[0].value, str):
                target = node.args[0].value
                level = len(target) - len(target.lstrip("."))
                names.add(resolve(target.lstrip("."), level) if level else target)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value.strip()
            if text.startswith("adlib.") and all(p.isidentifier() for p in text.split(".")):
                names.add(text)
    return {n for n in names if n == "adlib" or n.startswith("adlib.")}


def _imported_modules(path: Path) -> set[str]:
    return imported_modules(path.read_text(), _package_of(path))


SOURCES = sorted(p for p in PKG.rglob("*.py") if "__pycache__" not in p.parts)


def direction_errors(path: Path, names: set[str]) -> list[str]:
    owner, errors = _method_of(path), []
    for name in names:
        parts = name.split(".")
        if len(parts) < 2 or parts[1] != "methods":
            continue
        if owner is None:
            errors.append(f"base module {path.relative_to(PKG)} imports the method package {name}: the base must "
                          "not know a method (move the shared part to the base; detectors are found through the "
                          "entry-point table in pyproject.toml)")
        elif owner != "__init__" and len(parts) >= 3 and parts[2] != owner:
            errors.append(f"method module {path.relative_to(PKG)} imports sibling method {name}: move the shared "
                          "part to the base (e.g. adlib/gan.py)")
    return errors


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PKG)))
def test_imports_point_one_way(path):
    assert not direction_errors(path, _imported_modules(path))


def test_the_checker_sees_a_sibling_import():
    """The test above is not vacuous: egbad.py's own imports are parsed and resolved."""
    names = _imported_modules(METHODS / "egbad.py")
    assert "adlib.gan" in names and not any(n.startswith("adlib.methods.adversarial_ae") for n in names)


@pytest.mark.parametrize("code", [
    "import importlib\ndef load():\n    importlib.import_module('adlib.methods')",
    "def load():\n    from importlib import import_module\n    import_module('.methods', 'adlib')",
    "def load():\n    __import__('adlib.methods.vae')",
    "PLUGINS = ['adlib.methods.dpa']",
    "def create():\n    from .methods import vae",
])
def test_a_base_module_that_loads_a_method_by_any_route_fails(code):
    """The cases that must fail: a base module reaching a method through importlib, __import__, a module path in a
    string, or a lazy import inside a function (how the registry used to load adlib.methods)."""
    fake = PKG / "registry_example.py"  # never written: only its name is used to resolve the imports
    names = imported_modules(code, "adlib")
    assert direction_errors(fake, names), f"not caught: {code!r} -> {names}"


def test_a_base_module_may_name_methods_in_prose():
    assert not direction_errors(PKG / "x.py", imported_modules('"""never imports adlib.methods itself."""', "adlib"))


def _import_graph() -> dict[str, set[str]]:
    """adlib module -> the adlib modules it imports (any route, lazy imports included). ``from pkg import name``
    points at the submodule ``pkg.name`` when there is one, else at ``pkg``."""
    modules = {_module_name(p): p for p in SOURCES}
    graph = {}
    for name, path in modules.items():
        targets = set()
        for imported in _imported_modules(path):
            while imported and imported not in modules:  # "adlib.x.Class" -> "adlib.x"
                imported = imported.rpartition(".")[0]
            if imported and imported != name and not name.startswith(imported + "."):
                targets.add(imported)  # a module running its own package's __init__ is how Python imports work
        graph[name] = targets
    return graph


def test_adlib_has_no_import_circle():
    """No circle, counting lazy imports inside functions too: every module can be read from the leaves up."""
    graph = _import_graph()
    try:
        tuple(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as err:
        pytest.fail(f"import circle: {' -> '.join(err.args[1])}")


def test_the_circle_check_sees_a_circle():
    graph = {"adlib.a": {"adlib.b"}, "adlib.b": {"adlib.c"}, "adlib.c": {"adlib.a"}}
    with pytest.raises(graphlib.CycleError):
        tuple(graphlib.TopologicalSorter(graph).static_order())
    assert "adlib.data.imageset" in _import_graph()["adlib.experiment"]
