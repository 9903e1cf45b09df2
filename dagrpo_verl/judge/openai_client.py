"""Async client for OpenAI-compatible chat-completions servers (vLLM, SGLang, verl's reward
router, hosted APIs).

* bounded concurrency: at most ``max_concurrency`` requests in flight per process and event loop;
* per-request timeout ``timeout_s`` (never beyond the caller's deadline);
* retries (at most ``max_retries``) on timeouts, connection errors, HTTP 429 and 5xx, with
  exponential backoff and full jitter, or the server's ``Retry-After`` when it sends one; a
  wait that would end after the deadline is not started;
* other HTTP errors (400, 401, 404, ...) are not retried;
* the API key is read from the environment variable named by ``api_key_env`` and only ever
  written into the ``Authorization`` header: log lines name the status or the exception type.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import random
import time
import weakref
from urllib.parse import urlsplit

import aiohttp

from dagrpo_verl.judge import metrics
from dagrpo_verl.judge.config import CONFIG_PREFIX, JudgeConfig
from dagrpo_verl.judge.prompt import JudgePrompt
from dagrpo_verl.judge.scorers import LLMScorer, within_deadline

__all__ = ["OpenAIScorer", "chat_completions_url"]

logger = logging.getLogger(__name__)

#: Backoff before retry k (0-based) is uniform in [0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**k)].
BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 30.0
_WARN_EVERY_S = 30.0


def chat_completions_url(base_url: str) -> str:
    """``<base_url>/chat/completions``; a bare ``host:port`` (verl's router address) becomes
    ``http://host:port/v1/chat/completions``."""
    url = base_url.strip().rstrip("/")
    if "://" not in url:
        url = "http://" + url
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(
            f"{CONFIG_PREFIX}.base_url={base_url!r} is not an http(s) URL; set it like http://127.0.0.1:8000/v1."
        )
    if not parts.path:
        url += "/v1"
    return url + "/chat/completions"


def _retry_after_seconds(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date), or None."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class _LoopState:
    """aiohttp session and concurrency bound of one event loop."""

    def __init__(self, max_concurrency: int):
        self.semaphore = asyncio.Semaphore(max_concurrency)
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=max_concurrency, limit_per_host=max_concurrency),
            trust_env=False,
        )


class OpenAIScorer(LLMScorer):
    """LLM judge behind an OpenAI-compatible ``/chat/completions`` endpoint."""

    def __init__(self, config: JudgeConfig):
        super().__init__(config.max_response_chars)
        self.config = config
        self.url = chat_completions_url(config.base_url)
        self.model_id = f"openai:{config.model}"
        self._states: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState] = weakref.WeakKeyDictionary()
        self._last_warning = -_WARN_EVERY_S

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
        ).encode("utf-8")
        key = self.config.api_key()
        headers = {"Content-Type": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        last_error = "deadline reached before the first attempt"
        for attempt in range(self.config.max_retries + 1):
            retry_after = None
            try:
                if state.semaphore.locked():  # only a wait for a free slot needs a timer
                    await within_deadline(state.semaphore.acquire(), deadline)
                else:
                    await state.semaphore.acquire()
            except asyncio.TimeoutError:
                last_error = "deadline reached while waiting for a free connection slot"
                break
            try:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                metrics.record(calls=1)
                timeout = aiohttp.ClientTimeout(total=min(self.config.timeout_s, remaining))
                async with state.session.post(self.url, data=body, headers=headers, timeout=timeout) as resp:
                    if resp.status == 200:
                        return _content(json.loads(await resp.read()))
                    last_error = f"HTTP {resp.status}"
                    if resp.status != 429 and resp.status < 500:
                        self._warn("judge request to %s rejected with HTTP %d; not retried", self.url, resp.status)
                        return None
                    retry_after = _retry_after_seconds(resp.headers.get("Retry-After"))
            except asyncio.TimeoutError:
                last_error = "timeout"
            except (aiohttp.ClientError, ValueError) as exc:  # ValueError: the body is not JSON
                last_error = type(exc).__name__
            finally:
                state.semaphore.release()
            if attempt == self.config.max_retries:
                break
            delay = retry_after
            if delay is None:
                delay = random.uniform(0.0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**attempt))
            if loop.time() + delay >= deadline:
                last_error += " (the next retry would start after the deadline)"
                break
            await asyncio.sleep(delay)
        self._warn("judge request to %s gave no answer (%s); score is missing", self.url, last_error)
        return None


def _content(body: object) -> str:
    """The assistant text of a chat-completions body; "" when the body has another shape
    (then the verdict does not parse and the parse-error policy applies)."""
    try:
        content = body["choices"][0]["message"]["content"]  # type: ignore[index]
    except (KeyError, IndexError, TypeError):
        return ""
    return content if isinstance(content, str) else ""
