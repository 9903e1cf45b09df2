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
"""verl trainer hooks: judge scores and anchor flags reach the estimator and the loss.

verl 0.9.1 hands a registered advantage estimator only ``token_level_rewards``,
``response_mask``, ``index`` and ``config``, and its actor loss ``ppo_loss`` only a
fixed set of fields. DaGRPO needs two per-sample inputs on top: the judge score
(``judge_score``, NaN = missing) and the off-policy anchor flag (``is_anchor``).
This module routes them without forking verl:

* **v1 trainer** (``trainer.use_v1=true``, verl's default): :class:`DaGRPOTrainerMixin`
  overrides ``PPOTrainer._compute_advantage`` (reads ``judge_score``/``is_anchor`` from
  TransferQueue, keeps anchors out of rollout-correction weights, logs ``dagrpo/*`` and
  ``judge/*`` metrics) and ``PPOTrainer._setup`` (sends :func:`dagrpo_verl.integration.losses.dagrpo_ppo_loss`
  to the actor workers). :func:`dagrpo_trainer_cls` mixes it into whichever trainer
  ``trainer.v1.trainer_mode`` selects.
* **legacy trainer** (``trainer.use_v1=false``): :mod:`dagrpo_verl.integration.legacy_trainer`, imported only for
  that setting, so the v1 path loads nothing of verl's deprecated ``main_ppo_v0``/``RayPPOTrainer``.
  Its names are still reachable here (``dagrpo_verl.integration.trainer.DaGRPORayPPOTrainer`` ...), loaded on
  first access.

For any estimator other than ``dagrpo`` the hooks defer to verl, and the loss is only
replaced when ``actor_rollout_ref.actor.policy_loss.loss_mode=dagrpo``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from functools import partial
from pprint import pprint
from typing import Any

import numpy as np
import ray
import torch
from omegaconf import DictConfig, OmegaConf
from tensordict import TensorDict
from verl.protocol import DataProto
from verl.trainer.main_ppo import TaskRunnerV1
from verl.trainer.ppo.rollout_corr_helper import compute_rollout_correction_and_add_to_batch
from verl.trainer.ppo.v1 import PPOTrainer, get_trainer_cls
from verl.trainer.ppo.v1.trainer_base import apply_kl_penalty  # the function verl's v1 _compute_advantage calls
from verl.utils.config import omega_conf_to_dataclass
from verl.utils.logging_utils import configure_verl_logging
from verl.workers.config import ActorConfig
from verl.workers.utils.padding import response_to_nested

from dagrpo_verl.algo import core
from dagrpo_verl.algo.settings import dagrpo_config_from
from dagrpo_verl.fields import DAGRPO_ESTIMATOR, IS_ANCHOR, JUDGE_SCORE, JUDGE_STATS
from dagrpo_verl.integration.config import advantage_settings
from dagrpo_verl.integration.diagnostics import onpolicy_diagnostics
from dagrpo_verl.integration.judge_health import record_step
from dagrpo_verl.integration.losses import DAGRPO_LOSS_MODE, dagrpo_ppo_loss, finish_loss_metrics
from dagrpo_verl.integration.metrics_file import keep_metrics_file
from dagrpo_verl.integration.resume import CheckpointSettingsMixin
from dagrpo_verl.judge.metrics import JudgeStats, pop_stats_from, stats_from_records
from dagrpo_verl.reward import FAULT_METRICS, check_error_budget, fault_metrics, pop_error_examples_from

__all__ = [
    "DAGRPO_ESTIMATOR",
    "DaGRPOTaskRunner",
    "DaGRPOTrainerMixin",
    "batch_onpolicy_diagnostics",
    "compute_batch_advantage",
    "dagrpo_trainer_cls",
    "install_dagrpo_loss",
    "merged_judge_metrics",
    "rollout_correction_without_anchors",
]

#: Names of :mod:`dagrpo_verl.integration.legacy_trainer` also reachable as
#: ``dagrpo_verl.integration.trainer.<name>`` (loaded on access).
_LEGACY_NAMES = ("DaGRPOLegacyTaskRunner", "DaGRPORayPPOTrainer", "anchors_as_tensor", "legacy_advantage_hook")

logger = logging.getLogger(__name__)
logger.setLevel(os.getenv("VERL_LOGGING_LEVEL", "INFO"))

#: Extra-info key under which verl's v1 agent loop stores the reward function's extra keys.
_REWARD_EXTRA_INFO = "reward_extra_info"


# ----------------------------------------------------------------------------- shared pieces


def install_dagrpo_loss(config: DictConfig, actor_rollout_wg: Any) -> bool:
    """Send :func:`dagrpo_ppo_loss` to the actor workers when the ``dagrpo`` policy loss is selected.

    The actor config is built from ``actor_rollout_ref.actor`` exactly as verl's
    ``ActorRolloutRefWorker.init_model`` builds it (``omega_conf_to_dataclass``).

    Returns:
        True when the loss was installed.
    """
    if config.actor_rollout_ref.actor.policy_loss.get("loss_mode", "vanilla") != DAGRPO_LOSS_MODE:
        return False
    # mirrors verl 0.9.1 verl.workers.engine_workers:ActorRolloutRefWorker.init_model (actor config, loss partial)
    actor_config: ActorConfig = omega_conf_to_dataclass(config.actor_rollout_ref.actor)
    actor_rollout_wg.set_loss_fn(partial(dagrpo_ppo_loss, config=actor_config))
    logger.info("dagrpo actor loss installed on the actor workers")
    return True


def batch_onpolicy_diagnostics(
    config: DictConfig, data: DataProto, response_lengths: torch.Tensor, on_policy: torch.Tensor, entropy=None
) -> dict[str, float]:
    """:func:`dagrpo_verl.integration.diagnostics.onpolicy_diagnostics` of a padded batch (``response_mask``,
    ``old_log_probs``, ``rollout_log_probs``, ``entropy`` when present) with the actor's settings."""
    actor = config.actor_rollout_ref.actor
    return onpolicy_diagnostics(
        response_mask=data.batch["response_mask"],
        response_lengths=response_lengths,
        on_policy=on_policy,
        response_budget=int(config.actor_rollout_ref.rollout.response_length),
        old_log_probs=data.batch.get("old_log_probs", None),
        rollout_log_probs=data.batch.get("rollout_log_probs", None),
        entropy=data.batch.get("entropy", None) if entropy is None else entropy,
        loss_agg_mode=actor.loss_agg_mode,
        loss_scale_factor=actor.get("loss_scale_factor", None),
    )


def _session_final_rows(keys: Sequence[str]) -> list[int]:
    """For every row, the row of its agent-loop session's final output.

    As verl's ``compute_advantage_for_multi_trajectories``: v1 keys are
    ``{uid}_{session_id}_{index}`` and a multi-output session shares one reward, so only its
    last output joins the group. A key of another shape is a session of its own.
    """
    # mirrors verl 0.9.1 verl.trainer.ppo.v1.utils:compute_advantage_for_multi_trajectories (session keys)
    final: dict[str, tuple[int, int]] = {}
    row_sessions = []
    for row, key in enumerate(keys):
        parts = str(key).rsplit("_", 2)
        if len(parts) == 3 and parts[2].isdigit():
            session, index = f"{parts[0]}_{parts[1]}", int(parts[2])
        else:
            session, index = str(key), 0
        row_sessions.append(session)
        if session not in final or final[session][0] < index:
            final[session] = (index, row)
    return [final[session][1] for session in row_sessions]


def compute_batch_advantage(
    token_level_rewards: torch.Tensor,
    response_mask: torch.Tensor,
    index: np.ndarray,
    judge_scores: torch.Tensor | None,
    anchor_mask: torch.Tensor,
    algorithm_config: Any,
    source_rows: Sequence[int] | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """DaGRPO advantages of a verl batch via :func:`dagrpo_verl.algo.core.compute_dagrpo_outcome_advantage`.

    Args:
        token_level_rewards, response_mask: ``(bs, T)``.
        index: ``(bs,)`` group labels (``uid``).
        judge_scores: ``(bs,)`` float, NaN = missing; None when the batch has none at all
            (an error unless ``algorithm.dagrpo.rectification=false``).
        anchor_mask: ``(bs,)`` bool.
        algorithm_config: verl's ``algorithm`` config (``norm_adv_by_std_in_grpo``, ``dagrpo``).
        source_rows: for every row, the row that represents it in its group (the final output
            of its agent-loop session), or -1 for a row outside every group (synthetic padding,
            advantage 0). Default: every row represents itself.

    Returns:
        ``(advantages, stats)``: ``(bs, T)`` token advantages (also verl's returns) and the
        ``dagrpo/<name>`` metrics as floats.
    """
    settings = dagrpo_config_from(algorithm_config)
    size = response_mask.shape[0]
    source = torch.arange(size) if source_rows is None else torch.as_tensor(list(source_rows), dtype=torch.long)
    group_rows = torch.unique(source[source >= 0])
    sequence_rewards = token_level_rewards.sum(dim=-1, keepdim=True)[group_rows]
    group_advantages, _, stats = core.compute_dagrpo_outcome_advantage(
        token_level_rewards=sequence_rewards,
        response_mask=torch.ones_like(sequence_rewards),
        index=np.asarray(index, dtype=object)[group_rows.numpy()],
        judge_scores=None if judge_scores is None else judge_scores[group_rows],
        anchor_mask=anchor_mask[group_rows],
        **advantage_settings(algorithm_config),
    )
    record_step(int(stats["missing_scores"]), int(stats["needed_scores"]), settings, algorithm_config)
    row_advantage = torch.zeros(size, dtype=torch.float32)
    row_advantage[group_rows] = group_advantages[:, 0]
    per_row = torch.where(source >= 0, row_advantage[source.clamp_min(0)], torch.zeros_like(row_advantage))
    advantages = per_row.unsqueeze(-1) * response_mask
    return advantages, core.advantage_metrics(stats)


def rollout_correction_without_anchors(
    data: DataProto, rollout_corr_config: Any, anchor_mask: torch.Tensor
) -> tuple[DataProto, dict]:
    """verl's decoupled rollout correction, computed on the on-policy rows only.

    Anchors have no rollout log-probs, so they take no part in the IS weights, the
    rejection sampling, the batch normalisation or the ``rollout_corr/*`` metrics:
    their ``rollout_is_weights`` are 1 and their ``response_mask`` is unchanged.
    """
    if not bool(anchor_mask.any()):
        return compute_rollout_correction_and_add_to_batch(data, rollout_corr_config)
    on_policy = (~anchor_mask).nonzero(as_tuple=True)[0]
    if on_policy.numel() == 0:
        return data, {}
    keys = ["old_log_probs", "rollout_log_probs", "response_mask"]
    subset = DataProto(batch=data.batch.select(*keys)[on_policy])
    subset, metrics = compute_rollout_correction_and_add_to_batch(subset, rollout_corr_config)
    response_mask = data.batch["response_mask"].clone()
    response_mask[on_policy] = subset.batch["response_mask"].to(response_mask.dtype)
    data.batch["response_mask"] = response_mask
    if "rollout_is_weights" in subset.batch:
        weights = torch.ones_like(data.batch["old_log_probs"], dtype=subset.batch["rollout_is_weights"].dtype)
        weights[on_policy] = subset.batch["rollout_is_weights"]
        data.batch["rollout_is_weights"] = weights * response_mask
    return data, metrics


def merged_judge_metrics(*windows: JudgeStats | None) -> dict[str, float]:
    """``judge/*`` metrics of the windows together (None: a source without any)."""
    return JudgeStats().merge(*(w for w in windows if w is not None)).to_metrics()


# ----------------------------------------------------------------------------- v1 trainer


class DaGRPOTrainerMixin(CheckpointSettingsMixin):
    """Mix-in for verl's v1 ``PPOTrainer`` subclasses (sync, colocate_async, separate_async).

    Use through :func:`dagrpo_trainer_cls`. Expects the agent loop to put two top-level
    TransferQueue fields per sample, ``is_anchor`` (bool) and ``judge_score`` (float32, NaN =
    missing) -- :class:`dagrpo_verl.integration.agent_loop.DaGRPOAgentLoopManagerTQ` does. Without
    ``judge_score`` the scores are read from the reward extra info inside ``extra_fields``
    (verl's own ``AgentLoopManagerTQ``); without ``is_anchor`` no sample is an anchor.
    """

    def _setup(self):
        """verl's set-up, then the DaGRPO actor loss on the actor workers."""
        super()._setup()
        install_dagrpo_loss(self.config, self.actor_rollout_wg)

    def _update_actor(self, batch, metrics: dict):
        """verl's actor update; the loss's summed anchor metrics become token-weighted ratios
        (:func:`dagrpo_verl.integration.losses.finish_loss_metrics`)."""
        actor_metrics: dict = {}
        batch = super()._update_actor(batch, metrics=actor_metrics)
        metrics.update(finish_loss_metrics(actor_metrics))
        return batch

    def _judge_actor_handles(self) -> list:
        """Ray actors that may run the judge: reward-loop workers and agent-loop workers."""
        handles = list(self.reward_loop_manager.reward_loop_workers or [])
        agent_loop_manager = getattr(self, "agent_loop_manager", None)
        handles.extend(getattr(agent_loop_manager, "agent_loop_workers", None) or [])
        return handles

    def _compute_advantage(self, batch, metrics: dict):
        """verl's ``_compute_advantage`` with judge scores and anchor flags for the ``dagrpo`` estimator.

        Same steps and write-back as ``PPOTrainer._compute_advantage`` (KL-in-reward, decoupled
        rollout correction, nested ``advantages``/``returns``), with these differences: anchors
        are left out of the rollout correction, synthetic padding rows (``tags['is_padding']``)
        are left out of the groups, and the ``dagrpo/*`` (on-policy diagnostics included) and
        ``judge/*`` metrics are added. For every estimator, the reward's fault counts are logged first
        (:meth:`_record_reward_faults`).
        """
        self._record_reward_faults(batch, metrics)
        if self.config.algorithm.adv_estimator != DAGRPO_ESTIMATOR:
            return super()._compute_advantage(batch, metrics)
        # mirrors verl 0.9.1 verl.trainer.ppo.v1.trainer_base:PPOTrainer._compute_advantage (DaGRPO steps added)
        import transfer_queue as tq

        fields = [
            "uid",
            "response_mask",
            "rm_scores",
            "rollout_log_probs",
            "old_log_probs",
            "ref_log_prob",
            "entropy",
            JUDGE_SCORE,
            IS_ANCHOR,
        ]
        data = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=fields)
        size = len(batch)
        judge_scores = data.pop(JUDGE_SCORE) if JUDGE_SCORE in data else None
        if judge_scores is None:
            judge_scores = self._judge_scores_from_extra_fields(batch)
        judge_scores = core.judge_scores_tensor(judge_scores)
        padding = torch.tensor([bool(tag.get("is_padding", False)) for tag in batch.tags], dtype=torch.bool)
        anchors = core.anchor_flags_tensor(data.pop(IS_ANCHOR) if IS_ANCHOR in data else None, size) & ~padding

        response_mask = data["response_mask"]
        data = DataProto(batch=data.to_padded_tensor())
        data.batch["token_level_scores"] = data.batch["rm_scores"]
        data.non_tensor_batch["uid"] = np.array(data.batch.pop("uid").tolist(), dtype=object)
        on_policy = ~anchors & ~padding
        metrics.update(batch_onpolicy_diagnostics(self.config, data, response_mask.offsets().diff(), on_policy))

        if self.config.algorithm.use_kl_in_reward:
            data, kl_metrics = apply_kl_penalty(
                data, kl_ctrl=self.kl_ctrl_in_reward, kl_penalty=self.config.algorithm.kl_penalty
            )
            metrics.update(kl_metrics)
        else:
            data.batch["token_level_rewards"] = data.batch["token_level_scores"]

        rollout_corr_config = self.config.algorithm.get("rollout_correction", None)
        bypass = rollout_corr_config and rollout_corr_config.get("bypass_mode", False)
        rollout_correction = rollout_corr_config is not None and "rollout_log_probs" in data.batch and not bypass
        if rollout_correction:
            data, is_metrics = rollout_correction_without_anchors(data, rollout_corr_config, anchors)
            metrics.update(is_metrics)

        source_rows = [-1 if padding[row] else row for row in _session_final_rows(batch.keys)]
        advantages, stats = compute_batch_advantage(
            token_level_rewards=data.batch["token_level_rewards"],
            response_mask=data.batch["response_mask"],
            index=data.non_tensor_batch["uid"],
            judge_scores=judge_scores,
            anchor_mask=anchors,
            algorithm_config=self.config.algorithm,
            source_rows=source_rows,
        )
        data.batch["advantages"] = advantages
        data.batch["returns"] = advantages
        metrics.update(stats)
        metrics.update(self._judge_metrics(batch))

        fields = ["advantages", "returns"]
        if self.config.algorithm.use_kl_in_reward:
            fields.append("token_level_rewards")
        if rollout_correction:
            fields.append("response_mask")
            if "rollout_is_weights" in data.batch:
                fields.append("rollout_is_weights")
        output = TensorDict({f: response_to_nested(data.batch[f], response_mask) for f in fields}, batch_size=size)
        return tq.kv_batch_put(keys=batch.keys, partition_id=batch.partition_id, fields=output)

    def _judge_metrics(self, batch) -> dict[str, float]:
        """The step's ``judge/*`` metrics: the group judge's counters carried by the batch's samples
        (``extra_fields['judge_stats']``, :mod:`dagrpo_verl.judge.group`), merged with whatever the judge
        counted in the reward-loop and agent-loop worker processes outside a group (the reward function's own
        calls, e.g. judged validation)."""
        import transfer_queue as tq

        data = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=["extra_fields"])
        extras = data["extra_fields"] if "extra_fields" in data else [None] * len(batch)
        records = [
            (extra or {}).get(JUDGE_STATS)
            for extra, tag in zip(extras, batch.tags, strict=True)
            if not tag.get("is_padding", False)
        ]
        return merged_judge_metrics(stats_from_records(records), pop_stats_from(self._judge_actor_handles()))

    # reward faults (issue 11, docs/reliability.md) ---------------------------------------------------------
    def _record_reward_faults(self, batch, metrics: dict) -> None:
        """``reward/grade_timeouts``, ``reward/grade_errors``, ``reward/errors``: sums of the reward extra info
        in ``extra_fields`` over the batch's samples (synthetic padding rows left out); stops the run with
        :class:`~dagrpo_verl.reward.RewardErrorsExceeded` past ``reward_kwargs.max_error_frac``."""
        import transfer_queue as tq

        data = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=["extra_fields"])
        extras = data["extra_fields"] if "extra_fields" in data else [None] * len(batch)
        infos = [
            (extra or {}).get(_REWARD_EXTRA_INFO) or {}
            for extra, tag in zip(extras, batch.tags, strict=True)
            if not tag.get("is_padding", False)
        ]
        columns = {key: [info.get(key) for info in infos] for key in FAULT_METRICS if any(key in i for i in infos)}
        metrics.update(fault_metrics(columns))
        examples = partial(pop_error_examples_from, self._judge_actor_handles())
        check_error_budget(columns, self.config, examples, step=getattr(self, "global_steps", None))

    # -------------------------------------------------------------------------------------------------------

    @staticmethod
    def _judge_scores_from_extra_fields(batch) -> list | None:
        """Judge scores from verl's ``extra_fields['reward_extra_info']['judge_score']``.

        Returns None when no sample has one (the reward function returns no ``judge_score``).
        """
        import transfer_queue as tq

        data = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=["extra_fields"])
        if "extra_fields" not in data:
            return None
        infos = [(extra or {}).get(_REWARD_EXTRA_INFO) or {} for extra in data["extra_fields"]]
        if not any(JUDGE_SCORE in info for info in infos):
            return None
        return [info.get(JUDGE_SCORE) for info in infos]


_TRAINER_CLASSES: dict[str, type] = {}


def dagrpo_trainer_cls(trainer_mode: str) -> type[PPOTrainer]:
    """The v1 trainer of ``trainer.v1.trainer_mode`` with :class:`DaGRPOTrainerMixin` mixed in.

    Works for every mode registered with verl's ``register_trainer`` (``sync``,
    ``colocate_async``, ``separate_async``, and user-registered ones).
    """
    if trainer_mode not in _TRAINER_CLASSES:
        base = get_trainer_cls(trainer_mode)
        _TRAINER_CLASSES[trainer_mode] = type(
            f"DaGRPO{base.__name__}", (DaGRPOTrainerMixin, base), {"__module__": __name__, "__doc__": base.__doc__}
        )
    return _TRAINER_CLASSES[trainer_mode]


class _DaGRPOTaskRunnerV1(TaskRunnerV1.__ray_actor_class__):
    """verl's ``TaskRunnerV1`` with the trainer class from :func:`dagrpo_trainer_cls`."""

    def run(self, config: DictConfig):
        """verl's ``TaskRunnerV1.run`` (0.9.1) with the DaGRPO trainer class; ``fit`` runs inside
        :func:`dagrpo_verl.integration.metrics_file.keep_metrics_file` (no metrics erased on restart)."""
        # mirrors verl 0.9.1 verl.trainer.main_ppo:TaskRunnerV1.run
        configure_verl_logging()
        import transfer_queue as tq

        trainer_cls = dagrpo_trainer_cls(config.trainer.v1.trainer_mode)
        config.transfer_queue.enable = True
        pprint(OmegaConf.to_container(config, resolve=True))
        OmegaConf.resolve(config)
        self.config = config

        tq.init(config.transfer_queue)
        succeeded = False
        try:
            self.trainer = trainer_cls(config=config)
            self.trainer.init()
            self.init_agent_loop_manager()
            with keep_metrics_file(config):
                self.trainer.fit(self.agent_loop_manager)
            succeeded = True
        finally:
            try:
                tracking = getattr(self.trainer, "logger", None)
                if tracking is not None:
                    tracking.finish(exit_code=0 if succeeded else 1)
            finally:
                tq.close()


#: Ray actor class passed to ``verl.trainer.main_ppo.run_ppo`` for the v1 trainer.
DaGRPOTaskRunner = ray.remote(_DaGRPOTaskRunnerV1)


def __getattr__(name: str) -> Any:
    """The legacy trainer's names under their old home, importing
    :mod:`dagrpo_verl.integration.legacy_trainer` on first use."""
    if name in _LEGACY_NAMES:
        from dagrpo_verl.integration import legacy_trainer

        return getattr(legacy_trainer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
