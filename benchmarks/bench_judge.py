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
"""Judge client throughput against a local OpenAI-compatible server.

1,024 requests to a server (separate process, 127.0.0.1) that answers after 50 ms, with
``judge.max_concurrency=64``. The ideal time is 1024 * 0.05 / 64 = 0.8 s; the target is
within 1.2x of it (0.96 s). Prints one JSON line (best of ``--repeats`` batches after a
warm-up batch, the CPU milliseconds per request of client and server, and the machine's load,
since on a shared 2-core machine the wall time depends on what else runs) and exits non-zero
when over the target. The stand-in reports OpenAI ``usage`` and simulates a prefix cache (its
CPU per request includes that work); the client parses the usage into ``judge/*_tokens``.

    .venv/bin/python -m benchmarks.bench_judge [--requests 1024 --concurrency 64 --delay 0.05 --no-usage]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import subprocess
import sys
import time

from dagrpo_verl.judge import JudgeItem, get_judge, pop_metrics


def _start_server(delay: float, usage: bool) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "dagrpo_verl.judge.testing", "--delay", str(delay), "--score", "7"]
        + ([] if usage else ["--no-usage"]),
        stdout=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline()
    if not line.startswith("PORT "):
        proc.kill()
        raise RuntimeError(f"local judge server did not start (printed {line!r})")
    return proc, int(line.split()[1])


def _process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` (Linux /proc; None elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _run(base_url: str, requests: int, concurrency: int, repeats: int) -> tuple[list[float], float]:
    """Times of ``repeats`` batches, and the client's CPU seconds per batch."""
    config = {
        "backend": "openai",
        "base_url": base_url,
        "model": "bench",
        "max_concurrency": concurrency,
        "timeout_s": 30.0,
        "deadline_s": 120.0,
    }
    judge = get_judge(config)
    # Warm-up batch: opens the connection pool (as a training run's first step does).
    await judge.score([JudgeItem("warm-up", f"response {i}", "reference") for i in range(concurrency)])
    times = []
    cpu_start = time.process_time()
    for repeat in range(repeats):
        items = [
            JudgeItem("What is 6 * 7?", f"run {repeat} response {i}: \\boxed{{42}}", "\\boxed{42}")
            for i in range(requests)
        ]
        pop_metrics()
        start = time.perf_counter()
        scores = await judge.score(items)
        times.append(time.perf_counter() - start)
        if scores != [7.0] * requests:
            raise RuntimeError(f"unexpected scores: {sorted(set(map(str, scores)))}")
    cpu = (time.process_time() - cpu_start) / repeats
    await judge.aclose()
    return times, cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1024)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--delay", type=float, default=0.05)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-usage", action="store_true", help="the stand-in reports no usage (less server CPU)")
    args = parser.parse_args()
    proc, port = _start_server(args.delay, usage=not args.no_usage)
    server_cpu_start = _process_cpu_s(proc.pid)
    try:
        times, client_cpu = asyncio.run(
            _run(f"http://127.0.0.1:{port}/v1", args.requests, args.concurrency, args.repeats)
        )
        server_cpu_end = _process_cpu_s(proc.pid)
    finally:
        proc.terminate()
        proc.wait(10)
    metrics = pop_metrics()
    limit = args.requests * args.delay / args.concurrency
    best = min(times)
    result = {
        "requests": args.requests,
        "concurrency": args.concurrency,
        "server_delay_s": args.delay,
        "limit_s": round(limit, 3),
        "times_s": [round(t, 3) for t in times],
        "best_s": round(best, 3),
        "ratio_to_limit": round(best / limit, 3),
        "target_ratio": 1.2,
        "client_cpu_ms_per_request": round(1000 * client_cpu / args.requests, 3),
        "server_cpu_ms_per_request": None
        if server_cpu_start is None or server_cpu_end is None
        else round(1000 * (server_cpu_end - server_cpu_start) / (args.requests * args.repeats + args.concurrency), 3),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "judge/latency_p50": round(metrics["judge/latency_p50"], 4),
        "judge/latency_p95": round(metrics["judge/latency_p95"], 4),
        "judge/failures": metrics["judge/failures"],
        "judge/prompt_tokens": None if math.isnan(metrics["judge/prompt_tokens"]) else metrics["judge/prompt_tokens"],
    }
    print(json.dumps(result))
    return 0 if best <= 1.2 * limit else 1


if __name__ == "__main__":
    sys.exit(main())
