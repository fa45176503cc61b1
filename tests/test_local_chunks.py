"""Embedded models shipped as chunk packages (the Qwen2.5-Coder GGUFs): the chunks are found
through their distributions' file lists without importing them, joined once into moa's cache,
and refused unless the joined bytes have the pinned SHA-256. Played with SmolLM2's real GGUF
cut into chunk packages made here, so the joined model really loads."""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import needs_local
from moa.errors import MissingExtraError, ModelIntegrityError
from moa.providers.local.chunks import QWEN_CODER, ChunkedGGUF, assembled

pytestmark = [needs_local]

PARTS = 3


def smollm2() -> Path:
    from moa.providers.local.provider import resolve_model_path

    return resolve_model_path("smollm2")


def install_chunks(site: Path, data: bytes, prefix: str = "moa-test-chunk-part") -> None:
    """Distributions as pip installs them: a package whose __init__ must never run, its
    data/partNN.bin, and a dist-info whose RECORD lists both."""
    size = -(-len(data) // PARTS)
    for number in range(1, PARTS + 1):
        package = f"{prefix.replace('-', '_')}{number}"
        (site / package / "data").mkdir(parents=True)
        (site / package / "__init__.py").write_text("raise RuntimeError('imported!')\n")
        part = site / package / "data" / f"part{number:02d}.bin"
        part.write_bytes(data[(number - 1) * size : number * size])
        info = site / f"{package}-0.1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {prefix}{number}\n")
        (info / "RECORD").write_text(
            f"{package}/__init__.py,,\n{package}/data/part{number:02d}.bin,,\n"
            f"{info.name}/METADATA,,\n{info.name}/RECORD,,\n"
        )


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "site-packages"
    path.mkdir()
    sys.path.insert(0, str(path))
    yield path
    sys.path.remove(str(path))


def chunked(sha256: str, prefix: str = "moa-test-chunk-part") -> ChunkedGGUF:
    return ChunkedGGUF("joined.gguf", prefix, PARTS, sha256, "qwen")


def test_the_chunks_are_joined_verified_and_the_model_loads(site: Path, tmp_path: Path) -> None:
    original = smollm2().read_bytes()
    install_chunks(site, original)
    model = chunked(hashlib.sha256(original).hexdigest())
    joined = assembled(model, tmp_path / "cache")
    assert joined.read_bytes() == original
    assert assembled(model, tmp_path / "cache") == joined  # once: the cache is reused

    from llama_cpp import Llama

    llama = Llama(model_path=str(joined), n_ctx=256, n_threads=1, verbose=False)
    assert llama.create_completion("Hello", max_tokens=2)["choices"][0]["text"] is not None
    assert "moa_test_chunk_part1" not in sys.modules  # found by file lists, never imported


def test_chunks_whose_bytes_differ_are_refused_naming_both_hashes(
    site: Path, tmp_path: Path
) -> None:
    original = smollm2().read_bytes()
    tampered = original[:1000] + b"\x00" + original[1001:]
    install_chunks(site, tampered)
    pinned = hashlib.sha256(original).hexdigest()
    with pytest.raises(ModelIntegrityError) as refused:
        assembled(chunked(pinned), tmp_path / "cache")
    message = str(refused.value)
    assert pinned in message and hashlib.sha256(tampered).hexdigest() in message
    assert "joined.gguf" in message
    assert list((tmp_path / "cache").iterdir()) == []  # nothing half-trusted left behind


def test_a_cached_file_changed_after_it_was_verified_is_refused(site: Path, tmp_path: Path) -> None:
    original = smollm2().read_bytes()
    install_chunks(site, original)
    model = chunked(hashlib.sha256(original).hexdigest())
    joined = assembled(model, tmp_path / "cache")
    with joined.open("r+b") as f:
        f.seek(2000)
        f.write(b"\xff")
    with pytest.raises(ModelIntegrityError, match="delete it"):
        assembled(model, tmp_path / "cache")


def test_a_missing_chunk_package_names_the_extra_to_install(tmp_path: Path) -> None:
    with pytest.raises(MissingExtraError, match=r'pip install -e "\.\[qwen\]"'):
        assembled(chunked("0" * 64, prefix="moa-test-absent-part"), tmp_path / "cache")


def test_the_qwen_models_are_pinned_to_their_published_hashes() -> None:
    assert QWEN_CODER["qwen2.5-coder-1.5b"].sha256 == (
        "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
    )
    assert QWEN_CODER["qwen2.5-coder-0.5b"].sha256 == (
        "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
    )
    assert (QWEN_CODER["qwen2.5-coder-1.5b"].parts, QWEN_CODER["qwen2.5-coder-0.5b"].parts) == (
        22,
        6,
    )
