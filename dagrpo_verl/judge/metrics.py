"""Per-process judge counters and the ``judge/*`` metrics built from them.

The reward function scores one sample per call, so batch metrics cannot be returned with
the rewards. Instead every judge in a process adds to one set of counters, and a trainer
hook calls :func:`pop_metrics` once per step (in the process that ran the judge) to read
and reset them. verl runs the reward function inside ``RewardLoopWorker`` Ray actors;
:func:`pop_stats` returns the raw counters so that the counters of several actors can be
merged (:meth:`JudgeStats.merge`) before :meth:`JudgeStats.to_metrics`;
:func:`pop_metrics_from` does exactly that for a list of Ray actor handles.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field

import numpy as np

__all__ = ["JudgeStats", "pop_metrics", "pop_metrics_from", "pop_stats", "record"]


@dataclass
class JudgeStats:
    """Raw counters of one window (one training step, one CLI run).

    Attributes:
        calls: judge model invocations (HTTP requests or local generations), retries included.
        cache_hits: items answered from the cache (memory, disk, or an identical item in flight).
        failures: items left without a score (NaN) after every retry.
        parse_errors: judge answers whose verdict line could not be parsed.
        latencies: seconds from the start to the end of each item that reached the judge.
        scores: the scores of the items answered (by the judge or the cache).
    """

    calls: int = 0
    cache_hits: int = 0
    failures: int = 0
    parse_errors: int = 0
    latencies: list[float] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)

    def merge(self, *others: "JudgeStats") -> "JudgeStats":
        """A new ``JudgeStats`` holding this window and ``others`` together."""
        out = JudgeStats(self.calls, self.cache_hits, self.failures, self.parse_errors, list(self.latencies),
                         list(self.scores))
        for other in others:
            out.calls += other.calls
            out.cache_hits += other.cache_hits
            out.failures += other.failures
            out.parse_errors += other.parse_errors
            out.latencies.extend(other.latencies)
            out.scores.extend(other.scores)
        return out

    def to_metrics(self) -> dict[str, float]:
        """verl-style metrics. Latency and score statistics are NaN in a window without data."""
        latencies = np.asarray(self.latencies, dtype=float)
        return {
            "judge/latency_p50": float(np.percentile(latencies, 50)) if latencies.size else math.nan,
            "judge/latency_p95": float(np.percentile(latencies, 95)) if latencies.size else math.nan,
            "judge/calls": float(self.calls),
            "judge/cache_hits": float(self.cache_hits),
            "judge/failures": float(self.failures),
            "judge/parse_errors": float(self.parse_errors),
            "judge/score_mean": float(np.mean(self.scores)) if self.scores else math.nan,
        }


_lock = threading.Lock()
_current = JudgeStats()


def record(
    *, calls: int = 0, cache_hits: int = 0, failures: int = 0, parse_errors: int = 0,
    latency: float | None = None, score: float | None = None,
) -> None:
    """Add to this process's counters (thread-safe)."""
    with _lock:
        _current.calls += calls
        _current.cache_hits += cache_hits
        _current.failures += failures
        _current.parse_errors += parse_errors
        if latency is not None:
            _current.latencies.append(latency)
        if score is not None and not math.isnan(score):
            _current.scores.append(score)


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
