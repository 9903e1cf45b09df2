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
"""DaGRPO advantage and distinctiveness masks (paper eq. 8-9) against real verl 0.9.1 estimators."""

import numpy as np
import pytest
import torch
import verl  # noqa: F401  (loads the dagrpo plugin through verl's entry points)
from hypothesis import given, settings
from hypothesis import strategies as st
from verl.trainer.ppo import core_algos

from dagrpo_verl.algo.core import (
    compute_dagrpo_outcome_advantage,
    distinctiveness_keep_mask,
    group_ids_from_index,
    group_relative_advantage,
)

NAN = float("nan")


def random_batch(seed, num_groups=16, group_size=8, length=12, binary=True):
    """Shuffled batch of `num_groups` groups (uids as strings), rewards on the last valid token."""
    g = torch.Generator().manual_seed(seed)
    bs = num_groups * group_size
    uids = np.array([f"uid-{i // group_size}" for i in range(bs)], dtype=object)
    perm = torch.randperm(bs, generator=g).numpy()
    uids = uids[perm]
    lengths = torch.randint(1, length + 1, (bs,), generator=g)
    response_mask = (torch.arange(length).unsqueeze(0) < lengths.unsqueeze(1)).float()
    rewards = torch.randint(0, 2, (bs,), generator=g).float() if binary else torch.rand(bs, generator=g)
    token_level_rewards = torch.zeros(bs, length)
    token_level_rewards[torch.arange(bs), lengths - 1] = rewards
    scores = torch.randint(1, 11, (bs,), generator=g).float()
    return token_level_rewards, response_mask, uids, scores


@pytest.mark.parametrize("norm_by_std", [True, False])
@pytest.mark.parametrize("binary", [True, False])
@pytest.mark.parametrize("seed", range(5))
def test_without_rectification_equals_verl_grpo(seed, binary, norm_by_std):
    """δ = -inf and rectification=false both reproduce verl's grpo and grpo_vectorized exactly."""
    rewards, mask, uids, scores = random_batch(seed, binary=binary)
    verl_loop, _ = core_algos.compute_grpo_outcome_advantage(rewards, mask, uids, norm_adv_by_std_in_grpo=norm_by_std)
    verl_vec, _ = core_algos.compute_grpo_vectorized_outcome_advantage(
        rewards, mask, uids, norm_adv_by_std_in_grpo=norm_by_std
    )
    ours_inf, _, _ = compute_dagrpo_outcome_advantage(
        rewards, mask, uids, judge_scores=scores, delta=-float("inf"), norm_adv_by_std_in_grpo=norm_by_std
    )
    ours_off, _, _ = compute_dagrpo_outcome_advantage(
        rewards, mask, uids, rectification=False, norm_adv_by_std_in_grpo=norm_by_std
    )
    torch.testing.assert_close(ours_inf, verl_loop, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ours_inf, verl_vec, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ours_off, ours_inf, rtol=0, atol=0)


def test_registered_estimator_through_verl_lookup_reads_algorithm_config():
    """verl's own lookup returns our estimator; it reads norm_adv_by_std_in_grpo and algorithm.dagrpo."""
    from omegaconf import OmegaConf

    rewards, mask, uids, scores = random_batch(7)
    fn = core_algos.get_adv_estimator_fn("dagrpo")
    config = OmegaConf.create({"norm_adv_by_std_in_grpo": False, "dagrpo": {"delta": -float("inf")}})
    adv, ret = fn(token_level_rewards=rewards, response_mask=mask, index=uids, config=config, judge_scores=scores)
    expected, _ = core_algos.compute_grpo_outcome_advantage(rewards, mask, uids, norm_adv_by_std_in_grpo=False)
    torch.testing.assert_close(adv, expected)
    assert ret is adv

    config = OmegaConf.create({"norm_adv_by_std_in_grpo": False, "dagrpo": {"delta": 3.0}})
    masked, _ = fn(token_level_rewards=rewards, response_mask=mask, index=uids, config=config, judge_scores=scores)
    direct, _, _ = compute_dagrpo_outcome_advantage(rewards, mask, uids, judge_scores=scores, delta=3.0)
    torch.testing.assert_close(masked, direct)
    assert not torch.equal(masked, adv), "δ = 3 must mask something on this batch"


def test_registered_estimator_reads_non_tensor_batch_like_verl_pr_7473():
    """With non_tensor_batch (verl PR #7473), judge scores and anchor flags need no trainer hook."""
    rewards, mask, uids, scores = random_batch(3)
    fn = core_algos.get_adv_estimator_fn("dagrpo")
    ntb = {"uid": uids, "judge_score": scores.numpy().astype(object), "is_anchor": np.zeros(len(uids), dtype=bool)}
    adv, _ = fn(token_level_rewards=rewards, response_mask=mask, index=uids, config=None, non_tensor_batch=ntb)
    direct, _, _ = compute_dagrpo_outcome_advantage(
        rewards, mask, uids, judge_scores=scores, delta=3.0, norm_adv_by_std_in_grpo=True
    )
    torch.testing.assert_close(adv, direct)


def test_missing_judge_scores_raise_with_the_fix():
    rewards, mask, uids, _ = random_batch(0)
    fn = core_algos.get_adv_estimator_fn("dagrpo")
    with pytest.raises(ValueError, match=r"judge_score.*rectification=false"):
        fn(token_level_rewards=rewards, response_mask=mask, index=uids, config=None)


def test_bad_config_key_is_named():
    from omegaconf import OmegaConf

    rewards, mask, uids, scores = random_batch(0)
    fn = core_algos.get_adv_estimator_fn("dagrpo")
    with pytest.raises(ValueError, match=r"algorithm\.dagrpo\.detla"):
        fn(rewards, mask, uids, OmegaConf.create({"dagrpo": {"detla": 3}}), judge_scores=scores)


def _single_group(rewards, scores, **kwargs):
    n = len(rewards)
    adv, _, stats = compute_dagrpo_outcome_advantage(
        torch.tensor(rewards, dtype=torch.float32).unsqueeze(-1),
        torch.ones(n, 1),
        np.array(["q"] * n, dtype=object),
        judge_scores=torch.tensor(scores, dtype=torch.float32),
        **kwargs,
    )
    return adv.squeeze(-1), stats


def test_hand_worked_group_with_ties_at_delta():
    """R = [1,1,0,0,0,0,0,0], S = [9,6,4,3,2,1,5,NaN], δ = 3, Dr.GRPO: A+ = 0.75, A- = -0.25.

    S_max- = 5 (scored negatives 4,3,2,1,5); S_min+ = 6.
    positives: 9-5=4 >= 3 keep; 6-5=1 mask.  negatives: 6-4=2 mask; 6-3=3 keep (tie at δ);
    6-2, 6-1 keep; 6-5=1 mask; NaN kept (policy keep).
    """
    adv, stats = _single_group([1, 1, 0, 0, 0, 0, 0, 0], [9, 6, 4, 3, 2, 1, 5, NAN])
    expected = torch.tensor([0.75, 0.0, 0.0, -0.25, -0.25, -0.25, 0.0, -0.25])
    torch.testing.assert_close(adv, expected)
    assert stats["pos_masked_frac"].item() == pytest.approx(0.5)
    assert stats["neg_masked_frac"].item() == pytest.approx(2 / 6)
    assert stats["missing_scores"].item() == 1


def test_missing_score_mask_policy_zeroes_only_the_missing_sample():
    adv, _ = _single_group([1, 1, 0, 0, 0, 0, 0, 0], [9, 6, 4, 3, 2, 1, 5, NAN], on_missing_score="mask")
    torch.testing.assert_close(adv, torch.tensor([0.75, 0.0, 0.0, -0.25, -0.25, -0.25, 0.0, 0.0]))


def test_missing_scores_never_set_the_references():
    """The only negative with a score sets S_max-; an unscored 'negative' with no score cannot."""
    adv, _ = _single_group([1, 0, 0], [5, 3, NAN], delta=3)
    # S_max- = 3 -> positive 5-3 = 2 < 3: masked. S_min+ = 5 -> 5-3 = 2 < 3: masked. NaN kept.
    torch.testing.assert_close(adv, torch.tensor([0.0, 0.0, -1 / 3]))


def test_anchor_not_distinct_enough_is_masked_out_safety_mechanism():
    """An anchor (the only correct answer) scored 6 against a best negative of 4 (δ = 3) gets no push."""
    rewards = torch.tensor([1.0, 0, 0, 0]).unsqueeze(-1)
    anchor = torch.tensor([True, False, False, False])
    adv, _, stats = compute_dagrpo_outcome_advantage(
        rewards, torch.ones(4, 1), np.array(["q"] * 4), judge_scores=torch.tensor([6.0, 4, 1, 1]), anchor_mask=anchor
    )
    assert adv[0, 0].item() == 0.0
    assert stats["anchor_retained_frac"].item() == 0.0
    assert stats["anchor_groups_frac"].item() == 1.0
    assert stats["anchor_reward_mean"].item() == 1.0
    assert stats["rollout_reward_mean"].item() == 0.0


def test_uniform_group_untouched_and_singletons_zero():
    adv, _ = _single_group([1, 1, 1], [1, 10, 5])
    assert torch.count_nonzero(adv) == 0
    # A group of one has no relative signal (verl's grpo would return the raw reward there).
    single, _, _ = compute_dagrpo_outcome_advantage(
        torch.tensor([[1.0]]), torch.ones(1, 1), np.array(["x"]), judge_scores=torch.tensor([3.0])
    )
    assert single.item() == 0.0


def test_mask_does_not_recentre_advantages():
    adv, _ = _single_group([1, 1, 0, 0], [10, 6, 5, 1])
    # S_max- = 5: 10 kept, 6 masked. S_min+ = 6: 5 masked, 1 kept.  Sum is no longer 0 -- by design.
    torch.testing.assert_close(adv, torch.tensor([0.5, 0.0, 0.0, -0.5]))


@st.composite
def grouped_batches(draw):
    sizes = draw(st.lists(st.integers(1, 6), min_size=1, max_size=8))
    rewards, scores, uids = [], [], []
    for g, size in enumerate(sizes):
        for _ in range(size):
            rewards.append(draw(st.sampled_from([0.0, 1.0, 0.5])))
            scores.append(draw(st.one_of(st.integers(1, 10).map(float), st.just(NAN))))
            uids.append(f"g{g}")
    delta = draw(st.sampled_from([0.0, 1.0, 3.0, 5.0, 9.0]))
    policy = draw(st.sampled_from(["keep", "mask"]))
    norm = draw(st.booleans())
    return torch.tensor(rewards), torch.tensor(scores), np.array(uids, dtype=object), delta, policy, norm


def _adv(rewards, scores, uids, delta, policy, norm):
    adv, _, _ = compute_dagrpo_outcome_advantage(
        rewards.unsqueeze(-1),
        torch.ones(len(rewards), 1),
        uids,
        judge_scores=scores,
        delta=delta,
        on_missing_score=policy,
        norm_adv_by_std_in_grpo=norm,
    )
    return adv.squeeze(-1)


@settings(max_examples=150, deadline=None)
@given(grouped_batches())
def test_masks_only_zero_never_flip_or_scale(batch):
    rewards, scores, uids, delta, policy, norm = batch
    masked = _adv(rewards, scores, uids, delta, policy, norm)
    plain = group_relative_advantage(rewards, group_ids_from_index(uids), norm)
    assert torch.all((masked == 0) | (masked == plain))


@settings(max_examples=100, deadline=None)
@given(grouped_batches(), st.randoms(use_true_random=False))
def test_invariant_to_batch_order(batch, rnd):
    rewards, scores, uids, delta, policy, norm = batch
    perm = list(range(len(rewards)))
    rnd.shuffle(perm)
    perm_t = torch.tensor(perm)
    base = _adv(rewards, scores, uids, delta, policy, norm)
    shuffled = _adv(rewards[perm_t], scores[perm_t], uids[perm], delta, policy, norm)
    torch.testing.assert_close(shuffled, base[perm_t])


@settings(max_examples=100, deadline=None)
@given(grouped_batches(), st.integers(0, 2**31 - 1))
def test_groups_are_independent(batch, seed):
    """Re-drawing every other group's rewards and scores never changes group 0's advantages."""
    rewards, scores, uids, delta, policy, norm = batch
    g = torch.Generator().manual_seed(seed)
    others = torch.tensor([u != "g0" for u in uids])
    rewards2, scores2 = rewards.clone(), scores.clone()
    rewards2[others] = torch.randint(0, 2, (int(others.sum()),), generator=g).float()
    scores2[others] = torch.randint(1, 11, (int(others.sum()),), generator=g).float()
    a = _adv(rewards, scores, uids, delta, policy, norm)[~others]
    b = _adv(rewards2, scores2, uids, delta, policy, norm)[~others]
    torch.testing.assert_close(a, b)


def test_keep_mask_matches_a_direct_reading_of_eq_8_9():
    """Loop-free implementation against a per-group transcription of eq. 8-9 on random data."""
    rewards, _, uids, scores = random_batch(11, num_groups=40, group_size=6)
    r = rewards.sum(-1)
    gid = group_ids_from_index(uids)
    adv = group_relative_advantage(r, gid)
    keep = distinctiveness_keep_mask(adv, scores, gid, delta=3.0)
    for g in gid.unique():
        members = (gid == g).nonzero().flatten().tolist()
        neg = [scores[k].item() for k in members if adv[k] < 0]
        pos = [scores[j].item() for j in members if adv[j] > 0]
        for i in members:
            if adv[i] > 0:
                assert keep[i].item() == (not neg or scores[i].item() - max(neg) >= 3.0)
            elif adv[i] < 0:
                assert keep[i].item() == (not pos or min(pos) - scores[i].item() >= 3.0)
            else:
                assert keep[i].item()
