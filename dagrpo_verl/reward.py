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
:mod:`dagrpo_verl.grading_pool`, bounded by ``reward_kwargs.grading.timeout_s`` in any thread;
T = 1.0 when it ran past the bound, E = 1.0 when the grader failed (R = 0 in both cases).
Nothing a policy can write (odd Unicode, NUL bytes, huge or deeply nested text, None) raises;
a bad setting or ground truth raises a named error. S in [1, 10] is the judge's score against
the reference, NaN when missing. The reference is ``extra_info["anchor"]`` (the expert
solution); without one the judge gets the ground-truth answer and is told so. Anchors
(``extra_info["is_anchor"]``) get ``judge.max_score`` without a judge call unless
``judge.judge_anchors=true``. Validation samples (``extra_info["is_validation"]``, set by the
DaGRPO agent loops) get S = NaN without a judge call unless ``reward_kwargs.judge_validation=true``:
no advantage is computed from them. The problem statement is read from ``extra_info["question"]``.
"""

from __future__ import annotations

import asyncio
import functools
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from dagrpo_verl.fields import (
    ACC,
    ANCHOR_TEXT,
    GRADE_ERROR,
    GRADE_TIMEOUT,
    IS_ANCHOR,
    IS_VALIDATION,
    JUDGE_SCORE,
    QUESTION,
)
from dagrpo_verl.grading import ground_truth_text
from dagrpo_verl.grading_pool import GradeStatus, GradingConfig, get_grading_pool, grading_config_from, utf8_safe
from dagrpo_verl.judge.config import CONFIG_PREFIX, JudgeConfig, judge_config_from
from dagrpo_verl.judge.core import get_judge
from dagrpo_verl.judge.scorers import JudgeItem

__all__ = ["QUESTION", "compute_score"]

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
    reward_router_address: str | None = None,
    reward_model_tokenizer: Any = None,
    **unknown: Any,
) -> dict[str, float]:
    """Reward of one response: ``{"score": R, "acc": R, "judge_score": S, "grade_timeout": T, "grade_error": E}``.

    Args:
        data_source: the row's ``data_source`` (selects letter grading for ARC/GPQA/MMLU).
        solution_str: the decoded response.
        ground_truth: the row's ``reward_model.ground_truth`` (a string or a number).
        extra_info: the row's ``extra_info`` (``question``, ``anchor``, ``is_anchor``).
        judge: the judge settings from ``reward.custom_reward_function.reward_kwargs.judge``
            (see :class:`~dagrpo_verl.judge.config.JudgeConfig`); default: the rule scorer.
        require_boxed: R counts only the response's last ``\\boxed{}`` (``reward_kwargs.require_boxed``);
            by default math-verify also accepts an unboxed final expression.
        grading: the grading bound from ``reward_kwargs.grading`` (``timeout_s``, ``workers``,
            ``memory_mb``; see :class:`~dagrpo_verl.grading_pool.GradingConfig`).
        judge_validation: judge validation samples too (``reward_kwargs.judge_validation``); by
            default they get S = NaN and no judge call.
        reward_router_address: passed by verl when a reward model is served; used as the
            judge's ``base_url`` when ``judge.backend=openai`` and no ``base_url`` is set.
        reward_model_tokenizer: passed by verl with the router address; not needed here.
    """
    del reward_model_tokenizer  # the judge talks text to an OpenAI-compatible endpoint
    if unknown:
        raise ValueError(
            f"Unknown key(s) {sorted('reward.custom_reward_function.reward_kwargs.' + k for k in unknown)} for "
            f"pkg://dagrpo_verl.reward:compute_score; its settings are require_boxed, judge_validation, "
            f"grading.<key> and {CONFIG_PREFIX}.<key>."
        )
    ground_truth = ground_truth_text(ground_truth, f"reward_model.ground_truth (data_source={data_source!r})")
    if extra_info is None:
        extra_info = {}
    elif not isinstance(extra_info, Mapping):
        raise ValueError(f"extra_info must be a dict (the row's extra_info), got {type(extra_info).__name__}.")
    if not isinstance(require_boxed, (bool, np.bool_)):
        raise ValueError(
            f"reward.custom_reward_function.reward_kwargs.require_boxed={require_boxed!r} must be true or false."
        )
    if not isinstance(judge_validation, (bool, np.bool_)):
        raise ValueError(
            f"reward.custom_reward_function.reward_kwargs.judge_validation={judge_validation!r} must be true or false."
        )
    solution_str = utf8_safe(solution_str)
    config = _config(judge, reward_router_address)
    grading_config = _grading_config(grading)

    judge_task = None
    if config.backend == "none":
        judge_score = math.nan
    elif bool(extra_info.get(IS_VALIDATION, False)) and not judge_validation:
        judge_score = math.nan  # a validation score feeds no advantage: no judge call
    elif bool(extra_info.get(IS_ANCHOR, False)) and not config.judge_anchors:
        judge_score = float(config.max_score)
    else:
        anchor = utf8_safe(_text(extra_info, ANCHOR_TEXT))
        item = JudgeItem(
            question=utf8_safe(_text(extra_info, QUESTION)) or _NO_QUESTION,
            response=solution_str,
            reference=anchor or utf8_safe(ground_truth),
            reference_kind="solution" if anchor else "answer",
        )
        # Started first: off the main thread, the request is in flight while the answer is graded.
        judge_task = asyncio.ensure_future(get_judge(config).score([item]))
    try:
        # In a grading process, bounded, without blocking the event loop (judge requests go on meanwhile).
        graded = await get_grading_pool(grading_config).agrade(
            solution_str, ground_truth, "" if data_source is None else str(data_source), bool(require_boxed)
        )
        if judge_task is not None:
            judge_score = (await judge_task)[0]
    finally:
        if judge_task is not None and not judge_task.done():
            judge_task.cancel()
    acc = 1.0 if graded.correct else 0.0
    return {
        "score": acc,
        ACC: acc,
        JUDGE_SCORE: judge_score,
        GRADE_TIMEOUT: float(graded.status is GradeStatus.TIMEOUT),
        GRADE_ERROR: float(graded.status is GradeStatus.ERROR),
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
