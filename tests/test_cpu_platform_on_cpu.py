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
"""The verl CPU platform (dagrpo_verl.cpu.platform) and the registrations of dagrpo_verl.cpu."""

import json
import subprocess
import sys

import torch

from dagrpo_verl.cpu.platform import CPU_DEVICE_MODULE, PlatformCPU
from dagrpo_verl.cpu.smoke import cpu_env

# Run in a fresh interpreter: verl resolves its platform once per process.
_PROBE = r"""
import json, os
import verl  # imports dagrpo_verl.cpu through VERL_USE_EXTERNAL_MODULES
import torch
from verl.plugin.platform import get_platform
from verl.utils.device import get_device_id, get_device_name, get_nccl_backend, get_torch_device
from verl.utils.distributed import initialize_global_process_group_ray
from verl.workers.engine.base import EngineRegistry
from verl.workers.rollout.base import get_rollout_class
from verl.workers.rollout.replica import get_rollout_replica_class
import verl.workers.engine  # registers the engines

os.environ.update(RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT="29533")
initialize_global_process_group_ray()
t = torch.ones(2, device=get_device_id())
torch.distributed.all_reduce(t)
print(json.dumps({
    "platform": type(get_platform()).__name__,
    "device": get_device_name(),
    "backend": get_nccl_backend(),
    "pg_backend": torch.distributed.get_backend(),
    "tensor_device": str(t.device),
    "engine": EngineRegistry.get_engine_cls("language_model", "fsdp2").__name__,
    "replica": get_rollout_replica_class("hf_cpu").__name__,
    "adapter": get_rollout_class("hf_cpu", "async").__name__,
    "device_module_available": get_torch_device().is_available(),
}))
"""


def test_cpu_platform_active_in_fresh_process():
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], env=cpu_env(), capture_output=True, text=True, timeout=300, check=True
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {
        "platform": "PlatformCPU",
        "device": "cpu",
        "backend": "gloo",
        "pg_backend": "cpu:gloo",  # verl's "cpu:gloo,cpu:gloo" would raise (docs/cpu.md)
        "tensor_device": "cpu",
        "engine": "FSDPEngineWithLMHead",
        "replica": "HFCPUReplica",
        "adapter": "HFCPUServerAdapter",
        "device_module_available": False,
    }


def test_platform_is_never_auto_detected_and_device_calls_are_noops():
    platform = PlatformCPU()
    assert not platform.is_platform_available(use_smi_check=True)
    assert platform.is_available() and platform.device_module is CPU_DEVICE_MODULE
    assert platform.current_device() == "cpu" and platform.get_device_capability() == (None, None)
    assert platform.ray_resource_name() == "GPU"  # Ray slots, see docs/cpu.md
    platform.synchronize()
    platform.empty_cache()
    platform.set_allocator_settings("expandable_segments:False")
    with platform.nvtx_range("x"):
        pass
    free, total = CPU_DEVICE_MODULE.mem_get_info()
    assert 0 < free <= total
    state = CPU_DEVICE_MODULE.get_rng_state()
    first = torch.rand(3)
    CPU_DEVICE_MODULE.set_rng_state(state)
    assert torch.equal(torch.rand(3), first)
