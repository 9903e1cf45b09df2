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
"""``python -m dagrpo_verl.main`` end to end on the CPU: one full DaGRPO step in verl's trainers.

Real: the entry, the DaGRPO task runners and trainers (v1 with TransferQueue, and the legacy
``RayPPOTrainer`` with ``trainer.use_v1=false``), verl's workers (FSDP2 engine,
``set_loss_fn``), the reward loop with ``dagrpo_verl.reward`` and the rule judge, the anchor
managers of ``dagrpo_verl.integration.agent_loop``, and the project's CPU
platform with the ``hf_cpu`` rollout backend standing in for the GPU generation server
(``+platform=cpu``, see docs/cpu.md). Checks the metrics verl's console tracker prints.
The v1 run uses 2 data-parallel ranks (2 FSDP2 worker processes over gloo, 2 rollout replicas)
with dynamic batch sizes, as a GPU run does; the legacy run one rank. About 1.5 minutes per
trainer on 2 cores.
"""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

pytest.importorskip("dagrpo_verl.cpu")

from dagrpo_verl.cpu.models import build_tiny_qwen2
from dagrpo_verl.cpu.smoke import cpu_env, parse_console_metrics
from dagrpo_verl.data.synthetic import write_synthetic_task


def _data_with_anchors(out_dir):
    """The synthetic task with a short expert solution (``\\boxed{answer}``, the anchor) in every row:
    anchors are cut to data.max_response_length tokens like rollouts."""
    train, _ = write_synthetic_task(out_dir, train=8, val=2, max_operand=99, anchor_style="answer")
    return train


TRAINERS = {
    "v1": [
        "trainer.n_gpus_per_node=2",
        "actor_rollout_ref.actor.use_dynamic_bsz=true",
        "actor_rollout_ref.actor.ppo_max_token_len_per_gpu=200",
        "actor_rollout_ref.rollout.log_prob_use_dynamic_bsz=true",
        "actor_rollout_ref.rollout.log_prob_max_token_len_per_gpu=200",
        "actor_rollout_ref.rollout.calculate_log_probs=true",
    ],
    "legacy": [
        "trainer.use_v1=false",
        "actor_rollout_ref.rollout.agent.agent_loop_manager_class=dagrpo_verl.integration.agent_loop.DaGRPOAgentLoopManager",
    ],
}


@pytest.mark.slow
@pytest.mark.parametrize("trainer", sorted(TRAINERS))
def test_one_dagrpo_step_through_the_real_entry(tmp_path, trainer):
    model = build_tiny_qwen2(tmp_path / "model")
    data = _data_with_anchors(tmp_path / "data")
    command = [
        sys.executable, "-m", "dagrpo_verl.main", "+platform=cpu",
        f"data.train_files={data}", f"data.val_files={data}",
        "data.train_batch_size=2", "data.max_prompt_length=64", "data.max_response_length=24",
        f"actor_rollout_ref.model.path={model}",
        "actor_rollout_ref.actor.ppo_mini_batch_size=2", "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=8",
        "actor_rollout_ref.rollout.n=4", "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=8",
        "algorithm.dagrpo.anchor.trigger=always",
        "trainer.total_training_steps=1", "trainer.val_before_train=false", "trainer.test_freq=-1",
        "trainer.save_freq=-1", "trainer.logger=[console]", f"trainer.default_local_dir={tmp_path / 'ckpt'}",
        *TRAINERS[trainer],
    ]  # fmt: skip
    proc = subprocess.run(
        command, check=False, capture_output=True, text=True, timeout=1200, env=cpu_env(), cwd=tmp_path
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-5000:]
    steps = parse_console_metrics(output)
    assert sorted(steps) == [1], output[-5000:]
    metrics = steps[1]
    # the estimator ran with the judge scores and anchor flags from TransferQueue
    for name in ("pos_masked_frac", "neg_masked_frac", "anchor_groups_frac", "anchor_retained_frac"):
        assert 0.0 <= metrics[f"dagrpo/{name}"] <= 1.0, name
    assert metrics["dagrpo/anchor_groups_frac"] == 1.0  # trigger=always and every row has an anchor
    assert metrics["dagrpo/anchor_reward_mean"] == 1.0  # the anchors are correct solutions
    assert metrics["dagrpo/missing_scores"] == 0.0
    # the judge ran in verl's reward workers and its counters reached the tracker
    assert metrics["judge/calls"] > 0
    # the loss installed with set_loss_fn saw the anchor tokens (LUFFY shaping metrics)
    assert metrics["actor/dagrpo/anchor_token_frac"] > 0
    assert 0 < metrics["actor/dagrpo/anchor_shaped_ratio_mean"] < 1
    assert metrics["actor/grad_norm"] > 0 and math.isfinite(metrics["actor/pg_loss"])
    if trainer == "v1":
        # verl balanced the batch over 2 data-parallel ranks: the mean rank holds half the tokens
        assert metrics["global_seqlen/mean"] == metrics["perf/total_num_tokens"] / 2
        # the float32 hf_cpu rollout samples from the actor's weights: on the rollouts the log-probs agree;
        # verl's own diagnostic counts the anchors' placeholder log-probs (0)
        assert metrics["dagrpo/onpolicy/rollout_probs_diff_max"] < 1e-5
        assert metrics["training/rollout_probs_diff_max"] > 0.5
