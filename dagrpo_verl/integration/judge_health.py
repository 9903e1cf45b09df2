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
"""A rectification run whose judge gives no scores: warned about per step, stopped after several steps in a row.

Policy (``algorithm.dagrpo.judge_health``, :class:`dagrpo_verl.algo.settings.JudgeHealthConfig`; defaults
``max_missing_frac=0.2``, ``max_bad_steps=5``): a training step in which more than
``max_missing_frac`` of the responses that needed a judge score (advantage != 0: those eq. 8-9 act
on) reached the estimator without one logs a WARNING
naming the judge endpoint (``reward.custom_reward_function.reward_kwargs.judge``: backend,
``base_url``, ``model``); ``max_bad_steps`` such steps in a row raise :class:`JudgeUnavailableError`,
which stops the run. A good step resets the count; a step in which no response needed a score (every
group uniform) says nothing about the judge and leaves the count as it is. Responses that lazy judging
left unjudged because their advantage is 0 are not missing. Only with
``algorithm.dagrpo.rectification=true`` (without it no score is needed).

The count is kept where the advantages are computed (the process running verl's trainer), by
:func:`record_step`, which both the ``dagrpo`` estimator (verl's own trainer) and the trainer hooks
of ``python -m dagrpo_verl.main`` call once per training step.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from omegaconf import DictConfig, OmegaConf

from dagrpo_verl.algo.settings import DaGRPOConfig

__all__ = ["JudgeHealth", "JudgeUnavailableError", "judge_endpoint", "record_step"]

logger = logging.getLogger(__name__)
logger.setLevel(os.getenv("VERL_LOGGING_LEVEL", "INFO"))

_JUDGE_KEY = "reward.custom_reward_function.reward_kwargs.judge"


class JudgeUnavailableError(RuntimeError):
    """The judge left too many responses without a score for too many training steps in a row."""


def judge_endpoint(algorithm_config: Any) -> str:
    """The judge as the run configured it, for messages: ``backend=openai base_url=... model=...``.

    ``algorithm_config`` is the ``algorithm`` node verl hands to estimators; the judge settings are read
    from the config it belongs to. Without one (a plain dict), the config key is named instead.
    """
    root = algorithm_config._get_root() if isinstance(algorithm_config, DictConfig) else None
    judge = OmegaConf.select(root, _JUDGE_KEY, default=None) if root is not None else None
    if judge is None:
        return f"the judge configured under {_JUDGE_KEY}"
    parts = [f"{key}={judge.get(key)}" for key in ("backend", "base_url", "model") if judge.get(key) is not None]
    return f"the judge ({' '.join(parts) or 'defaults'}, {_JUDGE_KEY})"


class JudgeHealth:
    """Consecutive training steps with too many missing judge scores, in one process."""

    def __init__(self) -> None:
        self.bad_steps = 0

    def record(self, missing: int, needed: int, settings: DaGRPOConfig, endpoint: str) -> None:
        """Count one training step: ``needed`` responses needed a judge score, ``missing`` of them got none.

        Raises:
            JudgeUnavailableError: after ``judge_health.max_bad_steps`` bad steps in a row.
        """
        if not settings.rectification or needed <= 0:
            return
        policy = settings.judge_health
        share = missing / needed
        if share <= policy.max_missing_frac:
            self.bad_steps = 0
            return
        self.bad_steps += 1
        message = (
            f"{missing} of the {needed} responses of this training step that needed a judge score (advantage != 0) "
            f"({share:.0%}) have none, more than "
            f"algorithm.dagrpo.judge_health.max_missing_frac={policy.max_missing_frac:g}; check {endpoint} "
            f"(judge/failures and judge/timeouts say why). Bad steps in a row: {self.bad_steps} of "
            f"algorithm.dagrpo.judge_health.max_bad_steps={policy.max_bad_steps}."
        )
        if self.bad_steps >= policy.max_bad_steps:
            raise JudgeUnavailableError(
                message + " Stopping: the masks of eq. 8-9 have not been applied to these responses "
                f"(algorithm.dagrpo.on_missing_score={settings.on_missing_score}). Fix the judge and resume from the "
                "last checkpoint, or raise the judge_health limits, or set algorithm.dagrpo.rectification=false."
            )
        logger.warning(message)


_PROCESS_HEALTH = JudgeHealth()


def record_step(missing: int, needed: int, settings: DaGRPOConfig, algorithm_config: Any) -> None:
    """:meth:`JudgeHealth.record` on this process's count, naming the endpoint of ``algorithm_config``'s run."""
    if settings.rectification and needed > 0 and missing / needed > settings.judge_health.max_missing_frac:
        endpoint = judge_endpoint(algorithm_config)
    else:
        endpoint = ""
    _PROCESS_HEALTH.record(missing, needed, settings, endpoint)
