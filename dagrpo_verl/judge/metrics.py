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
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field, fields

__all__ = ["JudgeStats", "count_not_needed", "pop_metrics", "pop_metrics_from", "pop_stats", "record"]

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

    def add(self, other: JudgeStats) -> None:
        """Add ``other``'s counts to this window (in place)."""
        for f in fields(self):
            if f.name.endswith("_bins"):
                mine = getattr(self, f.name)
                for b, n in getattr(other, f.name).items():
                    mine[b] = mine.get(b, 0) + n
            elif f.name == "concurrency_limit_min":
                self.concurrency_limit_min = min(self.concurrency_limit_min, other.concurrency_limit_min)
            else:
                setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def merge(self, *others: JudgeStats) -> JudgeStats:
        """A new ``JudgeStats`` holding this window and ``others`` together."""
        out = JudgeStats()
        for stats in (self, *others):
            out.add(stats)
        return out

    def to_metrics(self) -> dict[str, float]:
        """verl-style metrics. Rates, latencies, token sums and the mean score are NaN in a
        window without data for them (token sums: no reply reported usage)."""

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
        }
        return metrics


_COUNTERS = frozenset(f.name for f in fields(JudgeStats) if f.type in ("int", int))
_lock = threading.Lock()
_current = JudgeStats()


def record(
    *,
    latency: float | None = None,
    queue_wait: float | None = None,
    score: float | None = None,
    concurrency_limit: float | None = None,
    **counts: int,
) -> None:
    """Add to this process's counters (thread-safe). ``counts`` are :class:`JudgeStats`
    counter names, e.g. ``record(calls=1, timeouts=1)``."""
    unknown = set(counts) - _COUNTERS
    if unknown:
        raise TypeError(f"unknown judge counter(s) {sorted(unknown)}; known: {sorted(_COUNTERS)}")
    with _lock:
        for name, value in counts.items():
            setattr(_current, name, getattr(_current, name) + value)
        if latency is not None:
            b = _bin(latency)
            _current.latency_bins[b] = _current.latency_bins.get(b, 0) + 1
        if queue_wait is not None:
            b = _bin(queue_wait)
            _current.queue_wait_bins[b] = _current.queue_wait_bins.get(b, 0) + 1
        if concurrency_limit is not None:
            _current.concurrency_limit_min = min(_current.concurrency_limit_min, concurrency_limit)
        if score is not None and not math.isnan(score):
            _current.score_sum += score
            _current.score_count += 1


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


def pop_metrics_from(actors) -> dict[str, float]:
    """Pop the counters of the processes behind Ray ``actors`` and merge them into one set of
    ``judge/*`` metrics (percentiles over all latencies, not averages of percentiles).

    In verl 0.9.1 the reward function runs in the ``RewardLoopWorker`` actors, e.g.
    ``trainer.reward_loop_manager.reward_loop_workers``; pass those handles once per step.
    Works with sync and async actors (Ray's ``__ray_call__``).
    """
    import ray

    stats = ray.get([actor.__ray_call__.remote(_pop_stats_in_actor) for actor in actors])
    return JudgeStats().merge(*stats).to_metrics()
