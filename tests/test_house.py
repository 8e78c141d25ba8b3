"""The house rules that no linter checks for us (CONTRIBUTING.md): a module uses another module's public names only."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "src" / "brainmri").rglob("*.py")) + sorted((ROOT / "bench").rglob("*.py"))


def private_imports(path: Path) -> list[str]:
    """`from brainmri.x import _name` (or a relative `from .x import _name`) in *path*, as 'file:line name'."""
    name = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").split(".")[0] == "brainmri"):
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append(f"{name}:{node.lineno} {alias.name}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("brainmri.") and any(part.startswith("_") for part in alias.name.split(".")):
                    found.append(f"{name}:{node.lineno} {alias.name}")
    return found


def test_sources_are_found():
    assert len(SOURCES) > 100


def test_no_module_imports_another_modules_underscore_name():
    found = [line for path in SOURCES for line in private_imports(path)]
    assert not found, "make these names public (drop the underscore) or keep them in their module:\n" + "\n".join(found)


@pytest.mark.parametrize(
    "code",
    ["from brainmri.runs.plan import _Draft\n", "from .plan import _Draft\n", "import brainmri.runs._private\n"],
)
def test_the_check_sees_a_private_import(tmp_path, code):
    module = tmp_path / "bad.py"
    module.write_text(code)
    assert private_imports(module) == [f"{module}:1 {code.split()[-1]}"]


def test_the_check_allows_public_and_dunder_names(tmp_path):
    module = tmp_path / "good.py"
    module.write_text("from brainmri.version import __version__\nfrom brainmri.runs.plan import read_training_data\n")
    assert private_imports(module) == []
