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
"""One home for every name and setting: the registered names, the estimator settings, the anchor rules.

Real verl registries, the composed ``dagrpo_trainer`` config (hydra compose API), the real entry in a
subprocess (no Ray is started: the check runs before it), and the package's source for the literals.
"""

from __future__ import annotations

import ast
import copy
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from verl.trainer.config import AlgoConfig
from verl.trainer.ppo.core_algos import get_adv_estimator_fn, get_policy_loss_fn

import dagrpo_verl
from dagrpo_verl import fields
from dagrpo_verl.algo import core
from dagrpo_verl.algo.settings import AnchorConfig
from dagrpo_verl.integration.agent_loop import check_anchor_setup
from dagrpo_verl.integration.config import advantage_settings
from dagrpo_verl.integration.registration import compute_dagrpo_advantage, compute_policy_loss_dagrpo
from dagrpo_verl.integration.trainer import compute_batch_advantage
from dagrpo_verl.integration.validation import DaGRPOConfigError, validate_dagrpo_config
from dagrpo_verl.main import compose_config

_BASE = compose_config()
_LEGACY_MANAGER = "dagrpo_verl.integration.agent_loop.DaGRPOAgentLoopManager"


def _with(updates: dict):
    config = copy.deepcopy(_BASE)
    for key, value in updates.items():
        OmegaConf.update(config, key, value, force_add=True)
    return config


# ----------------------------------------------------------------------------- names


def test_verl_registers_the_names_of_fields():
    assert get_adv_estimator_fn(fields.DAGRPO_ESTIMATOR) is compute_dagrpo_advantage
    assert get_policy_loss_fn(fields.DAGRPO_LOSS_MODE) is compute_policy_loss_dagrpo
    assert _BASE.algorithm.adv_estimator == fields.DAGRPO_ESTIMATOR
    assert _BASE.actor_rollout_ref.actor.policy_loss.loss_mode == fields.DAGRPO_LOSS_MODE
    assert fields.ALGORITHM_BLOCK in _BASE.algorithm


def test_the_name_dagrpo_is_written_in_fields_only():
    """No other module writes ``"dagrpo"`` (the estimator, the loss, the config block) or builds a metric name
    on a ``"dagrpo/"`` literal (``f"dagrpo/{name}"``): they go through :mod:`dagrpo_verl.fields`."""
    package = Path(dagrpo_verl.__file__).parent
    found = []
    for path in sorted(package.rglob("*.py")):
        if path.name == "fields.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and node.value in ("dagrpo", "dagrpo/"):
                found.append(f"{path.relative_to(package)}:{node.lineno}: {node.value!r}")
    assert not found, "write these through dagrpo_verl.fields:\n" + "\n".join(found)


# ----------------------------------------------------------------------------- estimator settings


def test_advantage_settings_default_to_verls_norm_by_std():
    assert advantage_settings(OmegaConf.create({}))["norm_adv_by_std_in_grpo"] is AlgoConfig().norm_adv_by_std_in_grpo
    assert advantage_settings(None)["norm_adv_by_std_in_grpo"] is AlgoConfig().norm_adv_by_std_in_grpo
    assert advantage_settings(_BASE.algorithm) == {
        "delta": 3.0,
        "rectification": True,
        "on_missing_score": "keep",
        "norm_adv_by_std_in_grpo": False,  # dagrpo_trainer.yaml: Dr.GRPO
    }
    custom = OmegaConf.create(
        {"norm_adv_by_std_in_grpo": True, "dagrpo": {"delta": 5.0, "rectification": False, "on_missing_score": "mask"}}
    )
    assert advantage_settings(custom) == {
        "delta": 5.0,
        "rectification": False,
        "on_missing_score": "mask",
        "norm_adv_by_std_in_grpo": True,
    }


@pytest.mark.parametrize("algorithm", [{}, {"norm_adv_by_std_in_grpo": False}, {"dagrpo": {"rectification": False}}])
def test_the_estimator_and_the_trainer_hooks_read_the_same_settings(algorithm):
    """The registered estimator (verl's call) and the trainer hooks give the advantages of core with
    :func:`advantage_settings`, for a config without the std key too."""
    config = OmegaConf.create(algorithm)
    generator = torch.Generator().manual_seed(0)
    rewards = torch.zeros(8, 4)
    rewards[:, -1] = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 1.0])
    mask = torch.ones(8, 4)
    index = np.array(["a"] * 4 + ["b"] * 4, dtype=object)
    scores = torch.rand(8, generator=generator) * 9 + 1
    anchors = torch.zeros(8, dtype=torch.bool)
    expected, _, _ = core.compute_dagrpo_outcome_advantage(
        rewards, mask, index, judge_scores=scores, anchor_mask=anchors, **advantage_settings(config)
    )
    registered, _ = compute_dagrpo_advantage(rewards, mask, index, config=config, judge_scores=scores)[:2]
    hooked, _ = compute_batch_advantage(rewards, mask, index, scores, anchors, config)
    torch.testing.assert_close(registered, expected)
    torch.testing.assert_close(hooked, expected)
    by_std = advantage_settings(config)["norm_adv_by_std_in_grpo"]
    other, _, _ = core.compute_dagrpo_outcome_advantage(
        rewards,
        mask,
        index,
        judge_scores=scores,
        anchor_mask=anchors,
        **{**advantage_settings(config), "norm_adv_by_std_in_grpo": not by_std},
    )
    assert not torch.allclose(other, expected)  # the setting matters for this batch: the check can fail


# ----------------------------------------------------------------------------- anchor rules at start-up


@pytest.mark.parametrize(
    ("updates", "message"),
    [
        (
            {"algorithm.dagrpo.anchor.num_anchors": 8},
            "algorithm.dagrpo.anchor.num_anchors=8 with mode=replace must be < actor_rollout_ref.rollout.n=8",
        ),
        (
            {"algorithm.dagrpo.anchor.num_anchors": 3, "actor_rollout_ref.rollout.n": 2},
            "num_anchors=3 with mode=replace must be < actor_rollout_ref.rollout.n=2",
        ),
        (
            {
                "algorithm.dagrpo.anchor.mode": "append",
                "trainer.use_v1": False,
                "actor_rollout_ref.rollout.agent.agent_loop_manager_class": _LEGACY_MANAGER,
            },
            "algorithm.dagrpo.anchor.mode=append is not possible with the legacy trainer",
        ),
    ],
)
def test_start_up_refuses_impossible_anchor_groups_as_the_manager_does(updates, message):
    config = _with(updates)
    with pytest.raises(DaGRPOConfigError, match=message):
        validate_dagrpo_config(config)
    legacy = not config.trainer.use_v1
    with pytest.raises(ValueError, match=message):  # the manager's own check (inside Ray) says the same
        check_anchor_setup(config, legacy=legacy, reward_loop_worker_handles=[])


def test_possible_anchor_groups_pass():
    assert validate_dagrpo_config(_with({"algorithm.dagrpo.anchor.num_anchors": 7})).anchor.num_anchors == 7
    appended = validate_dagrpo_config(
        _with({"algorithm.dagrpo.anchor.num_anchors": 8, "algorithm.dagrpo.anchor.mode": "append"})
    )
    assert appended.anchor == AnchorConfig(num_anchors=8, mode="append")
    assert validate_dagrpo_config(
        _with({"algorithm.dagrpo.anchor.num_anchors": 8, "algorithm.dagrpo.anchor.enable": False})
    )


def test_the_real_entry_refuses_num_anchors_before_ray():
    proc = subprocess.run(
        [sys.executable, "-m", "dagrpo_verl.main", "algorithm.dagrpo.anchor.num_anchors=8"],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, RAY_ADDRESS=""),
    )
    assert proc.returncode != 0
    assert "DaGRPOConfigError" in proc.stderr and "num_anchors=8 with mode=replace" in proc.stderr
    assert "ray init kwargs" not in proc.stdout, "the check must run before Ray starts"
