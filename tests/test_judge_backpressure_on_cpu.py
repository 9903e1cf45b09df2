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
"""A judge server under load: timeouts, concurrency and proxies sized for a real deployment
(issue 10, "Let an overloaded judge switch the masks off quietly").

``LocalJudgeServer`` stands in for the judge LLM over real HTTP on 127.0.0.1; with
``max_running`` it behaves like an inference server with a fixed batch capacity that queues
(vLLM's scheduler) or refuses (HTTP 429) what does not fit. Another ``LocalJudgeServer`` plays
the HTTP forward proxy (it receives the proxied request and answers it). What is checked: a
request's timeout never counts the wait for a local slot; the client lowers its concurrency
while the server signals overload and says so in ``judge/*`` metrics; ``Retry-After`` pauses
every request of the process; a step cannot hang; proxy settings are read as curl reads them.
"""

import asyncio
import math
import time

import pytest

from dagrpo_verl.judge import Judge, JudgeItem, judge_config_from, pop_metrics
from dagrpo_verl.judge.openai_client import AdaptiveLimit, proxy_for
from dagrpo_verl.judge.testing import LocalJudgeServer, Reply, fixed_score, verdict_line

PROXY_VARIABLES = (
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "REQUEST_METHOD",
)


def make_judge(url: str, **overrides) -> Judge:
    settings = {
        "backend": "openai",
        "base_url": url,
        "model": "stand-in",
        "timeout_s": 5.0,
        "max_retries": 3,
        "deadline_s": 30.0,
        "max_concurrency": 8,
    }
    settings.update(overrides)
    return Judge(judge_config_from(settings))


def items(n: int, tag: str = "r") -> list[JudgeItem]:
    return [JudgeItem("q", f"{tag} {i}", "ref") for i in range(n)]


@pytest.fixture(autouse=True)
def clean(monkeypatch):
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    pop_metrics()
    yield


def test_request_timeout_does_not_count_the_wait_for_a_local_slot():
    """16 requests, 2 slots, 0.3 s each: the last one waits 2.1 s for a slot, far beyond its
    0.6 s timeout, and still counts as on time."""
    with LocalJudgeServer(fixed_score(7, delay_s=0.3)) as server:
        scores = make_judge(server.url, max_concurrency=2, timeout_s=0.6, max_retries=0).score_sync(items(16))
    assert scores == [7.0] * 16
    metrics = pop_metrics()
    assert metrics["judge/timeouts"] == 0 and metrics["judge/calls"] == 16
    assert metrics["judge/queue_wait_p95"] > 1.0  # the wait is visible, and it was not a timeout


def test_a_server_that_queues_sees_the_client_back_off():
    """A server that runs one request at a time (0.2 s) and queues the rest, a client allowed 8 in
    flight with a 0.5 s timeout: the queued requests time out, the client halves its limit
    (visible in judge/concurrency_limit_min and judge/timeouts) and every item is still scored."""
    with LocalJudgeServer(fixed_score(6, delay_s=0.2), max_running=1) as server:
        judge = make_judge(server.url, max_concurrency=8, timeout_s=0.5, max_retries=8, deadline_s=60.0)
        scores = judge.score_sync(items(12))
    metrics = pop_metrics()
    assert scores == [6.0] * 12
    assert metrics["judge/timeouts"] > 0 and metrics["judge/retries"] > 0
    assert metrics["judge/concurrency_limit_min"] <= 4


def test_429_overflow_shrinks_the_concurrency_limit():
    """A server with room for 4 that answers 429 beyond it; the client starts at 32."""
    with LocalJudgeServer(fixed_score(5, delay_s=0.1), max_running=4, overflow="reject") as server:
        judge = make_judge(server.url, max_concurrency=32, max_retries=30, deadline_s=60.0)
        scores = judge.score_sync(items(64))
    metrics = pop_metrics()
    assert scores == [5.0] * 64
    assert metrics["judge/overloaded"] == server.rejected > 0
    assert metrics["judge/concurrency_limit_min"] <= 8
    assert server.peak_running <= 4


def test_adaptive_limit_halves_once_per_window_and_grows_back():
    async def scenario():
        limit = AdaptiveLimit(16)
        window = [await limit.acquire() for _ in range(16)]
        for granted_at in window:  # a burst of 16 overload signals from one window of requests
            limit.release(granted_at, overloaded=True)
        after_burst = limit.limit
        granted = await limit.acquire()
        limit.release(granted, overloaded=True)  # sent after the cut: cuts again
        after_second = limit.limit
        for _ in range(200):
            limit.release(await limit.acquire(), succeeded=True)
        return after_burst, after_second, limit.limit, limit.in_use

    after_burst, after_second, recovered, in_use = asyncio.run(scenario())
    assert after_burst == 8 and after_second == 4
    assert recovered == 16 and in_use == 0


def test_adaptive_limit_bounds_holders_and_survives_cancelled_waiters():
    async def scenario():
        limit = AdaptiveLimit(2)
        held = [await limit.acquire(), await limit.acquire()]
        waiter = asyncio.ensure_future(limit.acquire())
        cancelled = asyncio.ensure_future(limit.acquire())
        await asyncio.sleep(0)
        assert not waiter.done() and limit.in_use == 2
        cancelled.cancel()
        limit.release(held[0])
        await asyncio.sleep(0)
        assert waiter.done() and limit.in_use == 2
        limit.release(held[1])
        limit.release(waiter.result())
        return limit.in_use

    assert asyncio.run(scenario()) == 0


def test_retry_after_pauses_every_request_of_the_process():
    """The first request gets 429 with Retry-After: 1. Another request, in flight at that time,
    fails with a 503 that has no Retry-After (its own backoff would be under 0.5 s): its retry
    still waits for the pause the server asked for."""
    arrivals: list[tuple[float, str]] = []

    def rule(request):
        kind = request.candidate
        arrivals.append((time.monotonic(), kind))
        attempts = sum(k == kind for _, k in arrivals)
        if kind == "first" and attempts == 1:
            return Reply(status=429, headers={"Retry-After": "1"})
        if kind == "second" and attempts == 1:
            return Reply(status=503, delay_s=0.1)
        return Reply(content=verdict_line(4))

    with LocalJudgeServer(rule) as server:
        scores = make_judge(server.url, max_concurrency=2).score_sync(
            [JudgeItem("q", "first", "ref"), JudgeItem("q", "second", "ref")]
        )
    assert scores == [4.0, 4.0] and server.count == 4
    told_at = arrivals[0][0]
    assert all(at - told_at >= 0.95 for at, _ in arrivals[2:])


def test_a_step_cannot_hang_on_a_server_that_never_answers():
    """A server that accepts everything and answers after an hour: 40 items, deadline 2 s."""
    with LocalJudgeServer(fixed_score(9, delay_s=3600), max_running=1) as server:
        start = time.monotonic()
        scores = make_judge(server.url, timeout_s=600.0, deadline_s=2.0).score_sync(items(40))
        elapsed = time.monotonic() - start
    assert all(math.isnan(s) for s in scores) and elapsed < 2.0 + 3.0
    metrics = pop_metrics()
    assert metrics["judge/failures"] == 40 and metrics["judge/deadline_misses"] == 40
    assert metrics["judge/failure_rate"] == 1.0


# ---- proxies -------------------------------------------------------------------------------
def test_https_proxy_and_no_proxy_are_read_as_curl_reads_them(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.corp:3128")
    monkeypatch.setenv("http_proxy", "http://lower.corp:8080")
    monkeypatch.setenv("NO_PROXY", ".internal.example, judge-host:9000,10.1.2.3")
    assert proxy_for("https://api.example.com/v1/chat/completions") == "http://proxy.corp:3128"
    assert proxy_for("http://api.example.com/v1/chat/completions") == "http://lower.corp:8080"
    assert proxy_for("https://gpu7.internal.example/v1/chat/completions") is None  # domain suffix
    assert proxy_for("http://judge-host:9000/v1/chat/completions") is None  # host:port entry
    assert proxy_for("http://judge-host:9001/v1/chat/completions") == "http://lower.corp:8080"
    assert proxy_for("http://10.1.2.3:8000/v1/chat/completions") is None  # IP entry
    for loopback in ("127.0.0.1", "127.8.0.1", "localhost", "[::1]"):  # never through a proxy
        assert proxy_for(f"http://{loopback}:8000/v1/chat/completions") is None
    monkeypatch.setenv("NO_PROXY", "*")
    assert proxy_for("https://api.example.com/v1/chat/completions") is None
    monkeypatch.delenv("NO_PROXY")
    monkeypatch.delenv("HTTPS_PROXY")
    monkeypatch.delenv("http_proxy")
    monkeypatch.setenv("ALL_PROXY", "http://all.corp:1")
    assert proxy_for("https://api.example.com/v1/chat/completions") == "http://all.corp:1"


def test_requests_go_through_the_proxy_with_its_credentials(monkeypatch):
    """``HTTP_PROXY`` with credentials: the request reaches the proxy (here a stand-in that
    answers as the judge), addressed to the judge host, with a Proxy-Authorization header; the
    judge host itself is never resolved (``.invalid`` cannot be)."""
    with LocalJudgeServer(fixed_score(8)) as proxy:
        monkeypatch.setenv("HTTP_PROXY", f"http://carol:pw-9@127.0.0.1:{proxy.port}")
        scores = make_judge("http://judge.invalid:8000/v1", max_retries=0).score_sync(items(2))
    assert scores == [8.0, 8.0] and proxy.count == 2
    request = proxy.requests[0]
    assert request.headers["Host"] == "judge.invalid:8000"
    assert request.headers["Proxy-Authorization"].startswith("Basic ")


def test_no_proxy_and_loopback_go_direct(monkeypatch):
    with LocalJudgeServer(fixed_score(1)) as proxy, LocalJudgeServer(fixed_score(3)) as judge_server:
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")
        assert make_judge(judge_server.url).score_sync(items(1)) == [3.0]  # loopback: direct
        assert make_judge(f"http://localhost:{judge_server.port}/v1").score_sync(items(1, "l")) == [3.0]
        monkeypatch.setenv("NO_PROXY", "judge.invalid")
        start = time.monotonic()
        missing = make_judge("http://judge.invalid:8000/v1", max_retries=0, connect_timeout_s=2.0).score_sync(items(1))
        elapsed = time.monotonic() - start
    assert math.isnan(missing[0]) and elapsed < 2.0 + 3.0  # direct: the name does not resolve
    assert proxy.count == 0 and judge_server.count == 2
    metrics = pop_metrics()
    assert metrics["judge/connection_errors"] + metrics["judge/timeouts"] == 1
