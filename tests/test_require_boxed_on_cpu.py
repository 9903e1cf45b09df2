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
"""`require_boxed`: only the response's last \\boxed{} is an answer (real math-verify, real reward function)."""

import asyncio

import pytest

from dagrpo_verl.grading import grade, grade_math
from dagrpo_verl.reward import compute_score


@pytest.mark.parametrize(
    "response, expected_loose, expected_boxed",
    [
        ("random text 7 more text", True, False),  # a bare number is an answer only by default
        ("so \\boxed{7}", True, True),
        ("\\boxed{3} then 7", False, False),  # math-verify prefers the boxed answer either way
        ("\\boxed{3+4}", True, True),
    ],
)
def test_require_boxed_reads_only_the_boxed_answer(response, expected_loose, expected_boxed):
    assert grade_math(response, "7") is expected_loose
    assert grade_math(response, "7", require_boxed=True) is expected_boxed
    assert grade(response, "7", "dagrpo/synthetic_sum", require_boxed=True) is expected_boxed


def test_reward_kwarg_reaches_the_grader():
    unboxed = asyncio.run(compute_score("dagrpo/synthetic_sum", "4 + 3 gives 7", "7", {}))
    strict = asyncio.run(compute_score("dagrpo/synthetic_sum", "4 + 3 gives 7", "7", {}, require_boxed=True))
    assert unboxed["score"] == 1.0 and strict["score"] == 0.0
    assert (
        set(unboxed) == set(strict) == {"score", "acc", "judge_score", "grade_timeout", "grade_error", "reward_error"}
    )
