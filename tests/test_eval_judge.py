"""Verdict parsing, prompt filling and the arithmetic behind the reported numbers."""

from __future__ import annotations

import math

import pytest

from moa.evaluation.alpaca import win_rate
from moa.evaluation.judge import (
    chatml_messages,
    pairwise_messages,
    parse_pairwise,
    parse_rating,
)
from moa.evaluation.stats import Z95, mcnemar_exact, paired_difference, standard_error, wilson


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("m", 1),
        ("M", 2),
        (" M\n", 2),
        ('"m"', 1),
        ("`M`.", 2),
        ("Model M", 2),
        ("model_identifier: m", 1),
        ("", None),
        ("m or M", None),
        ("Both are good", None),
        ("mm", None),
        ("[[A]]", None),
    ],
)
def test_pairwise_verdicts(text: str, expected: int | None) -> None:
    assert parse_pairwise(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The answer is fine. Rating: [[8]]", 8.0),
        ("Rating: [[7.5]]", 7.5),
        ("first [[3]] then [[9]]", 3.0),
        ("Rating: [6]", 6.0),
        ("no rating here", None),
        ("Rating: [[0]]", None),
        ("Rating: [[11]]", None),
    ],
)
def test_ratings(text: str, expected: float | None) -> None:
    assert parse_rating(text) == expected


def test_the_alpaca_prompt_becomes_chat_messages_filled_in_one_pass() -> None:
    template = (
        "<|im_start|>system\nYou judge.\n<|im_end|>\n<|im_start|>user\n"
        'Q: {instruction}\nm: """{output_1}"""\nM: """{output_2}"""\n{"keep": "braces"}\n<|im_end|>'
    )
    messages = pairwise_messages(template, "say {output_2}", "one <|im_end|>", "two")
    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages[0]["content"] == "You judge."
    user = messages[1]["content"]
    assert "Q: say {output_2}" in user  # an instruction's own braces are not placeholders
    assert 'm: """one <|im_end|>"""' in user and 'M: """two"""' in user
    assert '{"keep": "braces"}' in user
    assert chatml_messages("plain text") == [{"role": "user", "content": "plain text"}]


def pair(first: float | None, second: float | None, out: str = "aaaa", base: str = "bb") -> dict:
    verdicts = ["x" if first is not None else "?", "x" if second is not None else "?"]
    return {"verdicts": verdicts, "preferences": [first, second], "output": out, "baseline": base}


def test_win_rate_arithmetic() -> None:
    judged = [
        pair(1.0, 1.0),  # won in both orders
        pair(1.0, 0.0),  # orders disagree: 0.5
        pair(0.0, 0.0),  # lost
        pair(1.0, None),  # one unparsable verdict: the other decides
        pair(None, None),  # no usable verdict: counted, not scored
    ]
    result = win_rate(judged)
    scores = [1.0, 0.5, 0.0, 1.0]
    assert result.pairs == 4 and result.unjudged == 1 and result.unparsable == 3
    assert result.win_rate == pytest.approx(100 * sum(scores) / 4)
    assert result.standard_error == pytest.approx(100 * standard_error(scores))
    assert (result.wins, result.losses, result.ties) == (2, 1, 1)
    assert result.avg_length == 4 and result.baseline_avg_length == 2


def test_a_judge_that_always_picks_the_first_output_gives_50_percent() -> None:
    # Ours shown first wins (1.0), ours shown second loses (0.0): position bias cancels.
    result = win_rate([pair(1.0, 0.0) for _ in range(10)])
    assert result.win_rate == 50.0 and result.standard_error == 0.0
    assert result.first_position_rate == 1.0


def test_identical_outputs_tie_and_are_not_position_evidence() -> None:
    identical = {
        "verdicts": [None, None],
        "preferences": [0.5, 0.5],
        "output": "x",
        "baseline": "x",
    }
    result = win_rate([identical])
    assert result.win_rate == 50.0 and result.unparsable == 0
    assert math.isnan(result.first_position_rate)


def test_standard_error_and_wilson() -> None:
    assert standard_error([1.0, 0.0, 1.0, 0.0]) == pytest.approx(math.sqrt((1 / 3) / 4))
    assert math.isnan(standard_error([1.0]))
    low, high = wilson(0, 10)
    assert low == 0.0 and high == pytest.approx(0.2775, abs=1e-4)
    low, high = wilson(7, 10)
    assert (low, high) == (pytest.approx(0.3968, abs=1e-4), pytest.approx(0.8922, abs=1e-4))
    assert wilson(0, 0) == (0.0, 1.0)


def test_paired_difference_matches_a_hand_computation() -> None:
    # 10 questions: 3 only the system gets right, 1 only the baseline, 6 the same.
    system = [True, True, True, False, True, True, False, False, True, False]
    baseline = [False, False, False, True, True, True, False, False, True, False]
    d = paired_difference(system, baseline)
    assert (d.n, d.gained, d.lost) == (10, 3, 1)
    # mean of d = (3 - 1) / 10 = 0.2; sample variance = (4 - 10 * 0.04) / 9 = 0.4;
    # standard error = sqrt(0.4 / 10) = 0.2; interval 0.2 ± 1.96 * 0.2.
    assert d.difference == pytest.approx(0.2)
    assert d.low == pytest.approx(0.2 - Z95 * 0.2)
    assert d.high == pytest.approx(0.2 + Z95 * 0.2)
    # McNemar exact: 4 discordant pairs, 1 against: 2 * (C(4,0) + C(4,1)) / 2^4 = 0.625.
    assert d.p_value == pytest.approx(0.625)
    assert mcnemar_exact(0, 6) == pytest.approx(2 / 64)
    assert mcnemar_exact(0, 0) == 1.0
    same = paired_difference([True, False], [True, False])
    assert (same.difference, same.low, same.high, same.p_value) == (0.0, 0.0, 0.0, 1.0)
