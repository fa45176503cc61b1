"""The aggregate-and-synthesize prompt and how references are put in front of a model."""

from __future__ import annotations

from collections.abc import Sequence

from moa.types import Message

# Verbatim from the reference MoA code (utils.py / advanced-moa.py).
AGGREGATE_AND_SYNTHESIZE = (
    "You have been provided with a set of responses from various open-source models to the "
    "latest user query. Your task is to synthesize these responses into a single, high-quality "
    "response. It is crucial to critically evaluate the information provided in these responses, "
    "recognizing that some of it may be biased or incorrect. Your response should not simply "
    "replicate the given answers but should offer a refined, accurate, and comprehensive reply "
    "to the instruction. Ensure your response is well-structured, coherent, and adheres to the "
    "highest standards of accuracy and reliability.\n\nResponses from models:"
)


def references_block(prompt: str, references: Sequence[str], asked: int | None = None) -> str:
    """The prompt and the numbered references; with `asked` (more than were given), a line
    saying how many of how many are below, so that the answer is written knowing it."""
    count = ""
    if asked is not None and asked > len(references):
        count = (
            f"\n{len(references)} of the {asked} requested responses are below; the others "
            f"did not arrive (failed or timed out)."
        )
    return prompt + count + "".join(f"\n{i}. {ref}" for i, ref in enumerate(references, 1))


def inject_references(
    messages: Sequence[Message],
    references: Sequence[str],
    *,
    prompt: str = AGGREGATE_AND_SYNTHESIZE,
    system_role: bool = True,
    asked: int | None = None,
) -> list[Message]:
    """Return a copy of `messages` carrying the numbered references.

    As the reference code does: appended to an existing leading system message, else a new
    system message first. For chat templates without a system role (Gemma's) the block and any
    system message are folded into the first user turn instead.
    """
    out: list[Message] = [m.copy() for m in messages]
    if not references:
        return out
    block = references_block(prompt, references, asked)
    if out and out[0]["role"] == "system":
        out[0]["content"] = out[0]["content"] + "\n\n" + block
    else:
        out.insert(0, Message(role="system", content=block))
    return out if system_role else fold_system(out)


def fold_system(messages: Sequence[Message]) -> list[Message]:
    """Move leading system content into the first user turn, for templates without a system role."""
    out = list(messages)
    if not out or out[0]["role"] != "system":
        return out
    system = out.pop(0)["content"]
    for i, message in enumerate(out):
        if message["role"] == "user":
            out[i] = Message(role="user", content=system + "\n\n" + message["content"])
            return out
    return [Message(role="user", content=system), *out]


def with_system(messages: Sequence[Message], system: str | None) -> list[Message]:
    """`system` put first: merged before an existing leading system message, else inserted."""
    out = [m.copy() for m in messages]
    if system is None:
        return out
    if out and out[0]["role"] == "system":
        out[0] = Message(role="system", content=system + "\n\n" + out[0]["content"])
    else:
        out.insert(0, Message(role="system", content=system))
    return out


def with_examples(
    messages: Sequence[Message], examples: Sequence[tuple[str, str]]
) -> list[Message]:
    """Few-shot example turns put after any leading system message, before the conversation."""
    out = list(messages)
    if not examples:
        return out
    at = 1 if out and out[0]["role"] == "system" else 0
    turns: list[Message] = []
    for question, answer in examples:
        turns += [Message(role="user", content=question), Message(role="assistant", content=answer)]
    return [*out[:at], *turns, *out[at:]]


def place_system(messages: Sequence[Message]) -> list[Message]:
    """`messages` with each system turn after the conversation has begun (Anthropic's
    mid-conversation system messages, Claude Code's trailing one) joined to the user or tool
    turn before it, or else to the turn after it, marked `[system]`: for chat templates that
    take a system message first only, or refuse two user turns in a row."""
    out: list[Message] = []
    waiting: list[str] = []  # system text after an assistant turn, for the turn that follows
    for message in messages:
        turn = message.copy()
        if turn["role"] != "system" or all(m["role"] == "system" for m in out):
            if waiting and turn["role"] in ("user", "tool"):
                turn["content"] = _joined(*waiting, turn["content"])
                waiting = []
            out.append(turn)
        elif out[-1]["role"] in ("user", "tool"):
            out[-1] = out[-1].copy()
            out[-1]["content"] = _joined(out[-1]["content"], f"[system]\n{turn['content']}")
        else:
            waiting.append(f"[system]\n{turn['content']}")
    if waiting:  # the conversation ended on an assistant turn: nothing follows to join
        out.append(Message(role="user", content=_joined(*waiting)))
    return out


def _joined(*parts: str) -> str:
    return "\n\n".join(p for p in parts if p)
