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
"""The v1 ``_compute_advantage`` override and the legacy hook, on real verl data structures.

Real: verl's v1 trainer class (``PPOTrainerSync`` with the DaGRPO mix-in, verl's own
``__init__``), the composed ``dagrpo_trainer`` config, TransferQueue under local Ray
(``num_cpus=2``), verl's rollout-correction helper, ``DataProto``, Ray actors for the
judge-metrics collection. Nothing is stood in for: ``_compute_advantage`` only reads and
writes TransferQueue.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

ray = pytest.importorskip("ray")
tq = pytest.importorskip("transfer_queue")

from tensordict import TensorDict
from transfer_queue import KVBatchMeta
from verl.protocol import DataProto
from verl.trainer.ppo import ray_trainer
from verl.trainer.ppo.core_algos import compute_grpo_outcome_advantage
from verl.trainer.ppo.rollout_corr_helper import compute_rollout_correction_and_add_to_batch
from verl.utils.tensordict_utils import list_of_dict_to_tensordict

from dagrpo_verl.algo import core
from dagrpo_verl.fields import IS_ANCHOR, JUDGE_SCORE
from dagrpo_verl.integration.legacy_trainer import DaGRPORayPPOTrainer, legacy_advantage_hook
from dagrpo_verl.integration.trainer import dagrpo_trainer_cls
from dagrpo_verl.main import compose_config

# Two groups of 4 rollouts plus an anchor in group "b" (appended), varying response lengths.
UIDS = ["a"] * 4 + ["b"] * 5
REWARDS = [1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0]
SCORES = [9.0, 2.0, 7.0, float("nan"), 3.0, 1.0, 2.0, 2.0, 10.0]
ANCHOR = [False] * 8 + [True]
LENGTHS = [3, 5, 2, 4, 6, 3, 2, 5, 7]


def _config(*overrides: str):
    return compose_config(["actor_rollout_ref.rollout.n=4", "data.train_batch_size=2", *overrides])


def _trainer(config):
    """The DaGRPO v1 trainer with verl's own ``__init__`` (no workers: _compute_advantage needs none)."""
    trainer = dagrpo_trainer_cls(config.trainer.v1.trainer_mode)(config=config)
    # _judge_actor_handles reads the reward workers from the manager verl builds in _setup
    trainer.reward_loop_manager = type("NoRewardWorkers", (), {"reward_loop_workers": []})()
    return trainer


def _put_batch(
    partition: str, *, rollout_log_probs: bool = False, dagrpo_fields: bool = True, extra_info=True, entropy=False
):
    """Samples in the layout of verl's v1 agent loop (nested per-token fields, keys uid_session_index)."""
    generator = torch.Generator().manual_seed(0)
    keys, samples = [], []
    for i, (uid, length) in enumerate(zip(UIDS, LENGTHS, strict=False)):
        rm_scores = torch.zeros(length)
        rm_scores[-1] = REWARDS[i]
        sample = {
            "uid": uid,
            "response_mask": torch.ones(length, dtype=torch.int64),
            "rm_scores": rm_scores,
            "old_log_probs": -torch.rand(length, generator=generator) - 0.1,
        }
        if rollout_log_probs:
            # anchors carry the mixer's placeholder of zeros
            sample["rollout_log_probs"] = (
                torch.zeros(length)
                if ANCHOR[i]
                else sample["old_log_probs"] - 0.3 * torch.rand(length, generator=generator)
            )
        if entropy:  # the expert's text is far from the policy: high entropy on anchor tokens
            sample["entropy"] = torch.full((length,), 6.0) if ANCHOR[i] else torch.rand(length, generator=generator)
        if dagrpo_fields:
            sample[IS_ANCHOR] = torch.tensor(ANCHOR[i])
            sample[JUDGE_SCORE] = torch.tensor(SCORES[i], dtype=torch.float32)
        if extra_info:
            sample["extra_fields"] = {"reward_extra_info": {JUDGE_SCORE: SCORES[i], "acc": REWARDS[i]}}
        keys.append(f"{uid}{partition}_{i}_0")
        samples.append(sample)
    tags = [{"seq_len": 10 + n} for n in LENGTHS]
    tq.kv_batch_put(keys=keys, partition_id=partition, fields=list_of_dict_to_tensordict(samples), tags=tags)
    return KVBatchMeta(keys=keys, tags=tags, partition_id=partition)


def _read(meta, *fields):
    data = tq.kv_batch_get(keys=meta.keys, partition_id=meta.partition_id, select_fields=list(fields))
    return data.to_padded_tensor()


def _expected(config, rectification=True, anchors=True):
    settings = config.algorithm.dagrpo
    width = max(LENGTHS)
    mask = torch.tensor([[1.0] * n + [0.0] * (width - n) for n in LENGTHS])
    rewards = torch.zeros_like(mask)
    rewards[torch.arange(len(LENGTHS)), torch.tensor(LENGTHS) - 1] = torch.tensor(REWARDS)
    return core.compute_dagrpo_outcome_advantage(
        rewards,
        mask,
        np.array(UIDS, dtype=object),
        judge_scores=torch.tensor(SCORES),
        anchor_mask=torch.tensor(ANCHOR) if anchors else None,
        delta=settings.delta,
        rectification=rectification,
        on_missing_score=settings.on_missing_score,
        norm_adv_by_std_in_grpo=config.algorithm.norm_adv_by_std_in_grpo,
    )


def test_advantages_equal_core_on_transfer_queue_data(transfer_queue):
    config = _config()
    meta = _put_batch("p1")
    metrics: dict = {}
    returned = _trainer(config)._compute_advantage(meta, metrics)
    # the meta handed on to _update_actor lists every persisted field: the actor update fetches is_anchor
    assert IS_ANCHOR in returned.fields and "advantages" in returned.fields

    expected_adv, _, stats = _expected(config)
    got = _read(meta, "advantages", "returns")
    torch.testing.assert_close(got["advantages"], expected_adv)
    torch.testing.assert_close(got["returns"], expected_adv)
    # the masks did something on this batch, and the anchor survived (10 - best negative 7 >= 3)
    assert metrics["dagrpo/pos_masked_frac"] > 0 and metrics["dagrpo/neg_masked_frac"] > 0
    for name in (
        "pos_masked_frac",
        "neg_masked_frac",
        "anchor_groups_frac",
        "anchor_retained_frac",
        "anchor_reward_mean",
    ):
        assert metrics[f"dagrpo/{name}"] == pytest.approx(float(stats[name]))
    assert metrics["dagrpo/anchor_groups_frac"] == 0.5 and metrics["dagrpo/anchor_retained_frac"] == 1.0
    assert metrics["dagrpo/anchor_reward_mean"] == 1.0
    assert "judge/calls" in metrics


def test_onpolicy_diagnostics_leave_the_anchors_out(transfer_queue):
    """dagrpo/onpolicy/*: verl's own diagnostics on the rollouts; verl's whole-batch ones see the anchor's
    placeholder log-probs (0) and the expert's entropy."""
    from verl.trainer.ppo.core_algos import agg_loss
    from verl.utils.debug.metrics import calculate_debug_metrics

    config = _config("data.max_response_length=5")
    meta = _put_batch("p9", rollout_log_probs=True, entropy=True)
    metrics: dict = {}
    _trainer(config)._compute_advantage(meta, metrics)
    data = _read(meta, "old_log_probs", "rollout_log_probs", "response_mask", "entropy")
    rollouts = torch.tensor([not a for a in ANCHOR])

    def debug(rows):
        fields = {k: data[k][rows] for k in ("old_log_probs", "rollout_log_probs", "response_mask")}
        fields["responses"] = fields["response_mask"]
        return calculate_debug_metrics(DataProto(batch=TensorDict(fields, batch_size=int(rows.sum()))))

    onpolicy, whole = debug(rollouts), debug(torch.ones_like(rollouts))
    for name in ("rollout_probs_diff_max", "rollout_probs_diff_mean", "rollout_actor_probs_pearson_corr"):
        assert metrics[f"dagrpo/onpolicy/{name}"] == pytest.approx(onpolicy[f"training/{name}"])
    assert whole["training/rollout_probs_diff_max"] > metrics["dagrpo/onpolicy/rollout_probs_diff_max"]
    entropy = agg_loss(
        data["entropy"][rollouts], data["response_mask"][rollouts], "seq-mean-token-sum-norm", loss_scale_factor=5
    )
    assert metrics["dagrpo/onpolicy/entropy"] == pytest.approx(entropy.item()) and entropy < 1.0
    lengths = torch.tensor(LENGTHS)[rollouts].float()
    assert metrics["dagrpo/onpolicy/response_length/mean"] == pytest.approx(lengths.mean().item())
    assert metrics["dagrpo/onpolicy/response_length/max"] == lengths.max().item()
    assert metrics["dagrpo/onpolicy/response_length/clip_ratio"] == pytest.approx((lengths >= 5).float().mean().item())


def test_rectification_off_and_std_normalisation(transfer_queue):
    config = _config("algorithm.dagrpo.rectification=false", "algorithm.norm_adv_by_std_in_grpo=true")
    meta = _put_batch("p2")
    metrics: dict = {}
    _trainer(config)._compute_advantage(meta, metrics)
    expected_adv, _, _ = _expected(config, rectification=False)
    torch.testing.assert_close(_read(meta, "advantages")["advantages"], expected_adv)
    assert metrics["dagrpo/pos_masked_frac"] == 0.0


def test_judge_scores_fall_back_to_reward_extra_info(transfer_queue):
    """verl's own AgentLoopManagerTQ keeps the reward extra info in ``extra_fields`` only."""
    config = _config("algorithm.dagrpo.anchor.enable=false")
    meta = _put_batch("p3", dagrpo_fields=False)
    metrics: dict = {}
    _trainer(config)._compute_advantage(meta, metrics)
    expected_adv, _, _ = _expected(config, anchors=False)
    torch.testing.assert_close(_read(meta, "advantages")["advantages"], expected_adv)
    assert metrics["dagrpo/anchor_groups_frac"] == 0.0


def test_missing_judge_scores_fail_loudly(transfer_queue):
    """No judge score anywhere (e.g. a reward function without ``judge_score``): a clear error, not silent GRPO."""
    meta = _put_batch("p4", dagrpo_fields=False, extra_info=False)
    with pytest.raises(ValueError, match="judge_score"):
        _trainer(_config())._compute_advantage(meta, {})


def test_anchors_are_left_out_of_rollout_correction(transfer_queue):
    config = _config(
        "algorithm.rollout_correction.rollout_is=token", "algorithm.rollout_correction.rollout_is_threshold=1.5"
    )
    meta = _put_batch("p5", rollout_log_probs=True)
    metrics: dict = {}
    _trainer(config)._compute_advantage(meta, metrics)
    got = _read(meta, "rollout_is_weights", "response_mask", "old_log_probs", "rollout_log_probs")

    anchor_row = ANCHOR.index(True)
    valid = got["response_mask"][anchor_row].bool()
    assert valid.sum() == LENGTHS[anchor_row], "the anchor's response mask must be untouched"
    assert torch.all(got["rollout_is_weights"][anchor_row][valid] == 1.0)
    # verl's helper on the on-policy rows alone gives the on-policy weights and metrics
    on_policy = [i for i, a in enumerate(ANCHOR) if not a]
    width = got["old_log_probs"].shape[1]
    mask = torch.tensor([[1] * n + [0] * (width - n) for n in LENGTHS])
    reference = DataProto(
        batch=TensorDict(
            {
                "old_log_probs": got["old_log_probs"][on_policy],
                "rollout_log_probs": got["rollout_log_probs"][on_policy],
                "response_mask": mask[on_policy],
            },
            batch_size=len(on_policy),
        )
    )
    reference, reference_metrics = compute_rollout_correction_and_add_to_batch(
        reference, config.algorithm.rollout_correction
    )
    torch.testing.assert_close(got["rollout_is_weights"][on_policy], reference.batch["rollout_is_weights"])
    assert metrics["rollout_corr/rollout_is_mean"] == pytest.approx(reference_metrics["rollout_corr/rollout_is_mean"])
    # with the anchor included, its placeholder log-probs (0) would have given it a weight != 1
    assert not torch.allclose(torch.exp(got["old_log_probs"][anchor_row][valid]), torch.ones(int(valid.sum())))


def test_padding_rows_are_outside_every_group(transfer_queue):
    config = _config()
    meta = _put_batch("p6")
    # verl's upsample_batch_to_divisible_size copies sample 0 (anchor flag and score included) under a fresh uid
    padded = KVBatchMeta(keys=meta.keys, tags=[dict(t) for t in meta.tags], partition_id=meta.partition_id)
    padded.tags[0]["is_padding"] = True
    metrics: dict = {}
    _trainer(config)._compute_advantage(padded, metrics)
    advantages = _read(meta, "advantages")["advantages"]
    assert torch.count_nonzero(advantages[0]) == 0
    # group "a" now has 3 members: rewards 0, 0, 1 -> the mean moved
    assert advantages[3, 0] == pytest.approx(1.0 - 1.0 / 3.0)


def test_other_estimators_defer_to_verl(transfer_queue):
    config = _config("algorithm.adv_estimator=grpo", "algorithm.norm_adv_by_std_in_grpo=true")
    meta = _put_batch("p7")
    metrics: dict = {}
    _trainer(config)._compute_advantage(meta, metrics)
    width = max(LENGTHS)
    mask = torch.tensor([[1.0] * n + [0.0] * (width - n) for n in LENGTHS])
    rewards = torch.zeros_like(mask)
    rewards[torch.arange(len(LENGTHS)), torch.tensor(LENGTHS) - 1] = torch.tensor(REWARDS)
    expected, _ = compute_grpo_outcome_advantage(rewards, mask, np.array(UIDS, dtype=object))
    torch.testing.assert_close(_read(meta, "advantages")["advantages"], expected)
    assert not any(k.startswith("dagrpo/") for k in metrics)


def _legacy_batch() -> DataProto:
    """The fields of verl's legacy batch that compute_advantage reads (prompts of 2 tokens, right-padded responses)."""
    width = max(LENGTHS)
    mask = torch.tensor([[1.0] * n + [0.0] * (width - n) for n in LENGTHS])
    rewards = torch.zeros_like(mask)
    rewards[torch.arange(len(LENGTHS)), torch.tensor(LENGTHS) - 1] = torch.tensor(REWARDS)
    fields = {
        "token_level_rewards": rewards,
        "response_mask": mask,
        "responses": torch.ones_like(mask, dtype=torch.long),
        "attention_mask": torch.cat([torch.ones(len(UIDS), 2), mask], dim=1).long(),
    }
    return DataProto(
        batch=TensorDict(fields, batch_size=len(UIDS)),
        non_tensor_batch={
            "uid": np.array(UIDS, dtype=object),
            JUDGE_SCORE: np.array(SCORES, dtype=np.float32),
            IS_ANCHOR: np.array(ANCHOR, dtype=bool),
        },
    )


def test_legacy_hook_routes_the_batch_to_dagrpo_only_inside_fit():
    config = _config("trainer.use_v1=false")
    trainer = DaGRPORayPPOTrainer.__new__(DaGRPORayPPOTrainer)  # no workers, datasets or tokenizer needed here
    trainer.config = config
    original = ray_trainer.compute_advantage
    with legacy_advantage_hook(trainer):
        # the call exactly as RayPPOTrainer.fit makes it
        out = ray_trainer.compute_advantage(
            _legacy_batch(),
            adv_estimator=config.algorithm.adv_estimator,
            gamma=config.algorithm.gamma,
            lam=config.algorithm.lam,
            num_repeat=config.actor_rollout_ref.rollout.n,
            norm_adv_by_std_in_grpo=config.algorithm.norm_adv_by_std_in_grpo,
            config=config.algorithm,
        )
        grpo = ray_trainer.compute_advantage(_legacy_batch(), adv_estimator="grpo", config=config.algorithm)
    assert ray_trainer.compute_advantage is original
    expected_adv, _, stats = _expected(config)
    torch.testing.assert_close(out.batch["advantages"], expected_adv)
    assert trainer._dagrpo_metrics["dagrpo/neg_masked_frac"] == pytest.approx(float(stats["neg_masked_frac"]))
    assert not math.isnan(trainer._dagrpo_metrics["dagrpo/anchor_reward_mean"])
    rollout_lengths = [n for n, anchor in zip(LENGTHS, ANCHOR, strict=True) if not anchor]
    assert trainer._dagrpo_metrics["dagrpo/onpolicy/response_length/mean"] == pytest.approx(np.mean(rollout_lengths))
    expected_grpo, _ = compute_grpo_outcome_advantage(
        _legacy_batch().batch["token_level_rewards"],
        _legacy_batch().batch["response_mask"],
        np.array(UIDS, dtype=object),
    )
    torch.testing.assert_close(grpo.batch["advantages"], expected_grpo)
    # without the hook verl's function gives the estimator no judge scores: DaGRPO refuses
    with pytest.raises(ValueError, match="judge"):
        ray_trainer.compute_advantage(_legacy_batch(), adv_estimator="dagrpo", config=config.algorithm)


def test_multi_output_sessions_count_once_and_share_the_final_advantage(transfer_queue):
    """As verl's GRPO path: only each session's final output joins the group; earlier outputs copy it."""
    config = _config("algorithm.dagrpo.rectification=false", "algorithm.dagrpo.anchor.enable=false")
    # (key, reward): session 0 of uid "m" has two outputs (turns), the final one is correct
    rows = [("m_0_0", 0.0), ("m_0_1", 1.0), ("m_1_0", 0.0), ("m_2_0", 0.0)]
    samples = []
    for key, reward in rows:
        rm_scores = torch.zeros(3)
        rm_scores[-1] = reward
        samples.append(
            {
                "uid": "m",
                "response_mask": torch.ones(3, dtype=torch.int64),
                "rm_scores": rm_scores,
                "old_log_probs": torch.zeros(3),
            }
        )
    keys = [key for key, _ in rows]
    tq.kv_batch_put(keys=keys, partition_id="p8", fields=list_of_dict_to_tensordict(samples), tags=[{}] * len(rows))
    meta = KVBatchMeta(keys=keys, tags=[{}] * len(rows), partition_id="p8")
    _trainer(config)._compute_advantage(meta, {})
    advantages = _read(meta, "advantages")["advantages"][:, 0]
    # group of 3 sessions with rewards 1, 0, 0: mean 1/3
    torch.testing.assert_close(advantages, torch.tensor([2 / 3, 2 / 3, -1 / 3, -1 / 3]))


def test_legacy_update_batch_carries_the_anchor_flag_as_a_tensor():
    """What verl's legacy _update_actor does with the batch: to_tensordict, then left_right_2_no_padding."""
    from verl.workers.utils.padding import left_right_2_no_padding

    from dagrpo_verl.integration.legacy_trainer import anchors_as_tensor

    size, prompt, response = 3, 4, 5
    attention = torch.ones(size, prompt + response, dtype=torch.long)
    batch = DataProto(
        batch=TensorDict(
            {
                "input_ids": torch.randint(0, 50, (size, prompt + response)),
                "attention_mask": attention,
                "position_ids": torch.arange(prompt + response).expand(size, -1).clone(),
                "response_mask": attention[:, prompt:],
                "responses": torch.randint(0, 50, (size, response)),
                "prompts": torch.randint(0, 50, (size, prompt)),
            },
            batch_size=size,
        ),
        non_tensor_batch={"uid": np.array(["a", "a", "b"], dtype=object), IS_ANCHOR: np.array([False, True, False])},
    )
    update = left_right_2_no_padding(anchors_as_tensor(batch).to_tensordict())
    assert torch.equal(update[IS_ANCHOR], torch.tensor([False, True, False]))
    assert IS_ANCHOR in batch.non_tensor_batch, "the trainer's own batch is left as it was"
