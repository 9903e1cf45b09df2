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
"""Group-level judging: one prompt's responses, judged together once the group is graded (lazy judging).

The DaGRPO agent loops (:mod:`dagrpo_verl.integration.agent_loop`) call :func:`judge_group` once per training group,
after its responses are graded and anchors are mixed in, with ``needed`` telling whether a score can
change an advantage of the group (:func:`dagrpo_verl.algo.core.group_needs_judge_scores`):

* needed: every item is judged in one :meth:`~dagrpo_verl.judge.core.Judge.score` call (concurrently, under
  the judge's ``max_concurrency``); the requests of a group share their instructions, problem and
  reference, which template v2 puts first, so a prefix-caching server prefills that text once per group;
* not needed: nothing is sent; the items are counted as ``judge/skipped_not_needed`` and get NaN, which
  the estimator does not count as missing (their advantage is 0).

Each call collects the ``judge/*`` counters of exactly its own requests
(:func:`~dagrpo_verl.judge.metrics.collect_into`), also when several groups are judged at once in one
process, plus the wall-clock times the group was ready (graded) and judged, for ``judge/wall_exposed_s``.
The caller sends them with the group's samples (:func:`stats_record`); the trainer merges a step's
records (:func:`~dagrpo_verl.judge.metrics.stats_from_records`).
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from dagrpo_verl.judge import metrics
from dagrpo_verl.judge.core import Judge
from dagrpo_verl.judge.metrics import JudgeStats
from dagrpo_verl.judge.scorers import JudgeItem

__all__ = ["GroupScores", "judge_group", "stats_record"]


@dataclass
class GroupScores:
    """What :func:`judge_group` returns: one score per item (NaN = none) and the group's judge counters."""

    scores: list[float]
    stats: JudgeStats = field(default_factory=JudgeStats)


async def judge_group(
    judge: Judge, items: Sequence[JudgeItem | Any], *, needed: bool, deadline: float | None = None
) -> GroupScores:
    """Judge one group's items if ``needed``, else count them as not needed.

    Args:
        judge: the judge (``dagrpo_verl.judge.get_judge``).
        items: the group's responses to score, in any order (anchors only when they are judged). An
            entry that is not a :class:`JudgeItem` is a counted failure (NaN), as in ``Judge.score``.
        needed: False when no score can change an advantage of the group: nothing is sent.
        deadline: event-loop time by which the call returns (default: the judge's ``deadline_s`` from now).

    Returns:
        :class:`GroupScores` with ``len(items)`` scores and the counters of this call only. Never raises
        (but for the cancellation of the caller's task).
    """
    stats = JudgeStats()
    with metrics.collect_into(stats):
        metrics.record(ready_time=time.time())
        if not needed or not items:
            metrics.count_not_needed(len(items) if not needed else 0)
            return GroupScores([math.nan] * len(items), stats)
        scores = await judge.score(list(items), deadline=deadline)
        metrics.record(judged_time=time.time())
    return GroupScores(list(scores), stats)


def stats_record(stats: JudgeStats) -> dict[str, Any]:
    """``stats`` as a record to send with one sample of the group, under a fresh id (copies count once)."""
    return stats.to_record(uuid.uuid4().hex)
