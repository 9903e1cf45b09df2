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
"""The actor loss function the DaGRPO trainers send to verl's actor workers.

verl's ``ppo_loss`` (``verl/workers/utils/losses.py``) selects a fixed set of
fields from the micro-batch and calls the registered policy loss without any
per-sample extra. :func:`dagrpo_ppo_loss` mirrors it line for line (global-batch
normalisation, entropy bonus, KL loss, metric aggregation) and adds one thing:
it selects the per-sample ``is_anchor`` flag of the micro-batch and passes it as
``anchor_mask`` to the ``dagrpo`` policy loss, so anchor tokens get the LUFFY
policy shaping of :func:`dagrpo_verl.algo.core.compute_dagrpo_policy_loss`.

The trainers install it with ``actor_rollout_ref_wg.set_loss_fn(partial(dagrpo_ppo_loss,
config=actor_config))`` (verl's ``ActorRolloutRefWorker.set_loss_fn``), as verl's
own trainers do for the critic's ``value_loss``.

The loss's anchor metrics are per-micro-batch sums (:data:`dagrpo_verl.algo.core.SUMMED_LOSS_METRICS`,
emitted by every micro-batch, so every data-parallel rank reports the same keys);
:func:`finish_loss_metrics` turns their totals into the logged token-weighted ratios.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

import numpy as np
import torch
from tensordict import TensorDict
from verl.trainer.ppo.core_algos import agg_loss, get_policy_loss_fn, kl_penalty
from verl.utils.metric import AggregationType, Metric
from verl.workers.config import ActorConfig
from verl.workers.utils.padding import no_padding_2_padding

from dagrpo_verl.algo.core import SUMMED_LOSS_METRICS
from dagrpo_verl.fields import DAGRPO_LOSS_MODE, IS_ANCHOR, METRIC_PREFIX

__all__ = ["DAGRPO_LOSS_MODE", "dagrpo_ppo_loss", "finish_loss_metrics"]

_SUMMED = AggregationType.SUM


def dagrpo_ppo_loss(
    config: ActorConfig, model_output: dict[str, Any], data: TensorDict, dp_group: Any = None
) -> tuple[torch.Tensor, dict[str, Any]]:
    """verl's ``ppo_loss`` plus the per-sample anchor mask for the ``dagrpo`` policy loss.

    Args:
        config: the actor config (``ActorConfig``); ``config.policy_loss.loss_mode`` picks the
            registered policy loss. Only ``dagrpo`` receives ``anchor_mask``.
        model_output: the engine's forward output (``log_probs`` and optionally ``entropy``,
            no-padding layout).
        data: the micro-batch. Besides verl's fields it may hold ``is_anchor`` (``(bs,)`` bool);
            without it every sample is on-policy.
        dp_group: unused (verl's loss-function signature).

    Returns:
        ``(loss, metrics)`` exactly as verl's ``ppo_loss`` returns them, plus the policy loss's
        ``dagrpo/*`` metrics.
    """
    # mirrors verl 0.9.1 verl.workers.utils.losses:ppo_loss (plus the anchor mask)
    log_prob = no_padding_2_padding(model_output["log_probs"], data)
    entropy = model_output.get("entropy", None)
    if entropy is not None:
        entropy = no_padding_2_padding(entropy, data)

    # global batch info for loss aggregation (as ppo_loss)
    config.global_batch_info["dp_size"] = data["dp_size"]
    config.global_batch_info["batch_num_tokens"] = data["batch_num_tokens"]
    config.global_batch_info["global_batch_size"] = data["global_batch_size"]
    config.global_batch_info["loss_scale_factor"] = config.loss_scale_factor

    # the policy loss normalises by the global batch: micro-batch metrics must be summed
    if (
        data["dp_size"] > 1
        or data["batch_num_tokens"] is not None
        or data["global_batch_size"] is not None
        or config.loss_scale_factor is not None
    ):
        metric_aggregation = AggregationType.SUM
    else:
        metric_aggregation = AggregationType.MEAN

    loss_mode = config.policy_loss.get("loss_mode", "vanilla")
    fields = ["response_mask", "old_log_probs", "advantages"]
    if "rollout_is_weights" in data:
        fields.append("rollout_is_weights")
    if "ref_log_prob" in data:
        fields.append("ref_log_prob")
    extra_kwargs = {}
    if loss_mode == DAGRPO_LOSS_MODE and IS_ANCHOR in data:
        extra_kwargs["anchor_mask"] = data[IS_ANCHOR].to(torch.bool)
    data = data.select(*fields).to_padded_tensor()

    response_mask = data["response_mask"].to(bool)
    loss_agg_mode = config.loss_agg_mode
    policy_loss_fn = get_policy_loss_fn(loss_mode)
    pg_loss, pg_metrics = policy_loss_fn(
        old_log_prob=data["old_log_probs"],
        log_prob=log_prob,
        advantages=data["advantages"],
        response_mask=response_mask,
        loss_agg_mode=loss_agg_mode,
        config=config,
        rollout_is_weights=data.get("rollout_is_weights", None),
        **extra_kwargs,
    )

    # the anchor sums add up over micro-batches; the other policy-loss metrics are averaged as in ppo_loss
    metrics: dict[str, Any] = {
        key: Metric(value=value, aggregation=_SUMMED if key in SUMMED_LOSS_METRICS else AggregationType.MEAN)
        for key, value in pg_metrics.items()
    }
    metrics["actor/pg_loss"] = Metric(value=pg_loss, aggregation=metric_aggregation)
    policy_loss = pg_loss

    if entropy is not None:
        entropy_loss = agg_loss(
            loss_mat=entropy, loss_mask=response_mask, loss_agg_mode=loss_agg_mode, **config.global_batch_info
        )
        policy_loss -= config.entropy_coeff * entropy_loss
        metrics["actor/entropy_loss"] = Metric(value=entropy_loss, aggregation=metric_aggregation)

    if config.use_kl_loss:
        kld = kl_penalty(logprob=log_prob, ref_logprob=data["ref_log_prob"], kl_penalty=config.kl_loss_type)
        kl_loss = agg_loss(
            loss_mat=kld, loss_mask=response_mask, loss_agg_mode=loss_agg_mode, **config.global_batch_info
        )
        policy_loss += kl_loss * config.kl_loss_coef
        metrics["kl_loss"] = Metric(value=kl_loss, aggregation=metric_aggregation)
        metrics["kl_coef"] = config.kl_loss_coef

    return policy_loss, metrics


def finish_loss_metrics(metrics: MutableMapping[str, Any], prefix: str = "actor/") -> MutableMapping[str, Any]:
    """Replace the loss's summed anchor metrics by the token-weighted ratios, in place.

    verl reduces each per-micro-batch sum the same way for numerator and denominator
    (``Metric.aggregate_dp``: mean over ranks, sum over micro-batches; then the mean over
    mini-batches), so the ratio of the reduced values is the ratio of the totals over every
    micro-batch, rank, mini-batch and epoch of the update:

    * ``{prefix}dagrpo/anchor_token_frac`` = anchor tokens / response tokens;
    * ``{prefix}dagrpo/anchor_shaped_ratio_mean`` = mean f(p) = p / (p + γ) over all anchor
      tokens (NaN in an update without anchor tokens).

    Args:
        metrics: the actor-update metrics after verl's renaming (``actor/dagrpo/...``); each value
            a float (v1 trainer, already reduced) or a list of per-mini-batch floats (legacy trainer).
        prefix: the prefix verl put in front of the loss's metric names.

    Returns:
        ``metrics`` (the same mapping). Without the summed keys (another loss) it is unchanged.
    """
    keys = [prefix + key for key in SUMMED_LOSS_METRICS]
    if not all(key in metrics for key in keys):
        return metrics
    shaped_sum, anchor_tokens, response_tokens = (float(np.mean(metrics.pop(key))) for key in keys)
    names = prefix + METRIC_PREFIX
    metrics[names + "anchor_token_frac"] = anchor_tokens / response_tokens if response_tokens else 0.0
    metrics[names + "anchor_shaped_ratio_mean"] = shaped_sum / anchor_tokens if anchor_tokens else float("nan")
    return metrics
