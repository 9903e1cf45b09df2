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
"""What the judge costs (issue 13, items 2 and 3, judge side): the template v2 layout for
prefix caches and the per-step cost metrics.

``LocalJudgeServer`` stands in for the judge LLM over real HTTP on 127.0.0.1. It reports
OpenAI ``usage`` and simulates a prefix cache as vLLM's automatic prefix caching works (chained
block hashes over the prompt tokens; ``cached_tokens`` = leading blocks an earlier request
computed), so the client's token metrics and the template's prefix reuse are checked against
what a server would report.
"""

import math

import pytest

from dagrpo_verl.judge import Judge, JudgeItem, JudgeStats, count_not_needed, judge_config_from, pop_metrics
from dagrpo_verl.judge.metrics import record
from dagrpo_verl.judge.prompt import build_prompt
from dagrpo_verl.judge.testing import (
    LocalJudgeServer,
    common_prefix_chars,
    count_tokens,
    fixed_score,
    render_chat,
)

PROBLEM = "Let $f(x) = x^3 - 3x + 1$. How many real roots does $f(f(x)) = 0$ have?"
REFERENCE = "We first find the roots of f. " * 250 + "\\boxed{7}"  # ~7,500 characters
RESPONSES = [f"Response {i}: " + "we expand and count sign changes. " * 100 + f"\\boxed{{{i}}}" for i in range(8)]


def make_judge(url: str, **overrides) -> Judge:
    settings = {
        "backend": "openai",
        "base_url": url,
        "model": "stand-in",
        "timeout_s": 10.0,
        "max_retries": 1,
        "deadline_s": 30.0,
        "max_concurrency": 1,
    }
    settings.update(overrides)
    return Judge(judge_config_from(settings))


@pytest.fixture(autouse=True)
def fresh_metrics():
    pop_metrics()
    yield


def test_v2_layout_puts_everything_shared_first():
    """Two requests of one group are byte-identical up to the per-request code; the system
    message is the same for every request of every group."""
    first = build_prompt(PROBLEM, RESPONSES[0], REFERENCE, max_response_chars=16000)
    second = build_prompt(PROBLEM, RESPONSES[1], REFERENCE, max_response_chars=16000)
    other_group = build_prompt("Another problem?", RESPONSES[0], "\\boxed{1}", max_response_chars=16000)
    assert first.messages[0] == second.messages[0] == other_group.messages[0]
    assert first.nonce not in first.messages[0]["content"]
    texts = [render_chat(p.messages) for p in (first, second)]
    shared = common_prefix_chars(*texts)
    group_part_end = texts[1].rindex("REQUEST CODE: ")
    # the problem and the whole reference are in the common prefix; the random code ends it
    assert group_part_end <= shared < group_part_end + len("REQUEST CODE: ") + len(first.nonce)
    assert REFERENCE in texts[1][:group_part_end] and PROBLEM in texts[1][:group_part_end]
    # at these lengths (reference 7.5k, response 3.5k characters) most of a request is reusable
    assert shared / len(texts[1]) > 0.6


def test_usage_and_cached_tokens_reach_the_metrics():
    """Eight responses of one group, judged one after the other: every request after the first
    finds the system message, the problem and the reference in the simulated prefix cache."""
    items = [JudgeItem(PROBLEM, response, REFERENCE) for response in RESPONSES]
    with LocalJudgeServer(fixed_score(6)) as server:
        scores = make_judge(server.url).score_sync(items)
    assert scores == [6.0] * 8
    metrics = pop_metrics()
    assert metrics["judge/requests"] == 8 and metrics["judge/calls"] == 8
    assert metrics["judge/prompt_tokens"] == server.prompt_tokens > 0
    assert metrics["judge/completion_tokens"] == server.completion_tokens > 0
    assert metrics["judge/cached_prompt_tokens"] == server.cached_prompt_tokens
    group_part = render_chat(build_prompt(PROBLEM, "", REFERENCE, max_response_chars=16000).messages)
    group_tokens = len(count_tokens(group_part[: group_part.rindex("REQUEST CODE: ")]))
    block = server.block_tokens
    assert server.cached_prompt_tokens >= 7 * (group_tokens // block) * block
    assert server.cached_prompt_tokens / server.prompt_tokens > 0.5


def test_token_metrics_are_missing_not_zero_when_the_server_reports_none():
    with LocalJudgeServer(fixed_score(6), usage=False) as server:
        make_judge(server.url).score_sync([JudgeItem("q", "r", "ref")])
    metrics = pop_metrics()
    assert math.isnan(metrics["judge/prompt_tokens"]) and math.isnan(metrics["judge/completion_tokens"])
    assert math.isnan(metrics["judge/cached_prompt_tokens"])
    with LocalJudgeServer(fixed_score(6), report_cached_tokens=False) as server:
        make_judge(server.url).score_sync([JudgeItem("q", "r", "ref")])
    metrics = pop_metrics()
    assert metrics["judge/prompt_tokens"] == server.prompt_tokens > 0
    assert math.isnan(metrics["judge/cached_prompt_tokens"])


def test_stand_in_prefix_cache_counts_whole_blocks_of_an_earlier_prompt():
    with LocalJudgeServer(fixed_score(1)) as server:
        text = " ".join(f"w{i}" for i in range(100))  # 199 stand-in tokens: 12 full blocks of 16
        assert server.prefix_cache_usage(text) == (199, 0)
        assert server.prefix_cache_usage(text) == (199, 192)
        assert server.prefix_cache_usage(text[:50] + "X" + text[51:]) == (199, 16)  # differs in block 2
        server.reset_prefix_cache()
        assert server.prefix_cache_usage(text) == (199, 0)


def test_not_needed_responses_are_counted_apart():
    count_not_needed(5)
    count_not_needed(0)
    metrics = pop_metrics()
    assert metrics["judge/skipped_not_needed"] == 5
    assert metrics["judge/requests"] == 0 and metrics["judge/failures"] == 0
    with pytest.raises(ValueError):
        count_not_needed(-1)


def test_windows_merge_exactly():
    """Counters add, latency histograms add (percentiles over all items), the concurrency limit
    takes the minimum: what ``pop_metrics_from`` does with verl's reward workers."""
    record(requests=2, calls=3, prompt_tokens=100, usage_reports=3, latency=0.010, concurrency_limit=32)
    record(latency=0.012, score=4.0)
    first = _pop()
    record(requests=1, calls=1, prompt_tokens=50, usage_reports=1, latency=2.0, concurrency_limit=8, score=8.0)
    second = _pop()
    merged = first.merge(second).to_metrics()
    assert merged["judge/requests"] == 3 and merged["judge/calls"] == 4 and merged["judge/prompt_tokens"] == 150
    assert merged["judge/concurrency_limit_min"] == 8 and merged["judge/score_mean"] == 6.0
    assert merged["judge/latency_p50"] == pytest.approx(0.012, rel=0.02)
    assert merged["judge/latency_p95"] == pytest.approx(2.0, rel=0.02)
    with pytest.raises(TypeError):
        record(no_such_counter=1)


def _pop() -> JudgeStats:
    from dagrpo_verl.judge import pop_stats

    return pop_stats()
