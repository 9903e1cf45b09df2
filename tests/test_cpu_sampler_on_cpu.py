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
"""``+platform=cpu`` swaps verl's replay buffer for one polling every 50 ms, through verl's own hook.

Real: the composed ``dagrpo_trainer`` + ``platform/cpu`` config, verl 0.9.1's
``PPOTrainer._build_replay_buffer`` (called on a stand-in holding only the attributes it
reads), which loads the class from ``pkg://dagrpo_verl.cpu.sampler`` as in a run, and the
start-up validation of ``python -m dagrpo_verl.main``.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from verl.trainer.ppo.v1.replay_buffer import ReplayBuffer
from verl.trainer.ppo.v1.trainer_base import PPOTrainer

from dagrpo_verl.cpu.sampler import CPU_POLL_INTERVAL_S, CPUReplayBuffer
from dagrpo_verl.integration.validation import DaGRPOConfigError, validate_dagrpo_config
from dagrpo_verl.main import compose_config


def _build(config):
    trainer = SimpleNamespace(
        config=config, trainer_mode=config.trainer.v1.trainer_mode, _add_prompts_to_generate=lambda count: None
    )
    trainer._resolve_filter_groups_metric = lambda: PPOTrainer._resolve_filter_groups_metric(trainer)
    return PPOTrainer._build_replay_buffer(trainer)


def test_platform_cpu_gives_verls_replay_buffer_a_fast_poll():
    buffer = _build(compose_config(["+platform=cpu"]))
    assert type(buffer) is CPUReplayBuffer and isinstance(buffer, ReplayBuffer)
    assert buffer.poll_interval == CPU_POLL_INTERVAL_S < 2.0


def test_without_platform_cpu_verl_keeps_its_own_buffer():
    buffer = _build(compose_config())
    assert type(buffer) is ReplayBuffer and buffer.poll_interval == 2.0


def test_async_trainer_mode_is_refused_when_verl_builds_the_buffer():
    with pytest.raises(ValueError, match=r"trainer\.v1\.trainer_mode=sync"):
        _build(compose_config(["+platform=cpu", "trainer.v1.trainer_mode=separate_async"]))


def test_dapo_filtering_is_refused_not_ignored():
    overrides = ["algorithm.filter_groups.enable=true", "algorithm.filter_groups.metric=acc"]
    with pytest.raises(DaGRPOConfigError, match=r"algorithm\.filter_groups\.enable=false"):
        validate_dagrpo_config(compose_config(["+platform=cpu", *overrides]))
    # verl's own buffer honours the filter: nothing to refuse without +platform=cpu
    assert validate_dagrpo_config(compose_config(overrides)) is not None
