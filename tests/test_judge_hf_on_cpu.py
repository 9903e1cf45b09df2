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
"""In-process transformers judge: prompt -> chat template -> generate -> parse.

Uses a tiny random Qwen2 built by ``dagrpo_verl.cpu.models.build_tiny_qwen2`` (seconds on CPU).
A random model writes no valid verdict, so this shows the plumbing and the parse-error
policy (two generations, then a missing score), not judging quality.
"""

import math

import pytest

from dagrpo_verl.cpu.models import build_tiny_qwen2
from dagrpo_verl.judge import Judge, JudgeItem, judge_config_from, pop_metrics


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return build_tiny_qwen2(tmp_path_factory.mktemp("models") / "tiny_qwen2")


def test_hf_judge_generates_and_applies_the_parse_policy(tiny_model):
    judge = Judge(
        judge_config_from({"backend": "hf", "model": str(tiny_model), "max_new_tokens": 8, "max_response_chars": 300})
    )
    pop_metrics()
    scores = judge.score_sync([JudgeItem("What is 1+1?", "1+1=2, \\boxed{2}", "\\boxed{2}", "solution")])
    metrics = pop_metrics()
    assert math.isnan(scores[0])
    assert metrics["judge/calls"] == 2  # the model really generated twice: first answer + one retry
    assert metrics["judge/parse_errors"] == 2 and metrics["judge/failures"] == 1


def test_hf_judge_output_is_the_models_text(tiny_model):
    """``complete`` returns the decoded continuation of the chat prompt (greedy: deterministic)."""
    import asyncio

    from dagrpo_verl.judge.prompt import build_prompt

    judge = Judge(judge_config_from({"backend": "hf", "model": str(tiny_model), "max_new_tokens": 6}))
    prompt = build_prompt("q", "r", "ref", max_response_chars=300)

    async def twice():
        loop = asyncio.get_running_loop()
        return [await judge.scorer.complete(prompt, loop.time() + 60) for _ in range(2)]

    first, second = asyncio.run(twice())
    assert isinstance(first, str) and first == second
