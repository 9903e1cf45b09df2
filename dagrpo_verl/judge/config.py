"""``JudgeConfig``: the judge's settings and their validation.

In a verl run the settings arrive as ``reward.custom_reward_function.reward_kwargs.judge``
(for example ``+reward.custom_reward_function.reward_kwargs.judge.backend=openai``). Every
key is checked here; a bad value raises ``ValueError`` naming the full key and the fix.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

__all__ = ["BACKENDS", "CONFIG_PREFIX", "JudgeConfig", "judge_config_from"]

#: ``openai``: an OpenAI-compatible chat-completions server (vLLM, SGLang, verl's reward-model
#: router, a hosted API). ``hf``: an in-process transformers causal LM. ``rule``: the cheap
#: rule scorer (no LLM). ``none``: no judge, every score is missing (NaN).
BACKENDS = ("openai", "hf", "rule", "none")

#: Where the keys live in a verl config; used in error messages.
CONFIG_PREFIX = "reward.custom_reward_function.reward_kwargs.judge"


@dataclass(frozen=True)
class JudgeConfig:
    """Settings of the judge (one frozen, hashable value: it keys the per-process singleton).

    Args:
        backend: one of :data:`BACKENDS`.
        base_url: ``openai`` only: server root, e.g. ``http://127.0.0.1:8000/v1``
            (``/chat/completions`` is appended). A bare ``host:port`` (verl's reward router
            address) is read as ``http://host:port/v1``.
        model: ``openai``: the model name sent in the request. ``hf``: a local causal-LM
            directory, or ``smollm2`` for the embedded SmolLM2-135M-Instruct (converted once
            into ``<cache_dir or ~/.cache/dagrpo_verl>/smollm2``).
        api_key_env: name of the environment variable that holds the API key ("" = no key).
            The key itself is never stored in the config, logged, or put in errors/metrics.
        max_concurrency: most judge requests in flight at once per process (``openai``).
        timeout_s: per-request timeout in seconds.
        max_retries: retries of one request after a timeout, connection error, 429 or 5xx.
        deadline_s: overall time budget of one ``score`` call (a batch, or one sample when
            called from the reward function); what is not scored by then is missing (NaN).
        cache_dir: directory of the on-disk cache ("" = in-memory cache only).
        max_response_chars: the candidate response is cut to this many characters (head and
            tail kept, the middle replaced by a marker) before it reaches the judge.
        judge_anchors: False: off-policy anchors get ``max_score`` without a judge call.
        max_score: score given to anchors that are not judged.
        temperature: sampling temperature of the judge (0 = greedy).
        max_new_tokens: most tokens the judge may write.
    """

    backend: str = "rule"
    base_url: str = ""
    model: str = ""
    api_key_env: str = ""
    max_concurrency: int = 64
    timeout_s: float = 60.0
    max_retries: int = 3
    deadline_s: float = 600.0
    cache_dir: str = ""
    max_response_chars: int = 16000
    judge_anchors: bool = False
    max_score: float = 10.0
    temperature: float = 0.0
    max_new_tokens: int = 512

    def __post_init__(self):
        if self.backend not in BACKENDS:
            raise ValueError(
                f"{CONFIG_PREFIX}.backend={self.backend!r} is not one of {list(BACKENDS)}; "
                f"set {CONFIG_PREFIX}.backend=<one of them>."
            )
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
        if self.backend == "hf" and not self.model:
            raise ValueError(
                f"{CONFIG_PREFIX}.model is empty but backend=hf needs a local model directory; "
                f"set {CONFIG_PREFIX}.model=/path/to/model (or smollm2 for the embedded demo model)."
            )
        if self.api_key_env and self.api_key_env not in os.environ:
            raise ValueError(
                f"{CONFIG_PREFIX}.api_key_env names the environment variable {self.api_key_env!r}, which is "
                f"not set in this process; export it (on every node) or set {CONFIG_PREFIX}.api_key_env=''."
            )
        _check_int("max_concurrency", self.max_concurrency, 1)
        _check_int("max_retries", self.max_retries, 0)
        _check_int("max_response_chars", self.max_response_chars, 200)
        _check_int("max_new_tokens", self.max_new_tokens, 1)
        _check_positive("timeout_s", self.timeout_s)
        _check_positive("deadline_s", self.deadline_s)
        if not isinstance(self.judge_anchors, bool):
            raise ValueError(f"{CONFIG_PREFIX}.judge_anchors must be true or false, got {self.judge_anchors!r}.")
        if not (isinstance(self.max_score, (int, float)) and 1.0 <= float(self.max_score) <= 10.0):
            raise ValueError(f"{CONFIG_PREFIX}.max_score must be a number in [1, 10], got {self.max_score!r}.")
        if not (isinstance(self.temperature, (int, float)) and 0.0 <= float(self.temperature) <= 2.0):
            raise ValueError(f"{CONFIG_PREFIX}.temperature must be a number in [0, 2], got {self.temperature!r}.")

    def api_key(self) -> str | None:
        """The API key read from ``api_key_env`` at call time (None without one)."""
        return os.environ.get(self.api_key_env) if self.api_key_env else None

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the settings (contains the variable *name*, never the key)."""
        return asdict(self)


def _check_int(key: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{CONFIG_PREFIX}.{key} must be an integer >= {minimum}, got {value!r}.")


def _check_positive(key: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (value > 0) or math.isinf(value):
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
    unknown = sorted(set(values) - known)
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
