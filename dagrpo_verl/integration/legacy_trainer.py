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
"""verl's legacy trainer (``trainer.use_v1=false``) with the DaGRPO hooks.

Imported only when ``trainer.use_v1=false`` (:func:`dagrpo_verl.main.run`): verl 0.9.1 marks its
legacy ``main_ppo_v0`` deprecated, and the v1 path (:mod:`dagrpo_verl.integration.trainer`) must keep working
when verl removes it.

:class:`DaGRPORayPPOTrainer`'s ``fit`` calls the module function ``ray_trainer.compute_advantage``,
which passes no per-sample data to custom estimators; the only hook is to replace that function for
the duration of ``fit`` (:func:`legacy_advantage_hook`), as verl PR #7473 would do upstream.
:class:`DaGRPOLegacyTaskRunner` is the Ray task runner that builds it. The pieces shared with the v1
trainer (the loss installation, the advantage of a batch, the judge metrics) live in
:mod:`dagrpo_verl.integration.trainer`.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from functools import partial
from pprint import pprint
from typing import Any

import ray
import torch
from omegaconf import DictConfig, OmegaConf
from verl.protocol import DataProto
from verl.trainer.main_ppo_v0 import BaseTaskRunner
from verl.trainer.ppo import ray_trainer
from verl.trainer.ppo.ray_trainer import RayPPOTrainer
from verl.trainer.ppo.utils import create_rl_dataset, create_rl_sampler, need_critic, need_reference_policy
from verl.utils.config import omega_conf_to_dataclass, validate_config

from dagrpo_verl.algo import core
from dagrpo_verl.fields import DAGRPO_ESTIMATOR, IS_ANCHOR, JUDGE_SCORE, JUDGE_STATS
from dagrpo_verl.integration.losses import finish_loss_metrics
from dagrpo_verl.integration.metrics_file import keep_metrics_file
from dagrpo_verl.integration.resume import CheckpointSettingsMixin
from dagrpo_verl.integration.stock import dagrpo_trainer_hooks
from dagrpo_verl.integration.trainer import (
    batch_onpolicy_diagnostics,
    compute_batch_advantage,
    install_dagrpo_loss,
    merged_judge_metrics,
)
from dagrpo_verl.judge.metrics import JudgeStats, pop_stats_from, stats_from_records
from dagrpo_verl.reward import FAULT_METRICS, check_error_budget, fault_metrics, pop_error_examples_from

__all__ = ["DaGRPOLegacyTaskRunner", "DaGRPORayPPOTrainer", "anchors_as_tensor", "legacy_advantage_hook"]


@contextlib.contextmanager
def legacy_advantage_hook(trainer: DaGRPORayPPOTrainer) -> Iterator[None]:
    """Within the block, ``verl.trainer.ppo.ray_trainer.compute_advantage`` passes the batch to DaGRPO.

    ``RayPPOTrainer.fit`` calls the module-level ``compute_advantage``, which gives a custom
    estimator no per-sample data. For ``algorithm.adv_estimator=dagrpo`` the replacement reads
    ``judge_score`` and ``is_anchor`` from ``non_tensor_batch`` and stores the ``dagrpo/*``
    stats on ``trainer``; any other estimator goes to verl's function. The original function
    is restored on exit, and the replacement only lives in the process running ``fit``.
    """
    original = ray_trainer.compute_advantage

    def compute_advantage(data: DataProto, adv_estimator: Any, *args, **kwargs) -> DataProto:
        if adv_estimator != DAGRPO_ESTIMATOR:
            return original(data, adv_estimator, *args, **kwargs)
        return trainer.compute_dagrpo_advantage(data)

    ray_trainer.compute_advantage = compute_advantage
    try:
        yield
    finally:
        ray_trainer.compute_advantage = original


def anchors_as_tensor(batch: DataProto) -> DataProto:
    """A legacy batch with ``is_anchor`` moved from ``non_tensor_batch`` to a ``(bs,)`` bool tensor field.

    verl's legacy ``_update_actor`` sends ``batch.to_tensordict()`` to the actor; a tensor
    field reaches the loss's micro-batches unchanged. The input batch is not modified.
    """
    if IS_ANCHOR not in batch.non_tensor_batch:
        return batch
    tensors = batch.batch.clone(recurse=False)
    tensors[IS_ANCHOR] = core.anchor_flags_tensor(batch.non_tensor_batch[IS_ANCHOR], len(batch))
    non_tensors = {k: v for k, v in batch.non_tensor_batch.items() if k != IS_ANCHOR}
    return DataProto(batch=tensors, non_tensor_batch=non_tensors, meta_info=batch.meta_info)


class DaGRPORayPPOTrainer(CheckpointSettingsMixin, RayPPOTrainer):
    """verl's legacy ``RayPPOTrainer`` (``trainer.use_v1=false``) with the DaGRPO hooks.

    The legacy agent-loop manager must add ``is_anchor`` (and may add ``judge_score``) to
    ``non_tensor_batch``; the reward function's ``judge_score`` extra info lands there too.
    """

    #: token entropy of the current batch (``_compute_old_log_prob``), for the on-policy diagnostics
    _entropy: torch.Tensor | None = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._dagrpo_metrics: dict[str, float] = {}
        self._judge_stats: JudgeStats | None = None  # the group judge's counters of the current batch

    def init_workers(self):
        """verl's worker set-up, then the DaGRPO actor loss on the actor workers."""
        super().init_workers()
        install_dagrpo_loss(self.config, self.actor_rollout_wg)

    def fit(self):
        """verl's training loop with :func:`legacy_advantage_hook` active."""
        with legacy_advantage_hook(self):
            return super().fit()

    def _compute_old_log_prob(self, batch: DataProto):
        """verl's old log-probs; keeps the token entropy (verl drops it) for the on-policy diagnostics."""
        output, mfu = super()._compute_old_log_prob(batch)
        self._entropy = output.batch["entropys"].clone() if "entropys" in output.batch.keys() else None
        return output, mfu

    def compute_dagrpo_advantage(self, data: DataProto) -> DataProto:
        """Fill ``advantages``/``returns`` of a legacy batch with DaGRPO advantages (and the on-policy diagnostics)."""
        size = len(data)
        judge_scores = core.judge_scores_tensor(data.non_tensor_batch.get(JUDGE_SCORE))
        anchors = core.anchor_flags_tensor(data.non_tensor_batch.get(IS_ANCHOR), size)
        width = data.batch["responses"].shape[-1]
        response_lengths = data.batch["attention_mask"][:, -width:].sum(-1)
        diagnostics = batch_onpolicy_diagnostics(self.config, data, response_lengths, ~anchors, entropy=self._entropy)
        self._entropy = None
        advantages, stats = compute_batch_advantage(
            token_level_rewards=data.batch["token_level_rewards"],
            response_mask=data.batch["response_mask"],
            index=data.non_tensor_batch["uid"],
            judge_scores=judge_scores,
            anchor_mask=anchors,
            algorithm_config=self.config.algorithm,
        )
        data.batch["advantages"] = advantages
        data.batch["returns"] = advantages
        self._dagrpo_metrics = {**stats, **diagnostics}
        self._judge_stats = stats_from_records(data.non_tensor_batch.get(JUDGE_STATS, ()))
        return data

    def _update_actor(self, batch: DataProto) -> DataProto:
        """verl's actor update with ``is_anchor`` as a tensor field, plus the ``dagrpo/*``/``judge/*`` metrics and
        the reward's fault counts (``reward/*``; the run stops first past ``reward_kwargs.max_error_frac``)."""
        # reward faults (issue 11): counted every step, the run stops past reward_kwargs.max_error_frac
        faults = {key: batch.non_tensor_batch[key] for key in FAULT_METRICS if key in batch.non_tensor_batch}
        examples = partial(pop_error_examples_from, self.reward_loop_manager.reward_loop_workers or [])
        check_error_budget(faults, self.config, examples, step=self.global_steps)
        output = super()._update_actor(anchors_as_tensor(batch))
        output.meta_info["metrics"].update(fault_metrics(faults))
        finish_loss_metrics(output.meta_info["metrics"])
        output.meta_info["metrics"].update(self._dagrpo_metrics)
        leftover = pop_stats_from(self.reward_loop_manager.reward_loop_workers or [])
        output.meta_info["metrics"].update(merged_judge_metrics(self._judge_stats, leftover))
        self._judge_stats = None
        return output


class _DaGRPOLegacyTaskRunner(BaseTaskRunner):
    """verl's legacy ``TaskRunner`` (``main_ppo_v0``) building :class:`DaGRPORayPPOTrainer`.

    Derives from verl's ``BaseTaskRunner`` (worker/resource-pool helpers), as verl's own
    ``TaskRunner`` does; that class itself cannot be subclassed inside a Ray actor (its
    ``__init__`` calls ``super()`` on the class that ``@ray.remote`` replaced).
    """

    def run(self, config: DictConfig):
        """verl's ``main_ppo_v0.TaskRunner.run`` (0.9.1) with the DaGRPO trainer class; ``fit`` runs inside
        :func:`dagrpo_verl.integration.metrics_file.keep_metrics_file`."""
        # mirrors verl 0.9.1 verl.trainer.main_ppo_v0:TaskRunner.run
        print(f"TaskRunner hostname: {socket.gethostname()}, PID: {os.getpid()}")
        pprint(OmegaConf.to_container(config, resolve=True))
        OmegaConf.resolve(config)

        actor_rollout_cls, ray_worker_group_cls = self.add_actor_rollout_worker(config)
        self.add_critic_worker(config)
        self.add_reward_model_resource_pool(config)
        self.add_teacher_model_resource_pool(config)
        self.add_ref_policy_worker(config, actor_rollout_cls)
        with dagrpo_trainer_hooks():  # this task runner carries the DaGRPO hooks (dagrpo_verl.integration.stock)
            validate_config(
                config=config, use_reference_policy=need_reference_policy(config), use_critic=need_critic(config)
            )

        from verl.utils.dataset.rl_dataset import collate_fn
        from verl.workers.config import HFModelConfig

        model_config: HFModelConfig = omega_conf_to_dataclass(config.actor_rollout_ref.model)
        tokenizer, processor = model_config.tokenizer, model_config.processor
        resource_pool_manager = self.init_resource_pool_mgr(config)
        train_dataset = create_rl_dataset(
            config.data.train_files,
            config.data,
            tokenizer,
            processor,
            is_train=True,
            max_samples=config.data.get("train_max_samples", -1),
        )
        val_dataset = create_rl_dataset(
            config.data.val_files,
            config.data,
            tokenizer,
            processor,
            is_train=False,
            max_samples=config.data.get("val_max_samples", -1),
        )
        trainer = DaGRPORayPPOTrainer(
            config=config,
            tokenizer=tokenizer,
            processor=processor,
            role_worker_mapping=self.role_worker_mapping,
            resource_pool_manager=resource_pool_manager,
            ray_worker_group_cls=ray_worker_group_cls,
            train_dataset=train_dataset,
            val_dataset=val_dataset,
            collate_fn=collate_fn,
            train_sampler=create_rl_sampler(config.data, train_dataset),
        )
        trainer.init_workers()
        with keep_metrics_file(config):
            trainer.fit()


#: Ray actor class passed to ``verl.trainer.main_ppo.run_ppo`` for the legacy trainer.
DaGRPOLegacyTaskRunner = ray.remote(_DaGRPOLegacyTaskRunner)
