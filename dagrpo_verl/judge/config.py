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
"""``JudgeConfig``: the judge's settings and their validation.

In a verl run the settings arrive as ``reward.custom_reward_function.reward_kwargs.judge``
(for example ``+reward.custom_reward_function.reward_kwargs.judge.backend=openai``). Every
key is checked here; a bad value raises ``ValueError`` naming the full key and the fix.

Secrets: the API key is never stored (only the name of the variable holding it). Credentials
written into ``base_url`` (``https://user:password@host/v1``) are accepted but never shown: the
config's ``repr``, error messages and log lines print :func:`redact_url` of it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

__all__ = [
    "BACKENDS",
    "CONFIG_PREFIX",
    "MOVED_KEYS",
    "Endpoint",
    "JudgeConfig",
    "judge_config_from",
    "parse_endpoint",
    "redact_url",
]

#: ``openai``: an OpenAI-compatible chat-completions server (vLLM, SGLang, verl's reward-model
#: router, a hosted API). ``hf``: an in-process transformers causal LM. ``rule``: the cheap
#: rule scorer (no LLM). ``none``: no judge, every score is missing (NaN).
BACKENDS = ("openai", "hf", "rule", "none")

#: Where the keys live in a verl config; used in error messages.
CONFIG_PREFIX = "reward.custom_reward_function.reward_kwargs.judge"

#: Keys that were judge settings once and now live elsewhere: the old key -> its one home.
MOVED_KEYS = {
    "judge_anchors": "algorithm.dagrpo.anchor.judge_anchors",
    "max_score": "algorithm.dagrpo.anchor.max_score",
}

#: Query parameters whose values :func:`redact_url` hides (matched as substrings of the
#: lower-cased name: ``api_key``, ``access_token``, ``sig``, ...).
_SECRET_QUERY_NAMES = ("key", "token", "secret", "pass", "sig", "auth", "cred")
_REDACTED = "***"


@dataclass(frozen=True, repr=False)
class JudgeConfig:
    """Settings of the judge (one frozen, hashable value: it keys the per-process singleton).

    Args:
        backend: one of :data:`BACKENDS`.
        base_url: ``openai`` only: server root, e.g. ``http://127.0.0.1:8000/v1``
            (``/chat/completions`` is appended to the path; a query string such as
            ``?api-version=...`` is kept). A bare ``host:port`` (verl's reward router address) is
            read as ``http://host:port/v1``. ``user:password@`` in it is sent as HTTP Basic auth.
        model: ``openai``: the model name sent in the request. ``hf``: a local causal-LM
            directory, or ``smollm2`` for the embedded SmolLM2-135M-Instruct (converted once
            into ``<cache_dir or ~/.cache/dagrpo_verl>/smollm2``).
        api_key_env: name of the environment variable that holds the API key ("" = no key).
            The key itself is never stored in the config, logged, or put in errors/metrics.
        max_concurrency: most judge requests in flight at once per process (``openai``). The
            server sees up to ``max_concurrency`` x the number of processes that judge (verl:
            ``reward.num_workers``); see docs/judge.md for sizing. The client lowers its own
            limit while the server signals overload (429/503/timeouts) and raises it again on
            success (never above this value).
        connect_timeout_s: seconds to open a connection (TCP + TLS) to the server.
        timeout_s: seconds one request may take from being sent to its complete reply (server
            queue, prefill and generation). Time spent waiting for a local concurrency slot or
            for a server-requested pause (``Retry-After``) does not count.
        max_retries: retries of one request after a timeout, connection error, 429 or 5xx.
        deadline_s: overall time budget of one ``score`` call (a batch, or one sample when
            called from the reward function); what is not scored by then is missing (NaN).
        cache_dir: directory of the on-disk cache ("" = in-memory cache only).
        cache_max_entries: most scores kept in the per-process memory cache (least recently
            used ones are dropped first; the disk cache is not bounded by it).
        max_response_chars: the candidate response is cut to this many characters (head and
            tail kept, the middle replaced by a marker) before it reaches the judge.
        max_reference_chars: the same cut for the reference (expert solution or answer).
        max_question_chars: the same cut for the problem statement.
        max_reply_bytes: largest judge reply body read (``openai``); a longer one is a bad
            reply (missing score), never read further.
        temperature: sampling temperature of the judge (0 = greedy).
        max_new_tokens: most tokens the judge may write.
    """

    backend: str = "rule"
    base_url: str = ""
    model: str = ""
    api_key_env: str = ""
    max_concurrency: int = 32
    connect_timeout_s: float = 10.0
    timeout_s: float = 300.0
    max_retries: int = 3
    deadline_s: float = 1800.0
    cache_dir: str = ""
    cache_max_entries: int = 100_000
    max_response_chars: int = 16000
    max_reference_chars: int = 32000
    max_question_chars: int = 8000
    max_reply_bytes: int = 1 << 20
    temperature: float = 0.0
    max_new_tokens: int = 512

    def __post_init__(self):
        if self.backend not in BACKENDS:
            raise ValueError(
                f"{CONFIG_PREFIX}.backend={self.backend!r} is not one of {list(BACKENDS)}; "
                f"set {CONFIG_PREFIX}.backend=<one of them>."
            )
        for key in ("base_url", "model", "api_key_env", "cache_dir"):
            if not isinstance(getattr(self, key), str):
                raise ValueError(f"{CONFIG_PREFIX}.{key} must be a string, got {type(getattr(self, key)).__name__}.")
        if self.backend == "openai":
            if not self.base_url:
                raise ValueError(
                    f"{CONFIG_PREFIX}.base_url is empty but backend=openai needs it; "
                    f"set {CONFIG_PREFIX}.base_url=http://HOST:PORT/v1."
                )
            if not self.model:
                raise ValueError(
                    f"{CONFIG_PREFIX}.model is empty but backend=openai needs the served model name; "
                    f"set {CONFIG_PREFIX}.model=<name>."
                )
            endpoint = parse_endpoint(self.base_url)
            if endpoint.basic_auth is not None and self.api_key_env:
                raise ValueError(
                    f"{CONFIG_PREFIX}.base_url carries credentials (user:password@) and {CONFIG_PREFIX}.api_key_env "
                    "is set too; use one of them (the key is sent as 'Authorization: Bearer', the credentials as "
                    "Basic auth)."
                )
        if self.backend == "hf" and not self.model:
            raise ValueError(
                f"{CONFIG_PREFIX}.model is empty but backend=hf needs a local model directory; "
                f"set {CONFIG_PREFIX}.model=/path/to/model (or smollm2 for the embedded demo model)."
            )
        if self.api_key_env:
            if self.api_key_env not in os.environ:
                raise ValueError(
                    f"{CONFIG_PREFIX}.api_key_env names the environment variable {self.api_key_env!r}, which is "
                    f"not set in this process; export it (on every node) or set {CONFIG_PREFIX}.api_key_env=''."
                )
            key = os.environ[self.api_key_env]
            if not key or not all(33 <= ord(c) <= 126 for c in key):  # never echo the value
                raise ValueError(
                    f"the environment variable {self.api_key_env!r} named by {CONFIG_PREFIX}.api_key_env is empty or "
                    "holds characters an HTTP header cannot carry (spaces, newlines, non-ASCII); export the bare key."
                )
        _check_int("max_concurrency", self.max_concurrency, 1)
        _check_int("max_retries", self.max_retries, 0)
        _check_int("cache_max_entries", self.cache_max_entries, 1)
        _check_int("max_response_chars", self.max_response_chars, 200)
        _check_int("max_reference_chars", self.max_reference_chars, 200)
        _check_int("max_question_chars", self.max_question_chars, 200)
        _check_int("max_reply_bytes", self.max_reply_bytes, 4096)
        _check_int("max_new_tokens", self.max_new_tokens, 1)
        _check_positive("connect_timeout_s", self.connect_timeout_s)
        _check_positive("timeout_s", self.timeout_s)
        _check_positive("deadline_s", self.deadline_s)
        if not (_is_number(self.temperature) and 0.0 <= float(self.temperature) <= 2.0):
            raise ValueError(f"{CONFIG_PREFIX}.temperature must be a number in [0, 2], got {self.temperature!r}.")

    def __repr__(self) -> str:
        shown = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "base_url":
                value = redact_url(value)
            shown.append(f"{f.name}={value!r}")
        return f"JudgeConfig({', '.join(shown)})"

    __str__ = __repr__

    def api_key(self) -> str | None:
        """The API key read from ``api_key_env`` at call time (None without one)."""
        return os.environ.get(self.api_key_env) if self.api_key_env else None


class Endpoint(NamedTuple):
    """A parsed ``base_url``: the chat-completions URL without credentials, its redacted form
    for messages, and the Basic-auth credentials that were written into it (or None)."""

    url: str
    shown: str
    basic_auth: tuple[str, str] | None


def parse_endpoint(base_url: str) -> Endpoint:
    """``<base_url path>/chat/completions`` with the query string kept and the credentials taken
    out; a bare ``host:port`` (verl's router address) becomes ``http://host:port/v1/...``.

    Raises ``ValueError`` (naming the key, with the URL redacted) for anything but http(s).
    """
    text = base_url.strip()
    if "://" not in text:
        text = "http://" + text
    try:
        parts = urlsplit(text)
        port = parts.port  # raises ValueError for a port that is not a number in range
        host = parts.hostname
    except ValueError:
        parts, host, port = None, None, None
    if parts is None or parts.scheme not in ("http", "https") or not host:
        raise ValueError(
            f"{CONFIG_PREFIX}.base_url={redact_url(base_url)!r} is not an http(s) URL; "
            "set it like http://127.0.0.1:8000/v1."
        )
    basic_auth = None
    if parts.username is not None or parts.password is not None:
        basic_auth = (unquote(parts.username or ""), unquote(parts.password or ""))
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    path = parts.path.rstrip("/") or "/v1"
    url = urlunsplit((parts.scheme, netloc, path + "/chat/completions", parts.query, ""))
    return Endpoint(url=url, shown=redact_url(url), basic_auth=basic_auth)


def redact_url(url: str) -> str:
    """``url`` fit for a log line: user info replaced by ``***`` and the values of query
    parameters whose names look secret (key, token, secret, password, signature, auth,
    credential) replaced by ``***``. Never raises; what cannot be parsed is hidden whole."""
    if not isinstance(url, str):
        return _REDACTED
    try:
        parts = urlsplit(url if "://" in url else "//" + url)
        netloc = parts.netloc
        if "@" in netloc:
            netloc = _REDACTED + "@" + netloc.rsplit("@", 1)[1]
        query = parts.query
        if query:
            pairs = parse_qsl(query, keep_blank_values=True)
            query = urlencode(
                [(k, _REDACTED if any(s in k.lower() for s in _SECRET_QUERY_NAMES) else v) for k, v in pairs],
                safe="*",
                quote_via=quote,
            )
        shown = urlunsplit((parts.scheme, netloc, parts.path, query, ""))
        return shown if "://" in url else shown.removeprefix("//")
    except ValueError:
        return _REDACTED


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_int(key: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{CONFIG_PREFIX}.{key} must be an integer >= {minimum}, got {value!r}.")


def _check_positive(key: str, value: Any) -> None:
    if not _is_number(value) or not value > 0:
        raise ValueError(f"{CONFIG_PREFIX}.{key} must be a finite number of seconds > 0, got {value!r}.")


def judge_config_from(values: Any = None) -> JudgeConfig:
    """Build a :class:`JudgeConfig` from a dict, an OmegaConf ``DictConfig`` or a ``JudgeConfig``.

    ``None`` gives the defaults (the rule scorer). Unknown keys raise ``ValueError`` listing
    the valid ones.
    """
    if values is None:
        return JudgeConfig()
    if isinstance(values, JudgeConfig):
        return values
    if not isinstance(values, Mapping):
        try:
            from omegaconf import DictConfig, OmegaConf
        except ImportError:  # pragma: no cover - omegaconf ships with verl
            DictConfig = ()  # type: ignore[assignment]
        if isinstance(values, DictConfig):
            values = OmegaConf.to_container(values, resolve=True)
        else:
            raise ValueError(
                f"{CONFIG_PREFIX} must be a mapping of judge settings, got {type(values).__name__}; "
                f"set keys such as {CONFIG_PREFIX}.backend=openai."
            )
    known = {f.name for f in fields(JudgeConfig)}
    moved = sorted(set(map(str, values)) & set(MOVED_KEYS))
    if moved:
        raise ValueError(
            "; ".join(
                f"{CONFIG_PREFIX}.{key} moved to {MOVED_KEYS[key]} (one home: the anchor mixer decides an "
                "anchor's score)"
                for key in moved
            )
            + f"; remove {', '.join(CONFIG_PREFIX + '.' + k for k in moved)} and set the algorithm.dagrpo.anchor key."
        )
    unknown = sorted(set(map(str, values)) - known)
    if unknown:
        raise ValueError(
            f"Unknown key(s) {[CONFIG_PREFIX + '.' + k for k in unknown]}; valid keys under {CONFIG_PREFIX}: "
            f"{sorted(known)}."
        )
    kwargs = dict(values)
    # A key given as null on the command line means "not set".
    for key in ("base_url", "model", "api_key_env", "cache_dir"):
        if key in kwargs and kwargs[key] is None:
            kwargs[key] = ""
    return JudgeConfig(**kwargs)
