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
"""The trainer config composes through the real entry and instantiates verl's config dataclasses.

Real: ``python -m dagrpo_verl.main --cfg job`` (hydra composes ``dagrpo_trainer.yaml`` on top
of verl's ``ppo_trainer`` via ``hydra.searchpath``), hydra's compose API for the three use
cases, and verl's ``omega_conf_to_dataclass`` on every block the workers instantiate.
The recipes' full override sets are composed in ``tests/test_recipes_on_cpu.py``.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml
from omegaconf import OmegaConf
from verl.utils.config import omega_conf_to_dataclass
from verl.workers.config import ActorConfig, RolloutConfig

from dagrpo_verl.algo.settings import dagrpo_config_from
from dagrpo_verl.integration.config import DaGRPOPolicyLossConfig
from dagrpo_verl.integration.validation import validate_dagrpo_config
from dagrpo_verl.main import compose_config

#: The three use cases of docs/integration.md, as overrides of the trainer config.
USE_CASES = {
    "full": [],
    "rectification_only": ["algorithm.dagrpo.anchor.enable=false"],
    "anchors_only": ["algorithm.dagrpo.rectification=false"],
}


def test_cfg_job_through_the_real_entry():
    proc = subprocess.run(
        [sys.executable, "-m", "dagrpo_verl.main", "--cfg", "job", "algorithm.dagrpo.delta=2.5"],
        check=False,  # the exit code is asserted below
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    config = yaml.safe_load(proc.stdout)
    assert config["algorithm"]["adv_estimator"] == "dagrpo"
    assert config["algorithm"]["norm_adv_by_std_in_grpo"] is False
    assert config["algorithm"]["dagrpo"]["delta"] == 2.5
    actor = config["actor_rollout_ref"]["actor"]
    assert actor["policy_loss"]["loss_mode"] == "dagrpo" and actor["policy_loss"]["off_policy_gamma"] == 0.1
    assert actor["loss_agg_mode"] == "seq-mean-token-sum-norm" and actor["use_kl_loss"] is False
    assert config["reward"]["custom_reward_function"]["path"] == "pkg://dagrpo_verl.reward"
    agent = config["actor_rollout_ref"]["rollout"]["agent"]
    assert agent["agent_loop_manager_class"] == "dagrpo_verl.integration.agent_loop.DaGRPOAgentLoopManagerTQ"
    # verl's own defaults are still there (the searchpath found ppo_trainer)
    assert config["trainer"]["use_v1"] is True and "critic" in config


@pytest.mark.parametrize("use_case", sorted(USE_CASES))
def test_use_cases_instantiate_verls_dataclasses(use_case):
    config = compose_config(
        [
            "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=2",
            "actor_rollout_ref.rollout.name=vllm",
            *USE_CASES[use_case],
        ]
    )
    OmegaConf.resolve(config)

    actor = omega_conf_to_dataclass(config.actor_rollout_ref.actor)
    assert isinstance(actor, ActorConfig) and isinstance(actor.policy_loss, DaGRPOPolicyLossConfig)
    rollout = omega_conf_to_dataclass(config.actor_rollout_ref.rollout)
    assert isinstance(rollout, RolloutConfig)
    assert rollout.agent.agent_loop_manager_class == "dagrpo_verl.integration.agent_loop.DaGRPOAgentLoopManagerTQ"
    omega_conf_to_dataclass(config.actor_rollout_ref.rollout.checkpoint_engine)

    # verl keeps `algorithm` a DictConfig and hands it to the estimator: the dagrpo block is read from it
    settings = dagrpo_config_from(config.algorithm)
    assert settings == validate_dagrpo_config(config)
    assert settings.anchor.enable == (use_case != "rectification_only")
    assert settings.rectification == (use_case != "anchors_only")
