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
"""Async client for OpenAI-compatible chat-completions servers (vLLM, SGLang, verl's reward
router, hosted APIs).

Built for one judge server shared by many reward workers, each sending dozens of long
requests at once:

* **bounded, adaptive concurrency**: at most ``max_concurrency`` requests in flight per
  process and event loop. When the server signals overload (HTTP 429/503 or a timeout) the
  limit is halved (once per window of requests, never below 1); every success raises it by
  1/limit (additive increase) back up to ``max_concurrency``;
* **separate budgets**: ``connect_timeout_s`` to open a connection; ``timeout_s`` from sending
  a request to its complete reply. Waiting for a local slot or for a server-asked pause does
  not count against either; everything is bounded by the caller's deadline;
* **retries** (at most ``max_retries``) on timeouts, connection errors, bad replies, HTTP 429
  and 5xx, with exponential backoff and full jitter, or the server's ``Retry-After`` (capped at
  ``timeout_s``). A ``Retry-After`` pauses *every* request of the process, not only the one
  that got it. A wait that would end after the deadline is not started. A retry resends the
  same prompt (same random code), so a server with prefix caching serves its prefill from
  cache. Other HTTP errors (400, 401, 404, redirects, ...) are not retried;
* **bounded replies**: at most ``max_reply_bytes`` of body are read (no compression is
  accepted, so no decompression bomb); the body is parsed in linear time and never raises;
* **proxies** from the environment, as curl and ``requests`` read them: ``HTTPS_PROXY`` /
  ``HTTP_PROXY`` / ``ALL_PROXY`` (lower case preferred) and ``NO_PROXY``; loopback hosts
  (``127.0.0.0/8``, ``::1``, ``localhost``) are always reached directly;
* **secrets**: the API key (``api_key_env``) or the credentials of ``base_url`` are only
  written into the ``Authorization`` header; log lines show the redacted URL and the status or
  exception type, never a key, a credential or a reply.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import email.utils
import ipaddress
import json
import logging
import random
import time
import urllib.request
import weakref
from urllib.parse import urlsplit

import aiohttp

from dagrpo_verl.judge import metrics
from dagrpo_verl.judge.config import JudgeConfig, parse_endpoint, redact_url
from dagrpo_verl.judge.prompt import JudgePrompt
from dagrpo_verl.judge.scorers import LLMScorer, within_deadline

__all__ = ["AdaptiveLimit", "OpenAIScorer", "chat_completions_url", "proxy_for"]

logger = logging.getLogger(__name__)

#: Backoff before retry k (0-based) is uniform in [0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**k)].
BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 30.0
_WARN_EVERY_S = 30.0
#: Status codes with which a server asks the client to slow down.
OVERLOAD_STATUSES = (429, 503)
#: Token counts above this in ``usage`` are not believed (a hostile or broken server).
_MAX_TOKEN_COUNT = 10**9
_READ_CHUNK = 1 << 16


def chat_completions_url(base_url: str) -> str:
    """``<base_url path>/chat/completions`` (query kept, credentials removed); a bare
    ``host:port`` (verl's router address) becomes ``http://host:port/v1/chat/completions``."""
    return parse_endpoint(base_url).url


def _is_loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost.localdomain") or host.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def proxy_for(url: str) -> str | None:
    """The proxy URL the environment sets for ``url`` (None: connect directly).

    ``<scheme>_proxy`` then ``all_proxy`` (lower case first, as :mod:`urllib` reads them),
    unless ``no_proxy`` matches the host (``*``, a host name, a domain suffix, an IP, with or
    without port) or the host is a loopback address.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    if _is_loopback(host):
        return None
    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if not proxy:
        return None
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    if urllib.request.proxy_bypass_environment(netloc, proxies) or urllib.request.proxy_bypass_environment(
        host, proxies
    ):
        return None
    if "://" not in proxy:
        proxy = "http://" + proxy
    if urlsplit(proxy).scheme not in ("http", "https"):
        logger.warning(
            "judge: the proxy %s set in the environment for %s has a scheme aiohttp cannot use; connecting "
            "directly (set NO_PROXY for this host, or an http:// proxy, to silence this).",
            redact_url(proxy),
            redact_url(url),
        )
        return None
    return proxy


def _retry_after_seconds(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date), or None."""
    if not value or len(value) > 100:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
            seconds = when.timestamp() - time.time()
        except (TypeError, ValueError, IndexError, OverflowError, OSError):
            return None
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


class AdaptiveLimit:
    """A semaphore whose size adapts to the server (AIMD, as TCP congestion control).

    At most ``limit`` holders at once, ``1 <= limit <= maximum``. :meth:`acquire` returns the
    time the slot was granted; :meth:`release` with ``overloaded=True`` halves the limit unless
    that slot was granted before the last cut (so a burst of simultaneous 429s or timeouts from
    one window of requests cuts once, as TCP ignores losses of packets sent before it slowed
    down); with ``succeeded=True`` it adds ``1/limit``. Waiters are served in arrival order.
    Belongs to one event loop.
    """

    def __init__(self, maximum: int):
        self.maximum = maximum
        self.limit = float(maximum)
        self.in_use = 0
        self._last_cut = -float("inf")
        self._waiters: collections.deque[asyncio.Future] = collections.deque()

    async def acquire(self) -> float:
        if self.in_use < int(self.limit) and not self._waiters:
            self.in_use += 1
            return time.monotonic()
        future = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        try:
            await future
        except BaseException:
            if future.done() and not future.cancelled():  # the slot was handed over: give it back
                self.in_use -= 1
                self._wake()
            else:
                try:
                    self._waiters.remove(future)
                except ValueError:
                    pass
            raise
        return time.monotonic()

    def release(self, granted_at: float, *, overloaded: bool = False, succeeded: bool = False) -> None:
        self.in_use -= 1
        if overloaded:
            if granted_at > self._last_cut:
                self._last_cut = time.monotonic()
                self.limit = max(1.0, self.limit / 2)
        elif succeeded:
            self.limit = min(float(self.maximum), self.limit + 1.0 / self.limit)
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self.in_use < int(self.limit):
            future = self._waiters.popleft()
            if not future.done():
                self.in_use += 1
                future.set_result(None)


class _LoopState:
    """aiohttp session, concurrency limit and server-asked pause of one event loop."""

    def __init__(self, max_concurrency: int):
        self.limit = AdaptiveLimit(max_concurrency)
        self.paused_until = 0.0  # event-loop time before which no request is sent (Retry-After)
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=max_concurrency, limit_per_host=max_concurrency),
            trust_env=False,  # proxies are resolved once by proxy_for; no netrc credentials
            auto_decompress=False,
        )


class _Outcome:
    """What one HTTP attempt gave: the answer text (done), or why it failed and how to go on."""

    __slots__ = ("text", "error", "retry", "overloaded", "retry_after")

    def __init__(self, text=None, error="", retry=False, overloaded=False, retry_after=None):
        self.text, self.error, self.retry, self.overloaded, self.retry_after = (
            text,
            error,
            retry,
            overloaded,
            retry_after,
        )


class OpenAIScorer(LLMScorer):
    """LLM judge behind an OpenAI-compatible ``/chat/completions`` endpoint."""

    def __init__(self, config: JudgeConfig):
        super().__init__(config.max_response_chars)
        self.config = config
        endpoint = parse_endpoint(config.base_url)
        self.url, self.shown_url = endpoint.url, endpoint.shown
        self.model_id = f"openai:{config.model}"
        self.proxy = proxy_for(self.url)
        if self.proxy:
            logger.info("judge: requests to %s go through the proxy %s", self.shown_url, redact_url(self.proxy))
        self._headers = {"Content-Type": "application/json", "Accept-Encoding": "identity"}
        key = config.api_key()
        if key:
            self._headers["Authorization"] = f"Bearer {key}"
        elif endpoint.basic_auth is not None:
            token = base64.b64encode(":".join(endpoint.basic_auth).encode("utf-8", "surrogatepass")).decode("ascii")
            self._headers["Authorization"] = f"Basic {token}"
        self._states: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState] = weakref.WeakKeyDictionary()
        self._last_warning = -_WARN_EVERY_S

    def __repr__(self) -> str:
        return f"OpenAIScorer(url={self.shown_url!r}, model={self.config.model!r})"

    def _state(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        state = self._states.get(loop)
        if state is None:
            state = self._states[loop] = _LoopState(self.config.max_concurrency)
        return state

    async def aclose(self) -> None:
        state = self._states.pop(asyncio.get_running_loop(), None)
        if state is not None:
            await state.session.close()

    def _warn(self, message: str, *args) -> None:
        """Log a warning at most every 30 s (a dead endpoint fails every request of a step)."""
        now = time.monotonic()
        if now - self._last_warning >= _WARN_EVERY_S:
            self._last_warning = now
            logger.warning(message, *args)
        else:
            logger.debug(message, *args)

    async def complete(self, prompt: JudgePrompt, deadline: float) -> str | None:
        loop = asyncio.get_running_loop()
        state = self._state()
        body = json.dumps(
            {
                "model": self.config.model,
                "messages": list(prompt.messages),
                "temperature": self.config.temperature,
                "max_tokens": self.config.max_new_tokens,
            }
        ).encode("ascii")  # json escapes everything else
        last_error = "deadline reached before the first attempt"
        cut_by_deadline = True  # what ends the loop without an answer, unless set otherwise below
        for attempt in range(self.config.max_retries + 1):
            waited_from = loop.time()
            pause = state.paused_until - waited_from
            if pause > 0:
                if waited_from + pause >= deadline:
                    last_error = "the server asked to pause past the deadline (Retry-After)"
                    break
                await asyncio.sleep(pause)
            try:
                granted_at = await within_deadline(state.limit.acquire(), deadline)
            except asyncio.TimeoutError:
                last_error = "deadline reached while waiting for a free slot"
                break
            outcome = None
            try:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    last_error = "deadline reached"
                    break
                metrics.record(
                    calls=1,
                    retries=int(attempt > 0),
                    queue_wait=loop.time() - waited_from,
                    concurrency_limit=int(state.limit.limit),
                )
                outcome = await self._attempt(state, body, min(self.config.timeout_s, remaining))
            finally:
                state.limit.release(
                    granted_at,
                    overloaded=outcome is not None and outcome.overloaded,
                    succeeded=outcome is not None and outcome.text is not None,
                )
            if outcome.text is not None:
                return outcome.text
            last_error = outcome.error
            if not outcome.retry:
                self._warn("judge request to %s failed (%s); not retried, score is missing", self.shown_url, last_error)
                return None
            if deadline - loop.time() <= 0.01:  # the attempt's timeout was the deadline
                last_error += " at the deadline"
                break
            if attempt == self.config.max_retries:
                cut_by_deadline = False
                break
            delay = outcome.retry_after
            if delay is not None:
                delay = min(delay, self.config.timeout_s)
                state.paused_until = max(state.paused_until, loop.time() + delay)
            else:
                delay = random.uniform(0.0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**attempt))
            if loop.time() + delay >= deadline:
                last_error += " (the next retry would start after the deadline)"
                break
            await asyncio.sleep(delay)
        if cut_by_deadline:
            metrics.record(deadline_misses=1)
        self._warn("judge request to %s gave no answer (%s); score is missing", self.shown_url, last_error)
        return None

    async def _attempt(self, state: _LoopState, body: bytes, timeout_s: float) -> _Outcome:
        """One HTTP request; never raises for transport or reply problems."""
        # connect: name resolution + TCP + TLS (the pool never makes a request wait: it is as large
        # as the concurrency limit); total: from sending to the last byte of the reply.
        timeout = aiohttp.ClientTimeout(total=timeout_s, connect=min(self.config.connect_timeout_s, timeout_s))
        try:
            async with state.session.post(
                self.url, data=body, headers=self._headers, timeout=timeout, proxy=self.proxy, allow_redirects=False
            ) as resp:
                status = resp.status
                if status == 200:
                    raw = await _read_capped(resp, self.config.max_reply_bytes)
                    if raw is None:
                        metrics.record(bad_replies=1)
                        return _Outcome(
                            error=f"reply body over max_reply_bytes={self.config.max_reply_bytes}", retry=True
                        )
                    text = _reply_text(raw)
                    if text is None:
                        metrics.record(bad_replies=1)
                        return _Outcome(error="reply is not a chat completion", retry=True)
                    return _Outcome(text=text)
                retry_after = _retry_after_seconds(resp.headers.get("Retry-After"))
        except asyncio.TimeoutError:
            metrics.record(timeouts=1)
            return _Outcome(error="timeout", retry=True, overloaded=True)
        except aiohttp.ClientError as exc:  # connection refused/reset, broken transfer, bad URL
            metrics.record(connection_errors=1)
            return _Outcome(error=type(exc).__name__, retry=True)
        if status in OVERLOAD_STATUSES:
            metrics.record(overloaded=1)
            return _Outcome(error=f"HTTP {status}", retry=True, overloaded=True, retry_after=retry_after)
        metrics.record(http_errors=1)
        retry = status >= 500 or status == 408
        return _Outcome(error=f"HTTP {status}", retry=retry, retry_after=retry_after if retry else None)


async def _read_capped(resp: aiohttp.ClientResponse, limit: int) -> bytes | None:
    """The body, or None when it is longer than ``limit`` bytes (then not read further)."""
    if resp.content_length is not None and resp.content_length > limit:
        return None
    chunks, size = [], 0
    async for chunk in resp.content.iter_chunked(_READ_CHUNK):
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _token_count(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_TOKEN_COUNT:
        return None
    return value


def _reply_text(raw: bytes) -> str | None:
    """The assistant text of a chat-completions body ("" when the message has no text, so that
    the parse-error policy applies), or None when the body is not a chat completion. Records
    the ``usage`` token counts it reports. Never raises."""
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):  # not JSON / not UTF-8 / nested beyond the recursion limit
        return None
    if not isinstance(body, dict):
        return None
    usage = body.get("usage")
    if isinstance(usage, dict):
        counts = {}
        prompt_tokens = _token_count(usage.get("prompt_tokens"))
        if prompt_tokens is not None:
            completion_tokens = _token_count(usage.get("completion_tokens")) or 0
            counts.update(usage_reports=1, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
        details = usage.get("prompt_tokens_details")
        cached = _token_count(details.get("cached_tokens")) if isinstance(details, dict) else None
        if cached is not None:
            counts.update(cached_reports=1, cached_prompt_tokens=cached)
        if counts:
            metrics.record(**counts)
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return None
    message = choices[0].get("message")
    if not isinstance(message, dict):
        return None
    content = message.get("content")
    return content if isinstance(content, str) else ""
