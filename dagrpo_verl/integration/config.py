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
"""verl's side of DaGRPO's settings: the policy-loss config class and the estimator's settings.

:class:`DaGRPOPolicyLossConfig` subclasses verl's ``PolicyLossConfig``; configs name it by its public
path ``dagrpo_verl.config.DaGRPOPolicyLossConfig`` (:mod:`dagrpo_verl.config`). :func:`advantage_settings`
reads the estimator's settings from verl's ``algorithm`` config (the ``algorithm.dagrpo`` block through
:func:`dagrpo_verl.algo.settings.dagrpo_config_from`, plus verl's ``norm_adv_by_std_in_grpo``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from verl.trainer.config import AlgoConfig
from verl.workers.config.actor import PolicyLossConfig

from dagrpo_verl.algo.settings import dagrpo_config_from
from dagrpo_verl.fields import DAGRPO_LOSS_MODE

__all__ = ["DaGRPOPolicyLossConfig", "VERL_NORM_ADV_BY_STD_DEFAULT", "advantage_settings"]


#: verl's default of ``algorithm.norm_adv_by_std_in_grpo`` (its ``AlgoConfig``), for an ``algorithm`` config without it.
VERL_NORM_ADV_BY_STD_DEFAULT: bool = AlgoConfig.__dataclass_fields__["norm_adv_by_std_in_grpo"].default


def advantage_settings(algorithm_config: Any | None) -> dict[str, Any]:
    """The settings of :func:`dagrpo_verl.algo.core.compute_dagrpo_outcome_advantage` in verl's ``algorithm`` config.

    The one reader of them for every caller (the registered estimator, the trainer hooks): ``delta``,
    ``rectification``, ``on_missing_score`` from ``algorithm.dagrpo`` (:func:`dagrpo_config_from`), and
    ``norm_adv_by_std_in_grpo`` from verl's key, which is verl's default
    (:data:`VERL_NORM_ADV_BY_STD_DEFAULT`, GRPO's std division) when the config lacks it, as for verl's own
    ``grpo`` estimator. ``dagrpo_trainer.yaml`` sets it to false (Dr.GRPO, the paper's setting).

    Returns:
        keyword arguments for :func:`~dagrpo_verl.algo.core.compute_dagrpo_outcome_advantage`.
    """
    settings = dagrpo_config_from(algorithm_config)
    norm_by_std = VERL_NORM_ADV_BY_STD_DEFAULT
    if algorithm_config is not None and hasattr(algorithm_config, "get"):
        norm_by_std = algorithm_config.get("norm_adv_by_std_in_grpo", VERL_NORM_ADV_BY_STD_DEFAULT)
    return {
        "delta": float(settings.delta),
        "rectification": settings.rectification,
        "on_missing_score": settings.on_missing_score,
        "norm_adv_by_std_in_grpo": bool(norm_by_std),
    }


@dataclass
class DaGRPOPolicyLossConfig(PolicyLossConfig):
    """``actor_rollout_ref.actor.policy_loss`` for DaGRPO.

    Select it with ``actor_rollout_ref.actor.policy_loss._target_=dagrpo_verl.config.DaGRPOPolicyLossConfig``
    (verl's ``PolicyLossConfig`` rejects unknown keys such as ``off_policy_gamma``).

    Args:
        off_policy_gamma (float): γ of LUFFY's policy shaping f(p) = p / (p + γ) on anchor tokens.
    """

    loss_mode: str = DAGRPO_LOSS_MODE
    off_policy_gamma: float = 0.1

    def __post_init__(self):
        if not self.off_policy_gamma > 0:
            raise ValueError(
                f"actor_rollout_ref.actor.policy_loss.off_policy_gamma must be > 0, got {self.off_policy_gamma!r}."
            )
