"""Imports point one way: the base never imports a method, and a method never imports a sibling method."""
import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "adlib"
METHODS = PKG / "methods"


def _method_of(path: Path) -> str | None:
    """'dpa' for adlib/methods/dpa/x.py, 'egbad' for adlib/methods/egbad.py, None outside methods/."""
    try:
        rel = path.relative_to(METHODS)
    except ValueError:
        return None
    return rel.parts[0].removesuffix(".py") if rel.parts[0] != "__init__.py" else "__init__"


def _imported_modules(path: Path) -> set[str]:
    """Absolute dotted names of every adlib module ``path`` imports (relative imports resolved)."""
    package = ".".join(path.relative_to(PKG.parent).with_suffix("").parts)
    package = package.rsplit(".", 1)[0]  # the package a relative import starts from (also for __init__.py)
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return {n for n in names if n.startswith("adlib")}


SOURCES = sorted(p for p in PKG.rglob("*.py") if "__pycache__" not in p.parts)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PKG)))
def test_imports_point_one_way(path):
    owner = _method_of(path)
    for name in _imported_modules(path):
        parts = name.split(".")
        if len(parts) < 3 or parts[1] != "methods":
            continue
        target = parts[2]
        if owner is None:
            # the registry (detectors.create) loads adlib.methods lazily by name; nothing else in the base may
            assert path.name == "detectors.py" and target in {"", "__init__"} | {p.stem for p in METHODS.iterdir()}, \
                f"base module {path.relative_to(PKG)} imports method module {name}: move the shared part to the base"
        elif owner != "__init__":
            assert target == owner, (f"method module {path.relative_to(PKG)} imports sibling method {name}: move the "
                                     "shared part to the base (e.g. adlib/gan.py)")


def test_the_checker_sees_a_sibling_import(tmp_path):
    """The test above is not vacuous: egbad.py's own imports are parsed and resolved."""
    names = _imported_modules(METHODS / "egbad.py")
    assert "adlib.gan" in names and not any(n.startswith("adlib.methods.adversarial_ae") for n in names)
