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
"""The DaGRPO judge: fine-grained scores S in [1, 10] of responses against a reference.

Public API::

    from dagrpo_verl.judge import JudgeConfig, JudgeItem, get_judge, pop_metrics

    judge = get_judge({"backend": "openai", "base_url": "http://127.0.0.1:8000/v1", "model": "m"})
    scores = await judge.score([JudgeItem(question, response, reference)])   # NaN = missing
    metrics = pop_metrics()   # {"judge/requests": ..., "judge/prompt_tokens": ..., ...}, then reset
    metrics = pop_metrics_from(reward_worker_handles)   # the same, gathered from verl's Ray reward workers
    count_not_needed(n)   # a group-level caller skipped n responses whose score cannot matter
    result = await judge_group(judge, items, needed=True)   # one group: scores + its own counters

``Judge.score`` never raises: every failure is a counted NaN (see ``docs/judge.md``).

Backends: ``openai`` (any OpenAI-compatible server), ``hf`` (local transformers model),
``rule`` (no LLM), ``none``. See ``docs/judge.md`` for every config key and the failure policies.
"""

from dagrpo_verl.judge.config import BACKENDS, JudgeConfig, judge_config_from
from dagrpo_verl.judge.core import Judge, aclose_judges, get_judge, make_scorer
from dagrpo_verl.judge.group import GroupScores, judge_group, stats_record
from dagrpo_verl.judge.metrics import (
    JudgeStats,
    collect_into,
    count_not_needed,
    pop_metrics,
    pop_metrics_from,
    pop_stats,
    pop_stats_from,
    stats_from_records,
)
from dagrpo_verl.judge.prompt import TEMPLATE_VERSION, build_prompt, parse_verdict
from dagrpo_verl.judge.scorers import JudgeItem, RuleScorer, Scorer

__all__ = [
    "BACKENDS",
    "TEMPLATE_VERSION",
    "GroupScores",
    "Judge",
    "JudgeConfig",
    "JudgeItem",
    "JudgeStats",
    "RuleScorer",
    "Scorer",
    "aclose_judges",
    "build_prompt",
    "collect_into",
    "count_not_needed",
    "get_judge",
    "judge_config_from",
    "judge_group",
    "make_scorer",
    "parse_verdict",
    "pop_metrics",
    "pop_metrics_from",
    "pop_stats",
    "pop_stats_from",
    "stats_from_records",
    "stats_record",
]
