"""moa.failures: one table says how each error looks at every edge, and the docs show that table."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from moa import errors
from moa.errors import (
    ConfigError,
    ContextLengthError,
    DegradedRunError,
    LayerFailedError,
    MissingAPIKeyError,
    MoAError,
    RunError,
    UpstreamStatusError,
    UpstreamTimeoutError,
)
from moa.failures import TABLE, classify, main, markdown, row_of
from moa.trace import Result

DOCS = Path(__file__).resolve().parent.parent / "docs"


def between_markers(page: Path, face: str) -> str:
    text = page.read_text(encoding="utf-8")
    found = re.search(rf"<!-- failures:{face} -->\n(.*?)<!-- /failures:{face} -->", text, re.S)
    assert found, f"{page.name} has no <!-- failures:{face} --> table"
    return found.group(1)


@pytest.mark.parametrize(("page", "face"), [("guide/cli.md", "cli"), ("serving/openai.md", "http")])
def test_the_docs_tables_are_the_rendered_ones(page: str, face: str) -> None:
    assert between_markers(DOCS / page, face) == markdown(face)


def test_every_error_class_resolves_to_a_row_that_keeps_the_trees_exit_codes() -> None:
    classes = [c for _, c in inspect.getmembers(errors, inspect.isclass) if issubclass(c, MoAError)]
    assert len(classes) > 20
    for cls in classes:
        row = row_of(cls)
        if issubclass(cls, ConfigError):  # the request's or the server's fault, before any call
            assert (row.exit, row.json) == (2, None) and row.status in (400, 500), cls
        elif issubclass(cls, DegradedRunError):
            assert (row.exit, row.json) == (3, "degraded"), cls
        else:
            assert row.exit == 1 and row.json is not None, cls


def test_a_subclass_without_a_row_takes_its_nearest_ancestors() -> None:
    assert (
        classify(ContextLengthError("too long", provider="p", model="m"))
        is TABLE[errors.ProviderError]
    )
    assert classify(MissingAPIKeyError("together", "TOGETHER_API_KEY")) is TABLE[errors.ConfigError]
    assert classify(RunError("x")) is TABLE[MoAError]
    assert classify(KeyError("not moa's")) is TABLE[MoAError]


def test_the_wire_code_and_the_failure_reason_are_separate_words() -> None:
    row = classify(LayerFailedError(0, [], Result()))
    assert (row.code, row.reason) == ("layer_failed", "all_proposers_failed")


def test_a_provider_errors_reason_is_its_typed_kind() -> None:
    limited = UpstreamStatusError("slow down", provider="p", model="m", status_code=429)
    assert classify(limited).failure_reason(limited) == "rate_limited"
    timeout = UpstreamTimeoutError("no answer", provider="p", model="m")
    assert classify(timeout).failure_reason(timeout) == "timeout"


def test_the_renderer_prints_a_faces_table(capsys: pytest.CaptureFixture[str]) -> None:
    main(["--markdown", "http"])
    assert capsys.readouterr().out == markdown("http")
