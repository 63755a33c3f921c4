"""The rules of docs/architecture.md, checked: sizes, docstrings and ``__all__``, import layers."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CHECKED = ["assistant", "bench", "devtools", "app.py"]
MAX_FUNCTION_LINES = 60
MAX_MODULE_LINES = 500
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _sources() -> list[Path]:
    files: list[Path] = []
    for name in CHECKED:
        path = REPO / name
        files += [path] if path.is_file() else sorted(path.rglob("*.py"))
    return [f for f in files if "data" not in f.relative_to(REPO).parts]


def _functions(node: ast.AST, prefix: str = "") -> list[tuple[str, int]]:
    """(qualified name, length in lines) of every function under ``node``, nested ones too."""
    found: list[tuple[str, int]] = []
    for child in ast.iter_child_nodes(node):
        name = f"{prefix}{child.name}" if isinstance(child, ast.ClassDef) else prefix
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
            name = f"{prefix}{child.name}"
            found.append((name, (child.end_lineno or child.lineno) - child.lineno + 1))
        found += _functions(child, f"{name}." if name != prefix else prefix)
    return found


def _sizes() -> dict[str, int]:
    """Every module's and function's length in lines, by "path" and "path Class.function"."""
    sizes: dict[str, int] = {}
    for file in _sources():
        source = file.read_text(encoding="utf-8")
        rel = file.relative_to(REPO).as_posix()
        sizes[rel] = source.count("\n")
        for name, lines in _functions(ast.parse(source)):
            key = f"{rel} {name}"
            sizes[key] = max(sizes.get(key, 0), lines)
    return sizes


def _limit(key: str) -> int:
    return MAX_FUNCTION_LINES if " " in key else MAX_MODULE_LINES


def test_no_function_over_60_lines_and_no_module_over_500() -> None:
    over = {key: n for key, n in _sizes().items() if n > _limit(key)}
    assert over == {}, "over the limits of docs/architecture.md"


def test_the_size_check_sees_functions_nested_and_in_classes() -> None:
    tree = ast.parse("class A:\n    def f(self):\n        def g():\n            pass\n")
    assert dict(_functions(tree)) == {"A.f": 3, "A.f.g": 2}


def test_every_package_module_has_a_docstring_and_all() -> None:
    missing = []
    for file in sorted((REPO / "assistant").rglob("*.py")):
        tree = ast.parse(file.read_text(encoding="utf-8"))
        names = {
            t.id
            for node in tree.body
            if isinstance(node, ast.Assign | ast.AnnAssign)
            for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
            if isinstance(t, ast.Name)
        }
        if ast.get_docstring(tree) is None or "__all__" not in names:
            missing.append(str(file.relative_to(REPO)))
    assert missing == []


def _lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def lint_imports() -> Path:
    if not LINT_IMPORTS.exists():
        pytest.fail(f"{LINT_IMPORTS} is missing: `make install-dev` installs import-linter")
    return LINT_IMPORTS


@pytest.mark.usefixtures("lint_imports")
def test_the_tree_keeps_the_import_contracts() -> None:
    result = _lint_imports(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.usefixtures("lint_imports")
@pytest.mark.parametrize(
    ("module", "upward", "contract"),
    [
        ("assistant/index/lexical.py", "assistant.pipeline", "Layers"),
        ("assistant/chunking.py", "assistant.answer.extractive", "Layers"),
        ("assistant/pipeline.py", "assistant.evaluation.gate", "Layers"),
        ("assistant/serve/access.py", "assistant.index.build", "The server is a shell"),
    ],
)
def test_an_upward_import_breaks_a_contract(
    tmp_path: Path, module: str, upward: str, contract: str
) -> None:
    shutil.copytree(REPO / "assistant", tmp_path / "assistant")
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / module
    target.write_text(
        target.read_text(encoding="utf-8") + f"\nimport {upward}  # noqa: E402\n", encoding="utf-8"
    )
    result = _lint_imports(tmp_path)
    assert result.returncode != 0
    broken = result.stdout.split("Broken contracts", 1)[-1]
    assert contract in broken
    assert upward in broken
