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
"""The scorer interface, the rule scorer, and the shared logic of LLM scorers.

A scorer judges one :class:`JudgeItem` at a time (``judge``); :class:`~dagrpo_verl.judge.core.Judge`
adds batching, the deadline, the cache and the metrics on top, and exposes
``score(batch) -> list[float]`` with NaN for missing scores.
"""

from __future__ import annotations

import abc
import asyncio
import re
import sys
from dataclasses import dataclass

from dagrpo_verl.grading import extract_boxed
from dagrpo_verl.grading.pool import GradeStatus, get_grading_pool
from dagrpo_verl.judge import metrics
from dagrpo_verl.judge.prompt import JudgePrompt, build_prompt, parse_verdict

__all__ = ["JudgeItem", "LLMScorer", "RuleScorer", "Scorer", "within_deadline"]

REFERENCE_KINDS = ("solution", "answer")


async def within_deadline(awaitable, deadline: float):
    """Await ``awaitable``; raise ``asyncio.TimeoutError`` at event-loop time ``deadline``.

    On Python >= 3.11 this uses ``asyncio.timeout_at``, which, unlike ``asyncio.wait_for``,
    creates no extra task (that matters at a thousand judge requests per step).
    """
    if sys.version_info >= (3, 11):
        async with asyncio.timeout_at(deadline):
            return await awaitable
    return await asyncio.wait_for(awaitable, max(0.0, deadline - asyncio.get_running_loop().time()))


@dataclass(frozen=True)
class JudgeItem:
    """One thing to judge.

    Args:
        question: the problem statement.
        response: the candidate response.
        reference: the reference: an expert solution, or only the ground-truth answer.
        reference_kind: ``"solution"`` or ``"answer"`` (tells the judge which one it got).
    """

    question: str
    response: str
    reference: str
    reference_kind: str = "solution"

    def __post_init__(self):
        for name in ("question", "response", "reference"):
            if not isinstance(getattr(self, name), str):
                raise ValueError(f"JudgeItem.{name} must be a string, got {type(getattr(self, name)).__name__}.")
        if self.reference_kind not in REFERENCE_KINDS:
            raise ValueError(f"JudgeItem.reference_kind={self.reference_kind!r} is not one of {list(REFERENCE_KINDS)}.")


class Scorer(abc.ABC):
    """Judges one item; returns a score in [1, 10], or None when there is none."""

    #: Identity of the judge model (part of the cache key).
    model_id: str = ""

    @abc.abstractmethod
    async def judge(self, item: JudgeItem, deadline: float) -> float | None:
        """Score ``item``; give up (None) at event-loop time ``deadline``. Must not raise for
        transport or model-output problems: those are missing scores."""

    async def aclose(self) -> None:  # noqa: B027 - a default that subclasses may override
        """Release resources bound to the running event loop (default: none)."""


class RuleScorer(Scorer):
    """A cheap, deterministic stand-in for an LLM judge (fallback and CI).

    S = 1 + 6·[final answer matches the reference's, by math-verify]
          + 3·(share of the reference's numbers that also occur in the response).

    The answer is graded in :mod:`dagrpo_verl.grading.pool` (bounded in any thread); a grade
    that times out or fails leaves the score missing.

    The reference's final answer is its last ``\\boxed{}`` (or the whole reference when it is
    only an answer). It rewards a correct answer most and reasoning that passes through the
    reference's intermediate quantities second; it cannot judge validity and is not a model
    of the paper's GPT-4o judge.
    """

    model_id = "rule-v1"
    _NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:/\d+)?")

    async def judge(self, item: JudgeItem, deadline: float) -> float | None:
        metrics.record(calls=1)
        answer = extract_boxed(item.reference) if item.reference_kind == "solution" else item.reference
        correct = False
        if answer:
            # bounded in any thread (a killable grading process); the event loop stays free
            graded = await get_grading_pool().agrade(item.response, answer)
            if graded.status != GradeStatus.OK:  # correctness unknown: no score rather than a guess
                return None
            correct = graded.correct
        reference_numbers = set(self._NUMBER.findall(item.reference))
        if reference_numbers:
            coverage = len(reference_numbers & set(self._NUMBER.findall(item.response))) / len(reference_numbers)
        else:
            coverage = 1.0 if correct else 0.0
        return 1.0 + 6.0 * correct + 3.0 * coverage


class LLMScorer(Scorer):
    """Shared policy of LLM judges: render the prompt, ask, parse the verdict line.

    Failure policy: an unparseable or out-of-range verdict counts as ``judge/parse_errors`` and
    is asked again once with a freshly rendered prompt (new random markers); a second failure
    leaves the score missing. Transport failures are handled (and retried) by the subclass's
    :meth:`complete`; when it gives up, the score is missing.
    """

    #: Attempts per item when the verdict cannot be parsed (the first one plus one retry).
    PARSE_ATTEMPTS = 2

    def __init__(self, max_response_chars: int):
        self.max_response_chars = max_response_chars

    @abc.abstractmethod
    async def complete(self, prompt: JudgePrompt, deadline: float) -> str | None:
        """The judge's answer text, or None when the judge could not be reached in time."""

    async def judge(self, item: JudgeItem, deadline: float) -> float | None:
        for _ in range(self.PARSE_ATTEMPTS):
            prompt = build_prompt(
                item.question,
                item.response,
                item.reference,
                max_response_chars=self.max_response_chars,
                reference_kind=item.reference_kind,
            )
            text = await self.complete(prompt, deadline)
            if text is None:
                return None
            score = parse_verdict(text)
            if score is not None:
                return score
            metrics.record(parse_errors=1)
        return None
