"""docs/reference/environment.md lists every environment variable moa reads, and only those: the
names are found in src/moa by reading its code (what `os.environ`, `os.getenv`, an `env`
mapping or a typer `envvar=` is asked for, constants and f-strings resolved; and a module's
`ENV_*` constants, the names it hands its own reader), and the built-in providers' key
variables from the registry."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from moa.providers.registry import BUILTIN_PROVIDERS

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "src" / "moa"
PAGE = ROOT / "docs" / "reference" / "environment.md"
NAME = re.compile(r"[A-Z][A-Z0-9_]*(<[A-Z]+>[A-Z0-9_]*)*")
# What the environment is called where it is read: os.environ, a Mapping passed in as `env`.
MAPPINGS = {"environ", "env", "_env"}


def _receiver(node: ast.expr) -> str | None:
    while isinstance(node, ast.Attribute):
        if node.attr in MAPPINGS:
            return node.attr
        node = node.value
    return node.id if isinstance(node, ast.Name) and node.id in MAPPINGS else None


def _name(node: ast.expr, constants: dict[str, str]) -> str | None:
    """The variable's name a read asks for: a literal, a module constant, or an f-string whose
    placeholders become `<NAME>` (`MOA_<NAME>_BASE_URL`); None for what only runs know."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name):
        return constants.get(node.id)
    if isinstance(node, ast.JoinedStr):
        parts = [v.value if isinstance(v, ast.Constant) else "<NAME>" for v in node.values]
        return "".join(str(p) for p in parts)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        return NAMERS.get(node.func.id)  # a helper that builds the name (`base_url_variable`)
    return None


def namers(source: str) -> dict[str, str]:
    """Functions whose whole body returns an f-string: the variable names they build."""
    found = {}
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.FunctionDef):
            continue
        body = [
            b
            for b in node.body
            if not (isinstance(b, ast.Expr) and isinstance(b.value, ast.Constant))
        ]
        if (
            len(body) == 1
            and isinstance(body[0], ast.Return)
            and isinstance(body[0].value, ast.JoinedStr)
        ):
            name = _name(body[0].value, {})
            if name is not None and NAME.fullmatch(name):
                found[node.name] = name
    return found


def read_names(source: str) -> set[str]:
    """The environment variables one module reads."""
    tree = ast.parse(source)
    constants = {
        target.id: node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    asked: list[ast.expr] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            method = func.attr if isinstance(func, ast.Attribute) else None
            if node.args and (
                method == "getenv" or (method == "get" and _receiver(func.value) is not None)
            ):
                asked.append(node.args[0])
            asked += [k.value for k in node.keywords if k.arg == "envvar"]
        read = isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load)
        if read and _receiver(node.value) is not None:
            asked.append(node.slice)
    names = {_name(node, constants) for node in asked}
    names |= {value for name, value in constants.items() if name.startswith("ENV_")}
    return {n for n in names if n is not None and NAME.fullmatch(n)}


NAMERS = {
    k: v for p in SOURCE.rglob("*.py") for k, v in namers(p.read_text(encoding="utf-8")).items()
}


def code_names() -> set[str]:
    found = set().union(*(read_names(p.read_text(encoding="utf-8")) for p in SOURCE.rglob("*.py")))
    keys = {c.api_key_env for c in BUILTIN_PROVIDERS.values() if c.api_key_env}
    return found | keys


def page_names(text: str) -> set[str]:
    """The first column of the page's tables."""
    return set(re.findall(r"^\| `([^`]+)` \|", text, flags=re.MULTILINE))


def test_the_page_lists_every_variable_moa_reads_and_no_other() -> None:
    listed, read = page_names(PAGE.read_text(encoding="utf-8")), code_names()
    assert read - listed == set(), f"read by src/moa, missing from {PAGE.name}"
    assert listed - read == set(), f"in {PAGE.name}, read nowhere in src/moa"


def test_the_scan_finds_each_way_moa_reads_a_variable() -> None:
    source = """
import os
ENV_X = "MOA_X"
ENV_Z = "MOA_Z"  # read by a helper that takes the name
OTHER = "NOT_READ"
def f(env, self, name):
    os.environ.get("MOA_A")
    os.getenv("MOA_B", "")
    os.environ["MOA_C"]
    env.get(ENV_X)
    self._env.get(f"MOA_{name.upper()}_BASE_URL", "")
    typer.Option("--y", envvar="MOA_Y")
    os.environ["MOA_WRITTEN"] = "1"
    other.get("NOT_ENV")
    env.get(name)
"""
    assert read_names(source) == {
        "MOA_A",
        "MOA_B",
        "MOA_C",
        "MOA_X",
        "MOA_<NAME>_BASE_URL",
        "MOA_Y",
        "MOA_Z",
    }


def test_the_page_is_read_from_its_tables() -> None:
    text = "| variable | what |\n|---|---|\n| `MOA_A` | a |\nsee `MOA_B` in prose\n"
    assert page_names(text) == {"MOA_A"}
