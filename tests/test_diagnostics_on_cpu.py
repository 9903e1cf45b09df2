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
"""``dagrpo_verl.integration.diagnostics.onpolicy_diagnostics`` on its own (the trainer hooks are tested in
``tests/test_trainer_advantage_on_cpu.py``): anchors never move the on-policy numbers, absent inputs give
absent metrics, a batch without rollouts gives none."""

from __future__ import annotations

import pytest
import torch

from dagrpo_verl.integration.diagnostics import onpolicy_diagnostics

MASK = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1], [1, 1, 0, 0]])
LENGTHS = MASK.sum(-1)
ROLLOUT = -torch.linspace(0.5, 2.0, MASK.numel()).reshape(MASK.shape)


def _metrics(on_policy, anchor_value):
    """Row 1 is the anchor: its log-probs and entropy are set to ``anchor_value``."""
    rollout = ROLLOUT.clone()
    old = ROLLOUT - 0.1
    entropy = torch.full(MASK.shape, 0.5)
    for tensor in (rollout, entropy):
        tensor[1] = anchor_value
    return onpolicy_diagnostics(
        MASK, LENGTHS, torch.tensor(on_policy), response_budget=4, old_log_probs=old, rollout_log_probs=rollout,
        entropy=entropy,
    )  # fmt: skip


def test_anchor_rows_do_not_move_the_numbers():
    first, second = _metrics([True, False, True], 0.0), _metrics([True, False, True], 9.0)
    assert first == second
    assert first["dagrpo/onpolicy/entropy"] == pytest.approx(0.5)
    assert first["dagrpo/onpolicy/response_length/clip_ratio"] == 0.0  # the 4-token row is the anchor
    diff = (ROLLOUT.exp() - (ROLLOUT - 0.1).exp()).abs()[[0, 2]][MASK[[0, 2]].bool()]
    assert first["dagrpo/onpolicy/rollout_probs_diff_max"] == pytest.approx(diff.max().item())
    assert first["dagrpo/onpolicy/rollout_probs_diff_mean"] == pytest.approx(diff.mean().item())
    everything = _metrics([True, True, True], 0.0)
    assert everything["dagrpo/onpolicy/response_length/clip_ratio"] == pytest.approx(1 / 3)
    assert everything["dagrpo/onpolicy/rollout_probs_diff_max"] > first["dagrpo/onpolicy/rollout_probs_diff_max"]


def test_absent_inputs_and_no_rollouts():
    assert onpolicy_diagnostics(MASK, LENGTHS, torch.zeros(3, dtype=torch.bool), response_budget=4) == {}
    plain = onpolicy_diagnostics(MASK, LENGTHS, torch.ones(3, dtype=torch.bool), response_budget=4)
    assert sorted(plain) == [
        "dagrpo/onpolicy/response_length/clip_ratio",
        "dagrpo/onpolicy/response_length/max",
        "dagrpo/onpolicy/response_length/mean",
    ]
