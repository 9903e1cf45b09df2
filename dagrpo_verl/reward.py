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
"""DaGRPO reward function for verl: binary correctness plus the judge score.

Use it from a verl config::

    reward.custom_reward_function.path=pkg://dagrpo_verl.reward
    reward.custom_reward_function.name=compute_score
    +reward.custom_reward_function.reward_kwargs.judge.backend=openai
    +reward.custom_reward_function.reward_kwargs.judge.base_url=http://127.0.0.1:8000/v1
    +reward.custom_reward_function.reward_kwargs.judge.model=Qwen/Qwen2.5-7B-Instruct

verl awaits this ``async`` function once per sample and runs the samples of a chunk
concurrently (``RewardLoopWorker.compute_score_batch``), so judge requests overlap up to
``judge.max_concurrency``. Every call returns the same keys::

    {"score": R, "acc": R, "judge_score": S, "grade_timeout": T, "grade_error": E}

R = 1.0 iff the final answer is correct (math-verify through :func:`dagrpo_verl.grading.grade`,
option letters for multiple-choice sets), else 0.0. Grading runs in the grading processes of
:mod:`dagrpo_verl.grading.pool`, bounded by ``reward_kwargs.grading.timeout_s`` in any thread;
T = 1.0 when it ran past the bound, E = 1.0 when the grader failed (R = 0 in both cases).
Nothing a policy can write (odd Unicode, NUL bytes, huge or deeply nested text, None) raises;
a bad setting raises a named ``ValueError`` at the first call. S in [1, 10] is the judge's score
against the reference, NaN when missing. The reference is ``extra_info["anchor"]`` (the expert
solution); without one the judge gets the ground-truth answer and is told so (:func:`judge_item`).
The problem statement is read from ``extra_info["question"]``. No judge call is made, and S = NaN, for

* samples whose judge score the DaGRPO agent loop sets itself (``extra_info["judge_deferred"]``, set by
  the agent loops on every training sample): it judges a group after grading and anchor mixing, and
  only when a score can change an advantage (lazy judging, :mod:`dagrpo_verl.judge.group`); it also
  sets it on an anchor whose score is ``algorithm.dagrpo.anchor.max_score``;
* validation samples (``extra_info["is_validation"]``, set by the DaGRPO agent loops) unless
  ``reward_kwargs.judge_validation=true``: no advantage is computed from them.

Faults (docs/reliability.md). A sample whose scoring raises (a data row the reward cannot read,
such as a null or non-finite ground truth or an ``extra_info`` of the wrong type, or a bug) is a
**counted failure, not an exception**: R = 0, S = NaN (a missing judge score, handled by
``algorithm.dagrpo.on_missing_score``) and ``reward_error`` = 1.0. The reward worker logs a
WARNING with the error, the data source and the row's ``extra_info.index`` (at most one per 30 s,
with a count) and keeps the last few for :func:`pop_error_examples_from`. Why not raise: verl
0.9.1's v1 trainer turns an exception in the reward function into a failed prompt group that it
leaves out of the step without a metric (an ERROR traceback in the agent-loop worker's log; the
step trains on fewer prompts), and stops only when every group of a step failed, with
``Sync replay buffer selected terminal groups with no materializable trajectories``, which names
no cause; the legacy trainer stops at the first one. The trainer hooks of :mod:`dagrpo_verl.integration.trainer`
log the batch sums of ``grade_timeout``, ``grade_error`` and ``reward_error`` as
:data:`FAULT_METRICS` every step, and :func:`check_error_budget` stops the run with
:class:`RewardErrorsExceeded` when more than ``reward_kwargs.max_error_frac`` (default
:data:`DEFAULT_MAX_ERROR_FRAC`) of a step's samples raised: a few bad rows do not end a multi-day
run, a reward that fails systematically does.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import math
import os
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from dagrpo_verl.fields import (
    ACC,
    ANCHOR_TEXT,
    GRADE_ERROR,
    GRADE_TIMEOUT,
    IS_VALIDATION,
    JUDGE_DEFERRED,
    JUDGE_SCORE,
    QUESTION,
    REWARD_ERROR,
)
from dagrpo_verl.grading import ground_truth_text
from dagrpo_verl.grading.pool import GradeStatus, GradingConfig, get_grading_pool, grading_config_from, utf8_safe
from dagrpo_verl.judge import metrics as judge_metrics
from dagrpo_verl.judge.config import CONFIG_PREFIX, JudgeConfig, judge_config_from
from dagrpo_verl.judge.core import get_judge
from dagrpo_verl.judge.scorers import JudgeItem

__all__ = [
    "DEFAULT_MAX_ERROR_FRAC",
    "FAULT_METRICS",
    "QUESTION",
    "RewardErrorsExceeded",
    "check_error_budget",
    "check_reward_kwargs",
    "compute_score",
    "fault_metrics",
    "is_dagrpo_reward",
    "judge_config_of",
    "judge_item",
    "max_error_frac_from",
    "pop_error_examples",
    "pop_error_examples_from",
    "record_sample_error",
]

logger = logging.getLogger(__name__)
logger.setLevel(os.getenv("VERL_LOGGING_LEVEL", "INFO"))

#: Reward extra-info fault keys -> the step metric of their batch sum.
FAULT_METRICS = {
    GRADE_TIMEOUT: "reward/grade_timeouts",
    GRADE_ERROR: "reward/grade_errors",
    REWARD_ERROR: "reward/errors",
}
#: ``reward_kwargs.max_error_frac``: largest share of a training step's samples whose scoring may
#: raise before the run stops (one bad row in a 1,024-sample step is 0.8%).
DEFAULT_MAX_ERROR_FRAC = 0.1
_MAX_ERROR_FRAC_KEY = "reward.custom_reward_function.reward_kwargs.max_error_frac"

_NO_QUESTION = "(The problem statement is not available; judge the candidate against the reference.)"


async def compute_score(
    data_source: str,
    solution_str: str,
    ground_truth: Any,
    extra_info: Mapping[str, Any] | None = None,
    judge: Any = None,
    require_boxed: bool = False,
    grading: Any = None,
    judge_validation: bool = False,
    max_error_frac: float = DEFAULT_MAX_ERROR_FRAC,
    reward_router_address: str | None = None,
    reward_model_tokenizer: Any = None,
    **unknown: Any,
) -> dict[str, float]:
    """Reward of one response: ``{"score": R, "acc": R, "judge_score": S, "grade_timeout": T,
    "grade_error": E, "reward_error": X}`` (X = 1.0: scoring raised, R = 0 and S = NaN; see the module docstring).

    Args:
        data_source: the row's ``data_source`` (selects letter grading for ARC/GPQA/MMLU).
        solution_str: the decoded response.
        ground_truth: the row's ``reward_model.ground_truth`` (a string or a number).
        extra_info: the row's ``extra_info`` (``question``, ``anchor``; ``judge_deferred`` and
            ``is_validation`` set by the DaGRPO agent loops).
        judge: the judge settings from ``reward.custom_reward_function.reward_kwargs.judge``
            (see :class:`~dagrpo_verl.judge.config.JudgeConfig`); default: the rule scorer.
        require_boxed: R counts only the response's last ``\\boxed{}`` (``reward_kwargs.require_boxed``);
            by default math-verify also accepts an unboxed final expression.
        grading: the grading bound from ``reward_kwargs.grading`` (``timeout_s``, ``workers``,
            ``memory_mb``; see :class:`~dagrpo_verl.grading.pool.GradingConfig`).
        judge_validation: judge validation samples too (``reward_kwargs.judge_validation``); by
            default they get S = NaN and no judge call.
        max_error_frac: read by the trainer hooks (:func:`check_error_budget`), checked here: the
            largest share of a training step's samples with ``reward_error`` = 1 before the run stops.
        reward_router_address: passed by verl when a reward model is served; used as the
            judge's ``base_url`` when ``judge.backend=openai`` and no ``base_url`` is set.
        reward_model_tokenizer: passed by verl with the router address; not needed here.
    """
    del reward_model_tokenizer  # the judge talks text to an OpenAI-compatible endpoint
    config, grading_config = _settings(
        judge, require_boxed, grading, judge_validation, max_error_frac, reward_router_address, unknown
    )
    try:
        return await _score_sample(
            data_source, solution_str, ground_truth, extra_info, config, grading_config, require_boxed, judge_validation
        )
    except Exception as error:  # a data row or a bug: counted (reward_error), never out of the reward function
        record_sample_error(error, data_source, extra_info)
        return _result(0.0, math.nan, reward_error=1.0)


def check_reward_kwargs(reward_kwargs: Mapping[str, Any] | None, reward_router_address: str | None = None) -> None:
    """Raise the ``ValueError`` that :func:`compute_score` would raise at its first call for these
    ``reward.custom_reward_function.reward_kwargs`` (start-up checks, before any rollout).

    Args:
        reward_kwargs: the settings (a dict or DictConfig; None = defaults).
        reward_router_address: verl's reward-model router, when one is served (an ``openai`` judge
            without ``base_url`` uses it).
    """
    if reward_kwargs is not None and not isinstance(reward_kwargs, Mapping):  # a DictConfig is a Mapping
        raise ValueError(f"reward.custom_reward_function.reward_kwargs must be a mapping, got {reward_kwargs!r}.")
    kwargs = dict(reward_kwargs or {})
    _settings(
        kwargs.pop("judge", None),
        kwargs.pop("require_boxed", False),
        kwargs.pop("grading", None),
        kwargs.pop("judge_validation", False),
        kwargs.pop("max_error_frac", DEFAULT_MAX_ERROR_FRAC),
        reward_router_address,
        kwargs,
    )


def is_dagrpo_reward(path: Any) -> bool:
    """Whether ``reward.custom_reward_function.path`` names this module (``pkg://dagrpo_verl.reward``,
    ``dagrpo_verl/reward.py``, ...)."""
    return bool(path) and str(path).removeprefix("pkg://").replace("/", ".").removesuffix(".py") == __name__


def judge_config_of(reward_kwargs: Mapping[str, Any] | None) -> JudgeConfig:
    """The judge settings of ``reward.custom_reward_function.reward_kwargs`` (``judge.*``), as
    :func:`compute_score` reads them: the group judge of the DaGRPO agent loop uses the same judge."""
    judge = dict(reward_kwargs or {}).get("judge")
    return _config(judge, None)


def judge_item(data_source: Any, solution_str: Any, ground_truth: Any, extra_info: Any) -> JudgeItem:
    """The judge request of one response, exactly as :func:`compute_score` sends it: the problem
    (``extra_info.question``, or a note that it is unavailable), the response, and the reference
    (``extra_info.anchor``, the expert solution; without one the ground-truth answer).

    Raises:
        ValueError: for a row the reward cannot read (it then scores ``reward_error`` = 1).
    """
    ground_truth = ground_truth_text(ground_truth, f"reward_model.ground_truth (data_source={data_source!r})")
    if extra_info is None:
        extra_info = {}
    elif not isinstance(extra_info, Mapping):
        raise ValueError(f"extra_info must be a dict (the row's extra_info), got {type(extra_info).__name__}.")
    anchor = utf8_safe(_text(extra_info, ANCHOR_TEXT))
    return JudgeItem(
        question=utf8_safe(_text(extra_info, QUESTION)) or _NO_QUESTION,
        response=utf8_safe(solution_str),
        reference=anchor or utf8_safe(ground_truth),
        reference_kind="solution" if anchor else "answer",
    )


def _settings(
    judge: Any,
    require_boxed: Any,
    grading: Any,
    judge_validation: Any,
    max_error_frac: Any,
    reward_router_address: str | None,
    unknown: Mapping[str, Any],
) -> tuple[JudgeConfig, GradingConfig]:
    """The checked settings of :func:`compute_score` (the same for every sample): a named ``ValueError`` if bad."""
    if unknown:
        raise ValueError(
            f"Unknown key(s) {sorted('reward.custom_reward_function.reward_kwargs.' + k for k in unknown)} for "
            f"pkg://dagrpo_verl.reward:compute_score; its settings are require_boxed, judge_validation, "
            f"max_error_frac, grading.<key> and {CONFIG_PREFIX}.<key>."
        )
    if not isinstance(require_boxed, (bool, np.bool_)):
        raise ValueError(
            f"reward.custom_reward_function.reward_kwargs.require_boxed={require_boxed!r} must be true or false."
        )
    if not isinstance(judge_validation, (bool, np.bool_)):
        raise ValueError(
            f"reward.custom_reward_function.reward_kwargs.judge_validation={judge_validation!r} must be true or false."
        )
    max_error_frac_from(max_error_frac)
    return _config(judge, reward_router_address), _grading_config(grading)


async def _score_sample(
    data_source: Any,
    solution_str: Any,
    ground_truth: Any,
    extra_info: Any,
    config: JudgeConfig,
    grading_config: GradingConfig,
    require_boxed: bool,
    judge_validation: bool,
) -> dict[str, float]:
    """:func:`compute_score` of one sample with checked settings; raises on a row it cannot read."""
    ground_truth = ground_truth_text(ground_truth, f"reward_model.ground_truth (data_source={data_source!r})")
    if extra_info is None:
        extra_info = {}
    elif not isinstance(extra_info, Mapping):
        raise ValueError(f"extra_info must be a dict (the row's extra_info), got {type(extra_info).__name__}.")
    solution_str = utf8_safe(solution_str)

    judge_task = None
    judge_score = math.nan
    if config.backend == "none" or bool(extra_info.get(JUDGE_DEFERRED, False)):
        pass  # no judge, or the DaGRPO agent loop judges the group after grading (lazy judging)
    elif bool(extra_info.get(IS_VALIDATION, False)) and not judge_validation:
        pass  # a validation score feeds no advantage: no judge call
    else:
        item = judge_item(data_source, solution_str, ground_truth, extra_info)
        # Started first: off the main thread, the request is in flight while the answer is graded.
        judge_task = asyncio.ensure_future(get_judge(config).score([item]))
    try:
        # In a grading process, bounded, without blocking the event loop (judge requests go on meanwhile).
        graded = await get_grading_pool(grading_config).agrade(
            solution_str, ground_truth, "" if data_source is None else str(data_source), bool(require_boxed)
        )
        if judge_task is not None:
            judge_metrics.record(ready_time=time.time())  # graded: what the judge takes from here is exposed
            judge_score = (await judge_task)[0]
            judge_metrics.record(judged_time=time.time())
    finally:
        if judge_task is not None and not judge_task.done():
            judge_task.cancel()
    return _result(
        1.0 if graded.correct else 0.0,
        judge_score,
        grade_timeout=float(graded.status is GradeStatus.TIMEOUT),
        grade_error=float(graded.status is GradeStatus.ERROR),
    )


def _result(
    acc: float, judge_score: float, *, grade_timeout: float = 0.0, grade_error: float = 0.0, reward_error: float = 0.0
) -> dict[str, float]:
    """The reward dict: the same keys for every sample (verl requires it)."""
    return {
        "score": acc,
        ACC: acc,
        JUDGE_SCORE: judge_score,
        GRADE_TIMEOUT: grade_timeout,
        GRADE_ERROR: grade_error,
        REWARD_ERROR: reward_error,
    }


def _text(extra_info: Mapping[str, Any], key: str) -> str:
    """``extra_info[key]`` as text: a string, or chat messages (``[{"role", "content"}, ...]``,
    as in LUFFY's ``target`` column) whose contents are joined; "" when absent."""
    value = extra_info.get(key)
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    try:
        return "\n".join(str(message["content"]) for message in value)
    except (TypeError, KeyError) as exc:
        raise ValueError(
            f"extra_info[{key!r}] has type {type(value).__name__}; store a string or a list of "
            "{'role': ..., 'content': ...} messages there."
        ) from exc


def _config(judge: Any, reward_router_address: str | None) -> JudgeConfig:
    if judge is not None and not isinstance(judge, (Mapping, JudgeConfig)):
        from omegaconf import DictConfig, OmegaConf

        if isinstance(judge, DictConfig):
            judge = OmegaConf.to_container(judge, resolve=True)
    if isinstance(judge, Mapping):
        values = dict(judge)
        if values.get("backend") == "openai" and not values.get("base_url") and reward_router_address:
            values["base_url"] = reward_router_address
        try:
            return _cached_config(tuple(sorted(values.items())))
        except TypeError:  # an unhashable value: let the validator name it
            return judge_config_from(values)
    return judge_config_from(judge)


@functools.lru_cache(maxsize=64)
def _cached_config(items: tuple) -> JudgeConfig:
    return judge_config_from(dict(items))


def _grading_config(grading: Any) -> GradingConfig:
    if grading is None:
        return GradingConfig()
    try:
        return _cached_grading_config(tuple(sorted(dict(grading).items())))
    except (TypeError, ValueError, AttributeError):  # a DictConfig, an unhashable value, not a mapping
        return grading_config_from(grading)


@functools.lru_cache(maxsize=16)
def _cached_grading_config(items: tuple) -> GradingConfig:
    return grading_config_from(dict(items))


# ----------------------------------------------------------------------------- faults


class RewardErrorsExceeded(RuntimeError):
    """More than ``reward_kwargs.max_error_frac`` of a training step's samples raised while being scored."""


def max_error_frac_from(value: Any) -> float:
    """``reward_kwargs.max_error_frac`` checked: a number in [0, 1] (0: any error stops the run, 1: none does)."""
    number = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
    if not (number and 0.0 <= float(value) <= 1.0):
        raise ValueError(
            f"{_MAX_ERROR_FRAC_KEY}={value!r} must be a number in [0, 1]: the largest share of a training step's "
            "samples whose scoring may raise before the run stops."
        )
    return float(value)


def fault_metrics(columns: Mapping[str, Sequence[Any]]) -> dict[str, float]:
    """:data:`FAULT_METRICS` of one batch: the sums of the fault keys ``grade_timeout``, ``grade_error`` and
    ``reward_error``.

    Args:
        columns: reward extra-info key -> per-sample values (verl's legacy ``non_tensor_batch``, or the v1
            ``extra_fields["reward_extra_info"]`` of every sample as columns). An absent key gives no
            metric (a reward function that does not return it); None and NaN count 0.
    """
    return {name: float(sum(map(_flag, columns[key]))) for key, name in FAULT_METRICS.items() if key in columns}


def check_error_budget(
    columns: Mapping[str, Sequence[Any]],
    config: Any,
    examples: Callable[[], list[str]] = list,
    step: int | None = None,
) -> None:
    """Stop the run when too many samples of a training step raised while being scored.

    Args:
        columns: as for :func:`fault_metrics`; nothing is checked without ``reward_error``.
        config: verl's full config (``reward.custom_reward_function.reward_kwargs.max_error_frac``,
            default :data:`DEFAULT_MAX_ERROR_FRAC`).
        examples: called only to build the error: recent errors (:func:`pop_error_examples_from`).
        step: the training step, for the message.

    Raises:
        RewardErrorsExceeded: more than ``max_error_frac`` of the samples have ``reward_error`` = 1.
    """
    if REWARD_ERROR not in columns:
        return
    from omegaconf import OmegaConf

    limit = max_error_frac_from(OmegaConf.select(config, _MAX_ERROR_FRAC_KEY, default=DEFAULT_MAX_ERROR_FRAC))
    flags = [_flag(value) for value in columns[REWARD_ERROR]]
    errors = sum(flag > 0 for flag in flags)
    if not flags or errors <= limit * len(flags):
        return
    found = "; ".join(examples()) or "see the WARNING lines of the reward workers"
    where = "" if step is None else f" of training step {step}"
    raise RewardErrorsExceeded(
        f"{errors} of {len(flags)} samples{where} ({errors / len(flags):.0%}) raised while being scored "
        f"(reward_error = 1: scored 0 with a missing judge score), more than {_MAX_ERROR_FRAC_KEY}={limit:g}. "
        f"Recent errors: {found}. Fix those data rows or the reward function, or raise {_MAX_ERROR_FRAC_KEY}."
    )


def _flag(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return 0.0
    return number if math.isfinite(number) else 0.0


_WARN_EVERY_S = 30.0
_EXAMPLES_KEPT = 3
_MESSAGE_CHARS = 300


def _describe(error: BaseException, data_source: Any, extra_info: Any) -> str:
    """One line naming the error, where it was raised and the row (``data_source``, ``extra_info.index``)."""
    try:
        message = " ".join(str(error).split())
    except Exception:  # a broken __str__
        message = "(no message)"
    if len(message) > _MESSAGE_CHARS:
        message = message[:_MESSAGE_CHARS] + "..."
    frames = traceback.extract_tb(error.__traceback__)
    where = f"{os.path.basename(frames[-1].filename)}:{frames[-1].lineno}" if frames else "?"
    index = extra_info.get("index") if isinstance(extra_info, Mapping) else None
    return (
        f"{type(error).__name__}: {message} (data_source={str(data_source)[:80]!r}, "
        f"extra_info.index={str(index)[:40]!r}, at {where})"
    )


class _SampleErrors:
    """Samples whose scoring raised in this process: the last few, and WARNINGs at most once per 30 s."""

    def __init__(self):
        self._lock = threading.Lock()
        self._examples: collections.deque[str] = collections.deque(maxlen=_EXAMPLES_KEPT)
        self._unreported = 0
        self._last_warning = -math.inf

    def record(self, error: BaseException, data_source: Any, extra_info: Any) -> None:
        example = _describe(error, data_source, extra_info)
        with self._lock:
            self._examples.append(example)
            self._unreported += 1
            now = time.monotonic()
            if now - self._last_warning < _WARN_EVERY_S:
                return
            count, self._unreported, self._last_warning = self._unreported, 0, now
        logger.warning(
            "reward: %d sample(s) raised while being scored; they score 0 with a missing judge score "
            "(reward_error = 1, logged as reward/errors; a step over %s stops the run). Latest: %s",
            count,
            _MAX_ERROR_FRAC_KEY,
            example,
            exc_info=error,
        )

    def pop(self) -> list[str]:
        with self._lock:
            examples = list(self._examples)
            self._examples.clear()
        return examples


_SAMPLE_ERRORS = _SampleErrors()


def record_sample_error(error: BaseException, data_source: Any, extra_info: Any) -> None:
    """Count one sample whose scoring raised in this process (a reward function's own ``reward_error`` = 1): kept
    for :func:`pop_error_examples` (the trainer's error-budget message) and logged (at most one WARNING per 30 s)."""
    _SAMPLE_ERRORS.record(error, data_source, extra_info)


def pop_error_examples() -> list[str]:
    """The last few errors (one line each) of samples scored in this process since the previous pop."""
    return _SAMPLE_ERRORS.pop()


def _pop_error_examples_in_actor(actor_instance) -> list[str]:
    """Run inside a Ray actor by ``__ray_call__`` (which passes the actor instance first)."""
    del actor_instance
    return pop_error_examples()


def pop_error_examples_from(actors: Sequence[Any], timeout_s: float = 30.0) -> list[str]:
    """:func:`pop_error_examples` of the processes behind Ray ``actors`` (verl's reward-loop workers);
    an empty list when they do not answer within ``timeout_s`` (the caller is already reporting an error)."""
    import ray

    try:
        calls = [actor.__ray_call__.remote(_pop_error_examples_in_actor) for actor in actors]
        found = ray.get(calls, timeout=timeout_s)
    except Exception as error:
        logger.warning("reward: could not collect the reward workers' recent errors (%s)", type(error).__name__)
        return []
    return [example for examples in found for example in examples]
