# Copyright 2026 The dagrpo-verl Authors
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""``dagrpo_verl.reward.compute_score`` on anything a policy can write (hypothesis + named hostile cases).

Whatever the response (random Unicode with lone surrogates, NUL bytes, LaTeX fragments, deep
nesting, megabytes, None) and whatever the ground truth (text or a finite number), every call
returns the same six keys with 0/1 values, raises nothing, and ends within
``BOUND_S`` = the grading bound plus a generous allowance for starting a replacement grading
process (a multiple of the ~2 s measured, not a micro-benchmark). Real grading processes and
math-verify; the judge is off (``backend: none``: its own tests cover it).
"""

from __future__ import annotations

import asyncio
import math
import time

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from dagrpo_verl.fields import ACC, GRADE_ERROR, GRADE_TIMEOUT, JUDGE_SCORE, REWARD_ERROR
from dagrpo_verl.grading import GroundTruthError
from dagrpo_verl.reward import compute_score

TIMEOUT_S = 2.0
BOUND_S = TIMEOUT_S + 30.0
KEYS = {"score", ACC, JUDGE_SCORE, GRADE_TIMEOUT, GRADE_ERROR, REWARD_ERROR}
SETTINGS = {"judge": {"backend": "none"}, "grading": {"timeout_s": TIMEOUT_S, "workers": 1}}

_FRAGMENTS = [
    "\\boxed{",
    "}",
    "{",
    "10^{",
    "\\frac{1}{",
    "2",
    "\\sqrt{3}",
    "(2+\\sqrt{3})^{1000}",
    "%",
    "\\%",
    "<answer>",
    "</answer>",
    "\x00",
    "\ud800",
    "\udfff",
    " 4 0/0",
    " 4 4/9",
    "\\text{",
    "ANSWER: ",
    "$",
    "\\[",
    "\\]",
    "[",
    "]",
    "\\left(",
    "\\right)",
    "^",
    "_",
    "!",
    "\\infty",
    "e",
    "x",
    "=",
    "\n",
    " " * 50,
    "VERDICT",
    "\u202e",
    "\ufeff",
    "𝟙",
    "½",
    "∞",
    "١٢٣",
    "C",
    "(B)",
    "'",
    '"',
]
responses = st.one_of(
    st.none(),
    st.text(st.characters(exclude_categories=()), max_size=300),  # any code point, lone surrogates included
    st.lists(st.sampled_from(_FRAGMENTS), max_size=80).map("".join),
    st.builds(
        lambda opener, closer, depth: opener * depth + closer * depth,
        st.sampled_from(["{", "\\frac{", "\\sqrt{", "(", "\\left(", "[", "\\boxed{"]),
        st.sampled_from(["}", ")", "]", ""]),
        st.integers(0, 20_000),
    ),
    st.builds(
        lambda piece, times: piece * times,
        st.sampled_from(["9", "ab ", "\\boxed{1}", "\ud800", "{"]),
        st.integers(0, 400_000),
    ),
)
ground_truths = st.one_of(
    st.text(st.characters(exclude_categories=()), min_size=1, max_size=40),
    st.lists(st.sampled_from(_FRAGMENTS), min_size=1, max_size=10).map("".join),
    st.integers(-(10**30), 10**30),
    st.floats(allow_nan=False, allow_infinity=False),
)
data_sources = st.sampled_from(["math", "gpqa", "arc_c", "mmlu_pro", "", "olympiad_bench", "\ud800"])


def _score(response, ground_truth, data_source="math", extra_info=None) -> tuple[dict, float]:
    start = time.monotonic()
    result = asyncio.run(compute_score(data_source, response, ground_truth, extra_info, **SETTINGS))
    return result, time.monotonic() - start


def _check(result: dict, seconds: float) -> None:
    assert set(result) == KEYS
    assert result["score"] in (0.0, 1.0) and result[ACC] == result["score"]
    assert result[GRADE_TIMEOUT] in (0.0, 1.0) and result[GRADE_ERROR] in (0.0, 1.0)
    assert result[REWARD_ERROR] == 0.0  # a response never makes scoring raise: only a row can
    assert math.isnan(result[JUDGE_SCORE])
    if result[GRADE_TIMEOUT] or result[GRADE_ERROR]:
        assert result["score"] == 0.0
    assert seconds <= BOUND_S, f"call took {seconds:.1f} s > {BOUND_S} s"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(response=responses, ground_truth=ground_truths, data_source=data_sources)
@example(response="\\boxed{10^{10^{10}}}", ground_truth="1", data_source="math")
@example(response="\ud800\\boxed{7}\x00", ground_truth="7", data_source="math")
@example(response=None, ground_truth=1e20, data_source="math")
def test_compute_score_never_raises_and_stays_within_the_bound(response, ground_truth, data_source):
    _check(*_score(response, ground_truth, data_source))


@pytest.mark.parametrize(
    "name, response, truth, source, expected",  # expected None: any score, as long as the call is sound
    [
        ("lone surrogate", "\ud800 so \\boxed{7}", "7", "math", 1.0),
        ("NUL bytes", "\x00" * 1000 + "\\boxed{7}\x00", "7", "math", 1.0),
        ("None", None, "7", "math", 0.0),
        ("10 MB of text", "a" * 10_000_000 + " \\boxed{7}", "7", "math", 1.0),
        ("deep braces", "{" * 200_000 + "}" * 200_000, "7", "math", 0.0),
        ("deep fractions", "\\boxed{" + "\\frac{1}{" * 3000 + "2" + "}" * 3001, "7", "math", 0.0),
        ("unclosed answer tags", "<answer>" * 100_000 + "7", "7", "math", None),
        ("spaces after ANSWER", "ANSWER:" + " " * 100_000, "C", "gpqa", 0.0),
        ("tower of powers", "\\boxed{10^{10^{10}}}", "1", "math", 0.0),
        ("1e20 as a float ground truth", "\\boxed{10^{20}}", 1e20, "math", 1.0),
        ("e + 20 is not 1e20", "\\boxed{e+20}", 1e20, "math", 0.0),
        ("mixed number 4 0/0 is not 0", "4 0/0", "0", "math", 0.0),
    ],
)
def test_named_hostile_responses(name, response, truth, source, expected):
    result, seconds = _score(response, truth, source)
    _check(result, seconds)
    assert expected is None or result["score"] == expected, name


@pytest.mark.parametrize("truth", [float("nan"), float("inf"), True, None, ["7"]])
def test_a_bad_ground_truth_is_a_counted_failure_naming_the_field(truth):
    """docs/reliability.md: the row scores 0, reward_error = 1, and the kept example names the field."""
    from dagrpo_verl.reward import pop_error_examples

    pop_error_examples()
    result, seconds = _score("\\boxed{7}", truth)
    assert result[REWARD_ERROR] == 1.0 and result["score"] == 0.0 and math.isnan(result[JUDGE_SCORE])
    assert seconds <= BOUND_S
    assert any(GroundTruthError.__name__ in e and "reward_model.ground_truth" in e for e in pop_error_examples())


def test_extra_info_of_the_wrong_type_is_a_counted_failure():
    result, _ = _score("\\boxed{7}", "7", extra_info=["question"])
    assert result[REWARD_ERROR] == 1.0 and result["score"] == 0.0
