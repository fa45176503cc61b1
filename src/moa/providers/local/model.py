"""One GGUF loaded into llama.cpp (`LoadedModel`): the piece the provider, its batch scheduler
and the batch's sequences all read, so it lives below all three."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from moa.errors import MissingExtraError
from moa.providers.local.threads import ThreadChoice, ThreadGovernor, ThreadSetter
from moa.types import Message


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


def _amx_built_in() -> bool:
    """Whether this llama.cpp was compiled with AMX kernels (a build with -march=native on a
    CPU that advertises AMX), and moa has not been told they run here (MOA_LOCAL_AMX=1).

    On Firecracker VMs whose CPU advertises AMX, and whose kernel even grants the tile
    permission, the first `tileloadd` raises SIGILL: llama.cpp died in its AMX matmul on the
    first batch of more than one token (measured here: every `moa ask`). Its AMX weights are one
    of its "extra buffer types", which load with the model; moa loads without them."""
    if os.environ.get("MOA_LOCAL_AMX", "").strip() == "1":
        return False
    import llama_cpp

    return b"AMX_INT8 = 1" in llama_cpp.llama_print_system_info()


@contextmanager
def _without_extra_buffers() -> Iterator[None]:
    """llama-cpp-python's `Llama` takes no `use_extra_bufts`: the defaults it builds its
    model parameters from are amended while it loads (on the llama thread only)."""
    from llama_cpp import llama_cpp

    default = llama_cpp.llama_model_default_params

    def amended() -> Any:
        params = default()
        params.use_extra_bufts = False
        return params

    llama_cpp.llama_model_default_params = amended
    try:
        yield
    finally:
        llama_cpp.llama_model_default_params = default


class LoadedModel:
    """A GGUF loaded into llama.cpp, with what moa reads of it: its chat template, how it
    tokenizes a prompt, and its context size, and how many threads each decode gets
    (`n_threads`: that many always; None: chosen from the machine's load). Used on the llama
    thread only."""

    def __init__(self, path: Path, n_ctx: int, n_threads: int | None) -> None:
        try:
            from llama_cpp import Llama
        except ImportError:
            raise MissingExtraError("llama-cpp-python", "local") from None
        _print_only_llama_errors()
        self.threads = ThreadSetter(ThreadGovernor(n_threads))
        first = self.threads.governor.current().threads
        with _without_extra_buffers() if _amx_built_in() else nullcontext():
            # Both counts: llama-cpp-python reads prompts on every core unless told otherwise.
            self.llama: Any = Llama(
                model_path=str(path),
                n_ctx=n_ctx,
                n_threads=first,
                n_threads_batch=first,
                verbose=False,
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

    def set_threads(self, ctx: object | None = None) -> ThreadChoice:
        """Give `ctx` (default: the `Llama`'s own context) the thread count for its next
        decode; returns what it runs with."""
        return self.threads.apply(self.llama._ctx.ctx if ctx is None else ctx)

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
        of the KV cache is reused: the batch's kept cells (moa.providers.local.batch), or
        llama-cpp-python's own cache when the call runs on the `Llama`."""
        if not self.chat_template:  # a base model: its completion prompt already ends open
            return render_completion(messages[:-1]) + messages[-1]["content"]
        head = [dict(m) for m in messages[:-1]]
        return str(self._chat_formatter()(messages=head).prompt) + messages[-1]["content"]

    def count_tokens(self, text: str) -> int:
        # Tokenizing reads the vocabulary only, not the context: safe beside a generation.
        return len(self.llama.tokenize(text.encode(), add_bos=False, special=False))


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
