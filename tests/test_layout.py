"""The layout goal of issue 15 stays kept: no class over ~150 lines and no function over ~60
in src/moa (docstrings count; the measure is the span of the definition's lines)."""

from __future__ import annotations

import ast
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[1] / "src" / "moa"
LIMITS = {ast.ClassDef: 150, ast.FunctionDef: 60, ast.AsyncFunctionDef: 60}


def too_long(path: Path, root: Path) -> list[str]:
    """Each class or function of `path` over its limit, as `path:line kind name (n lines)`,
    the path relative to `root`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        limit = LIMITS.get(type(node))
        if limit is None:
            continue
        assert isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        lines = (node.end_lineno or node.lineno) - node.lineno + 1
        if lines > limit:
            kind = "class" if isinstance(node, ast.ClassDef) else "function"
            where = path.relative_to(root).as_posix()
            found.append(f"{where}:{node.lineno} {kind} {node.name} ({lines} lines > {limit})")
    return found


def test_no_class_over_150_lines_and_no_function_over_60() -> None:
    paths = sorted(SOURCE.rglob("*.py"))
    assert paths, f"no sources under {SOURCE}"
    found = [entry for path in paths for entry in too_long(path, SOURCE.parent)]
    assert not found, "split these along a real seam:\n" + "\n".join(found)


def test_the_check_names_each_class_and_function_too_long(tmp_path: Path) -> None:
    def block(header: str, lines: int) -> str:
        return header + "\n" + "\n".join(f"    x{i} = {i}" for i in range(lines - 1)) + "\n"

    sample = tmp_path / "sample.py"
    sample.write_text(
        block("def fits():", 60) + block("async def long():", 61) + block("class Big:", 151),
        encoding="utf-8",
    )
    assert too_long(sample, tmp_path) == [
        "sample.py:61 function long (61 lines > 60)",
        "sample.py:122 class Big (151 lines > 150)",
    ]
