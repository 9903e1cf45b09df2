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
"""Cost of bounded grading (``dagrpo_verl.grading.pool``) on the real benchmark answers.

For a deterministic spread of rows of ``<repo>/../shared/data/benchmarks/*.parquet`` (every data
source), each ground truth is given back as a short solution ending in ``\\boxed{...}`` (or
``ANSWER: X`` for multiple choice) and graded five ways, interleaved:

* ``in_process``: :func:`dagrpo_verl.grading.grade` called directly (main thread, math-verify's
  own signal timeouts; unbounded in other threads) - the baseline;
* ``pool``: :meth:`GradingPool.grade` one call at a time (1 grading process) - the per-call cost;
* ``reward``: ``dagrpo_verl.reward.compute_score`` (judge off) awaited one at a time;
* ``pool_parallel``: :meth:`GradingPool.grade_many` over all rows with ``--workers`` processes;
* start-up of a grading process, and the recovery after a timeout (kill + replacement).

Prints a table (median / p95 / mean milliseconds per call, overhead = pool - in_process) and
writes ``outputs/bench_grading.json``.

    python -m benchmarks.bench_grading [--per-source 80] [--workers 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path

from benchmarks.reward_sweep import DEFAULT_DATA_DIR, load_rows, spread_sample
from dagrpo_verl.grading import grade, is_choice_task
from dagrpo_verl.grading.pool import GradingConfig, GradingPool, get_grading_pool
from dagrpo_verl.reward import compute_score

OUT = Path("outputs") / "bench_grading.json"


def _response(source: str, truth: str) -> str:
    if is_choice_task(source, truth):
        return f"Comparing the options, the best one is {truth}.\n\nANSWER: {truth}"
    return f"Working through the problem step by step gives the result.\n\nThe final answer is $\\boxed{{{truth}}}$."


def _stats(seconds: list[float]) -> dict:
    ms = sorted(1000 * s for s in seconds)
    return {
        "calls": len(ms),
        "median_ms": round(statistics.median(ms), 2),
        "p95_ms": round(ms[int(0.95 * (len(ms) - 1))], 2),
        "mean_ms": round(statistics.fmean(ms), 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--per-source", type=int, default=80, help="rows per data source")
    parser.add_argument("--workers", type=int, default=2, help="grading processes for the parallel run")
    args = parser.parse_args(argv)
    frame = spread_sample(load_rows(args.data_dir), args.per_source)
    items = [(_response(s, t), t, s) for s, t in zip(frame["data_source"], frame["ground_truth"], strict=True)]

    start = time.perf_counter()
    single = GradingPool(GradingConfig(workers=1))
    single.grade("\\boxed{1}", "1")
    startup_s = time.perf_counter() - start

    timings: dict[str, list[float]] = {"in_process": [], "pool": [], "reward": []}
    agree = 0
    no_judge = {"judge": {"backend": "none"}}
    reward_pool = get_grading_pool(GradingConfig())
    reward_pool.grade("\\boxed{1}", "1")  # started outside the timed calls

    async def reward_call(response: str, truth: str, source: str) -> float:
        return (await compute_score(source, response, truth, {}, **no_judge))["score"]

    loop = asyncio.new_event_loop()
    for response, truth, source in items:  # interleaved, so that load changes hit every way alike
        t0 = time.perf_counter()
        direct = grade(response, truth, source)
        t1 = time.perf_counter()
        bounded = single.grade(response, truth, source)
        t2 = time.perf_counter()
        rewarded = loop.run_until_complete(reward_call(response, truth, source))
        t3 = time.perf_counter()
        timings["in_process"].append(t1 - t0)
        timings["pool"].append(t2 - t1)
        timings["reward"].append(t3 - t2)
        agree += direct == bounded.correct == (rewarded == 1.0)
    loop.close()

    parallel = GradingPool(GradingConfig(workers=args.workers))
    parallel.grade("\\boxed{1}", "1")
    t0 = time.perf_counter()
    results = parallel.grade_many(items)
    parallel_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    timed_out = GradingPool(GradingConfig(timeout_s=1.0, workers=1))
    timed_out.grade("\\boxed{1}", "1")
    t1 = time.perf_counter()
    cut = timed_out.grade("\\boxed{10^{10^{10}}}", "1")
    t2 = time.perf_counter()
    timed_out.grade("\\boxed{1}", "1")
    t3 = time.perf_counter()
    for pool in (single, parallel, timed_out):
        pool.close()

    report = {name: _stats(seconds) for name, seconds in timings.items()}
    overhead = [p - d for p, d in zip(timings["pool"], timings["in_process"], strict=True)]
    report["pool_overhead"] = _stats(overhead)
    report["pool_parallel"] = {
        "calls": len(items),
        "workers": args.workers,
        "seconds": round(parallel_s, 2),
        "ms_per_call": round(1000 * parallel_s / len(items), 2),
        "all_correct": all(r.correct for r in results),
    }
    report["process_startup_s"] = round(startup_s, 2)
    report["timeout_recovery"] = {
        "timeout_s": 1.0,
        "status": cut.status.value,
        "call_s": round(t2 - t1, 2),
        "next_call_s": round(t3 - t2, 2),
        "first_start_s": round(t1 - t0, 2),
    }
    report["rows"] = len(items)
    report["sources"] = int(frame["data_source"].nunique())
    report["all_three_agree"] = agree == len(items)
    for name in ("in_process", "pool", "reward", "pool_overhead"):
        r = report[name]
        print(f"{name:>14}: median {r['median_ms']:7.2f} ms  p95 {r['p95_ms']:7.2f} ms  mean {r['mean_ms']:7.2f} ms")
    print(json.dumps({k: report[k] for k in ("pool_parallel", "process_startup_s", "timeout_recovery", "rows")}))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(report, indent=1))
    return 0 if report["all_three_agree"] and report["pool_parallel"]["all_correct"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
