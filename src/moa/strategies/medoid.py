"""`medoid`: no model call — the proposal that agrees most with all the others, verbatim.

Universal self-consistency by lexical similarity: each answer is reduced to its gist (the
words of its first sentence that are neither in the question nor function words, numbers as
digits — "The capital of Germany is Berlin." and "Berlin." both give {berlin}), and the answer
whose gist has the largest summed Jaccard similarity to the others' wins; a tie goes to the
earliest proposal (list the greedy one first). Where `vote` needs equal answers, this finds the
consensus among differently worded ones; on short-answer questions with many cheap samples it
is what the embedded `local` recipe measured best (benchmarks/quality/RESULTS.md).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from moa.events import Event
from moa.strategies.agreement import normalize
from moa.strategies.base import Stage, Step, Traits, answer_with

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


def medoid(answers: Sequence[str], question: str) -> int:
    """The index of the answer closest to all the others (the earliest on a tie)."""
    gists = [gist(a, question) for a in answers]
    scores = [sum(jaccard(g, other) for other in gists) for g in gists]
    return scores.index(max(scores))


class Medoid(Traits):
    name = "medoid"
    answers_verbatim = True
    # Its answer is a proposal as written: tools, a response format or logprobs asked of the
    # final answer are refused up front (moa.strategies.base.refuse_unsupported).
    answers_verbatim = True

    async def worst_case(self, stage: Stage) -> list[Step]:
        return []  # no model call

    async def aggregate(self, stage: Stage) -> AsyncIterator[Event]:
        question = next((m["content"] for m in reversed(stage.messages) if m["role"] == "user"), "")
        winner = stage.proposals[medoid(stage.references, question)]
        why = f"medoid: the closest of {len(stage.proposals)} answers to the others"
        async for event in answer_with(stage, winner, why):
            yield event
