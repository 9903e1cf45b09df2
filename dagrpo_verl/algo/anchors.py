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
"""Which groups get off-policy anchors, and which rollouts they replace (pure logic).

No verl, no Ray, no tokenizer: these functions take per-sample arrays of one batch
(any order, groups identified by ``uid`` values, never by position) and return
decisions keyed by ``uid``. The verl glue in :mod:`dagrpo_verl.integration.agent_loop` builds
the anchor samples from these decisions.

Definitions (``algorithm.dagrpo.anchor``, :class:`dagrpo_verl.algo.settings.AnchorConfig`):

* a rollout is *correct* when its reward extra info ``acc`` is > 0 where the reward
  function returns ``acc`` (DaGRPO's ``dagrpo_verl.reward.compute_score`` does:
  math-verify correctness), otherwise when its reward score is > 0
  (:func:`rollout_correct`);
* the on-policy accuracy of a group is the fraction of its rollouts that are correct;
* trigger ``hard``: a group gets anchors iff accuracy <= ``hard_max_accuracy``;
  ``always``: every group with an anchor text gets anchors;
* ``num_anchors`` = k: the prompt's single expert text is used k times (k identical
  anchor samples). Mode ``replace`` replaces the k lowest-reward rollouts (ties broken
  by the smaller tie-break key, e.g. the session id), but always keeps at least one
  rollout, so a group of g rollouts gets min(k, g - 1) anchors; mode ``append`` adds
  k anchors (group size g + k).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Hashable, Optional, Sequence

import numpy as np

from dagrpo_verl.algo.settings import AnchorConfig

__all__ = [
    "GroupPlan",
    "anchor_setup_problem",
    "group_accuracy",
    "plan_anchor_groups",
    "rollout_correct",
    "skip_failed_anchors",
]

# Accuracies are fractions k/g; compare with a tolerance so that 0.125 <= 0.125 holds.
_ACCURACY_TOL = 1e-9


@dataclass(frozen=True)
class GroupPlan:
    """The anchor decision for one group (one ``uid``).

    Attributes:
        uid: the group label.
        rows: ``(g,)`` int, batch positions of the group's on-policy rollouts (ascending).
        accuracy: on-policy accuracy of the group in [0, 1].
        num_anchors: anchors to add to the group (0: none).
        replace_rows: ``(num_anchors,)`` int, batch positions of the rollouts the anchors
            replace (mode ``replace``; lowest reward first), empty in mode ``append``.
    """

    uid: Hashable
    rows: np.ndarray
    accuracy: float
    num_anchors: int
    replace_rows: np.ndarray


def anchor_setup_problem(config: AnchorConfig, rollout_n: int, legacy: bool) -> str | None:
    """What makes the anchor settings impossible with ``actor_rollout_ref.rollout.n`` and the trainer, or None.

    The one statement of these rules: the start-up check
    (:func:`dagrpo_verl.integration.validation.validate_dagrpo_config`, before Ray starts) and the anchor-mixing
    managers (:func:`dagrpo_verl.integration.agent_loop.check_anchor_setup`) both refuse what it names.

    Args:
        config: ``algorithm.dagrpo.anchor`` (anchors enabled).
        rollout_n: ``actor_rollout_ref.rollout.n``, the group's on-policy rollouts.
        legacy: the legacy trainer (``trainer.use_v1=false``).

    Returns:
        The error message naming the keys and the fix, or None when the settings work.
    """
    if config.mode == "replace" and config.num_anchors >= rollout_n:
        return (
            f"algorithm.dagrpo.anchor.num_anchors={config.num_anchors} with mode=replace must be < "
            f"actor_rollout_ref.rollout.n={rollout_n} (at least one on-policy rollout stays); lower num_anchors or "
            "use mode=append."
        )
    if legacy and config.mode == "append":
        return (
            "algorithm.dagrpo.anchor.mode=append is not possible with the legacy trainer (trainer.use_v1=false): "
            "verl 0.9.1 verl/trainer/ppo/ray_trainer.py RayPPOTrainer.fit joins the rollouts to the prompt batch "
            "with batch.repeat(rollout.n).union(gen_batch_output), which needs exactly rollout.n samples per "
            "prompt. Use mode=replace, or the v1 trainer (trainer.use_v1=true)."
        )
    return None


def rollout_correct(reward_scores: Sequence[float], acc: Optional[Sequence[Optional[float]]] = None) -> np.ndarray:
    """Per-rollout correctness.

    Args:
        reward_scores: ``(N,)`` float, the reward score of each sample.
        acc: ``(N,)`` the reward extra info ``acc`` of each sample (None where the
            reward function returned none). Where it is a finite number it decides
            (correct iff > 0); elsewhere the reward score does (correct iff > 0).

    Returns:
        ``(N,)`` bool.
    """
    scores = np.asarray(reward_scores, dtype=np.float64).reshape(-1)
    correct = scores > 0
    if acc is not None:
        values = np.array([np.nan if a is None else float(a) for a in np.asarray(acc, dtype=object).reshape(-1)])
        if values.shape != scores.shape:
            raise ValueError(f"acc has {values.size} values but reward_scores has {scores.size}; they must match.")
        known = np.isfinite(values)
        correct = np.where(known, values > 0, correct)
    return correct


def group_accuracy(uids: Sequence[Hashable], correct: Sequence[bool]) -> dict[Hashable, float]:
    """On-policy accuracy per group.

    Args:
        uids: ``(N,)`` group labels.
        correct: ``(N,)`` bool, from :func:`rollout_correct`.

    Returns:
        ``{uid: fraction of the group's samples that are correct}``.
    """
    labels, inverse = _group_labels(uids)
    correct = np.asarray(correct, dtype=bool).reshape(-1)
    if correct.shape[0] != inverse.shape[0]:
        raise ValueError(f"correct has {correct.shape[0]} values but uids has {inverse.shape[0]}; they must match.")
    hits = np.bincount(inverse, weights=correct.astype(np.float64), minlength=len(labels))
    sizes = np.bincount(inverse, minlength=len(labels))
    return {label: float(h / s) for label, h, s in zip(labels, hits, sizes, strict=True)}


def plan_anchor_groups(
    uids: Sequence[Hashable],
    rewards: Sequence[float],
    correct: Sequence[bool],
    has_anchor: Sequence[bool],
    config: AnchorConfig,
    tiebreak: Optional[Sequence[int]] = None,
) -> list[GroupPlan]:
    """Decide, for every group of the batch, how many anchors it gets and what they replace.

    The result depends only on each sample's (uid, reward, correct, has_anchor, tiebreak),
    not on the order of the samples in the batch.

    Args:
        uids: ``(N,)`` group labels of the on-policy rollouts.
        rewards: ``(N,)`` float reward scores (the ``replace`` order: lowest first).
        correct: ``(N,)`` bool, see :func:`rollout_correct`.
        has_anchor: ``(N,)`` bool, whether the sample's prompt has an expert text. A group
            has an anchor iff any of its samples does (they share the prompt).
        config: the anchor settings. ``enable=False`` gives no anchors at all.
        tiebreak: ``(N,)`` int, orders rollouts of equal reward (smaller is replaced
            first); defaults to the batch position, which is order dependent - pass the
            session id where there is one.

    Returns:
        One :class:`GroupPlan` per group, sorted by ``str(uid)``.
    """
    labels, inverse = _group_labels(uids)
    n = inverse.shape[0]
    rewards = np.asarray(rewards, dtype=np.float64).reshape(-1)
    has_anchor = np.asarray(has_anchor, dtype=bool).reshape(-1)
    keys = np.arange(n) if tiebreak is None else np.asarray(tiebreak, dtype=np.int64).reshape(-1)
    for name, values in (("rewards", rewards), ("has_anchor", has_anchor), ("tiebreak", keys)):
        if values.shape[0] != n:
            raise ValueError(f"{name} has {values.shape[0]} values but uids has {n}; they must match.")
    if np.isnan(rewards).any():
        raise ValueError(f"rewards contain NaN at rows {np.flatnonzero(np.isnan(rewards)).tolist()}.")
    accuracy = group_accuracy(uids, correct)
    group_has_anchor = np.bincount(inverse, weights=has_anchor.astype(np.float64), minlength=len(labels)) > 0

    plans = []
    for g, label in enumerate(labels):
        rows = np.flatnonzero(inverse == g)
        triggered = config.enable and group_has_anchor[g]
        if triggered and config.trigger == "hard":
            triggered = accuracy[label] <= config.hard_max_accuracy + _ACCURACY_TOL
        num = 0
        replace_rows = np.zeros(0, dtype=np.int64)
        if triggered:
            if config.mode == "append":
                num = config.num_anchors
            else:
                num = min(config.num_anchors, rows.size - 1)
                order = np.lexsort((keys[rows], rewards[rows]))  # reward ascending, then tiebreak ascending
                replace_rows = rows[order[:num]]
        plans.append(GroupPlan(label, rows, accuracy[label], int(num), replace_rows))
    return sorted(plans, key=lambda plan: str(plan.uid))


def skip_failed_anchors(plan: GroupPlan, anchor_correct: bool, config: AnchorConfig) -> tuple[GroupPlan, int]:
    """Apply ``on_failed_verification`` to a group whose anchor was scored.

    Args:
        plan: the group's plan (``num_anchors > 0``).
        anchor_correct: whether the expert text passed verification (see :func:`rollout_correct`).
        config: the anchor settings.

    Returns:
        ``(plan, failed)``: the plan to carry out (no anchors when the policy is ``skip``
        and the anchor failed) and the number of anchors that failed verification
        (``plan.num_anchors`` or 0), counted whether they are used or skipped.
    """
    if anchor_correct or plan.num_anchors == 0:
        return plan, 0
    failed = plan.num_anchors
    if config.on_failed_verification == "skip":
        plan = GroupPlan(plan.uid, plan.rows, plan.accuracy, 0, np.zeros(0, dtype=np.int64))
    return plan, failed


def _group_labels(uids: Sequence[Hashable]) -> tuple[list[Hashable], np.ndarray]:
    """Distinct labels (sorted by ``str``) and, per sample, the index of its label. Shapes: (G,), (N,)."""
    values = list(np.asarray(uids, dtype=object).reshape(-1))
    labels = sorted(set(values), key=str)
    position = {label: i for i, label in enumerate(labels)}
    return labels, np.array([position[v] for v in values], dtype=np.int64)
