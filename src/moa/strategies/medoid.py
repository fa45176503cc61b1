"""`medoid`: no model call — the proposal that agrees most with all the others, verbatim.

Universal self-consistency by lexical similarity: each answer is reduced to its gist: the
words of its final result where it has one (moa.strategies.final: the `answer_pattern`, the
last "Answer: …" line or the last number), else of its first sentence, leaving out words of
the question and function words, numbers as digits ("The capital of Germany is Berlin." and
"Berlin." both give {berlin}); the answer
whose gist has the largest summed Jaccard similarity to the others' wins; a tie goes to the
earliest proposal (list the greedy one first). Where `vote` needs equal answers, this finds the
consensus among differently worded ones; on short-answer questions with many cheap samples it
is what the embedded `local` recipe measured best (benchmarks/quality/RESULTS.md).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from moa.events import Event
from moa.strategies.agreement import normalize
from moa.strategies.base import Stage, Step, Traits
from moa.strategies.final import final_result
from moa.strategies.picked import answer_with_pick, patterns

FUNCTION_WORDS = frozenset(
    {
        *("a", "an", "the", "is", "are", "was", "were", "be", "been", "of", "in", "on", "at"),
        *("to", "for", "by", "with", "and", "or", "it", "its", "this", "that", "which", "what"),
        *("who", "whom", "whose", "when", "where", "how", "many", "much", "do", "does", "did"),
        *("called", "name", "answer", "i", "think", "my", "there", "has", "have", "had", "as"),
    }
)
_SENTENCE_ENDS = (". ", "! ", "? ")


def first_sentence(text: str) -> str:
    lines = text.strip().split("\n")
    sentence = lines[0] if lines else ""
    for mark in _SENTENCE_ENDS:
        sentence = sentence.split(mark)[0]
    return sentence


def gist(answer: str, question: str) -> frozenset[str]:
    words = normalize(first_sentence(answer)).split()
    asked = set(normalize(question).split())
    kept = frozenset(w for w in words if w not in asked and w not in FUNCTION_WORDS)
    return kept or frozenset(words)


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / len(a | b) if a | b else 1.0


def medoid(
    answers: Sequence[str], question: str, patterns: Sequence[str | None] | None = None
) -> int:
    """The index of the answer closest to all the others (the earliest on a tie), each answer
    read by its final result where it has one (moa.strategies.final), else its first sentence."""
    finals = [
        final_result(a, p) for a, p in zip(answers, patterns or [None] * len(answers), strict=True)
    ]
    gists = [
        gist(f.value if f is not None else a, question)
        for a, f in zip(answers, finals, strict=True)
    ]
    scores = [sum(jaccard(g, other) for other in gists) for g in gists]
    return scores.index(max(scores))


class Medoid(Traits):
    name = "medoid"
    answers_verbatim = True
    # Its answer is a proposal as written: tools, a response format or logprobs asked of the
    # final answer are refused up front (moa.engine.answering.refuse_unsupported).
    answers_verbatim = True

    async def worst_case(self, stage: Stage) -> list[Step]:
        return []  # no model call

    async def aggregate(self, stage: Stage) -> AsyncIterator[Event]:
        question = next((m["content"] for m in reversed(stage.messages) if m["role"] == "user"), "")
        found = patterns(stage)
        winner = stage.proposals[medoid(stage.references, question, found)]
        missing = sum(
            final_result(t, p) is None for t, p in zip(stage.references, found, strict=True)
        )
        if missing:
            stage.result.notes.append(
                f"medoid: {missing} of {len(found)} answers have no final result: read by their "
                f"first sentence"
            )
        why = f"medoid: the closest of {len(stage.proposals)} answers to the others"
        async for event in answer_with_pick(stage, winner, why):
            yield event
