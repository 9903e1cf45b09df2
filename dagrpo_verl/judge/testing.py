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
"""A local OpenAI-compatible chat-completions server for tests and benchmarks.

It stands in for the judge LLM: the *rule* given by the test decides every reply (text,
HTTP status, delay, headers, or a raw body), so tests control what "the judge" answers while
the client still goes through real HTTP on 127.0.0.1. The server records what it received and
how many requests were in flight at once, and can behave like a real inference server:

* ``max_running``: at most that many requests are processed at once; the others wait in a
  server-side queue (``overflow="queue"``, like vLLM's scheduler) or are refused with HTTP 429
  (``overflow="reject"``, with ``reject_retry_after`` as ``Retry-After`` when set);
* ``usage``: replies carry OpenAI ``usage`` (prompt and completion tokens, counted by
  :func:`count_tokens` or the ``tokenize`` given), and ``prompt_tokens_details.cached_tokens``
  from a simulated prefix cache: the prompt is cut into blocks of ``block_tokens`` tokens,
  each block identified by a hash chained over all tokens before it, as vLLM's automatic
  prefix caching does; the cached tokens of a request are its leading blocks that an earlier
  request already computed (the cache never evicts). ``prompt_tokens`` /
  ``cached_prompt_tokens`` total them over the server's life: the prompt tokens a prefix cache
  would still have to prefill are their difference.

Run it alone (used by ``benchmarks/bench_judge.py``)::

    python -m dagrpo_verl.judge.testing --delay 0.05 --score 7
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from aiohttp import web

__all__ = [
    "ChatRequest",
    "LocalJudgeServer",
    "Reply",
    "common_prefix_chars",
    "count_tokens",
    "fixed_score",
    "problem_corpus",
    "render_chat",
    "text_of_length",
    "verdict_line",
]

#: Real problem statements for judge benchmarks (the shared evaluation parquet; absent: one fixed problem).
PROBLEMS_PARQUET = "/work/shared/data/benchmarks/valid.all.parquet"
_FALLBACK_PROBLEM = "Let $f(x) = x^3 - 3x + 1$. How many real roots does $f(f(x)) = 0$ have? Justify each step."

_END_MARKER = re.compile(r"<<<END CANDIDATE ([0-9a-f]+)>>>")
_TOKEN = re.compile(r"\w+|[^\w\s]|\s+")


def verdict_line(score: float, correctness: float | None = None) -> str:
    """A valid verdict line with overall ``score`` (the sub-scores default to it)."""
    sub = score if correctness is None else correctness
    return "VERDICT " + json.dumps({"correctness": sub, "reasoning": score, "completeness": score, "score": score})


def count_tokens(text: str) -> list[str]:
    """A stand-in tokenizer: words, single punctuation marks and runs of white space (about
    1.3 tokens per English word; a BPE tokenizer gives somewhat more). Linear time."""
    return _TOKEN.findall(text)


def problem_corpus(path: str = PROBLEMS_PARQUET, limit: int = 500) -> list[str]:
    """Up to ``limit`` problem statements (the last prompt message of each row) of a verl-layout parquet, or a
    fixed sample problem when the file is absent."""
    if not os.path.exists(path):
        return [_FALLBACK_PROBLEM]
    import pandas as pd

    prompts = pd.read_parquet(path, columns=["prompt"])["prompt"]
    return [str(p[-1]["content"]) for p in prompts[:limit]]


def text_of_length(corpus: Sequence[str], chars: int, rng: random.Random) -> str:
    """Exactly ``chars`` characters of realistic text: entries of ``corpus`` drawn with ``rng``, joined by
    newlines."""
    parts, size = [], 0
    while size < chars:
        part = rng.choice(corpus)
        parts.append(part)
        size += len(part) + 1
    return "\n".join(parts)[:chars]


def render_chat(messages: Sequence[dict]) -> str:
    """The text a chat template would make of ``messages`` (ChatML-like), as the server sees it."""
    return "".join(f"<|im_start|>{m.get('role', '')}\n{m.get('content', '')}<|im_end|>\n" for m in messages) + (
        "<|im_start|>assistant\n"
    )


def common_prefix_chars(first: str, second: str) -> int:
    """Length of the longest common prefix of two strings."""
    n = min(len(first), len(second))
    low, high = 0, n  # binary search on slices: fast in C
    while low < high:
        mid = (low + high + 1) // 2
        if first[:mid] == second[:mid]:
            low = mid
        else:
            high = mid - 1
    return low


@dataclass
class Reply:
    """What the server answers: ``content`` as the assistant message (status 200), or an error
    ``status``; after ``delay_s`` seconds, with extra ``headers``. ``raw_body`` replaces the
    whole JSON body by these bytes (hostile servers); ``drip_s`` sends it in 16-byte pieces
    with that pause between them (a server that never finishes its reply)."""

    content: str = ""
    status: int = 200
    delay_s: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    raw_body: bytes | None = None
    drip_s: float = 0.0


@dataclass(frozen=True)
class ChatRequest:
    """One request as received: JSON body and headers."""

    body: dict
    headers: dict[str, str]
    path: str = "/v1/chat/completions"

    @property
    def system(self) -> str:
        return self.body["messages"][0]["content"]

    @property
    def user(self) -> str:
        return self.body["messages"][-1]["content"]

    @property
    def nonce(self) -> str:
        """The marker code of this request (named again on the last line of the user message,
        after the candidate, where the candidate cannot write)."""
        last_line = self.user.rstrip().rsplit("\n", 1)[-1]
        match = _END_MARKER.search(last_line)
        if match is None:
            raise AssertionError("the user message does not end by naming the candidate's end marker")
        return match.group(1)

    @property
    def candidate(self) -> str:
        """The text between the real markers in the user message."""
        open_marker, close_marker = f"<<<CANDIDATE {self.nonce}>>>\n", f"\n<<<END CANDIDATE {self.nonce}>>>"
        start = self.user.index(open_marker) + len(open_marker)
        return self.user[start : self.user.index(close_marker, start)]

    @property
    def prompt(self) -> str:
        """The rendered chat text (what a prefix cache sees)."""
        return render_chat(self.body["messages"])


def fixed_score(score: float, delay_s: float = 0.0) -> Callable[[ChatRequest], Reply]:
    """A rule answering every request with a short justification and ``score``."""
    return lambda request: Reply(content=f"Checked.\n{verdict_line(score)}", delay_s=delay_s)


class LocalJudgeServer:
    """OpenAI-compatible ``POST /v1/chat/completions`` on 127.0.0.1 in a background thread.

    Use as a context manager; ``url`` is the ``base_url`` to configure. ``requests`` lists the
    received requests (when ``record=True``), ``count`` counts them, ``max_in_flight`` is the
    largest number being served at once (queued ones included), ``max_running`` bounds and
    ``peak_running`` records the ones processed at once, ``rejected`` counts 429s for
    overflow. ``prompt_tokens``, ``cached_prompt_tokens`` and ``completion_tokens`` total the
    usage of the 200 replies (see the module docstring).
    """

    def __init__(
        self,
        rule: Callable[[ChatRequest], Reply],
        port: int = 0,
        record: bool = True,
        *,
        max_running: int | None = None,
        overflow: str = "queue",
        reject_retry_after: str | None = None,
        usage: bool = True,
        report_cached_tokens: bool = True,
        tokenize: Callable[[str], Sequence] = count_tokens,
        block_tokens: int = 16,
    ):
        if overflow not in ("queue", "reject"):
            raise ValueError(f"overflow must be 'queue' or 'reject', got {overflow!r}")
        self.rule = rule
        self.port = port
        self.record = record
        self.max_running = max_running
        self.overflow = overflow
        self.reject_retry_after = reject_retry_after
        self.usage = usage
        self.report_cached_tokens = report_cached_tokens
        self.tokenize = tokenize
        self.block_tokens = block_tokens
        self.requests: list[ChatRequest] = []
        self.count = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.running = 0
        self.peak_running = 0
        self.rejected = 0
        self.prompt_tokens = 0
        self.cached_prompt_tokens = 0
        self.completion_tokens = 0
        self._blocks: set[int] = set()
        self._lock = threading.Lock()
        self._slots: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def prefix_cache_usage(self, prompt: str) -> tuple[int, int]:
        """(prompt tokens, tokens served by the simulated prefix cache) of ``prompt``; the
        prompt's full blocks are then added to the cache."""
        tokens = list(self.tokenize(prompt))
        size = self.block_tokens
        cached, chain, hits = 0, 0, True
        with self._lock:
            for begin in range(0, len(tokens) - size + 1, size):
                chain = hash((chain, tuple(tokens[begin : begin + size])))
                if hits and chain in self._blocks:
                    cached += size
                else:
                    hits = False
                    self._blocks.add(chain)
        return len(tokens), cached

    def reset_prefix_cache(self) -> None:
        with self._lock:
            self._blocks.clear()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        chat = ChatRequest(body=body, headers=dict(request.headers), path=request.path_qs)
        with self._lock:
            self.count += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            if self.record:
                self.requests.append(chat)
        try:
            if self._slots is not None and self._slots.locked() and self.overflow == "reject":
                with self._lock:
                    self.rejected += 1
                headers = {"Retry-After": self.reject_retry_after} if self.reject_retry_after else {}
                return web.json_response({"error": {"message": "overloaded"}}, status=429, headers=headers)
            if self._slots is not None:
                await self._slots.acquire()
            try:
                with self._lock:
                    self.running += 1
                    self.peak_running = max(self.peak_running, self.running)
                return await self._answer(request, chat)
            finally:
                with self._lock:
                    self.running -= 1
                if self._slots is not None:
                    self._slots.release()
        finally:
            with self._lock:
                self.in_flight -= 1

    async def _answer(self, request: web.Request, chat: ChatRequest) -> web.StreamResponse:
        reply = self.rule(chat)
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)
        if reply.raw_body is not None:
            if not reply.drip_s:
                return web.Response(
                    body=reply.raw_body, status=reply.status, headers=reply.headers, content_type="application/json"
                )
            stream = web.StreamResponse(status=reply.status, headers=reply.headers)
            stream.content_type = "application/json"
            await stream.prepare(request)
            try:
                for begin in range(0, len(reply.raw_body), 16):
                    await stream.write(reply.raw_body[begin : begin + 16])
                    await asyncio.sleep(reply.drip_s)
                await stream.write_eof()
            except ConnectionError:  # the client gave up (that is what a drip test checks)
                pass
            return stream
        if reply.status != 200:
            return web.json_response({"error": {"message": "test error"}}, status=reply.status, headers=reply.headers)
        payload = {
            "id": "local",
            "object": "chat.completion",
            "model": chat.body.get("model", ""),
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": reply.content}, "finish_reason": "stop"}
            ],
        }
        if self.usage:
            prompt_tokens, cached = self.prefix_cache_usage(chat.prompt)
            completion_tokens = len(self.tokenize(reply.content))
            with self._lock:
                self.prompt_tokens += prompt_tokens
                self.cached_prompt_tokens += cached
                self.completion_tokens += completion_tokens
            payload["usage"] = {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            }
            if self.report_cached_tokens:
                payload["usage"]["prompt_tokens_details"] = {"cached_tokens": cached}
        return web.json_response(payload, headers=reply.headers)

    async def _serve(self) -> None:
        if self.max_running is not None:
            self._slots = asyncio.Semaphore(self.max_running)
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._handle)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)  # do not wait for slow replies
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", self.port, backlog=1024)
        await site.start()
        self.port = runner.addresses[0][1]  # the bound port when 0 was asked
        self._stop = asyncio.Event()
        self._ready.set()
        await self._stop.wait()
        await runner.cleanup()

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        try:
            self._loop.run_until_complete(self._serve())
        except BaseException as exc:  # surfaced by start()
            self._error = exc
            self._ready.set()
        finally:
            pending = asyncio.all_tasks(self._loop)  # handlers of replies still being delayed
            for task in pending:
                task.cancel()
            if pending:
                self._loop.run_until_complete(_drain(pending))
            self._loop.close()

    def start(self) -> LocalJudgeServer:
        self._thread = threading.Thread(target=self._run, name="local-judge-server", daemon=True)
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("local judge server did not start within 30 s")
        if self._error is not None:
            raise RuntimeError(f"local judge server failed to start: {self._error!r}")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(30)

    def __enter__(self) -> LocalJudgeServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


async def _drain(tasks) -> None:
    await asyncio.gather(*tasks, return_exceptions=True)


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve a fixed-score OpenAI-compatible judge on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay", type=float, default=0.05, help="seconds before each answer")
    parser.add_argument("--score", type=float, default=7.0)
    parser.add_argument("--no-usage", action="store_true", help="no usage in replies (no prefix-cache simulation)")
    args = parser.parse_args()
    rule = fixed_score(args.score, args.delay)
    server = LocalJudgeServer(rule, port=args.port, record=False, usage=not args.no_usage).start()
    print(f"PORT {server.port}", flush=True)
    try:
        server._thread.join()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
