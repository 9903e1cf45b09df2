"""A local OpenAI-compatible chat-completions server for tests and benchmarks.

It stands in for the judge LLM: the *rule* given by the test decides every reply (text,
HTTP status, delay, headers), so tests control what "the judge" answers while the client
still goes through real HTTP on 127.0.0.1. The server records what it received and how
many requests were in flight at once.

Run it alone (used by ``benchmarks/bench_judge.py``)::

    python -m dagrpo_verl.judge.testing --delay 0.05 --score 7
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import threading
from dataclasses import dataclass, field
from typing import Callable

from aiohttp import web

__all__ = ["ChatRequest", "LocalJudgeServer", "Reply", "fixed_score", "verdict_line"]

_MARKER = re.compile(r"<<<CANDIDATE ([0-9a-f]+)>>>")


def verdict_line(score: float, correctness: float | None = None) -> str:
    """A valid verdict line with overall ``score`` (the sub-scores default to it)."""
    sub = score if correctness is None else correctness
    return "VERDICT " + json.dumps({"correctness": sub, "reasoning": score, "completeness": score, "score": score})


@dataclass
class Reply:
    """What the server answers: ``content`` as the assistant message (status 200), or an error
    ``status``; after ``delay_s`` seconds, with extra ``headers``."""

    content: str = ""
    status: int = 200
    delay_s: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ChatRequest:
    """One request as received: JSON body and headers."""

    body: dict
    headers: dict[str, str]

    @property
    def system(self) -> str:
        return self.body["messages"][0]["content"]

    @property
    def user(self) -> str:
        return self.body["messages"][-1]["content"]

    @property
    def nonce(self) -> str:
        """The marker code announced in the system message (the real one)."""
        match = _MARKER.search(self.system)
        if match is None:
            raise AssertionError("the system message announces no candidate marker")
        return match.group(1)

    @property
    def candidate(self) -> str:
        """The text between the real markers in the user message."""
        open_marker, close_marker = f"<<<CANDIDATE {self.nonce}>>>\n", f"\n<<<END CANDIDATE {self.nonce}>>>"
        start = self.user.index(open_marker) + len(open_marker)
        return self.user[start : self.user.index(close_marker, start)]


def fixed_score(score: float, delay_s: float = 0.0) -> Callable[[ChatRequest], Reply]:
    """A rule answering every request with a short justification and ``score``."""
    return lambda request: Reply(content=f"Checked.\n{verdict_line(score)}", delay_s=delay_s)


class LocalJudgeServer:
    """OpenAI-compatible ``POST /v1/chat/completions`` on 127.0.0.1 in a background thread.

    Use as a context manager; ``url`` is the ``base_url`` to configure. ``requests`` lists
    the received requests (when ``record=True``), ``count`` counts them and ``max_in_flight``
    is the largest number being served at once.
    """

    def __init__(self, rule: Callable[[ChatRequest], Reply], port: int = 0, record: bool = True):
        self.rule = rule
        self.port = port
        self.record = record
        self.requests: list[ChatRequest] = []
        self.count = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        chat = ChatRequest(body=body, headers=dict(request.headers))
        with self._lock:
            self.count += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            if self.record:
                self.requests.append(chat)
        try:
            reply = self.rule(chat)
            if reply.delay_s:
                await asyncio.sleep(reply.delay_s)
            if reply.status != 200:
                return web.json_response({"error": {"message": "test error"}}, status=reply.status,
                                         headers=reply.headers)
            return web.json_response(
                {
                    "id": "local",
                    "object": "chat.completion",
                    "model": body.get("model", ""),
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": reply.content},
                                 "finish_reason": "stop"}],
                },
                headers=reply.headers,
            )
        finally:
            with self._lock:
                self.in_flight -= 1

    async def _serve(self) -> None:
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
            self._loop.close()

    def start(self) -> "LocalJudgeServer":
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

    def __enter__(self) -> "LocalJudgeServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve a fixed-score OpenAI-compatible judge on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay", type=float, default=0.05, help="seconds before each answer")
    parser.add_argument("--score", type=float, default=7.0)
    args = parser.parse_args()
    server = LocalJudgeServer(fixed_score(args.score, args.delay), port=args.port, record=False).start()
    print(f"PORT {server.port}", flush=True)
    try:
        server._thread.join()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
