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
"""The loss metrics survive verl's data-parallel metric aggregation, with anchors spread unevenly.

Replays what verl 0.9.1 does with the metrics of one actor update, with its own functions:
per rank, the engine appends every micro-batch's loss metrics (``append_to_dict``, as
``postprocess_batch_func``); ``TrainingWorker.train_mini_batch`` all-gathers the rank dicts
(``allgather_dict_into_dict``: one list entry per rank, replayed here without processes) and
calls ``Metric.aggregate_dp`` per key; the trainer renames (``actor/``) and reduces over
mini-batches (``reduce_metrics``). The loss is the real ``dagrpo_ppo_loss`` on micro-batches
in verl's no-padding layout. ``tests/test_dp_actor_update_on_cpu.py`` runs the same through
two real processes.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
from tensordict import TensorDict
from verl.utils import tensordict_utils as tu
from verl.utils.config import omega_conf_to_dataclass
from verl.utils.metric import Metric, reduce_metrics
from verl.utils.py_functional import append_to_dict, rename_dict

from dagrpo_verl.algo.core import SUMMED_LOSS_METRICS
from dagrpo_verl.fields import IS_ANCHOR
from dagrpo_verl.integration.losses import dagrpo_ppo_loss, finish_loss_metrics
from dagrpo_verl.main import compose_config

GAMMA = 0.1


def _actor_config():
    config = compose_config(["actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=2"])
    return omega_conf_to_dataclass(config.actor_rollout_ref.actor)


def _micro_batch(response_lengths: list[int], anchors: list[bool], seed: int):
    """One micro-batch as verl's engine hands it to the loss, and the f(p) of its valid anchor tokens."""
    generator = torch.Generator().manual_seed(seed)
    nested = lambda rows: torch.nested.as_nested_tensor(rows, layout=torch.jagged)  # noqa: E731
    size = len(response_lengths)
    prompt_lengths = [2] * size
    data = TensorDict(
        {
            "prompts": nested([torch.ones(n, dtype=torch.long) for n in prompt_lengths]),
            "responses": nested([torch.ones(n, dtype=torch.long) for n in response_lengths]),
            "response_mask": nested([torch.ones(n, dtype=torch.long) for n in response_lengths]),
            "old_log_probs": nested([-torch.rand(n, generator=generator) - 0.05 for n in response_lengths]),
            "advantages": nested([torch.full((n,), 0.5) for n in response_lengths]),
            IS_ANCHOR: torch.tensor(anchors),
        },
        batch_size=size,
    )
    tu.assign_non_tensor(data, dp_size=2, batch_num_tokens=1000, global_batch_size=16)
    total = [p + r for p, r in zip(prompt_lengths, response_lengths, strict=True)]
    flat = -torch.rand(sum(total), generator=generator) - 0.05
    offsets = torch.tensor([0, *torch.tensor(total).cumsum(0).tolist()])
    log_probs = torch.nested.nested_tensor_from_jagged(flat, offsets=offsets)
    shaped = []
    for row, (p, r) in enumerate(zip(prompt_lengths, response_lengths, strict=True)):
        if anchors[row]:  # response log-probs start one position before the response (shifted labels)
            lp = flat[offsets[row] + p - 1 : offsets[row] + p - 1 + r]
            shaped.append(lp.exp() / (lp.exp() + GAMMA))
    return data, log_probs, shaped


# Two ranks, two micro-batches each (verl equalises micro-batch counts across ranks, not anchors):
# rank 0 holds anchors in both micro-batches, rank 1 in one of them.
RANKS = [
    [([5, 9, 3], [True, False, False]), ([4, 7], [True, True])],
    [([6, 2, 8], [False, False, False]), ([3, 11], [False, True])],
]


def _update_metrics(config):
    """The actor metrics verl's trainer gets for one mini-batch on the two ranks of RANKS."""
    rank_metrics, all_shaped, tokens = [], [], 0
    for rank, micro_batches in enumerate(RANKS):
        per_rank: dict = {}
        for i, (lengths, anchors) in enumerate(micro_batches):
            data, log_probs, shaped = _micro_batch(lengths, anchors, seed=10 * rank + i)
            _, metrics = dagrpo_ppo_loss(copy.deepcopy(config), {"log_probs": log_probs}, data)
            append_to_dict(per_rank, metrics)  # as verl.workers.engine.utils.postprocess_batch_func
            all_shaped.extend(shaped)
            tokens += sum(lengths)
        rank_metrics.append(per_rank)
    # allgather_dict_into_dict: every key becomes the list of the ranks' values
    gathered = {key: [m[key] for m in rank_metrics if key in m] for key in set().union(*rank_metrics)}
    # TrainingWorker.train_mini_batch, then PPOTrainer._update_actor
    reduced = {k: Metric.aggregate_dp(v) if isinstance(v[0], Metric) else v for k, v in gathered.items()}
    metrics = reduce_metrics(rename_dict({k: [v] for k, v in reduced.items()}, "actor/"))
    return metrics, torch.cat(all_shaped), tokens


def test_anchor_metrics_aggregate_over_ranks_as_token_weighted_means():
    config = _actor_config()
    metrics, shaped, tokens = _update_metrics(config)  # raised ValueError when keys depended on anchors
    finish_loss_metrics(metrics)
    assert not any(f"actor/{key}" in metrics for key in SUMMED_LOSS_METRICS)
    # the mean over every anchor token of both ranks, not a mean of per-micro-batch means
    assert metrics["actor/dagrpo/anchor_shaped_ratio_mean"] == pytest.approx(shaped.mean().item(), rel=1e-5)
    assert metrics["actor/dagrpo/anchor_token_frac"] == pytest.approx(shaped.numel() / tokens)
    assert metrics["actor/pg_clipfrac"] >= 0.0  # verl's own metrics are still aggregated as before


def test_every_micro_batch_reports_the_same_keys():
    config = _actor_config()
    keys = []
    for anchors in ([False, False], [True, False]):
        data, log_probs, _ = _micro_batch([3, 4], anchors, seed=0)
        keys.append(set(dagrpo_ppo_loss(copy.deepcopy(config), {"log_probs": log_probs}, data)[1]))
    assert keys[0] == keys[1] and set(SUMMED_LOSS_METRICS) <= keys[0]


def test_legacy_lists_and_updates_without_anchors():
    """The legacy trainer passes per-mini-batch lists; a step without anchor tokens logs NaN for f(p)."""
    metrics = {
        "actor/dagrpo/anchor_shaped_ratio_sum": [1.5, 0.5],
        "actor/dagrpo/anchor_tokens": [2.0, 2.0],
        "actor/dagrpo/response_tokens": [10.0, 30.0],
    }
    finish_loss_metrics(metrics)
    assert metrics == {"actor/dagrpo/anchor_token_frac": 0.1, "actor/dagrpo/anchor_shaped_ratio_mean": 0.5}
    empty = finish_loss_metrics(
        {
            "actor/dagrpo/anchor_shaped_ratio_sum": 0.0,
            "actor/dagrpo/anchor_tokens": 0.0,
            "actor/dagrpo/response_tokens": 4.0,
        }
    )
    assert empty["actor/dagrpo/anchor_token_frac"] == 0.0 and math.isnan(empty["actor/dagrpo/anchor_shaped_ratio_mean"])
