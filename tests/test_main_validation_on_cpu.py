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
"""Start-up validation: every DaGRPO misconfiguration fails before Ray with the keys to set.

Real: the composed ``dagrpo_trainer`` config (hydra compose API), parquet files written
with pyarrow, and once the real entry ``python -m dagrpo_verl.main`` in a subprocess.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from omegaconf import OmegaConf

from dagrpo_verl.integration.validation import DaGRPOConfigError, dataset_has_anchors, validate_dagrpo_config
from dagrpo_verl.main import compose_config

_BASE = compose_config()


def _with(updates: dict):
    """The composed default config with ``{dotted.key: value}`` updates."""
    config = copy.deepcopy(_BASE)
    for key, value in updates.items():
        OmegaConf.update(config, key, value, force_add=True)
    return config


def _parquet(path, with_anchor: bool) -> str:
    extra = {"index": 0, "split": "train"}
    if with_anchor:
        extra["anchor"] = "The answer is \\boxed{4}."
    table = pa.table({"prompt": [[{"role": "user", "content": "2+2?"}]], "extra_info": [extra]})
    pq.write_table(table, path)
    return str(path)


def test_defaults_pass_and_return_the_settings():
    settings = validate_dagrpo_config(_with({}))
    assert settings.delta == 3.0 and settings.rectification and settings.anchor.enable


def test_non_dagrpo_configs_are_left_alone():
    config = _with(
        {
            "algorithm.adv_estimator": "grpo",
            "actor_rollout_ref.actor.policy_loss.loss_mode": "vanilla",
            "algorithm.dagrpo.anchor.enable": False,
            "reward.custom_reward_function.path": None,
        }
    )
    assert validate_dagrpo_config(config) is None


@pytest.mark.parametrize(
    "updates",
    [
        {"algorithm.adv_estimator": "grpo", "actor_rollout_ref.actor.policy_loss.loss_mode": "vanilla"},
        {"algorithm.adv_estimator": "grpo"},
        {"actor_rollout_ref.actor.policy_loss.loss_mode": "vanilla"},
    ],
)
def test_anchors_mixed_into_a_baseline_are_refused(updates):
    """`python -m dagrpo_verl.main algorithm.adv_estimator=grpo` keeps the anchor manager: refused, not a
    "baseline" that trains on expert solutions."""
    with pytest.raises(DaGRPOConfigError, match="algorithm.dagrpo.anchor.enable=false") as error:
        validate_dagrpo_config(_with(updates))
    assert "agent_loop_manager_class=dagrpo_verl.integration.agent_loop.DaGRPOAgentLoopManagerTQ" in str(error.value)


R = "reward.custom_reward_function"
MANAGER = "actor_rollout_ref.rollout.agent.agent_loop_manager_class"
LEGACY_MANAGER = "dagrpo_verl.integration.agent_loop.DaGRPOAgentLoopManager"


@pytest.mark.parametrize(
    ("updates", "keys"),
    [
        ({f"{R}.path": None}, [f"{R}.path=pkg://dagrpo_verl.reward", "algorithm.dagrpo.rectification=false"]),
        ({f"{R}.reward_kwargs.judge.backend": "none"}, [f"{R}.reward_kwargs.judge.backend"]),
        ({f"{R}.reward_kwargs.judge.backend": "openai"}, [f"{R}.reward_kwargs.judge.base_url"]),
        ({"reward.reward_model.enable": True}, ["reward.reward_model.enable=false"]),
        ({"actor_rollout_ref.rollout.n": 1}, ["actor_rollout_ref.rollout.n"]),
        ({"algorithm.dagrpo.detla": 2}, ["algorithm.dagrpo.detla"]),
        ({"algorithm.dagrpo.on_missing_score": "drop"}, ["algorithm.dagrpo.on_missing_score"]),
        (
            {"actor_rollout_ref.actor.policy_loss.loss_mode": "vanilla"},
            ["actor_rollout_ref.actor.policy_loss.loss_mode=dagrpo", "algorithm.dagrpo.anchor.enable=false"],
        ),
        ({MANAGER: None}, [f"{MANAGER}=dagrpo_verl.integration.agent_loop.DaGRPOAgentLoopManagerTQ"]),
        ({"trainer.use_v1": False}, [f"{MANAGER}={LEGACY_MANAGER}"]),
        (
            {"trainer.use_v1": False, MANAGER: LEGACY_MANAGER, "algorithm.rollout_correction.rollout_is": "token"},
            ["algorithm.rollout_correction.rollout_is=null", "trainer.use_v1=true"],
        ),
        (
            {"trainer.use_v1": False, "algorithm.rollout_correction.bypass_mode": True},
            ["algorithm.rollout_correction.bypass_mode=false"],
        ),
        ({"distillation.enabled": True}, ["distillation.enabled=false"]),
    ],
)
def test_misconfigurations_name_the_keys_to_set(updates, keys):
    with pytest.raises(DaGRPOConfigError) as error:
        validate_dagrpo_config(_with(updates))
    for key in keys:
        assert key in str(error.value)


def test_anchors_need_a_dataset_with_anchors(tmp_path):
    without = _parquet(tmp_path / "plain.parquet", with_anchor=False)
    with_anchor = _parquet(tmp_path / "anchored.parquet", with_anchor=True)
    assert dataset_has_anchors(without) is False and dataset_has_anchors(with_anchor) is True
    assert dataset_has_anchors("hdfs://somewhere/train.parquet") is None  # not checkable locally

    with pytest.raises(DaGRPOConfigError, match="extra_info.anchor") as error:
        validate_dagrpo_config(_with({"data.train_files": [with_anchor, without]}))
    assert "algorithm.dagrpo.anchor.enable=false" in str(error.value)
    validate_dagrpo_config(_with({"data.train_files": with_anchor}))
    # rectification only (anchors off) accepts a dataset without anchors
    validate_dagrpo_config(_with({"data.train_files": without, "algorithm.dagrpo.anchor.enable": False}))


def test_the_real_entry_fails_at_start_up_before_ray():
    env = dict(os.environ, RAY_ADDRESS="")
    proc = subprocess.run(
        [sys.executable, "-m", "dagrpo_verl.main", "actor_rollout_ref.actor.policy_loss.loss_mode=vanilla"],
        check=False,  # the exit code is asserted below
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode != 0
    assert "DaGRPOConfigError" in proc.stderr and "actor_rollout_ref.actor.policy_loss.loss_mode=dagrpo" in proc.stderr
    assert "ray init kwargs" not in proc.stdout, "validation must run before Ray starts"


def test_lazy_judging_with_a_kl_penalty_in_the_reward_is_refused():
    """A KL penalty in the reward makes uniform groups' advantages non-zero after the agent loop decided they
    needed no judge score: refused, naming both fixes; judging every response is accepted."""
    with pytest.raises(DaGRPOConfigError, match=r"lazy_judge=false.*use_kl_in_reward=false"):
        validate_dagrpo_config(compose_config(["algorithm.use_kl_in_reward=true"]))
    validate_dagrpo_config(compose_config(["algorithm.use_kl_in_reward=true", "algorithm.dagrpo.lazy_judge=false"]))
