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
"""``Judge``: a scorer plus the batch deadline, the cache, in-flight deduplication and metrics.

``Judge.score(items)`` is the scorer interface of the subsystem: it takes a batch of
:class:`~dagrpo_verl.judge.scorers.JudgeItem` and returns one float per item, in order,
NaN where no score could be obtained. **It never raises** (only cancellation of the caller's
task propagates): a dead endpoint, timeouts, unparseable or hostile answers, a broken cache,
odd Unicode and even a bug in a scorer become NaN and are counted (``judge/failures`` and the
reason counters, see :mod:`dagrpo_verl.judge.metrics`). Every call returns within its deadline
(plus the time of the synchronous work, which is linear in the bounded input: the question,
response and reference are cut to their ``max_*_chars`` before anything else touches them).
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import threading
import time
import traceback
import weakref
from collections.abc import Sequence
from typing import Any

from dagrpo_verl.judge import metrics
from dagrpo_verl.judge.cache import JudgeCache, cache_key, valid_score
from dagrpo_verl.judge.config import JudgeConfig, judge_config_from
from dagrpo_verl.judge.prompt import TEMPLATE_VERSION, truncate_middle
from dagrpo_verl.judge.scorers import JudgeItem, RuleScorer, Scorer, within_deadline

__all__ = ["Judge", "aclose_judges", "get_judge", "make_scorer"]

logger = logging.getLogger(__name__)
_WARN_EVERY_S = 30.0


def make_scorer(config: JudgeConfig) -> Scorer:
    """The scorer of ``config.backend`` (``none`` has no scorer: see :class:`Judge`)."""
    if config.backend == "openai":
        from dagrpo_verl.judge.openai_client import OpenAIScorer

        return OpenAIScorer(config)
    if config.backend == "hf":
        from dagrpo_verl.judge.hf import HFScorer

        return HFScorer(config)
    if config.backend == "rule":
        return RuleScorer()
    raise ValueError(f"backend {config.backend!r} has no scorer.")


class Judge:
    """Scores batches of items with the configured backend.

    With ``backend=none`` every score is NaN and nothing is called or counted.
    """

    def __init__(self, config: JudgeConfig):
        self.config = config
        self.scorer = None if config.backend == "none" else make_scorer(config)
        self.cache = JudgeCache(config.cache_dir, config.cache_max_entries)
        self._in_flight: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Future]] = (
            weakref.WeakKeyDictionary()
        )
        self._last_error_log = -_WARN_EVERY_S

    def __repr__(self) -> str:
        return f"Judge({self.config!r})"

    def prepare(self, item: JudgeItem) -> JudgeItem:
        """``item`` with its texts cut to the configured lengths: what the judge sees and what
        the cache key covers (so both cost time bounded by the settings, not by the input)."""
        return JudgeItem(
            truncate_middle(item.question, self.config.max_question_chars),
            truncate_middle(item.response, self.config.max_response_chars),
            truncate_middle(item.reference, self.config.max_reference_chars),
            item.reference_kind,
        )

    def key(self, item: JudgeItem) -> str:
        """Cache key of a prepared ``item`` for this judge (template version, model, texts)."""
        assert self.scorer is not None
        return cache_key(
            TEMPLATE_VERSION, self.scorer.model_id, item.question, item.response, item.reference, item.reference_kind
        )

    async def score(self, items: Sequence[JudgeItem], *, deadline: float | None = None) -> list[float]:
        """One score per item (NaN = missing), within ``deadline`` (event-loop time; default:
        ``deadline_s`` from now). A group-level caller may pass one deadline to several calls
        so that a whole step shares one budget. Never raises."""
        if self.scorer is None:
            return [math.nan] * len(items)
        loop = asyncio.get_running_loop()
        if deadline is None:
            deadline = loop.time() + self.config.deadline_s
        scores = [math.nan] * len(items)
        metrics.record(requests=len(items))
        todo: list[tuple[int, JudgeItem, str]] = []
        for index, item in enumerate(items):
            try:
                prepared = self.prepare(item)
                todo.append((index, prepared, self.key(prepared)))
            except Exception as error:  # not a JudgeItem, or a bug: this item is missing, the others go on
                self._internal_error(error)
                metrics.record(failures=1, internal_errors=1)
        try:
            cached = await within_deadline(self.cache.get_many([key for _, _, key in todo]), deadline)
        except asyncio.TimeoutError:
            cached = {}
        except Exception as error:
            self._internal_error(error)
            cached = {}
        pending = []
        for index, prepared, key in todo:
            if key in cached:
                scores[index] = cached[key]
                metrics.record(cache_hits=1, score=cached[key])
            else:
                pending.append((index, prepared, key))
        results = await asyncio.gather(*(self._score_one(prepared, key, deadline) for _, prepared, key in pending))
        for (index, _, _), value in zip(pending, results, strict=True):
            scores[index] = value
        return scores

    async def _score_one(self, item: JudgeItem, key: str, deadline: float) -> float:
        loop = asyncio.get_running_loop()
        in_flight = self._in_flight.setdefault(loop, {})
        if key in in_flight:  # an identical item is being judged right now: share its answer
            try:
                score = await within_deadline(asyncio.shield(in_flight[key]), deadline)
            except asyncio.TimeoutError:
                metrics.record(failures=1, deadline_misses=1)
                return math.nan
            if math.isnan(score):
                metrics.record(failures=1)
            else:
                metrics.record(cache_hits=1, score=score)
            return score
        future = in_flight[key] = loop.create_future()
        start = loop.time()
        score = math.nan
        try:
            reason = {}
            try:
                result = await within_deadline(self.scorer.judge(item, deadline), deadline)
                score = math.nan if result is None else (valid_score(result) or math.nan)
                if result is not None and math.isnan(score):
                    raise ValueError(f"scorer {type(self.scorer).__name__} returned {result!r}, not a score in [1, 10]")
            except asyncio.TimeoutError:
                reason = {"deadline_misses": 1}
            except Exception as error:  # a bug or an unforeseen input: counted, logged, never raised
                self._internal_error(error)
                score, reason = math.nan, {"internal_errors": 1}
            if math.isnan(score):
                metrics.record(failures=1, latency=loop.time() - start, **reason)
            else:
                self.cache.put(key, score)
                metrics.record(latency=loop.time() - start, score=score)
            return score
        finally:
            # waiters on the same key get the result, or "missing" if this task was cancelled
            if not future.done():
                future.set_result(score)
            in_flight.pop(key, None)

    def _internal_error(self, error: BaseException) -> None:
        """Log an unexpected exception once per 30 s: its type and where it was raised, never its
        message (it could quote a reply or a header)."""
        now = time.monotonic()
        frames = traceback.extract_tb(error.__traceback__)
        where = f"{os.path.basename(frames[-1].filename)}:{frames[-1].lineno}" if frames else "?"
        level = logging.WARNING if now - self._last_error_log >= _WARN_EVERY_S else logging.DEBUG
        if level == logging.WARNING:
            self._last_error_log = now
        logger.log(
            level,
            "judge: unexpected %s at %s; the item's score is missing (counted in judge/internal_errors)."
            " Please report this.",
            type(error).__name__,
            where,
        )

    def score_sync(self, items: Sequence[JudgeItem], progress: bool = False, chunk_size: int = 256) -> list[float]:
        """Blocking :meth:`score` for scripts and the command line.

        Items are scored in chunks of ``chunk_size`` (each chunk has its own ``deadline_s``);
        ``progress=True`` shows a tqdm bar. Runs its own event loop; call it from synchronous code.
        """
        return asyncio.run(self._score_chunks(items, progress, chunk_size))

    async def _score_chunks(self, items: Sequence[JudgeItem], progress: bool, chunk_size: int) -> list[float]:
        from tqdm.auto import tqdm

        scores: list[float] = []
        try:
            with tqdm(total=len(items), disable=not progress, desc="judge", unit="item") as bar:
                for begin in range(0, len(items), chunk_size):
                    chunk = items[begin : begin + chunk_size]
                    scores.extend(await self.score(chunk))
                    bar.update(len(chunk))
        finally:
            await self.aclose()
        return scores

    async def aclose(self) -> None:
        """Close what this judge holds on the running event loop (its HTTP session) and wait for
        the queued disk-cache writes.

        A long-lived loop (verl's reward workers) never needs this; call it before a
        short-lived loop ends (``asyncio.run``) to avoid "Unclosed client session" warnings.
        """
        if self.scorer is not None:
            await self.scorer.aclose()
        await self.cache.flush()


_judges: dict[JudgeConfig, Judge] = {}
_judges_lock = threading.Lock()


def get_judge(config: Any = None) -> Judge:
    """The per-process :class:`Judge` for ``config`` (a :class:`JudgeConfig`, dict or DictConfig),
    created on first use and reused for equal configs."""
    config = judge_config_from(config)
    with _judges_lock:
        judge = _judges.get(config)
        if judge is None:
            judge = _judges[config] = Judge(config)
    return judge


async def aclose_judges() -> None:
    """:meth:`Judge.aclose` for every judge :func:`get_judge` created in this process."""
    with _judges_lock:
        judges = list(_judges.values())
    for judge in judges:
        await judge.aclose()
