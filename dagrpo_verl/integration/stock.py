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
"""DaGRPO under verl's own entry, ``python -m verl.trainer.main_ppo``: the start-up check.

``python -m verl.trainer.main_ppo`` calls ``verl.utils.config.validate_config`` in the driver,
before ``ray.init``. :func:`install_start_up_check` (run by the plugin when ``import verl``
loads it) makes that call also run :func:`start_up_check`:

* with verl's ``register_config_validator`` (``upstream/0005``) when verl has it;
* else by wrapping ``verl.utils.config.validate_config`` for the process (verl 0.9.1 offers no
  other hook that runs before the first rollout; the wrapper calls verl's function unchanged and
  then the check, which returns at once for a config that selects no DaGRPO part).

:func:`start_up_check` runs every DaGRPO start-up check
(:func:`dagrpo_verl.integration.validation.validate_dagrpo_config`) and then refuses the DaGRPO parts the
installed verl cannot carry (:func:`check_stock_verl`, by capability,
:mod:`dagrpo_verl.integration.capabilities`), naming the cause and the two fixes: ``python -m
dagrpo_verl.main`` with the same overrides (whose trainer hooks carry them on any verl 0.9.x),
or verl with ``upstream/`` applied. ``python -m dagrpo_verl.main`` validates on its own and
marks its ``validate_config`` call with :func:`dagrpo_trainer_hooks`, so the check does not
run twice there.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import logging
import os
from collections.abc import Iterator
from typing import Any

from omegaconf import DictConfig, OmegaConf

from dagrpo_verl.fields import DAGRPO_ESTIMATOR, DAGRPO_LOSS_MODE
from dagrpo_verl.integration.capabilities import VerlCapabilities, verl_capabilities

__all__ = [
    "ANCHOR_MANAGERS",
    "ANCHOR_MIXER",
    "check_stock_verl",
    "dagrpo_trainer_hooks",
    "install_start_up_check",
    "mixes_anchors",
    "selects_dagrpo",
    "start_up_check",
]

logger = logging.getLogger(__name__)
logger.setLevel(os.getenv("VERL_LOGGING_LEVEL", "INFO"))

#: The anchor-mixing agent-loop managers (v1, legacy) and the group transform (verl with upstream/0006).
ANCHOR_MANAGERS = (
    "dagrpo_verl.integration.agent_loop.DaGRPOAgentLoopManagerTQ",
    "dagrpo_verl.integration.agent_loop.DaGRPOAgentLoopManager",
)
ANCHOR_MIXER = "dagrpo_verl.integration.agent_loop.AnchorMixer"
_FIX = (
    "run `python -m dagrpo_verl.main` with the same overrides (its trainer hooks carry them on verl 0.9.x), "
    "or apply the patch series upstream/ to verl (docs/upstream.md)"
)

_TRAINER_HOOKS = contextvars.ContextVar("dagrpo_trainer_hooks", default=False)


@contextlib.contextmanager
def dagrpo_trainer_hooks() -> Iterator[None]:
    """Within the block, :func:`start_up_check` does nothing: the caller runs DaGRPO's own trainer hooks
    (``python -m dagrpo_verl.main`` and its task runners) and validated the config itself."""
    token = _TRAINER_HOOKS.set(True)
    try:
        yield
    finally:
        _TRAINER_HOOKS.reset(token)


def _select(config: DictConfig, key: str, default: Any = None) -> Any:
    return OmegaConf.select(config, key, default=default)


def mixes_anchors(config: DictConfig) -> bool:
    """Whether the config installs DaGRPO's anchor mixing (a manager of :data:`ANCHOR_MANAGERS` or
    :data:`ANCHOR_MIXER`); whether it mixes any also depends on ``algorithm.dagrpo.anchor.enable``."""
    agent = "actor_rollout_ref.rollout.agent"
    return (
        _select(config, f"{agent}.agent_loop_manager_class") in ANCHOR_MANAGERS
        or _select(config, f"{agent}.group_transform_class") == ANCHOR_MIXER
    )


def selects_dagrpo(config: DictConfig) -> bool:
    """Whether the config selects any DaGRPO part: the estimator, the loss or the anchor mixing."""
    return (
        _select(config, "algorithm.adv_estimator") == DAGRPO_ESTIMATOR
        or _select(config, "actor_rollout_ref.actor.policy_loss.loss_mode") == DAGRPO_LOSS_MODE
        or mixes_anchors(config)
    )


def check_stock_verl(config: DictConfig, capabilities: VerlCapabilities | None = None) -> None:
    """Refuse the DaGRPO parts that verl's own trainer cannot carry on this verl (no DaGRPO trainer hooks).

    Raises:
        dagrpo_verl.integration.validation.DaGRPOConfigError: naming what would not take effect, why, and the fixes.
    """
    from verl import __version__ as verl_version

    from dagrpo_verl.algo.settings import dagrpo_config_from
    from dagrpo_verl.integration.validation import DaGRPOConfigError

    caps = capabilities or verl_capabilities()
    settings = dagrpo_config_from(config.algorithm)
    estimator = _select(config, "algorithm.adv_estimator")
    use_v1 = bool(_select(config, "trainer.use_v1", True))
    anchors = settings.anchor.enable and mixes_anchors(config)
    stock = f"verl {verl_version}'s own trainer ({'v1' if use_v1 else 'legacy'})"

    if estimator == DAGRPO_ESTIMATOR:
        inputs = [
            name for name, needed in (("judge scores", settings.rectification), ("anchor flags", anchors)) if needed
        ]
        if inputs and use_v1 and not caps.estimator_fields:
            raise DaGRPOConfigError(
                f"algorithm.adv_estimator=dagrpo needs the {' and '.join(inputs)} of every response, but {stock} "
                "cannot pass them to a registered estimator: PPOTrainer._compute_advantage reads a fixed field list "
                "and hands estimators only the rewards, the response mask and uid (upstream/0002 adds declared "
                f"fields), so the run would quietly train plain (Dr.)GRPO. Fix: {_FIX}."
            )
        if inputs and not use_v1 and not caps.estimator_batch:
            raise DaGRPOConfigError(
                f"algorithm.adv_estimator=dagrpo needs the {' and '.join(inputs)} of every response, but {stock} "
                "hands registered estimators no per-sample data (ray_trainer.compute_advantage; upstream/0001, "
                f"verl PR #7473), so the run would quietly train plain (Dr.)GRPO. Fix: {_FIX}."
            )
        if not caps.estimator_metrics:
            logger.warning(
                f"{stock} does not log metrics returned by advantage estimators (upstream/0003): the dagrpo/* "
                "metrics (mask rates, anchor usage, missing judge scores) will be missing. "
                "python -m dagrpo_verl.main logs them."
            )
    if anchors:
        if not caps.loss_fields:
            raise DaGRPOConfigError(
                "algorithm.dagrpo.anchor.enable=true mixes off-policy anchors into groups, but "
                f"{stock} cannot pass the anchor flag to the dagrpo policy loss: its ppo_loss drops every "
                "micro-batch field but a fixed set (upstream/0004), so anchors would be trained as ordinary rollouts "
                f"through the clipped surrogate with placeholder log-probs. Fix: {_FIX}; or set "
                "algorithm.dagrpo.anchor.enable=false."
            )
        corr = "algorithm.rollout_correction"
        active = [k for k in ("rollout_is", "rollout_rs") if _select(config, f"{corr}.{k}") is not None]
        if active and not _select(config, f"{corr}.bypass_mode", False):
            raise DaGRPOConfigError(
                f"{', '.join(f'{corr}.{k}' for k in active)} with anchors: {stock} computes rollout importance "
                "weights and rejection from rollout log-probs, which anchors do not have (placeholders), so anchors "
                f"would be reweighted or rejected at random. Set {', '.join(f'{corr}.{k}=null' for k in active)}, or "
                "run `python -m dagrpo_verl.main` (it leaves anchors out of the correction), or set "
                "algorithm.dagrpo.anchor.enable=false."
            )
    if settings.rectification and estimator == DAGRPO_ESTIMATOR:
        from dagrpo_verl.reward import is_dagrpo_reward

        # The DaGRPO managers judge by group and send each group's judge/* counters with its samples, which the
        # estimator logs (a declared field, upstream/0002, and estimator metrics, 0003).
        manager = _select(config, "actor_rollout_ref.rollout.agent.agent_loop_manager_class")
        reward = _select(config, "reward.custom_reward_function.path")
        carried = manager in ANCHOR_MANAGERS and is_dagrpo_reward(reward)
        carried = carried and (caps.estimator_fields if use_v1 else caps.estimator_batch) and caps.estimator_metrics
        uncollected = (
            "the reward's error budget (reward/*) is"
            if carried
            else "the judge's judge/* counters and the reward's error budget (reward/*) are"
        )
        logger.warning(
            f"Under {stock} {uncollected} not collected from the reward workers; a judge that answers nothing shows "
            "as dagrpo/missing_scores (the estimator stops the run after algorithm.dagrpo.judge_health settings). "
            "python -m dagrpo_verl.main logs both."
        )


def start_up_check(config: DictConfig) -> None:
    """verl config validator: DaGRPO's start-up checks, then :func:`check_stock_verl` (see the module docstring).

    Does nothing for a config that selects no DaGRPO part, and inside :func:`dagrpo_trainer_hooks`.
    """
    if _TRAINER_HOOKS.get() or not selects_dagrpo(config):
        return
    from dagrpo_verl.integration.validation import validate_dagrpo_config

    validate_dagrpo_config(config)
    check_stock_verl(config)


def install_start_up_check() -> str:
    """Make verl's ``validate_config`` run :func:`start_up_check`; idempotent.

    Returns:
        ``"validator"`` (registered with verl's ``register_config_validator``) or ``"wrapped"``.
    """
    from verl.utils import config as verl_config

    if hasattr(verl_config, "register_config_validator"):
        verl_config.register_config_validator(start_up_check)
        return "validator"
    original = verl_config.validate_config
    if getattr(original, "__dagrpo_start_up_check__", False):
        return "wrapped"

    @functools.wraps(original)
    def validate_config(config, *args, **kwargs):
        # mirrors verl 0.9.1 verl.utils.config:validate_config (signature only: verl's function runs unchanged)
        result = original(config, *args, **kwargs)
        start_up_check(config)
        return result

    validate_config.__dagrpo_start_up_check__ = True
    verl_config.validate_config = validate_config
    return "wrapped"
