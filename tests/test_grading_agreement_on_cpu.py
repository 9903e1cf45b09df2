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
"""Our grader against the labelled cases of peers' public grader test suites.

``benchmarks/data/peer_grading_cases.jsonl`` holds 379 (response, gold, expected) cases taken
from Math-Verify, lighteval, AReaL, TRL, NeMo-RL and DeepScaleR's tests (provenance per case;
``benchmarks/harvest_peer_grading_cases.py``). Every case is graded through the bounded path
the reward function uses (real grading processes, real math-verify). Measured (2026-11):
math 325/337 (96.4 %), multiple choice 41/42 (97.6 %); before the issue-11 fixes 310/337
(92.0 %) and 36/42 (85.7 %). The floors below allow two regressions each, and every case of a
class fixed for issue 11 must agree. The disagreements left are listed with their reason.
"""

from __future__ import annotations

import re

import pytest

from benchmarks.grader_agreement import load_cases, measure
from dagrpo_verl.grading.pool import GradingConfig, GradingPool

MATH_FLOOR = 323 / 337
CHOICE_FLOOR = 39 / 42

#: Cases we knowingly grade otherwise than the peer labelled them, and why.
KNOWN_DISAGREEMENTS = {
    "6c3b59478b7a": "gold '1,22' with a decimal comma reads as the pair (1, 22)",
    "78393e3abf37": "Math-Verify wants inline $...$ split over lines ignored; we read the 9",
    "a006d9d7c0d6": "same, \\( ... \\) split over lines",
    "8d11b828d113": "the peer grades at precision 2 (a test parameter); we use math-verify's default",
    "0fbabb49d759": "same, precision 1",
    "ab40c32392d7": "gold written with doubled backslashes (\\\\boxed) and no closing brace",
    "97281315efb6": "label says 1 - 1/e equals 1 + 1/e: a wrong answer stays 0",
    "7c3d040d53ef": "two solution pairs joined by \\quad \\text{and} in the gold",
    "8b2229a856d4": "gold is a text with three \\boxed answers",
    "f03244d5be79": "gold is a text with three \\boxed answers",
    "4eb29ac9dd71": "gold 'Test choice 1' is not an answer",
    "1639a9c7faa1": "'[45 degrees]': a unit inside the brackets",
    "01181baa77ce": "'Because B is valid' merely mentions B: no commitment (reward-hacking guard)",
}

#: Classes fixed for issue 11, as predicates over a case: every case of a class must agree.
FIXED_CLASSES = {
    "percent": lambda c: c["kind"] == "math" and ("%" in c["ground_truth"] or "percent" in c["response"]),
    "answer tags": lambda c: "<answer>" in c["response"],
    "letters": lambda c: c["kind"] == "choice",
    "bracketed numbers": lambda c: c["kind"] == "math" and re.search(r"(?<![\\A-Za-z])\[", c["response"]) is not None,
}


@pytest.fixture(scope="module")
def agreement():
    pool = GradingPool(GradingConfig(workers=2))
    try:
        yield measure(load_cases(), pool)
    finally:
        pool.close()


def test_agreement_floors(agreement):
    math_cases, choice = agreement["math"], agreement["choice"]
    assert (math_cases.cases, choice.cases) == (337, 42)
    assert math_cases.rate >= MATH_FLOOR, [d["id"] for d in math_cases.disagreements]
    assert choice.rate >= CHOICE_FLOOR, [d["id"] for d in choice.disagreements]
    assert math_cases.timeouts == choice.timeouts == 0


@pytest.mark.parametrize("name", sorted(FIXED_CLASSES))
def test_every_case_of_a_fixed_class_agrees(agreement, name):
    cases = [c for c in load_cases() if FIXED_CLASSES[name](c)]
    assert len(cases) >= 3, name  # the class is present in the peers' cases
    disagreeing = {d["id"] for a in agreement.values() for d in a.disagreements}
    unexplained = [c for c in cases if c["id"] in disagreeing and c["id"] not in KNOWN_DISAGREEMENTS]
    assert unexplained == [], [(c["id"], c["ground_truth"], c["response"][-80:]) for c in unexplained]


def test_disagreements_are_the_known_ones(agreement):
    disagreeing = {d["id"] for a in agreement.values() for d in a.disagreements}
    assert disagreeing <= set(KNOWN_DISAGREEMENTS), sorted(disagreeing - set(KNOWN_DISAGREEMENTS))
