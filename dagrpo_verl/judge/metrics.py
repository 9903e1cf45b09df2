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
"""Per-process judge counters and the ``judge/*`` metrics built from them.

The reward function scores one sample per call, so batch metrics cannot be returned with
the rewards. Instead every judge in a process adds to one set of counters, and a trainer
hook calls :func:`pop_metrics` once per step (in the process that ran the judge) to read
and reset them. verl runs the reward function inside ``RewardLoopWorker`` Ray actors;
:func:`pop_stats` returns the raw counters so that the counters of several actors can be
merged (:meth:`JudgeStats.merge`) before :meth:`JudgeStats.to_metrics`;
:func:`pop_metrics_from` does exactly that for a list of Ray actor handles.

Memory is constant per window whatever its size: latencies go into a log-spaced histogram
(bins 2% wide, so percentiles are exact to about 1%, and merging windows is exact).

A group-level caller (the lazy group judge of :mod:`dagrpo_verl.judge.group`) collects the counts of
exactly its own judge calls with :func:`collect_into`: inside the block (and in every task it
starts) :func:`record` adds to the caller's :class:`JudgeStats` instead of the process window. The
caller sends that window with its samples (:meth:`JudgeStats.to_record`), and the trainer merges the
records of a step (:func:`stats_from_records`): exact per step whichever process judged.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import math
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, fields
from typing import Any

__all__ = [
    "JudgeStats",
    "collect_into",
    "count_not_needed",
    "pop_metrics",
    "pop_metrics_from",
    "pop_stats",
    "pop_stats_from",
    "record",
    "stats_from_records",
]

logger = logging.getLogger(__name__)

# Latency histogram: bin b holds [_LOW_S * _RATIO**b, _LOW_S * _RATIO**(b+1)); bin -1 holds [0, _LOW_S).
_LOW_S = 1e-4
_RATIO = 1.02
_TOP_BIN = int(math.log(1e6 / _LOW_S) / math.log(_RATIO))  # ~11 days: anything longer is clamped


def _bin(seconds: float) -> int:
    if not seconds >= _LOW_S:  # also NaN
        return -1
    return min(_TOP_BIN, int(math.log(seconds / _LOW_S) / math.log(_RATIO)))


def _percentile(bins: dict[int, int], q: float) -> float:
    """Nearest-rank ``q``-quantile of a histogram (the geometric middle of its bin); NaN if empty."""
    total = sum(bins.values())
    if total == 0:
        return math.nan
    rank = max(1, math.ceil(q * total))
    seen = 0
    for b in sorted(bins):
        seen += bins[b]
        if seen >= rank:
            return 0.0 if b < 0 else _LOW_S * _RATIO ** (b + 0.5)
    return math.nan  # pragma: no cover - unreachable


@dataclass
class JudgeStats:
    """Raw counters of one window (one training step, one CLI run).

    Per item (one response asked to be scored):
        requests: items asked (cache hits and failures included).
        cache_hits: items answered from the cache (memory, disk, or an identical item in flight).
        failures: items left without a score (NaN) after every retry.
        deadline_misses: items of ``failures`` whose deadline ended them: it passed while they
            waited or were in flight, or left no time for the next retry.
        internal_errors: items of ``failures`` lost to an unexpected exception in the judge (a
            bug: logged with its type and place; the item is missing, the run goes on).
        skipped_not_needed: responses a caller decided need no judge score (their advantage
            cannot change); counted by :func:`count_not_needed`, never sent, never missing.
    Per judge call (HTTP request or local generation):
        calls: calls made, retries and verdict re-asks included.
        retries: calls that repeated an earlier failed one (transport retries).
        timeouts: calls that ran past ``connect_timeout_s``/``timeout_s``.
        overloaded: calls answered HTTP 429 or 503 (the server asks to slow down).
        http_errors: calls answered another non-200 status.
        connection_errors: calls that could not connect or lost the connection.
        bad_replies: 200 answers that were not a chat completion (not JSON, wrong shape,
            over ``max_reply_bytes``).
        parse_errors: judge answers whose verdict line could not be parsed.
        usage_reports / prompt_tokens / completion_tokens: replies that reported ``usage``
            and the sums of their token counts.
        cached_reports / cached_prompt_tokens: replies that reported
            ``usage.prompt_tokens_details.cached_tokens`` and the sum of those.
    Distributions:
        latency_bins: seconds from the start to the end of each item that reached the judge
            (waiting for a slot and retries included), as a histogram.
        queue_wait_bins: seconds calls waited for a local concurrency slot or a server-asked pause.
        concurrency_limit_min: the lowest adaptive concurrency limit a call was sent under
            (``openai``; below ``max_concurrency`` when the server signalled overload).
        score_sum / score_count: the scores of the items answered (by the judge or the cache).
    Wall-clock times (``time.time()``, seconds; -inf when none):
        last_ready_time: the latest moment a group (or a sample) was graded and ready to be judged.
        last_judged_time: the latest moment a judge call of the window returned.
        Their difference is ``judge/wall_exposed_s``: the judge's wall time that was not hidden
        behind generation and grading (see :meth:`to_metrics`).
    """

    requests: int = 0
    cache_hits: int = 0
    failures: int = 0
    deadline_misses: int = 0
    internal_errors: int = 0
    skipped_not_needed: int = 0
    calls: int = 0
    retries: int = 0
    timeouts: int = 0
    overloaded: int = 0
    http_errors: int = 0
    connection_errors: int = 0
    bad_replies: int = 0
    parse_errors: int = 0
    usage_reports: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_reports: int = 0
    cached_prompt_tokens: int = 0
    score_sum: float = 0.0
    score_count: int = 0
    latency_bins: dict[int, int] = field(default_factory=dict)
    queue_wait_bins: dict[int, int] = field(default_factory=dict)
    concurrency_limit_min: float = math.inf
    last_ready_time: float = -math.inf
    last_judged_time: float = -math.inf

    def add(self, other: JudgeStats) -> None:
        """Add ``other``'s counts to this window (in place)."""
        for f in fields(self):
            if f.name.endswith("_bins"):
                mine = getattr(self, f.name)
                for b, n in getattr(other, f.name).items():
                    mine[b] = mine.get(b, 0) + n
            elif f.name == "concurrency_limit_min":
                self.concurrency_limit_min = min(self.concurrency_limit_min, other.concurrency_limit_min)
            elif f.name in _LATEST:
                setattr(self, f.name, max(getattr(self, f.name), getattr(other, f.name)))
            else:
                setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def merge(self, *others: JudgeStats) -> JudgeStats:
        """A new ``JudgeStats`` holding this window and ``others`` together."""
        out = JudgeStats()
        for stats in (self, *others):
            out.add(stats)
        return out

    def to_record(self, record_id: str) -> dict[str, Any]:
        """This window as plain data (str keys, numbers, lists; JSON-safe) that can travel with a sample
        through TransferQueue or a ``DataProto``. ``record_id`` names the window: a sample copied by verl
        (its padding rows copy sample 0) carries the same record, which :func:`stats_from_records` counts once."""
        data: dict[str, Any] = {"id": str(record_id)}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name.endswith("_bins"):
                data[f.name] = [[int(b), int(n)] for b, n in sorted(value.items())]
            elif isinstance(value, float) and not math.isfinite(value):
                data[f.name] = None  # the empty default (inf / -inf)
            else:
                data[f.name] = value
        return data

    @classmethod
    def from_record(cls, data: Any) -> JudgeStats:
        """The window of :meth:`to_record`. Raises ``ValueError`` for anything else."""
        if not isinstance(data, dict):
            raise ValueError(f"a judge-stats record is a dict, got {type(data).__name__}")
        stats = cls()
        for f in fields(cls):
            if f.name not in data:
                continue
            value = data[f.name]
            if f.name.endswith("_bins"):
                setattr(stats, f.name, {int(b): int(n) for b, n in value})
            elif value is None:
                continue
            elif f.name in _COUNTERS:
                if isinstance(value, bool) or int(value) != value or value < 0:
                    raise ValueError(f"judge-stats record: {f.name}={value!r} is not a count")
                setattr(stats, f.name, int(value))
            else:
                setattr(stats, f.name, float(value))
        return stats

    def to_metrics(self) -> dict[str, float]:
        """verl-style metrics. Rates, latencies, token sums and the mean score are NaN in a
        window without data for them (token sums: no reply reported usage).

        ``judge/wall_exposed_s``: seconds from the moment the last group (sample) of the window was
        graded to the moment its last judge call returned, 0 when the judge was done by then: the part
        of the judge stage that the step waits for, the rest having run while other groups were still
        being generated. NaN in a window where nothing was graded for the judge."""

        def share(part: int, whole: int) -> float:
            return part / whole if whole else math.nan

        metrics = {
            "judge/requests": float(self.requests),
            "judge/calls": float(self.calls),
            "judge/cache_hits": float(self.cache_hits),
            "judge/failures": float(self.failures),
            "judge/failure_rate": share(self.failures, self.requests),
            "judge/deadline_misses": float(self.deadline_misses),
            "judge/internal_errors": float(self.internal_errors),
            "judge/skipped_not_needed": float(self.skipped_not_needed),
            "judge/retries": float(self.retries),
            "judge/timeouts": float(self.timeouts),
            "judge/overloaded": float(self.overloaded),
            "judge/http_errors": float(self.http_errors),
            "judge/connection_errors": float(self.connection_errors),
            "judge/bad_replies": float(self.bad_replies),
            "judge/parse_errors": float(self.parse_errors),
            "judge/prompt_tokens": float(self.prompt_tokens) if self.usage_reports else math.nan,
            "judge/completion_tokens": float(self.completion_tokens) if self.usage_reports else math.nan,
            "judge/cached_prompt_tokens": float(self.cached_prompt_tokens) if self.cached_reports else math.nan,
            "judge/latency_p50": _percentile(self.latency_bins, 0.50),
            "judge/latency_p95": _percentile(self.latency_bins, 0.95),
            "judge/queue_wait_p95": _percentile(self.queue_wait_bins, 0.95),
            "judge/concurrency_limit_min": (
                self.concurrency_limit_min if math.isfinite(self.concurrency_limit_min) else math.nan
            ),
            "judge/score_mean": self.score_sum / self.score_count if self.score_count else math.nan,
            "judge/wall_exposed_s": self._wall_exposed_s(),
        }
        return metrics

    def _wall_exposed_s(self) -> float:
        if not math.isfinite(self.last_ready_time):
            return math.nan
        if not math.isfinite(self.last_judged_time):
            return 0.0
        return max(0.0, self.last_judged_time - self.last_ready_time)


_COUNTERS = frozenset(f.name for f in fields(JudgeStats) if f.type in ("int", int))
_LATEST = frozenset(("last_ready_time", "last_judged_time"))
_lock = threading.Lock()
_current = JudgeStats()
#: The window of the group-level caller whose task this is (:func:`collect_into`), or None: the process window.
_collector: contextvars.ContextVar[JudgeStats | None] = contextvars.ContextVar("dagrpo_judge_stats", default=None)


@contextlib.contextmanager
def collect_into(stats: JudgeStats) -> Iterator[JudgeStats]:
    """Within the block, :func:`record` adds to ``stats`` instead of the process window; so do the tasks
    started inside it (asyncio copies the context into a new task), e.g. every item of a
    ``Judge.score`` call. The counts of concurrent groups never mix."""
    token = _collector.set(stats)
    try:
        yield stats
    finally:
        _collector.reset(token)


def record(
    *,
    latency: float | None = None,
    queue_wait: float | None = None,
    score: float | None = None,
    concurrency_limit: float | None = None,
    ready_time: float | None = None,
    judged_time: float | None = None,
    **counts: int,
) -> None:
    """Add to this process's counters, or to the window of :func:`collect_into` (thread-safe).
    ``counts`` are :class:`JudgeStats` counter names, e.g. ``record(calls=1, timeouts=1)``;
    ``ready_time``/``judged_time`` are wall-clock times (``time.time()``) kept as maxima."""
    unknown = set(counts) - _COUNTERS
    if unknown:
        raise TypeError(f"unknown judge counter(s) {sorted(unknown)}; known: {sorted(_COUNTERS)}")
    window = _collector.get()
    with _lock:
        target = _current if window is None else window
        for name, value in counts.items():
            setattr(target, name, getattr(target, name) + value)
        if latency is not None:
            b = _bin(latency)
            target.latency_bins[b] = target.latency_bins.get(b, 0) + 1
        if queue_wait is not None:
            b = _bin(queue_wait)
            target.queue_wait_bins[b] = target.queue_wait_bins.get(b, 0) + 1
        if concurrency_limit is not None:
            target.concurrency_limit_min = min(target.concurrency_limit_min, concurrency_limit)
        if score is not None and not math.isnan(score):
            target.score_sum += score
            target.score_count += 1
        if ready_time is not None:
            target.last_ready_time = max(target.last_ready_time, float(ready_time))
        if judged_time is not None:
            target.last_judged_time = max(target.last_judged_time, float(judged_time))


def count_not_needed(responses: int) -> None:
    """Count ``responses`` that a group-level caller decided not to judge because no score
    could change their advantage (``judge/skipped_not_needed``). They are not missing scores."""
    if isinstance(responses, bool) or not isinstance(responses, int) or responses < 0:
        raise ValueError(f"count_not_needed expects a count >= 0, got {responses!r}")
    record(skipped_not_needed=responses)


def pop_stats() -> JudgeStats:
    """Return this process's counters and start a new window."""
    global _current
    with _lock:
        stats, _current = _current, JudgeStats()
    return stats


def pop_metrics() -> dict[str, float]:
    """The ``judge/*`` metrics of this process since the last call, and reset the counters."""
    return pop_stats().to_metrics()


def _pop_stats_in_actor(actor_instance) -> JudgeStats:
    """Run inside a Ray actor by ``__ray_call__`` (which passes the actor instance first)."""
    del actor_instance
    return pop_stats()


def pop_stats_from(actors) -> JudgeStats:
    """Pop the counters of the processes behind Ray ``actors`` and merge them into one window.

    In verl 0.9.1 the reward function runs in the ``RewardLoopWorker`` actors, e.g.
    ``trainer.reward_loop_manager.reward_loop_workers``; pass those handles once per step.
    Works with sync and async actors (Ray's ``__ray_call__``).
    """
    import ray

    stats = ray.get([actor.__ray_call__.remote(_pop_stats_in_actor) for actor in actors])
    return JudgeStats().merge(*stats)


def pop_metrics_from(actors) -> dict[str, float]:
    """:func:`pop_stats_from` as ``judge/*`` metrics (percentiles over all latencies, not averages of percentiles)."""
    return pop_stats_from(actors).to_metrics()


def stats_from_records(records: Iterable[Any]) -> JudgeStats | None:
    """Merge the windows that group-level callers sent with their samples (:meth:`JudgeStats.to_record`).

    ``records`` holds one value per sample: a record, or None for samples that carry none. A record seen
    twice (the same ``id``: verl copies samples into padding rows) counts once; a value that is not a
    record is skipped with a WARNING. Returns None when no sample carries a record.
    """
    seen: set[str] = set()
    merged: JudgeStats | None = None
    for data in records:
        if data is None:
            continue
        try:
            record_id = data.get("id") if isinstance(data, dict) else None
            if record_id in seen:
                continue
            stats = JudgeStats.from_record(data)
        except (ValueError, TypeError, AttributeError) as error:
            logger.warning("judge: a judge-stats record of a sample could not be read (%s); skipped", error)
            continue
        if record_id is not None:
            seen.add(record_id)
        merged = stats if merged is None else merged.merge(stats)
    return merged
