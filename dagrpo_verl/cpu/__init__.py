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
"""Run verl 0.9.1's own trainer on the CPU.

Importing this package registers, without activating anything:

* the verl platform ``cpu`` (:class:`dagrpo_verl.cpu.platform.PlatformCPU`) in
  ``verl.plugin.platform.PlatformRegistry`` - activated by ``VERL_PLATFORM=cpu``;
* a fix for verl's process-group backend string on the CPU
  (:func:`dagrpo_verl.cpu.platform.install_process_group_fix`), inactive on other platforms;
* the rollout backend ``hf_cpu`` (:mod:`dagrpo_verl.cpu.rollout`) in
  ``RolloutReplicaRegistry`` and in the table behind ``get_rollout_class`` - activated by
  ``actor_rollout_ref.rollout.name=hf_cpu``.

Every process of a run (driver, TaskRunner, workers, rollout servers) must import it
before verl resolves its platform; verl does that for us when
``VERL_USE_EXTERNAL_MODULES=dagrpo_verl.cpu`` is set (``import verl`` imports the listed
modules). :data:`CPU_ENV` holds the three environment variables of a CPU run and
``dagrpo_verl/config/platform/cpu.yaml`` (``+platform=cpu``) the config; ``docs/cpu.md``
explains both.
"""

from __future__ import annotations

from verl.plugin.platform import PlatformRegistry
from verl.workers.rollout import base as _rollout_base
from verl.workers.rollout.replica import RolloutReplicaRegistry

from dagrpo_verl.cpu.platform import PLATFORM_NAME, PlatformCPU, install_process_group_fix
from dagrpo_verl.cpu.rollout import ROLLOUT_NAME, HFCPUReplica

__all__ = ["CPU_ENV", "PLATFORM_NAME", "ROLLOUT_NAME"]

#: Environment of a CPU run, for the driver's shell (Ray workers inherit it).
CPU_ENV = {
    # import this package in every process that imports verl
    "VERL_USE_EXTERNAL_MODULES": "dagrpo_verl.cpu",
    # select PlatformCPU (verl.plugin.platform.platform_manager._detect_platform_name)
    "VERL_PLATFORM": PLATFORM_NAME,
    # pick the FSDP engine registered for "cuda" (verl.workers.engine.base.EngineRegistry.get_engine_cls)
    "VERL_ENGINE_DEVICE": "cuda",
}


PlatformRegistry.register(platform=PLATFORM_NAME)(PlatformCPU)
install_process_group_fix()
RolloutReplicaRegistry.register(ROLLOUT_NAME, lambda: HFCPUReplica)
# verl 0.9.1 has no register function for the rollout adapter table read by
# get_rollout_class(); adding the entry is the only way in (docs/cpu.md).
_rollout_base._ROLLOUT_REGISTRY[(ROLLOUT_NAME, "async")] = "dagrpo_verl.cpu.rollout.HFCPUServerAdapter"
