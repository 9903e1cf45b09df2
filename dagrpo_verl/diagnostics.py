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
"""First-run diagnostics on the on-policy rows only (``dagrpo/onpolicy/*``).

verl's own ``training/rollout_probs_diff_*``, ``actor/entropy``, ``response_length/*`` and
``critic/score/*`` count every row of the batch, anchors included: an anchor's rollout log-probs
are placeholders (0), its text is the expert's, its length is the expert's. A mixed batch
therefore shows a large rollout/actor log-prob difference and an expert-shaped length
distribution whatever the rollout engine does. :func:`onpolicy_diagnostics` computes the same
quantities, with verl's functions, on the rows that the policy generated:

* ``dagrpo/onpolicy/rollout_probs_diff_{mean,max,std}``, ``dagrpo/onpolicy/rollout_actor_probs_pearson_corr``:
  verl's ``calculate_debug_metrics`` (|p_rollout - p_actor| per token), when the rollout returned log-probs;
* ``dagrpo/onpolicy/entropy``: ``agg_loss`` of the actor's token entropy with the actor's
  ``loss_agg_mode`` / ``loss_scale_factor``, as verl's ``actor/entropy``;
* ``dagrpo/onpolicy/response_length/{mean,max}`` and ``dagrpo/onpolicy/response_length/clip_ratio``:
  the share of rollouts that reached the generation budget (``rollout.response_length``).

The on-policy score mean is ``dagrpo/rollout_reward_mean`` (:func:`dagrpo_verl.core.compute_dagrpo_outcome_advantage`).
"""

from __future__ import annotations

import torch
from tensordict import TensorDict
from verl.protocol import DataProto
from verl.trainer.ppo.core_algos import agg_loss
from verl.utils.debug.metrics import calculate_debug_metrics

__all__ = ["ONPOLICY_PREFIX", "onpolicy_diagnostics"]

#: Prefix of every on-policy diagnostic.
ONPOLICY_PREFIX = "dagrpo/onpolicy/"


def onpolicy_diagnostics(
    response_mask: torch.Tensor,
    response_lengths: torch.Tensor,
    on_policy: torch.Tensor,
    response_budget: int,
    old_log_probs: torch.Tensor | None = None,
    rollout_log_probs: torch.Tensor | None = None,
    entropy: torch.Tensor | None = None,
    loss_agg_mode: str = "token-mean",
    loss_scale_factor: int | None = None,
) -> dict[str, float]:
    """verl's first-run diagnostics restricted to the on-policy rows.

    Args:
        response_mask: ``(bs, T)`` valid response tokens (padded layout).
        response_lengths: ``(bs,)`` response lengths in tokens (tool tokens included, as verl counts them).
        on_policy: ``(bs,)`` bool, True for rows the policy generated (not anchors, not padding rows).
        response_budget: ``rollout.response_length``; a response this long was cut by the budget.
        old_log_probs: ``(bs, T)`` the actor's log-probs of the batch (``old_log_probs``), or None.
        rollout_log_probs: ``(bs, T)`` the rollout engine's log-probs, or None when it returned none.
        entropy: ``(bs, T)`` the actor's token entropy, or None.
        loss_agg_mode, loss_scale_factor: the actor's, for the entropy as verl aggregates it.

    Returns:
        ``{metric name: float}``; empty without on-policy rows.
    """
    rows = on_policy.to(torch.bool).nonzero(as_tuple=True)[0]
    if rows.numel() == 0:
        return {}
    mask = response_mask.index_select(0, rows)
    lengths = response_lengths.index_select(0, rows).to(torch.float32)
    prefix = ONPOLICY_PREFIX
    metrics = {
        f"{prefix}response_length/mean": lengths.mean().item(),
        f"{prefix}response_length/max": lengths.max().item(),
        f"{prefix}response_length/clip_ratio": (lengths >= response_budget).float().mean().item(),
    }
    if entropy is not None:
        metrics[f"{prefix}entropy"] = agg_loss(
            loss_mat=entropy.index_select(0, rows),
            loss_mask=mask,
            loss_agg_mode=loss_agg_mode,
            loss_scale_factor=loss_scale_factor,
        ).item()
    if old_log_probs is not None and rollout_log_probs is not None:
        subset = TensorDict(
            {
                "old_log_probs": old_log_probs.index_select(0, rows),
                "rollout_log_probs": rollout_log_probs.index_select(0, rows),
                "response_mask": mask,
                "responses": mask,  # calculate_debug_metrics reads only its width
            },
            batch_size=rows.numel(),
        )
        for key, value in calculate_debug_metrics(DataProto(batch=subset)).items():
            if key != "training/rollout_probs_diff_valid":
                metrics[prefix + key.removeprefix("training/")] = float(value)
    return metrics
