"""Start-up checks of a composed DaGRPO config (pure: no Ray, no workers, no model).

:func:`validate_dagrpo_config` is called by ``python -m dagrpo_verl.main`` before Ray
starts. Every failure raises :class:`DaGRPOConfigError` with the keys to set.
"""

from __future__ import annotations

import os
from typing import Any

from omegaconf import DictConfig, OmegaConf

from dagrpo_verl.config import DaGRPOConfig, dagrpo_config_from
from dagrpo_verl.fields import ANCHOR_TEXT
from dagrpo_verl.losses import DAGRPO_LOSS_MODE

__all__ = ["DAGRPO_REWARD_PATH", "DaGRPOConfigError", "dataset_has_anchors", "validate_dagrpo_config"]

#: ``reward.custom_reward_function.path`` of the reward that returns the judge score.
DAGRPO_REWARD_PATH = "pkg://dagrpo_verl.reward"
_ESTIMATOR = "dagrpo"
_LOSS_TARGET = "dagrpo_verl.config.DaGRPOPolicyLossConfig"
_V1_MANAGER = "dagrpo_verl.agent_loop.DaGRPOAgentLoopManagerTQ"
_LEGACY_MANAGER = "dagrpo_verl.agent_loop.DaGRPOAgentLoopManager"


class DaGRPOConfigError(ValueError):
    """A DaGRPO misconfiguration found at start-up; the message names the keys to set."""


def _select(config: DictConfig, key: str, default: Any = None) -> Any:
    return OmegaConf.select(config, key, default=default)


def dataset_has_anchors(path: str) -> bool | None:
    """Whether a local parquet file has the anchor column ``extra_info.anchor``.

    Reads the schema only. Returns None when the file is not local (e.g. ``hdfs://``), so
    the check is left to the anchor mixer at run time.
    """
    if not os.path.isfile(path):
        return None
    import pyarrow.parquet as pq

    schema = pq.read_schema(path)
    if "extra_info" not in schema.names:
        return False
    extra_info = schema.field("extra_info").type
    return hasattr(extra_info, "get_field_index") and extra_info.get_field_index(ANCHOR_TEXT) >= 0


def _train_files(config: DictConfig) -> list[str]:
    files = _select(config, "data.train_files")
    if files is None:
        return []
    if isinstance(files, str):
        return [files]
    return [str(f) for f in files]


def validate_dagrpo_config(config: DictConfig) -> DaGRPOConfig | None:
    """Check a composed verl config for DaGRPO; raise :class:`DaGRPOConfigError` naming the keys to set.

    Checks only what DaGRPO adds; verl's own ``validate_config`` still runs. Harmless for
    configs that use neither the ``dagrpo`` estimator nor the ``dagrpo`` loss.

    Returns:
        The parsed ``algorithm.dagrpo`` settings when the ``dagrpo`` estimator is selected, else None.
    """
    estimator = _select(config, "algorithm.adv_estimator")
    loss_mode = _select(config, "actor_rollout_ref.actor.policy_loss.loss_mode", "vanilla")
    use_v1 = bool(_select(config, "trainer.use_v1", True))
    _check_cpu_sampler(config)
    if loss_mode == DAGRPO_LOSS_MODE:
        _check_loss(config, use_v1)
    if estimator != _ESTIMATOR:
        return None
    try:
        settings = dagrpo_config_from(config.algorithm)
    except ValueError as error:
        raise DaGRPOConfigError(str(error)) from error

    n = int(_select(config, "actor_rollout_ref.rollout.n", 1))
    if n < 2:
        raise DaGRPOConfigError(
            f"algorithm.adv_estimator=dagrpo is group-relative but actor_rollout_ref.rollout.n={n}; "
            "set actor_rollout_ref.rollout.n=8 (the paper's G) or at least 2."
        )
    if settings.rectification:
        _check_judge_reward(config)
    if settings.anchor.enable:
        _check_anchors(config, loss_mode, use_v1)
    return settings


def _check_cpu_sampler(config: DictConfig) -> None:
    """``+platform=cpu``'s replay buffer gets none of verl's DAPO group-filtering arguments.

    (Its trainer-mode check is in the class, which every entry point constructs.)
    """
    if _select(config, "trainer.v1.sampler.custom_sampler.name") != "CPUReplayBuffer":
        return
    if _select(config, "algorithm.filter_groups.enable", False):
        raise DaGRPOConfigError(
            "algorithm.filter_groups.enable=true is ignored by verl when trainer.v1.sampler.custom_sampler is set, "
            "and +platform=cpu sets it to CPUReplayBuffer; set algorithm.filter_groups.enable=false or "
            "trainer.v1.sampler.custom_sampler.path=null."
        )


def _check_loss(config: DictConfig, use_v1: bool) -> None:
    if _select(config, "distillation.enabled", False):
        raise DaGRPOConfigError(
            "actor_rollout_ref.actor.policy_loss.loss_mode=dagrpo cannot be combined with on-policy distillation "
            "(verl then uses its distillation loss); set distillation.enabled=false."
        )
    if not use_v1 and _select(config, "algorithm.rollout_correction.bypass_mode", False):
        raise DaGRPOConfigError(
            "With trainer.use_v1=false, algorithm.rollout_correction.bypass_mode=true makes verl replace the "
            "policy loss by 'bypass_mode' (the dagrpo loss would be dropped); set "
            "algorithm.rollout_correction.bypass_mode=false or trainer.use_v1=true."
        )


def _check_judge_reward(config: DictConfig) -> None:
    path = _select(config, "reward.custom_reward_function.path")
    if not path:
        raise DaGRPOConfigError(
            "algorithm.dagrpo.rectification=true needs a judge score per response, but "
            "reward.custom_reward_function.path is not set; set "
            f"reward.custom_reward_function.path={DAGRPO_REWARD_PATH} and "
            "reward.custom_reward_function.name=compute_score (or algorithm.dagrpo.rectification=false)."
        )
    if _select(config, "reward.reward_model.enable", False):
        raise DaGRPOConfigError(
            "algorithm.dagrpo.rectification=true reads the judge score from the custom reward function, but "
            "reward.reward_model.enable=true replaces it by a reward model; set reward.reward_model.enable=false "
            "(the judge is configured under reward.custom_reward_function.reward_kwargs.judge)."
        )
    if str(path).removeprefix("pkg://").replace("/", ".").removesuffix(".py") != "dagrpo_verl.reward":
        return  # a user reward function: it must return {"score": ..., "judge_score": ...} itself
    judge = _select(config, "reward.custom_reward_function.reward_kwargs.judge")
    from dagrpo_verl.judge import judge_config_from

    try:
        judge_config = judge_config_from(OmegaConf.to_container(judge, resolve=True) if judge is not None else None)
    except ValueError as error:
        raise DaGRPOConfigError(str(error)) from error
    if judge_config.backend == "none":
        raise DaGRPOConfigError(
            "algorithm.dagrpo.rectification=true but reward.custom_reward_function.reward_kwargs.judge.backend=none "
            "gives no judge scores; set reward.custom_reward_function.reward_kwargs.judge.backend=openai|hf|rule "
            "or algorithm.dagrpo.rectification=false."
        )


def _check_anchors(config: DictConfig, loss_mode: str, use_v1: bool) -> None:
    if loss_mode != DAGRPO_LOSS_MODE:
        raise DaGRPOConfigError(
            f"algorithm.dagrpo.anchor.enable=true needs the dagrpo policy loss (anchor tokens have no rollout "
            f"log-probs), but actor_rollout_ref.actor.policy_loss.loss_mode={loss_mode}; set "
            f"actor_rollout_ref.actor.policy_loss.loss_mode=dagrpo and "
            f"actor_rollout_ref.actor.policy_loss._target_={_LOSS_TARGET} (or algorithm.dagrpo.anchor.enable=false)."
        )
    manager = _select(config, "actor_rollout_ref.rollout.agent.agent_loop_manager_class")
    expected = _V1_MANAGER if use_v1 else _LEGACY_MANAGER
    if not manager or (manager in (_V1_MANAGER, _LEGACY_MANAGER) and manager != expected):
        raise DaGRPOConfigError(
            f"algorithm.dagrpo.anchor.enable=true with trainer.use_v1={str(use_v1).lower()} needs the anchor-mixing "
            f"agent loop manager, but actor_rollout_ref.rollout.agent.agent_loop_manager_class={manager}; set "
            f"actor_rollout_ref.rollout.agent.agent_loop_manager_class={expected} "
            "(or algorithm.dagrpo.anchor.enable=false)."
        )
    if not use_v1:
        corr = "algorithm.rollout_correction"
        active = [k for k in ("rollout_is", "rollout_rs") if _select(config, f"{corr}.{k}") is not None]
        if active:
            raise DaGRPOConfigError(
                f"With trainer.use_v1=false, rollout correction ({', '.join(f'{corr}.{k}' for k in active)}) would "
                f"weight and reject anchors, which have no rollout log-probs; set {', '.join(f'{corr}.{k}=null' for k in active)}, "
                "or trainer.use_v1=true (the v1 trainer leaves anchors out of the correction), "
                "or algorithm.dagrpo.anchor.enable=false."
            )
    for path in _train_files(config):
        if dataset_has_anchors(path) is False:
            raise DaGRPOConfigError(
                f"algorithm.dagrpo.anchor.enable=true but data.train_files entry {path!r} has no anchors "
                f"(no extra_info.{ANCHOR_TEXT} column); prepare it with `python -m dagrpo_verl.data.prepare`, "
                "or set algorithm.dagrpo.anchor.enable=false."
            )
