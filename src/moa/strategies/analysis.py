"""`analysis`: Fusion-style — the aggregator first analyses the proposals as JSON (consensus,
contradictions, partial coverage, unique insights, blind spots), then writes the answer from
the proposals and that analysis (the second call is the streamed one).

The analysis is asked for with a JSON schema where the model's provider declares `json_schema`
(OpenAI's `response_format`, llama.cpp's grammar), and in words elsewhere; either way it is
parsed leniently: the first JSON object in the reply, missing keys empty. It is kept in the
trace (the `analyst` call's `data`). An analysis that fails or is not JSON still lets the
answer be written: from the proposals and the analyst's raw text, or the proposals alone.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from moa.events import AggregatorStarted, Event
from moa.strategies.base import Stage, Step, Traits, aggregator_step, consult
from moa.strategies.synthesize import synthesis_steps, synthesize, synthesize_instead
from moa.types import ResponseFormat

FIELDS = ("consensus", "contradictions", "partial_coverage", "unique_insights", "blind_spots")

ANALYSIS_SCHEMA = ResponseFormat(
    "proposal_analysis",
    {
        "type": "object",
        "properties": {f: {"type": "array", "items": {"type": "string"}} for f in FIELDS},
        "required": list(FIELDS),
        "additionalProperties": False,
    },
)

ANALYSIS_PROMPT = (
    "You have been provided with a set of responses from various models to the latest user "
    "query. Do not answer the query. Analyse the responses and reply with a JSON object only, "
    "with these keys, each a list of short strings:\n"
    '- "consensus": points most responses agree on;\n'
    '- "contradictions": points where responses disagree, and which side is right if you can '
    "tell;\n"
    '- "partial_coverage": parts of the query only some responses address;\n'
    '- "unique_insights": valuable points made by only one response;\n'
    '- "blind_spots": what every response missed or got wrong.\n\nResponses from models:'
)

FUSE_PROMPT = (
    "You have been provided with a set of responses from various models to the latest user "
    "query, and an analysis of them. Using the analysis, write a single, high-quality response: "
    "keep what the responses agree on, resolve their contradictions, include the valuable "
    "unique insights and cover the blind spots. Do not mention the responses or the analysis."
    "\n\nAnalysis:\n{analysis}\n\nResponses from models:"
)


def parse_analysis(text: str) -> dict[str, list[str]] | None:
    """The first JSON object in `text` with each field as a list of strings (missing: empty),
    or None when there is no JSON object."""
    decoder = json.JSONDecoder()
    start = text.find("{")
    while start != -1:
        try:
            found, _ = decoder.raw_decode(text, start)
        except ValueError:
            start = text.find("{", start + 1)
            continue
        if isinstance(found, dict):
            return {f: _strings(found.get(f)) for f in FIELDS}
        start = text.find("{", start + 1)
    return None


def _strings(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list):
        return [v if isinstance(v, str) else json.dumps(v, ensure_ascii=False) for v in value]
    return [value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)]


class Analysis(Traits):
    name = "analysis"

    async def worst_case(self, stage: Stage) -> list[Step]:
        """The analysis, then the answer written with it in the prompt."""
        references = stage.references
        if len(references) < 2:
            return await synthesis_steps(stage, references)
        analyst = aggregator_step(
            stage, references, ANALYSIS_PROMPT, response_format=ANALYSIS_SCHEMA
        )
        fuse = FUSE_PROMPT.format(analysis="")
        return [analyst, *await synthesis_steps(stage, references, fuse, reads=(analyst,))]

    async def aggregate(self, stage: Stage) -> AsyncIterator[Event]:
        references = stage.references
        if len(references) < 2:
            async for event in synthesize_instead(
                stage, references, "analysis: fewer than two proposals"
            ):
                yield event
            return
        yield AggregatorStarted(stage.number, stage.aggregator.agent.model)
        record, _ = await consult(
            stage, "analyst", references, ANALYSIS_PROMPT, response_format=ANALYSIS_SCHEMA
        )
        if record is None:
            async for event in synthesize_instead(
                stage, references, "analysis: the analyst failed"
            ):
                yield event
            return
        parsed = parse_analysis(record.output)
        record.data = parsed
        if parsed is None:
            stage.result.notes.append(
                "analysis: the analyst's reply held no JSON object — its text was used as is"
            )
        shown = record.output.strip() if parsed is None else json.dumps(parsed, indent=1)
        async for event in synthesize(stage, references, FUSE_PROMPT.format(analysis=shown)):
            yield event
