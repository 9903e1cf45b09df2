"""``Judge``: a scorer plus the batch deadline, the cache, in-flight deduplication and metrics.

``Judge.score(items)`` is the scorer interface of the subsystem: it takes a batch of
:class:`~dagrpo_verl.judge.scorers.JudgeItem` and returns one float per item, in order,
NaN where no score could be obtained. It never raises for judge-side failures (dead
endpoint, timeouts, unparseable answers); those become NaN and count in ``judge/failures``.
"""

from __future__ import annotations

import asyncio
import math
import threading
import weakref
from typing import Any, Sequence

from dagrpo_verl.judge import metrics
from dagrpo_verl.judge.cache import JudgeCache, cache_key
from dagrpo_verl.judge.config import JudgeConfig, judge_config_from
from dagrpo_verl.judge.prompt import TEMPLATE_VERSION
from dagrpo_verl.judge.scorers import JudgeItem, RuleScorer, Scorer, within_deadline

__all__ = ["Judge", "aclose_judges", "get_judge", "make_scorer"]


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
        self.cache = JudgeCache(config.cache_dir)
        self._in_flight: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Future]] = (
            weakref.WeakKeyDictionary()
        )

    def key(self, item: JudgeItem) -> str:
        """Cache key of ``item`` for this judge (template version, model, texts, truncation)."""
        assert self.scorer is not None
        return cache_key(
            TEMPLATE_VERSION,
            self.scorer.model_id,
            item.question,
            item.response,
            item.reference,
            f"{item.reference_kind}:{self.config.max_response_chars}",
        )

    async def score(self, items: Sequence[JudgeItem]) -> list[float]:
        """One score per item (NaN = missing), within ``deadline_s`` of this call."""
        if self.scorer is None:
            return [math.nan] * len(items)
        deadline = asyncio.get_running_loop().time() + self.config.deadline_s
        return list(await asyncio.gather(*(self._score_one(item, deadline) for item in items)))

    async def _score_one(self, item: JudgeItem, deadline: float) -> float:
        key = self.key(item)
        cached = self.cache.get(key)
        if cached is not None:
            metrics.record(cache_hits=1, score=cached)
            return cached
        loop = asyncio.get_running_loop()
        in_flight = self._in_flight.setdefault(loop, {})
        if key in in_flight:  # an identical item is being judged right now: share its answer
            score = await asyncio.shield(in_flight[key])
            metrics.record(cache_hits=1, score=score)
            return score
        future = in_flight[key] = loop.create_future()
        start = loop.time()
        try:
            try:
                result = await within_deadline(self.scorer.judge(item, deadline), deadline)
            except asyncio.TimeoutError:
                result = None
            score = math.nan if result is None else float(result)
            if math.isnan(score):
                metrics.record(failures=1, latency=loop.time() - start)
            else:
                self.cache.put(key, score)
                metrics.record(latency=loop.time() - start, score=score)
            future.set_result(score)
            return score
        except BaseException:
            future.set_result(math.nan)  # waiters on the same key get "missing", never an exception
            raise
        finally:
            in_flight.pop(key, None)

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
        """Close what this judge holds on the running event loop (its HTTP session).

        A long-lived loop (verl's reward workers) never needs this; call it before a
        short-lived loop ends (``asyncio.run``) to avoid "Unclosed client session" warnings.
        """
        if self.scorer is not None:
            await self.scorer.aclose()


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
