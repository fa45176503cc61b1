"""llama.cpp built with AMX kernels loads its models without them unless MOA_LOCAL_AMX=1: on
VMs that advertise AMX but fault on its first tile instruction, the process died."""

from __future__ import annotations

import pytest

from conftest import needs_local
from moa.providers.local import model

pytestmark = [needs_local]


def test_moa_local_amx_says_the_kernels_run_here(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOA_LOCAL_AMX", "1")
    assert model._amx_built_in() is False


def test_the_build_is_read_when_nothing_is_said(monkeypatch: pytest.MonkeyPatch) -> None:
    import llama_cpp

    monkeypatch.delenv("MOA_LOCAL_AMX", raising=False)
    built = b"AMX_INT8 = 1" in llama_cpp.llama_print_system_info()
    assert model._amx_built_in() is built


def test_models_load_without_extra_buffers_inside_the_guard_only() -> None:
    from llama_cpp import llama_cpp

    with model._without_extra_buffers():
        assert llama_cpp.llama_model_default_params().use_extra_bufts is False
    assert llama_cpp.llama_model_default_params().use_extra_bufts is True
