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
"""verl plugin: registers the ``dagrpo`` advantage estimator and policy loss.

Loaded by ``import verl`` through the ``verl.plugins`` entry point (name ``dagrpo``),
so the registrations exist in the driver and in every Ray worker that imports verl.
verl only logs plugin import errors at DEBUG level; this module logs them at ERROR
with the traceback and re-raises, so a broken install is loud.

Both functions are thin adapters from verl's calling conventions to
:mod:`dagrpo_verl.algo.core`.
"""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)

try:
    from typing import Any

    import numpy as np
    import torch
    from verl.trainer.ppo.core_algos import agg_loss, register_adv_est, register_policy_loss

    from dagrpo_verl.algo import core
    from dagrpo_verl.algo.settings import dagrpo_config_from
    from dagrpo_verl.fields import DAGRPO_ESTIMATOR, DAGRPO_LOSS_MODE, IS_ANCHOR, JUDGE_SCORE, JUDGE_STATS
    from dagrpo_verl.integration.capabilities import estimator_fields_supported, loss_fields_supported
    from dagrpo_verl.integration.stock import install_start_up_check
except Exception:  # pragma: no cover - exercised by the broken-install test in a subprocess
    logger.exception("dagrpo_verl: failed to register the DaGRPO estimator and loss with verl")
    raise

__all__ = ["compute_dagrpo_advantage", "compute_policy_loss_dagrpo"]

#: Per-sample fields the estimator and the loss read. On a verl with upstream/0002 and 0004 they are
#: declared, and verl's own trainer hands them over (detected by capability, see dagrpo_verl.integration.capabilities);
#: on verl 0.9.1 the trainer hooks of dagrpo_verl.integration.trainer do. ``judge_stats`` (the group judge's counters,
#: on one sample per group) becomes the step's judge/* metrics where verl logs estimator metrics (0003).
ESTIMATOR_FIELDS = (JUDGE_SCORE, IS_ANCHOR, JUDGE_STATS)
LOSS_FIELDS = (IS_ANCHOR,)
_ESTIMATOR_DECLARATION = {"batch_fields": ESTIMATOR_FIELDS} if estimator_fields_supported() else {}
_LOSS_DECLARATION = {"batch_fields": LOSS_FIELDS} if loss_fields_supported() else {}

# `python -m verl.trainer.main_ppo` runs DaGRPO's start-up checks before Ray starts (dagrpo_verl.integration.stock).
install_start_up_check()


def _from_batch(name: str, non_tensor_batch: dict | None, batch: Any) -> Any:
    """Per-sample field ``name`` from the kwargs verl PR #7473 passes to estimators."""
    if non_tensor_batch is not None and name in non_tensor_batch:
        return non_tensor_batch[name]
    if batch is not None and name in batch.keys():
        return batch[name]
    return None


def _estimator_metrics_key() -> str | None:
    """``ADVANTAGE_METRICS_KEY`` of a verl that logs estimator metrics (upstream/0003), else None.

    Looked up in the calling module, which is loaded whenever an estimator is called.
    """
    import sys

    return getattr(sys.modules.get("verl.trainer.ppo.ray_trainer"), "ADVANTAGE_METRICS_KEY", None)


@register_adv_est(DAGRPO_ESTIMATOR, **_ESTIMATOR_DECLARATION)
def compute_dagrpo_advantage(
    token_level_rewards: torch.Tensor,
    response_mask: torch.Tensor,
    index: np.ndarray | None = None,
    config: Any = None,
    judge_scores: torch.Tensor | None = None,
    anchor_mask: torch.Tensor | None = None,
    non_tensor_batch: dict | None = None,
    batch: Any = None,
    epsilon: float = 1e-6,
) -> tuple:
    """verl advantage estimator ``dagrpo`` (``algorithm.adv_estimator=dagrpo``).

    Args:
        token_level_rewards: ``(bs, T)``.
        response_mask: ``(bs, T)``.
        index: ``(bs,)`` group labels (verl's ``uid``).
        config: verl's ``algorithm`` config; reads ``norm_adv_by_std_in_grpo`` and
            the ``dagrpo`` block (:class:`dagrpo_verl.algo.settings.DaGRPOConfig`).
        judge_scores: ``(bs,)`` float, NaN = missing. Falls back to
            ``non_tensor_batch['judge_score']`` / ``batch['judge_score']``.
        anchor_mask: ``(bs,)`` bool. Falls back to ``non_tensor_batch['is_anchor']``.
        non_tensor_batch, batch: the whole batch, as verl passes it to estimators that accept it
            (upstream/0001, verl PR #7473); in verl's v1 trainer they hold the declared
            :data:`ESTIMATOR_FIELDS` (upstream/0002).

    Returns:
        ``(advantages, returns)``, each ``(bs, T)``; on a verl that logs estimator metrics
        (upstream/0003) also the ``dagrpo/*`` metrics, and the ``judge/*`` metrics of the group judge
        (``non_tensor_batch['judge_stats']``, :mod:`dagrpo_verl.judge.group`), as a third element.
    """
    # Imported here: dagrpo_verl.integration.config imports verl, whose plugin loader imports this module,
    # so a top-level import would fail whenever that module is imported before verl.
    from dagrpo_verl.integration.config import advantage_settings

    settings = dagrpo_config_from(config)
    if judge_scores is None:
        judge_scores = _from_batch(JUDGE_SCORE, non_tensor_batch, batch)
    if anchor_mask is None:
        anchor_mask = _from_batch(IS_ANCHOR, non_tensor_batch, batch)
    advantages, returns, stats = core.compute_dagrpo_outcome_advantage(
        token_level_rewards=token_level_rewards,
        response_mask=response_mask,
        index=index,
        judge_scores=core.judge_scores_tensor(judge_scores),
        anchor_mask=None if anchor_mask is None else core.anchor_flags_tensor(anchor_mask, len(anchor_mask)),
        epsilon=epsilon,
        **advantage_settings(config),
    )
    if (
        non_tensor_batch is not None
    ):  # called by verl's trainer: one training step (dagrpo_verl.integration.judge_health)
        from dagrpo_verl.integration.judge_health import record_step

        record_step(int(stats["missing_scores"]), int(stats["needed_scores"]), settings, config)
    if _estimator_metrics_key() is not None:
        metrics = core.advantage_metrics(stats)
        if non_tensor_batch is not None and JUDGE_STATS in non_tensor_batch:
            from dagrpo_verl.judge.metrics import stats_from_records

            judged = stats_from_records(non_tensor_batch[JUDGE_STATS])
            if judged is not None:
                metrics.update(judged.to_metrics())
        return advantages, returns, metrics
    return advantages, returns


@register_policy_loss(DAGRPO_LOSS_MODE, **_LOSS_DECLARATION)
def compute_policy_loss_dagrpo(
    old_log_prob: torch.Tensor,
    log_prob: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    loss_agg_mode: str = "token-mean",
    config: Any = None,
    rollout_is_weights: torch.Tensor | None = None,
    anchor_mask: torch.Tensor | None = None,
    is_anchor: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """verl policy loss ``dagrpo`` (``actor_rollout_ref.actor.policy_loss.loss_mode=dagrpo``).

    Same kwargs as verl's ``vanilla`` plus ``anchor_mask`` (``(bs,)`` or ``(bs, T)`` bool).
    ``is_anchor`` is the same flag under its field name, as verl's ``ppo_loss`` passes the
    declared :data:`LOSS_FIELDS` (upstream/0004); ``anchor_mask`` wins when both are given.
    Without either it equals ``vanilla``. γ comes from
    ``config.policy_loss.off_policy_gamma`` (:class:`dagrpo_verl.config.DaGRPOPolicyLossConfig`),
    0.1 when absent.
    """
    if config is None:
        raise ValueError("the dagrpo policy loss needs the actor config (verl passes config=ActorConfig).")
    clip_ratio = config.clip_ratio
    policy_loss_config = config.get("policy_loss", None)
    gamma = policy_loss_config.get("off_policy_gamma", 0.1) if policy_loss_config is not None else 0.1
    return core.compute_dagrpo_policy_loss(
        old_log_prob=old_log_prob,
        log_prob=log_prob,
        advantages=advantages,
        response_mask=response_mask,
        anchor_mask=anchor_mask if anchor_mask is not None else is_anchor,
        loss_agg_mode=loss_agg_mode,
        clip_ratio_low=config.clip_ratio_low if config.clip_ratio_low is not None else clip_ratio,
        clip_ratio_high=config.clip_ratio_high if config.clip_ratio_high is not None else clip_ratio,
        clip_ratio_c=config.get("clip_ratio_c", 3.0),
        off_policy_gamma=float(gamma),
        rollout_is_weights=rollout_is_weights,
        global_batch_info=config.global_batch_info,
        agg_loss=agg_loss,
    )
