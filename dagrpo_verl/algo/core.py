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
"""DaGRPO maths as pure functions over tensors (no verl import, no trainer state, no I/O).

Notation follows the paper (Xie et al., arXiv 2512.06337):

* ``G_mix``: the mixed group of one prompt -- its on-policy rollouts plus any
  off-policy anchors. Groups are identified by verl's ``uid`` index array, in any
  order; nothing here depends on the position of a sample in the batch.
* Advantage (Dr.GRPO, the paper's implementation): ``A_i = R_i - mean_{G_mix}(R)``,
  optionally divided by ``std_{G_mix}(R) + eps`` (verl's ``norm_adv_by_std_in_grpo``).
  A group of one sample has no relative signal: its advantage is 0.
* Distinctiveness masks (eq. 8-9), with ``G+ = {A > 0}``, ``G- = {A < 0}`` and
  judge scores ``S``::

      S_max- = max_{k in G-} S_k            S_min+ = min_{j in G+} S_j
      λ+(j)  = 1[S_j - S_max- >= δ]         λ-(k)  = 1[S_min+ - S_k >= δ]
      A'_i   = λ_i · A_i                    (no re-centring after masking)

  Samples with ``A_i = 0`` are untouched. A NaN score means "the judge gave
  none": such a sample never sets ``S_max-``/``S_min+``; under the ``keep``
  policy it is never masked, under ``mask`` its advantage is zeroed.
* Policy loss (eq. 13 gradient, LUFFY-style policy shaping for anchors):
  on-policy tokens use verl's clipped PPO surrogate (``vanilla``, dual clip
  included); anchor tokens maximise ``A · f(p)`` with ``f(p) = p / (p + γ)``,
  ``p = exp(log_prob)``, no clipping (behaviour probability taken as 1).
  The reduction of the per-token loss matrix to a scalar is the caller's ``agg_loss``
  (verl's ``core_algos.agg_loss`` in training, passed in by
  :mod:`dagrpo_verl.integration.registration`), so every verl aggregation mode applies.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from dagrpo_verl.fields import METRIC_PREFIX

__all__ = [
    "advantage_metrics",
    "anchor_flags_tensor",
    "judge_scores_tensor",
    "group_ids_from_index",
    "group_relative_advantage",
    "group_needs_judge_scores",
    "distinctiveness_keep_mask",
    "compute_dagrpo_outcome_advantage",
    "compute_dagrpo_policy_loss",
    "ANCHOR_SHAPED_RATIO_SUM",
    "ANCHOR_TOKENS",
    "RESPONSE_TOKENS",
    "SUMMED_LOSS_METRICS",
    "LossAggregator",
]

#: Reduces a ``(bs, T)`` loss matrix over its ``(bs, T)`` mask to a scalar:
#: ``agg_loss(loss_mat, loss_mask, loss_agg_mode, dp_size=1, batch_num_tokens=None, global_batch_size=None,
#: loss_scale_factor=None)``, the signature of verl's ``core_algos.agg_loss`` (what training passes).
LossAggregator = Callable[..., torch.Tensor]

#: Per-micro-batch loss metrics that are sums (not means): Σ f(p) over anchor tokens, anchor
#: tokens, response tokens. Every micro-batch emits all three, with or without anchors, so the
#: metric keys never depend on the batch contents (verl's ``Metric.aggregate_dp`` needs the
#: same number of values on every data-parallel rank). Ratios of their totals give the
#: token-weighted ``anchor_token_frac`` and ``anchor_shaped_ratio_mean``
#: (:func:`dagrpo_verl.integration.losses.finish_loss_metrics`).
ANCHOR_SHAPED_RATIO_SUM = METRIC_PREFIX + "anchor_shaped_ratio_sum"
ANCHOR_TOKENS = METRIC_PREFIX + "anchor_tokens"
RESPONSE_TOKENS = METRIC_PREFIX + "response_tokens"
SUMMED_LOSS_METRICS = (ANCHOR_SHAPED_RATIO_SUM, ANCHOR_TOKENS, RESPONSE_TOKENS)


def advantage_metrics(stats: dict[str, Any]) -> dict[str, float]:
    """The ``dagrpo/<name>`` metrics of :func:`compute_dagrpo_outcome_advantage`'s stats, as floats."""
    return {METRIC_PREFIX + name: float(value) for name, value in stats.items()}


def group_ids_from_index(index: Any, device: torch.device | str | None = None) -> torch.Tensor:
    """Map verl's group labels (``uid`` strings, ints, ...) to contiguous ids.

    Args:
        index: ``(bs,)`` tensor, numpy array or sequence of hashable group labels, any order.

    Returns:
        ``(bs,)`` ``torch.long`` tensor with values in ``0..num_groups-1`` (labels numbered in order
        of first appearance; only equality of labels matters).
    """
    if isinstance(index, torch.Tensor):
        return torch.unique(index.reshape(-1), return_inverse=True)[1].to(device=device, dtype=torch.long)
    ids: dict[Any, int] = {}
    labels = np.asarray(index, dtype=object).reshape(-1)
    group_ids = [ids.setdefault(label, len(ids)) for label in labels.tolist()]
    return torch.tensor(group_ids, dtype=torch.long, device=device)


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` over ``mask`` (same shape): ``Σ values·mask / (Σ mask + 1e-8)``, values outside the
    mask (NaN included) ignored, as verl's ``masked_mean``."""
    return (torch.where(mask.bool(), values, 0.0) * mask).sum() / (mask.sum() + 1e-8)


def judge_scores_tensor(values: Any) -> torch.Tensor | None:
    """Judge scores as a ``(bs,)`` float32 tensor from a tensor, numpy array (object dtype
    included) or list; a None entry is a missing score (NaN). None stays None."""
    if values is None:
        return None
    if isinstance(values, torch.Tensor):
        return values.to(torch.float32).reshape(-1)
    return torch.tensor(
        [float("nan") if v is None else float(v) for v in np.asarray(values).reshape(-1)], dtype=torch.float32
    )


def anchor_flags_tensor(values: Any, size: int) -> torch.Tensor:
    """Anchor flags as a ``(size,)`` bool tensor from a tensor, numpy array or list (None entries
    are False); None means no anchors."""
    if values is None:
        return torch.zeros(size, dtype=torch.bool)
    if isinstance(values, torch.Tensor):
        return values.to(torch.bool).reshape(-1)
    return torch.tensor([bool(v) for v in np.asarray(values).reshape(-1)], dtype=torch.bool)


def _group_sum(values: torch.Tensor, group_ids: torch.Tensor, num_groups: int) -> torch.Tensor:
    return torch.zeros(num_groups, dtype=values.dtype, device=values.device).index_add_(0, group_ids, values)


@torch.no_grad()
def group_relative_advantage(
    rewards: torch.Tensor,
    group_ids: torch.Tensor,
    norm_adv_by_std_in_grpo: bool = False,
    epsilon: float = 1e-6,
) -> torch.Tensor:
    """Group-relative outcome advantage over the mixed group.

    ``A_i = R_i - mean_g(R)``; with ``norm_adv_by_std_in_grpo`` divided by
    ``std_g(R) + epsilon`` (unbiased std, as verl's ``grpo``). Singleton groups get 0.

    Args:
        rewards: ``(bs,)`` float sequence rewards R.
        group_ids: ``(bs,)`` long group ids (see :func:`group_ids_from_index`).
        norm_adv_by_std_in_grpo: divide by the group std (GRPO) or not (Dr.GRPO).
        epsilon: added to the std.

    Returns:
        ``(bs,)`` float32 advantages.
    """
    rewards = rewards.to(torch.float32)
    num_groups = int(group_ids.max().item()) + 1 if group_ids.numel() else 0
    count = _group_sum(torch.ones_like(rewards), group_ids, num_groups)
    mean = _group_sum(rewards, group_ids, num_groups) / count.clamp_min(1.0)
    centered = rewards - mean[group_ids]
    if norm_adv_by_std_in_grpo:
        var = _group_sum(centered * centered, group_ids, num_groups) / (count - 1.0).clamp_min(1.0)
        centered = centered / (var.sqrt()[group_ids] + epsilon)
    return torch.where(count[group_ids] > 1.0, centered, torch.zeros_like(centered))


@torch.no_grad()
def group_needs_judge_scores(rewards: Any) -> bool:
    """Whether a judge score can change an advantage of one mixed group G_mix (lazy judging).

    Eq. 8-9 act only on samples with ``A_i != 0``; a group whose advantages are all zero (every
    reward equal: all correct, or all wrong without an anchor) keeps them zero whatever its scores.
    Decided with :func:`group_relative_advantage` itself, in float32 as the estimator computes it, so
    the answer is exactly "some ``A_i != 0``": equal rewards give exact zeros whatever their order,
    unequal ones a non-zero advantage; the std division never turns one into the other.

    Args:
        rewards: ``(n,)`` sequence rewards R of the group's samples (rollouts and anchors), any order.

    Returns:
        False when every advantage of the group is 0 (no judge score is needed), else True.
    """
    values = torch.as_tensor(rewards, dtype=torch.float32).reshape(-1)
    if values.numel() < 2:
        return False
    advantages = group_relative_advantage(values, torch.zeros(values.numel(), dtype=torch.long))
    return bool((advantages != 0).any())


@torch.no_grad()
def distinctiveness_keep_mask(
    advantages: torch.Tensor,
    judge_scores: torch.Tensor,
    group_ids: torch.Tensor,
    delta: float = 3.0,
    on_missing_score: str = "keep",
) -> torch.Tensor:
    """λ of paper eq. 8-9: which samples keep their advantage.

    Args:
        advantages: ``(bs,)`` group-relative advantages A (sign defines G+ / G-).
        judge_scores: ``(bs,)`` float judge scores S; NaN = missing.
        group_ids: ``(bs,)`` long group ids.
        delta: distinctiveness threshold δ; ties at exactly δ are kept (``>=``).
        on_missing_score: ``"keep"`` (a NaN-scored sample is never masked) or
            ``"mask"`` (its advantage is zeroed). Either way it never sets
            ``S_max-`` / ``S_min+``.

    Returns:
        ``(bs,)`` bool: True = keep A_i, False = zero it. Samples with A_i = 0 are True.
    """
    if on_missing_score not in ("keep", "mask"):
        raise ValueError(f"on_missing_score must be 'keep' or 'mask', got {on_missing_score!r}.")
    scores = judge_scores.to(device=advantages.device, dtype=torch.float32)
    num_groups = int(group_ids.max().item()) + 1 if group_ids.numel() else 0
    positive, negative = advantages > 0, advantages < 0
    scored = ~torch.isnan(scores)
    inf = torch.tensor(float("inf"), device=scores.device)

    # S_max- per group (-inf when the group has no scored negative) and S_min+ (+inf likewise).
    best_negative = torch.full((num_groups,), -float("inf"), device=scores.device).scatter_reduce_(
        0, group_ids, torch.where(negative & scored, scores, -inf), reduce="amax"
    )
    worst_positive = torch.full((num_groups,), float("inf"), device=scores.device).scatter_reduce_(
        0, group_ids, torch.where(positive & scored, scores, inf), reduce="amin"
    )
    keep_positive = scores - best_negative[group_ids] >= delta  # eq. 8
    keep_negative = worst_positive[group_ids] - scores >= delta  # eq. 9
    keep = torch.where(positive, keep_positive, torch.where(negative, keep_negative, True))
    if on_missing_score == "keep":
        return keep | ~scored
    return keep & (scored | (advantages == 0))


@torch.no_grad()
def compute_dagrpo_outcome_advantage(
    token_level_rewards: torch.Tensor,
    response_mask: torch.Tensor,
    index: Any,
    judge_scores: torch.Tensor | None = None,
    anchor_mask: torch.Tensor | None = None,
    delta: float = 3.0,
    rectification: bool = True,
    on_missing_score: str = "keep",
    norm_adv_by_std_in_grpo: bool = False,
    epsilon: float = 1e-6,
) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """DaGRPO advantage: group-relative advantage over G_mix, then eq. 8-9 masks.

    Args:
        token_level_rewards: ``(bs, T)`` rewards; the sequence reward R is their sum.
        response_mask: ``(bs, T)`` valid response tokens.
        index: ``(bs,)`` group labels (verl's ``uid``), any order.
        judge_scores: ``(bs,)`` float judge scores (NaN = missing). Required when
            ``rectification`` is on.
        anchor_mask: ``(bs,)`` bool, True for off-policy anchors (statistics only:
            anchors are ordinary members of G_mix for the advantage and the masks).
        delta, on_missing_score: see :func:`distinctiveness_keep_mask`.
        rectification: False gives plain (Dr.)GRPO advantages over G_mix.
        norm_adv_by_std_in_grpo, epsilon: see :func:`group_relative_advantage`.

    Returns:
        ``advantages`` ``(bs, T)``, ``returns`` ``(bs, T)`` (the same tensor, as verl's
        GRPO estimators), and ``stats``: 0-dim tensors

        * ``pos_masked_frac``: masked positives / positives (0 if none),
        * ``neg_masked_frac``: masked negatives / negatives,
        * ``needed_scores``: samples with ``A_i != 0``, whose judge score eq. 8-9 read (0 without
          rectification),
        * ``missing_scores``: needed samples whose judge score is NaN. A sample with ``A_i = 0``
          needs none: its NaN score (a group that lazy judging left unjudged) is not missing,
        * ``anchor_frac``: anchors / samples,
        * ``anchor_groups_frac``: groups with at least one anchor / groups,
        * ``anchor_retained_frac``: anchors whose nonzero advantage survived / anchors with A != 0,
        * ``anchor_reward_mean``: mean reward of anchors (NaN without anchors),
        * ``rollout_reward_mean``: mean reward of the on-policy rollouts only (verl's
          ``critic/score/mean`` counts the anchors too).
    """
    if rectification and judge_scores is None:
        raise ValueError(
            "DaGRPO rectification needs per-sample judge scores: pass `judge_scores` (float tensor (bs,), NaN = "
            "missing), e.g. from the reward extra-info key 'judge_score' returned by dagrpo_verl.reward.compute_score "
            "(reward.custom_reward_function.path=pkg://dagrpo_verl.reward), or switch the masks off with "
            "+algorithm.dagrpo.rectification=false."
        )
    if index is None:
        raise ValueError("DaGRPO needs the group index (verl's non_tensor_batch['uid']); got index=None.")
    rewards = token_level_rewards.sum(dim=-1)
    group_ids = group_ids_from_index(index, device=rewards.device)
    if group_ids.numel() != rewards.numel():
        raise ValueError(f"index has {group_ids.numel()} labels for {rewards.numel()} samples.")
    advantages = group_relative_advantage(rewards, group_ids, norm_adv_by_std_in_grpo, epsilon)

    if rectification:
        scores = torch.as_tensor(judge_scores, dtype=torch.float32, device=rewards.device).reshape(-1)
        if scores.numel() != rewards.numel():
            raise ValueError(f"judge_scores has {scores.numel()} values for {rewards.numel()} samples.")
        keep = distinctiveness_keep_mask(advantages, scores, group_ids, delta, on_missing_score)
        needed = advantages != 0
        missing = (torch.isnan(scores) & needed).sum()
        needed = needed.sum()
    else:
        keep = torch.ones_like(advantages, dtype=torch.bool)
        needed = missing = torch.tensor(0)
    rectified = advantages * keep

    stats = _advantage_stats(advantages, keep, group_ids, rewards, anchor_mask)
    stats["needed_scores"] = needed.to(torch.float32)
    stats["missing_scores"] = missing.to(torch.float32)
    token_advantages = rectified.unsqueeze(-1) * response_mask
    return token_advantages, token_advantages, stats


def _advantage_stats(
    advantages: torch.Tensor,
    keep: torch.Tensor,
    group_ids: torch.Tensor,
    rewards: torch.Tensor,
    anchor_mask: torch.Tensor | None,
) -> dict[str, torch.Tensor]:
    positive, negative = advantages > 0, advantages < 0
    masked = ~keep
    stats = {
        "pos_masked_frac": (masked & positive).sum() / positive.sum().clamp_min(1),
        "neg_masked_frac": (masked & negative).sum() / negative.sum().clamp_min(1),
    }
    anchors = (
        torch.zeros_like(keep)
        if anchor_mask is None
        else torch.as_tensor(anchor_mask, device=keep.device).reshape(-1).to(torch.bool)
    )
    num_groups = int(group_ids.max().item()) + 1 if group_ids.numel() else 1
    groups_with_anchor = _group_sum(anchors.to(torch.float32), group_ids, num_groups) > 0
    active_anchors = anchors & (advantages != 0)
    stats["anchor_frac"] = anchors.float().mean() if anchors.numel() else torch.tensor(0.0)
    stats["anchor_groups_frac"] = groups_with_anchor.float().mean()
    stats["anchor_retained_frac"] = (active_anchors & keep).sum() / active_anchors.sum().clamp_min(1)
    stats["anchor_reward_mean"] = rewards[anchors].float().mean() if anchors.any() else torch.tensor(float("nan"))
    stats["rollout_reward_mean"] = rewards[~anchors].float().mean() if (~anchors).any() else torch.tensor(float("nan"))
    return {k: v.to(torch.float32) for k, v in stats.items()}


def _anchor_rows(
    anchor_mask: torch.Tensor | np.ndarray | None, response_mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    """The rows that hold anchor tokens, from a per-sample ``(bs,)`` or per-token ``(bs, T)`` anchor flag.

    Returns None when there is no flag or no anchor at all (the pure on-policy fast path), else
    ``(rows, row_token_flags)``: the ``(n,)`` indices of the rows holding an anchor token, and
    the ``(n, T)`` per-token flags of those rows when one of them mixes anchor and rollout
    tokens, None when each is anchor throughout (always so for per-sample flags). Per-sample
    flags are never broadcast to ``(bs, T)``: a reduction over the broadcast view costs as much
    as the whole loss on CPU.
    """
    if anchor_mask is None:
        return None
    flags = torch.as_tensor(anchor_mask, device=response_mask.device).to(torch.bool)
    if flags.dim() == 1:
        if flags.shape[0] != response_mask.shape[0]:
            raise ValueError(f"anchor_mask has {flags.shape[0]} rows for a batch of {response_mask.shape[0]}.")
        row_flags = flags
    elif flags.shape == response_mask.shape:
        row_flags = flags.any(dim=-1)
    else:
        raise ValueError(
            f"anchor_mask shape {tuple(flags.shape)} matches neither (bs,) nor {tuple(response_mask.shape)}."
        )
    rows = row_flags.nonzero(as_tuple=True)[0]
    if rows.numel() == 0:
        return None
    row_token_flags = None
    if flags.dim() == 2:
        row_token_flags = flags.index_select(0, rows)
        if bool(row_token_flags.all()):
            row_token_flags = None
    return rows, row_token_flags


def _clipped_surrogate(
    old_log_prob: torch.Tensor,
    log_prob: torch.Tensor,
    advantages: torch.Tensor,
    clip_ratio_low: float,
    clip_ratio_high: float,
    clip_ratio_c: float,
    rollout_is_weights: torch.Tensor | None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """verl ``vanilla``'s per-token clipped PPO loss, op for op. All tensors ``(n, T)``.

    Returns the loss matrix and the intermediates verl's clip metrics are computed from.
    """
    # mirrors verl 0.9.1 verl.trainer.ppo.core_algos:compute_policy_loss_vanilla (surrogate, clip metrics)
    negative_approx_kl = torch.clamp(log_prob - old_log_prob, min=-20.0, max=20.0)
    ratio = torch.exp(negative_approx_kl)
    pg_losses1 = -advantages * ratio
    pg_losses2 = -advantages * torch.clamp(ratio, 1 - clip_ratio_low, 1 + clip_ratio_high)
    clip_pg_losses1 = torch.maximum(pg_losses1, pg_losses2)
    pg_losses3 = -advantages * clip_ratio_c  # dual clip for A < 0
    clip_pg_losses2 = torch.min(pg_losses3, clip_pg_losses1)
    pg_losses = torch.where(advantages < 0, clip_pg_losses2, clip_pg_losses1)
    if rollout_is_weights is not None:
        pg_losses = pg_losses * rollout_is_weights
    with torch.no_grad():
        parts = {
            "clipped": torch.gt(pg_losses2, pg_losses1).float(),
            "neg_kl": -negative_approx_kl,
            "clipped_lower": torch.gt(clip_pg_losses1, pg_losses3) * (advantages < 0).float(),
        }
    return pg_losses, parts


def _valid_tokens(response_mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Valid tokens of a ``(bs, T)`` 0/1 ``response_mask``, counted over ``dim`` (all when None).

    Bool and integer masks are counted in int32: summing a bool mask into torch's default
    int64 costs about seven times as much on CPU.
    """
    return response_mask.sum(dim=dim, dtype=None if response_mask.is_floating_point() else torch.int32)


def _agg_normalisers(
    tokens_per_row: torch.Tensor, response_length: int, global_batch_info: dict[str, Any]
) -> dict[str, Any]:
    """verl ``agg_loss`` normalisers with its local defaults filled in from the whole micro-batch.

    ``tokens_per_row`` is the ``(bs,)`` count of valid tokens per row (``_valid_tokens(response_mask, -1)``),
    ``response_length`` the padded length ``T``.

    ``agg_loss`` is linear in the loss matrix once its normalisers are fixed, so the loss
    can be summed over disjoint row sets (on-policy rows, anchor rows) without changing it.
    With ``dp_size > 1`` verl requires the global values; missing ones stay None so
    ``agg_loss`` raises exactly as it does for verl's own losses.
    """
    info = dict(global_batch_info)
    if info.get("dp_size", 1) == 1:
        if info.get("batch_num_tokens") is None:
            info["batch_num_tokens"] = tokens_per_row.sum()
        if info.get("global_batch_size") is None:
            info["global_batch_size"] = (tokens_per_row > 0).sum()
    if info.get("loss_scale_factor") is None:
        info["loss_scale_factor"] = response_length
    return info


def compute_dagrpo_policy_loss(
    old_log_prob: torch.Tensor,
    log_prob: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    anchor_mask: torch.Tensor | None = None,
    loss_agg_mode: str = "token-mean",
    clip_ratio_low: float = 0.2,
    clip_ratio_high: float = 0.2,
    clip_ratio_c: float = 3.0,
    off_policy_gamma: float = 0.1,
    rollout_is_weights: torch.Tensor | None = None,
    global_batch_info: dict[str, Any] | None = None,
    *,
    agg_loss: LossAggregator,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Mixed policy loss: clipped PPO on rollout tokens, policy shaping on anchor tokens.

    On-policy tokens: exactly verl's ``vanilla`` loss (ratio clamp of the log-ratio
    to [-20, 20], clip to ``[1 - clip_ratio_low, 1 + clip_ratio_high]``, dual clip
    ``clip_ratio_c`` for negative advantages, rollout-correction weights).
    Anchor tokens (LUFFY policy shaping): loss ``-A · f(p)``, ``f(p) = p / (p + γ)``,
    ``p = exp(log_prob)``, computed as ``sigmoid(log_prob - log γ)`` (the same
    function); no clipping, no rollout-correction weight (anchors have no rollout
    log-probs; their behaviour probability is taken as 1).

    Rows holding anchor tokens are computed on their own (they are a small share of a
    batch) and aggregated with the normalisers of the whole micro-batch, which gives the
    same value as aggregating the mixed loss matrix (``agg_loss`` is linear in it). A row
    that is anchor throughout (every row of a per-sample flag) gets the shaping loss alone;
    only rows mixing anchor and rollout tokens also get the PPO surrogate, selected per token.

    Args:
        old_log_prob: ``(bs, T)`` log-probs under the behaviour (old) policy.
        log_prob: ``(bs, T)`` log-probs under the current policy (requires grad).
        advantages: ``(bs, T)`` token advantages.
        response_mask: ``(bs, T)`` bool/0-1 valid tokens.
        anchor_mask: ``(bs,)`` or ``(bs, T)`` bool, True on anchor (off-policy) tokens; None = no anchors.
        loss_agg_mode: any verl ``agg_loss`` mode.
        clip_ratio_low, clip_ratio_high, clip_ratio_c: PPO clip and dual-clip bounds.
        off_policy_gamma: γ of the shaping function f(p) = p / (p + γ).
        rollout_is_weights: ``(bs, T)`` rollout-correction weights for on-policy tokens, or None.
        global_batch_info: verl's ``config.global_batch_info`` (dp_size, batch_num_tokens, ...).
        agg_loss: the :data:`LossAggregator` (verl's ``core_algos.agg_loss``); it receives
            ``loss_agg_mode`` and the ``global_batch_info`` entries as keyword arguments.

    Returns:
        ``(loss, metrics)``: scalar loss and verl-style metrics (python floats). The
        clip metrics cover the tokens of rows without anchors. The same keys come back for
        every input: the :data:`SUMMED_LOSS_METRICS` (Σ f(p) over valid anchor tokens, valid
        anchor tokens, valid response tokens; 0 without anchors) are sums over this
        micro-batch, to be summed over micro-batches and ranks, never averaged.
    """
    if clip_ratio_c <= 1.0:
        raise ValueError(f"clip_ratio_c must be > 1.0 for dual-clip PPO, got {clip_ratio_c}.")
    if off_policy_gamma <= 0:
        raise ValueError(f"off_policy_gamma must be > 0, got {off_policy_gamma}.")
    global_batch_info = global_batch_info or {}
    clip = (clip_ratio_low, clip_ratio_high, clip_ratio_c)
    anchors = _anchor_rows(anchor_mask, response_mask)
    pg_losses, parts = _clipped_surrogate(old_log_prob, log_prob, advantages, *clip, rollout_is_weights)

    if anchors is None:
        on_policy_mask = response_mask
        response_tokens = _valid_tokens(response_mask)
        loss = agg_loss(pg_losses, response_mask, loss_agg_mode, **global_batch_info)
    else:
        rows, row_anchor = anchors
        on_policy_mask = response_mask.bool().index_fill(0, rows, False)
        tokens_per_row = _valid_tokens(response_mask, dim=-1)
        response_tokens = tokens_per_row.sum()
        normalisers = _agg_normalisers(tokens_per_row, response_mask.shape[-1], global_batch_info)
        loss = agg_loss(pg_losses, on_policy_mask, loss_agg_mode, **normalisers)

        def take(tensor: torch.Tensor | None) -> torch.Tensor | None:
            return None if tensor is None else tensor.index_select(0, rows)

        row_log_prob, row_advantages, row_mask = take(log_prob), take(advantages), take(response_mask)
        shaped = torch.sigmoid(row_log_prob - math.log(off_policy_gamma))  # f(p) = p / (p + γ)
        row_losses = -row_advantages * shaped
        if row_anchor is not None:  # rows mixing anchor and rollout tokens
            row_pg_losses, _ = _clipped_surrogate(
                take(old_log_prob), row_log_prob, row_advantages, *clip, take(rollout_is_weights)
            )
            row_losses = torch.where(row_anchor, row_losses, row_pg_losses)
        loss = loss + agg_loss(row_losses, row_mask, loss_agg_mode, **normalisers)

    metrics: dict[str, Any] = {
        "actor/pg_clipfrac": _masked_mean(parts["clipped"], on_policy_mask).item(),
        "actor/ppo_kl": _masked_mean(parts["neg_kl"], on_policy_mask).item(),
        "actor/pg_clipfrac_lower": _masked_mean(parts["clipped_lower"], on_policy_mask).item(),
    }
    metrics[RESPONSE_TOKENS] = float(response_tokens.item())
    if anchors is None:
        metrics[ANCHOR_TOKENS] = 0.0
        metrics[ANCHOR_SHAPED_RATIO_SUM] = 0.0
    else:
        valid_anchor = row_mask.bool() if row_anchor is None else row_anchor & row_mask.bool()
        metrics[ANCHOR_TOKENS] = float(valid_anchor.sum().item())
        metrics[ANCHOR_SHAPED_RATIO_SUM] = float((shaped.detach() * valid_anchor).sum().item())
    return loss, metrics
