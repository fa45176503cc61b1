"""The layout stays readable: no class over ~150 lines and no function over ~60 in src/moa
(docstrings count; the measure is the span of the definition's lines), and no formatter
marker squeezing statements under that limit; no import loop, counting
every import — at the top, inside a function, behind `if TYPE_CHECKING:`; about a dozen modules
at the package root; and every package says what it holds. The floors themselves (which may
import which) are import-linter's contract in pyproject.toml, run by .ci/run."""

from __future__ import annotations

import ast
from collections.abc import Iterator
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


# The formatter's opt-outs: lines squeezed by hand to keep a function under its limit.
MARKERS = ("fmt: skip", "fmt: off")


def squeezed(path: Path, root: Path) -> list[str]:
    """Each line of `path` that opts out of the formatter, as `path:line`."""
    lines = path.read_text(encoding="utf-8").splitlines()
    where = path.relative_to(root).as_posix()
    return [f"{where}:{n}" for n, line in enumerate(lines, 1) if any(m in line for m in MARKERS)]


def test_no_formatter_opt_out_in_src_moa() -> None:
    found = [entry for path in sorted(SOURCE.rglob("*.py")) for entry in squeezed(path, SOURCE)]
    assert not found, "let the formatter format these, and split the function instead:\n" + (
        "\n".join(found)
    )


def test_the_check_names_each_line_that_opts_out_of_the_formatter(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "x = [1,\n     2]  # fmt: skip\ny = 3\n# fmt: off\nz = 4\n# fmt: on\n", encoding="utf-8"
    )
    assert squeezed(sample, tmp_path) == ["sample.py:2", "sample.py:4"]


# -- import loops -------------------------------------------------------------------------------


def modules(root: Path) -> dict[str, Path]:
    """Every module under the package directory `root`, by dotted name."""
    found = {}
    for path in root.rglob("*.py"):
        parts = [root.name, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imported(path: Path, name: str, known: dict[str, Path]) -> set[str]:
    """The modules of `known` that module `name` imports, wherever the import stands."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]

    def owner(dotted: str) -> str | None:
        while dotted and dotted not in known:
            dotted = dotted.rpartition(".")[0]
        return dotted or None

    targets: set[str | None] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets.update(owner(alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            for alias in node.names:
                full = f"{base}.{alias.name}"
                targets.add(full if full in known else owner(base))
    return {t for t in targets if t is not None and t != name}


def loops(root: Path) -> list[list[str]]:
    """The import loops among the modules under `root` (strongly connected components of more
    than one module, Tarjan's algorithm), each sorted."""
    known = modules(root)
    graph = {name: imported(path, name, known) for name, path in known.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> Iterator[None]:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph[node]):
            if target not in index:
                yield from visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))
        yield None

    for name in sorted(graph):
        if name not in index:
            for _ in visit(name):
                pass
    return sorted(found)


def test_no_import_loop_in_src_moa_counting_every_import() -> None:
    assert loops(SOURCE) == [], "cut these loops (move a type down, or split a module)"


def test_the_loop_check_counts_imports_inside_functions_and_behind_type_checking(
    tmp_path: Path,
) -> None:
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg.b import B\n")
    (package / "b.py").write_text("def f():\n    from pkg import a\n")
    (package / "c.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .sub.d import D\n"
    )
    (package / "sub" / "d.py").write_text("from ..c import C\n")
    (package / "e.py").write_text("import pkg.a\n")  # imports into a loop, is not in one
    assert loops(package) == [["pkg.a", "pkg.b"], ["pkg.c", "pkg.sub.d"]]


# -- the package root and the packages' docstrings ---------------------------------------------


def test_about_a_dozen_modules_at_the_package_root() -> None:
    root = sorted(p.name for p in SOURCE.glob("*.py"))
    assert len(root) <= 12, f"{len(root)} modules at the root of src/moa: {root}"


def test_every_package_says_what_it_holds() -> None:
    for init in sorted(SOURCE.rglob("__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))) or ""
        assert len(doc.split()) >= 8 and "TODO" not in doc, f"{init}: say what the package holds"
