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
"""Gradient-conflict meter: how much a group's positives and negatives pull against each other,
before and after DaGRPO's distinctiveness masks (paper eq. 5, 8-9).

For every group (one prompt, its rollouts and anchors) with advantages ``A`` (Dr.GRPO, over the
mixed group) and rectified advantages ``A' = λ·A`` (eq. 8-9), both from :mod:`dagrpo_verl.algo.core`::

    g(S) = ∇θ Σ_{i∈S} A_i · log π(o_i | q_i)        (sequence log-likelihood: token sum, no length norm)

over four disjoint subsets: kept positives P_k, masked positives P_m, kept negatives N_k, masked
negatives N_m (masked = ``A ≠ 0`` and ``A' = 0``). With ``g+ = g(P_k) + g(P_m)`` and
``g- = g(N_k) + g(N_m)`` it reports, per group:

* ``cos_before`` = cos(g+, g-) with A; ``cos_after`` = cos(g(P_k), g(N_k)) with A' (the masks
  do not re-centre, so the kept samples keep A);
* ``cos_masked_pos`` = cos(g(P_m), g-) and ``cos_kept_pos`` = cos(g(P_k), g-): do the positives
  the masks drop conflict with the negatives more than those they keep?  Likewise
  ``cos_masked_neg`` = cos(g(N_m), g+) and ``cos_kept_neg`` = cos(g(N_k), g+);
* ``cos_removed_vs_kept`` = cos(g(P_m) + g(N_m), g(P_k) + g(N_k));
* norms ``norm_pos`` = |g+|, ``norm_neg`` = |g-|, ``norm_before`` = |g+ + g-|,
  ``norm_after`` = |g(P_k) + g(N_k)| (the group's policy gradient without and with the masks).

A cosine is NaN when one of its vectors is empty (a group with no masked positive has no
``cos_masked_pos``); summaries count only defined values. Groups whose advantages are all zero
carry no gradient and are counted, not measured. Anchors enter with their log-likelihood
gradient (the loss's LUFFY shaping rescales anchor tokens; the paper's eq. 5 does not).

The scored groups come from sampling the policy itself (G rollouts per prompt with the run's
sampling settings, the run's reward function and judge, anchors mixed as the trainer's agent loop
does), because verl 0.9.1's rollout dump (``trainer.rollout_data_dir``) holds decoded text with the
special tokens stripped and neither the judge scores nor the anchor flags. The sampled groups are
written to ``conflict_samples.jsonl`` (token ids, rewards, judge scores, anchor flags, A, A') and can be
measured again with ``--groups``.

    python -m dagrpo_verl.conflict --run RUN_DIR                         # every checkpoint of a run
    python -m dagrpo_verl.conflict --policy DIR [--policy DIR ...] --out OUT -- <hydra overrides of the run>
    python -m dagrpo_verl.conflict --policy DIR --groups conflict_samples.jsonl --out OUT -- <overrides>

A policy is a Hugging Face directory or a verl checkpoint (``global_step_N`` or its ``actor``
folder; FSDP shards are merged in memory). Outputs in ``--out`` (default ``RUN_DIR/conflict``):
``conflict_samples.jsonl``, ``conflict_groups.csv`` (one row per group), ``conflict_summary.csv`` and
``.json`` (per step: mean, quantiles, count), ``gradient_conflict.jsonl`` (per step, metric names
``dagrpo/conflict_<quantity>_<stat>``; :mod:`dagrpo_verl.eval.plot` draws it next to the training
curves of the run directory) and ``gradient_conflict.png``.
"""

from __future__ import annotations

__all__ = ["CONFLICT_FILE", "GROUPS_TABLE", "QUANTITIES", "SAMPLES_FILE", "STATS", "metric_name"]

#: Per-step metrics file the meter writes and :mod:`dagrpo_verl.eval.plot` merges into a run's metrics.
CONFLICT_FILE = "gradient_conflict.jsonl"

#: The sampled groups the meter measured (token ids, rewards, judge scores, anchor flags, A, A').
SAMPLES_FILE = "conflict_samples.jsonl"

#: One row per measured group: step, uid, subset sizes and the :data:`QUANTITIES`.
GROUPS_TABLE = "conflict_groups.csv"

#: Per-group quantities, in output order (see the package docstring).
QUANTITIES = (
    "cos_before",
    "cos_after",
    "cos_masked_pos",
    "cos_kept_pos",
    "cos_masked_neg",
    "cos_kept_neg",
    "cos_removed_vs_kept",
    "norm_pos",
    "norm_neg",
    "norm_before",
    "norm_after",
)

#: Per-step statistics over groups: mean, quantiles, and the number of groups where defined.
STATS = ("mean", "p10", "p25", "p50", "p75", "p90", "n")


def metric_name(quantity: str, stat: str) -> str:
    """``dagrpo/conflict_<quantity>_<stat>``: the name of a per-step statistic."""
    return f"dagrpo/conflict_{quantity}_{stat}"
