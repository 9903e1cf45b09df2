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
"""Pure anchor decisions (``dagrpo_verl.algo.anchors``): hand-worked cases and property tests."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dagrpo_verl.algo.anchors import group_accuracy, plan_anchor_groups, rollout_correct, skip_failed_anchors
from dagrpo_verl.algo.settings import AnchorConfig


def _plans(uids, rewards, config, has_anchor=None, tiebreak=None):
    rewards = np.asarray(rewards, dtype=float)
    has_anchor = [True] * len(uids) if has_anchor is None else has_anchor
    plans = plan_anchor_groups(uids, rewards, rollout_correct(rewards), has_anchor, config, tiebreak=tiebreak)
    return {p.uid: p for p in plans}


def test_correctness_prefers_acc_and_falls_back_to_score():
    scores = [1.0, 0.0, 0.5, 0.0]
    assert rollout_correct(scores).tolist() == [True, False, True, False]
    # acc decides where it is a number; score elsewhere
    assert rollout_correct(scores, [0.0, 1.0, None, float("nan")]).tolist() == [False, True, True, False]


def test_hard_trigger_interleaved_groups():
    # groups interleaved, as after verl's balance_batch: a (0/3 correct), b (1/3), c (3/3)
    uids = ["a", "b", "c", "a", "b", "c", "a", "b", "c"]
    rewards = [0, 1, 1, 0, 0, 1, 0, 0, 1]
    plans = _plans(uids, rewards, AnchorConfig())
    assert {u: p.num_anchors for u, p in plans.items()} == {"a": 1, "b": 0, "c": 0}
    assert plans["a"].rows.tolist() == [0, 3, 6] and plans["a"].accuracy == 0.0
    assert plans["a"].replace_rows.tolist() == [0]  # all tied at 0: smallest tiebreak (position) first
    assert plans["b"].accuracy == pytest.approx(1 / 3)

    plans = _plans(uids, rewards, AnchorConfig(hard_max_accuracy=1 / 3))
    assert {u: p.num_anchors for u, p in plans.items()} == {"a": 1, "b": 1, "c": 0}
    assert plans["b"].replace_rows.tolist() == [4]  # lowest reward of b; tie 4 vs 7 -> smaller position

    plans = _plans(uids, rewards, AnchorConfig(trigger="always"))
    assert all(p.num_anchors == 1 for p in plans.values())
    assert plans["c"].replace_rows.tolist() == [2]


def test_replace_lowest_rewards_with_session_tiebreak_and_append():
    uids = ["g"] * 5
    rewards = [0.5, 0.0, 0.2, 0.0, 0.9]
    sessions = [4, 3, 2, 1, 0]
    config = AnchorConfig(trigger="always", num_anchors=3)
    (plan,) = _plans(uids, rewards, config, tiebreak=sessions).values()
    # rewards 0.0 at rows 1 (session 3) and 3 (session 1): session 1 first, then row 1, then 0.2 at row 2
    assert plan.replace_rows.tolist() == [3, 1, 2]

    (plan,) = _plans(uids, rewards, AnchorConfig(trigger="always", num_anchors=3, mode="append")).values()
    assert plan.num_anchors == 3 and plan.replace_rows.size == 0


def test_replace_keeps_one_rollout_and_no_anchor_without_text_or_when_disabled():
    (plan,) = _plans(["g"] * 2, [0, 0], AnchorConfig(num_anchors=5)).values()
    assert plan.num_anchors == 1 and plan.replace_rows.tolist() == [0]
    plans = _plans(["a", "a", "b", "b"], [0, 0, 0, 0], AnchorConfig(), has_anchor=[False, False, True, True])
    assert (plans["a"].num_anchors, plans["b"].num_anchors) == (0, 1)
    plans = _plans(["a", "a"], [0, 0], AnchorConfig(enable=False))
    assert plans["a"].num_anchors == 0


def test_failed_verification_policy():
    (plan,) = _plans(["g"] * 4, [0, 0, 0, 0], AnchorConfig(num_anchors=2)).values()
    kept, failed = skip_failed_anchors(plan, anchor_correct=False, config=AnchorConfig(on_failed_verification="use"))
    assert (kept.num_anchors, failed) == (2, 2) and kept.replace_rows.tolist() == [0, 1]
    kept, failed = skip_failed_anchors(plan, anchor_correct=False, config=AnchorConfig(on_failed_verification="skip"))
    assert (kept.num_anchors, failed, kept.replace_rows.size) == (0, 2, 0)
    kept, failed = skip_failed_anchors(plan, anchor_correct=True, config=AnchorConfig(on_failed_verification="skip"))
    assert (kept.num_anchors, failed) == (2, 0)


def test_length_mismatch_and_nan_rewards_are_errors():
    with pytest.raises(ValueError, match="rewards has 1 values but uids has 2"):
        plan_anchor_groups(["a", "a"], [0.0], [False, False], [True, True], AnchorConfig())
    with pytest.raises(ValueError, match="NaN at rows \\[1\\]"):
        plan_anchor_groups(["a", "a"], [0.0, np.nan], [False, False], [True, True], AnchorConfig())


# ------------------------------------------------------------------------------------------------ properties

configs = st.builds(
    AnchorConfig,
    trigger=st.sampled_from(["hard", "always"]),
    hard_max_accuracy=st.sampled_from([0.0, 0.25, 0.5, 1.0]),
    num_anchors=st.integers(1, 4),
    mode=st.sampled_from(["replace", "append"]),
)


@st.composite
def batches(draw):
    """A shuffled batch: groups of 1-6 rollouts with binary rewards, session ids 0..g-1 per group."""
    sizes = draw(st.lists(st.integers(1, 6), min_size=1, max_size=6))
    uids, sessions = [], []
    for g, size in enumerate(sizes):
        uids += [f"u{g}"] * size
        sessions += list(range(size))
    rewards = draw(st.lists(st.sampled_from([0.0, 1.0]), min_size=len(uids), max_size=len(uids)))
    has = draw(st.lists(st.booleans(), min_size=len(sizes), max_size=len(sizes)))
    has_anchor = [has[int(u[1:])] for u in uids]
    permutation = draw(st.permutations(range(len(uids))))
    return uids, rewards, has_anchor, sessions, permutation


@settings(max_examples=100, deadline=None)
@given(batch=batches(), config=configs)
def test_properties(batch, config):
    uids, rewards, has_anchor, sessions, permutation = batch
    plans = _plans(uids, rewards, config, has_anchor=has_anchor, tiebreak=sessions)
    accuracy = group_accuracy(uids, rollout_correct(rewards))
    for uid, plan in plans.items():
        size = plan.rows.size
        group_has = has_anchor[plan.rows[0]]
        if not group_has or (config.trigger == "hard" and accuracy[uid] > config.hard_max_accuracy):
            assert plan.num_anchors == 0  # no anchor for easy groups under "hard", none without text
        if config.mode == "replace":
            # group size preserved: anchors replace distinct rows of the same group, one rollout always stays
            assert plan.replace_rows.size == plan.num_anchors <= size - 1
            assert set(plan.replace_rows.tolist()) <= set(plan.rows.tolist())
            assert len(set(plan.replace_rows.tolist())) == plan.replace_rows.size
            kept = set(plan.rows.tolist()) - set(plan.replace_rows.tolist())
            if plan.num_anchors and kept:  # replaced rollouts have the lowest rewards
                assert max(rewards[r] for r in plan.replace_rows) <= min(rewards[r] for r in kept)
        else:
            assert plan.replace_rows.size == 0
            assert plan.num_anchors in (0, config.num_anchors)

    # independent of batch order: permute every per-sample array, map rows back
    p = np.asarray(permutation)
    shuffled = _plans(
        [uids[i] for i in p],
        [rewards[i] for i in p],
        config,
        has_anchor=[has_anchor[i] for i in p],
        tiebreak=[sessions[i] for i in p],
    )
    assert shuffled.keys() == plans.keys()
    for uid, plan in plans.items():
        other = shuffled[uid]
        assert other.num_anchors == plan.num_anchors and other.accuracy == plan.accuracy
        assert sorted(p[other.replace_rows].tolist()) == sorted(plan.replace_rows.tolist())
