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
"""Two data-parallel ranks give the same DaGRPO update as one (the CPU stand-in for multi-GPU training).

Real (``dagrpo_verl.cpu.multirank``): verl 0.9.1's ``ActorRolloutRefWorker`` and its FSDP2 engine in
2 processes over gloo (the project's CPU platform), the DaGRPO loss installed by the trainers'
``install_dagrpo_loss``, ``update_actor`` with dynamic batch sizes, verl's cross-rank metric
aggregation, the tiny Qwen2 of ``dagrpo_verl.cpu.models``. Replaced: Ray's dispatch, by the same
``BatchData.chunk`` in each process. Anchors are spread unevenly: rank 0 holds them in two
micro-batches, rank 1 in one (before the fix verl raised ``ValueError: All Metric instances must
have the same number of values`` here).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("dagrpo_verl.cpu")

from dagrpo_verl.cpu.models import build_tiny_qwen2  # noqa: E402
from dagrpo_verl.cpu.multirank import run_actor_update  # noqa: E402


def _updates(tmp_path, name, overrides=()):
    """The update with 2 ranks and with 1 rank on the same batch (run side by side)."""
    model = build_tiny_qwen2(tmp_path / "model")
    with ThreadPoolExecutor(2) as pool:
        runs = [pool.submit(run_actor_update, n, model, tmp_path / f"{name}-dp{n}", list(overrides)) for n in (2, 1)]
        return [run.result() for run in runs]


def _max_grad_difference(a, b):
    assert sorted(a["grads"]) == sorted(b["grads"]) and a["grads"]
    diff = max(float((a["grads"][k] - b["grads"][k]).abs().max()) for k in a["grads"])
    scale = max(float(a["grads"][k].abs().max()) for k in a["grads"])
    return diff, scale


@pytest.mark.slow
def test_two_ranks_equal_one_rank(tmp_path):
    two, one = _updates(tmp_path, "paper")
    ranks = two["micro_batch_anchor_tokens"]
    # verl equalised the micro-batch counts, not the anchors: the case that crashed the metric aggregation
    assert len(ranks) == 2 and len(ranks[0]) == len(ranks[1]) >= 2
    assert sum(t > 0 for t in ranks[0]) != sum(t > 0 for t in ranks[1])
    assert sum(map(sum, ranks)) == sum(map(sum, one["micro_batch_anchor_tokens"])) > 0

    diff, scale = _max_grad_difference(two, one)
    assert scale > 0 and diff <= 1e-5 * scale, (diff, scale)
    m2, m1 = two["metrics"], one["metrics"]
    for key in ("actor/pg_loss", "actor/loss", "actor/grad_norm"):
        assert m2[key] == pytest.approx(m1[key], rel=1e-5), key
    # token-weighted over all anchor tokens: the same whatever the split into ranks and micro-batches
    for key in ("actor/dagrpo/anchor_token_frac", "actor/dagrpo/anchor_shaped_ratio_mean"):
        assert m2[key] == pytest.approx(m1[key], rel=1e-6), key


@pytest.mark.slow
def test_a_length_varying_normaliser_changes_with_the_split(tmp_path):
    """Control: verl's default seq-mean-token-sum-norm normaliser (each micro-batch's padded width) makes
    the gradient depend on how the batch is split; the equality above needs the constant one."""
    two, one = _updates(tmp_path, "width", ["actor_rollout_ref.actor.loss_scale_factor=null"])
    diff, scale = _max_grad_difference(two, one)
    assert diff > 1e-2 * scale, (diff, scale)
