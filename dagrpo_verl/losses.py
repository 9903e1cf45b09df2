"""The actor loss function the DaGRPO trainers send to verl's actor workers.

verl's ``ppo_loss`` (``verl/workers/utils/losses.py``) selects a fixed set of
fields from the micro-batch and calls the registered policy loss without any
per-sample extra. :func:`dagrpo_ppo_loss` mirrors it line for line (global-batch
normalisation, entropy bonus, KL loss, metric aggregation) and adds one thing:
it selects the per-sample ``is_anchor`` flag of the micro-batch and passes it as
``anchor_mask`` to the ``dagrpo`` policy loss, so anchor tokens get the LUFFY
policy shaping of :func:`dagrpo_verl.core.compute_dagrpo_policy_loss`.

The trainers install it with ``actor_rollout_ref_wg.set_loss_fn(partial(dagrpo_ppo_loss,
config=actor_config))`` (verl's ``ActorRolloutRefWorker.set_loss_fn``), as verl's
own trainers do for the critic's ``value_loss``.
"""

from __future__ import annotations

from typing import Any

import torch
from tensordict import TensorDict
from verl.trainer.ppo.core_algos import agg_loss, get_policy_loss_fn, kl_penalty
from verl.utils.metric import AggregationType, Metric
from verl.workers.config import ActorConfig
from verl.workers.utils.padding import no_padding_2_padding

from dagrpo_verl.fields import IS_ANCHOR

__all__ = ["DAGRPO_LOSS_MODE", "dagrpo_ppo_loss"]

#: ``actor_rollout_ref.actor.policy_loss.loss_mode`` of the registered DaGRPO policy loss.
DAGRPO_LOSS_MODE = "dagrpo"


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

    metrics: dict[str, Any] = Metric.from_dict(pg_metrics, aggregation=AggregationType.MEAN)
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
