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
"""Helpers of the CPU smoke run (dagrpo_verl.cpu.smoke): metrics parser, environment, command."""

import math

import pandas as pd

from dagrpo_verl.cpu import CPU_ENV
from dagrpo_verl.cpu.smoke import CONFIG_DIR, cpu_env, parse_console_metrics, smoke_command


def test_parse_console_metrics():
    text = (
        "(TaskRunnerV1 pid=7) step:1 - actor/loss:0.5 - n:np.int32(2) - m:np.float64(0.25) - bad:nan - note:abc\n"
        "unrelated line with training/global_step:9 - x:1\n"
        "step:2 - actor/loss:-1e-3 - training/global_step:2\n"
    )
    steps = parse_console_metrics(text)
    assert sorted(steps) == [1, 2]
    assert steps[1]["actor/loss"] == 0.5 and steps[1]["n"] == 2.0 and steps[1]["m"] == 0.25
    assert math.isnan(steps[1]["bad"]) and "note" not in steps[1]
    assert steps[2] == {"actor/loss": -1e-3, "training/global_step": 2.0}


def test_cpu_env_adds_the_module_once():
    env = cpu_env({"VERL_USE_EXTERNAL_MODULES": "other.mod", "PATH": "/bin"})
    assert env["VERL_USE_EXTERNAL_MODULES"] == "other.mod,dagrpo_verl.cpu"
    assert env["VERL_PLATFORM"] == "cpu" and env["VERL_ENGINE_DEVICE"] == "cuda" and env["PATH"] == "/bin"
    assert cpu_env(env)["VERL_USE_EXTERNAL_MODULES"] == "other.mod,dagrpo_verl.cpu"
    assert cpu_env({})["VERL_USE_EXTERNAL_MODULES"] == CPU_ENV["VERL_USE_EXTERNAL_MODULES"]


def test_smoke_command_prepares_model_and_data(tmp_path):
    command = smoke_command(tmp_path, steps=3)
    assert command[1:3] == ["-m", "verl.trainer.main_ppo"]
    assert f"--config-dir={CONFIG_DIR}" in command and "+platform=cpu" in command
    assert "trainer.total_training_steps=3" in command
    assert (CONFIG_DIR / "platform" / "cpu.yaml").is_file()
    assert (tmp_path / "model" / "model.safetensors").is_file()
    train = pd.read_parquet(tmp_path / "train.parquet")
    assert len(train) == 16 and set(train.columns) >= {"data_source", "prompt", "reward_model", "extra_info"}


def _compose_cpu_config():
    """verl's ppo_trainer composed with ``+platform=cpu`` (Hydra compose API, no run)."""
    import os

    import verl.trainer.config
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=os.path.dirname(verl.trainer.config.__file__), version_base=None):
        return compose("ppo_trainer", overrides=[f"hydra.searchpath=[file://{CONFIG_DIR}]", "+platform=cpu"])


def test_platform_cpu_config_composes():
    from omegaconf import OmegaConf

    cfg = _compose_cpu_config()
    assert cfg.actor_rollout_ref.rollout.name == "hf_cpu" and cfg.actor_rollout_ref.actor.strategy == "fsdp2"
    assert cfg.actor_rollout_ref.ref.strategy == "fsdp2" and cfg.trainer.device == "cpu"
    ray_init = OmegaConf.to_container(cfg.ray_kwargs.ray_init, resolve=True)
    assert ray_init["num_gpus"] == 1 and ray_init["num_cpus"] == 16
    assert cfg.transfer_queue.backend.SimpleStorage.num_data_storage_units == 1
