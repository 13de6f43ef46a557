"""The directories are the layers: a module imports only from its own layer and
the layers below it, and ``hdl/`` and ``firmware/`` never import each other."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: The layers from the bottom, each with the layers it may import.
MAY_IMPORT = {
    "core": set(),
    "hdl": {"core"},
    "firmware": {"core"},
    "sim": {"core", "hdl", "firmware"},
    "boards": {"core", "hdl", "firmware", "sim"},
    "app": {"core", "hdl", "firmware", "sim", "boards"},
}


def imported_layers(source):
    """``(line, layer)`` of every import of a zeroskip layer in ``source``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
            if node.module == "zeroskip":
                names += [f"zeroskip.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "zeroskip" and len(parts) > 1 and parts[1] in MAY_IMPORT:
                found.append((node.lineno, parts[1]))
    return found


def test_imports_follow_the_layers():
    wrong = []
    for layer, allowed in MAY_IMPORT.items():
        for path in sorted((ROOT / layer).rglob("*.py")):
            for line, other in imported_layers(path.read_text()):
                if other != layer and other not in allowed:
                    wrong.append(f"{path.relative_to(ROOT)}:{line}: imports zeroskip.{other}")
    assert wrong == []


def test_an_upward_import_is_found():
    source = "import numpy\nfrom zeroskip.app import api\nfrom zeroskip import core\n"
    assert imported_layers(source) == [(2, "app"), (3, "core")]
