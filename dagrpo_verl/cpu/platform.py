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
"""A CPU platform for verl 0.9.1 (``VERL_PLATFORM=cpu``).

verl reaches the accelerator only through ``verl.plugin.platform.get_platform()``; its
built-in platforms are CUDA, NPU and ROCm. :class:`PlatformCPU` is a ``PlatformCUDA``
subclass that keeps everything Ray-related from CUDA (the Ray resource is still called
``"GPU"``: a CPU run starts Ray with ``num_gpus`` logical slots, see ``docs/cpu.md``) and
answers every device question with the CPU:

* ``device_name == "cpu"``: tensors, device meshes and ``trainer.device`` are on the CPU;
* ``communication_backend_name() == "gloo"``: torch.distributed without NCCL;
* ``device_module`` is :data:`CPU_DEVICE_MODULE`, a stand-in for ``torch.cuda`` whose
  memory, stream, seed and cache calls are no-ops (``torch.cuda`` raises
  ``AssertionError: Torch not compiled with CUDA enabled`` on a CPU build);
* it is never auto-detected (``is_platform_available`` is False), so it only becomes
  active when chosen explicitly with ``VERL_PLATFORM=cpu``.

It is registered in verl's ``PlatformRegistry`` under the name ``"cpu"`` when
:mod:`dagrpo_verl.cpu` is imported.
"""

from __future__ import annotations

import contextlib
import os
import types
from typing import Any

import torch
from verl.plugin.platform.platform_cuda import PlatformCUDA

__all__ = ["CPU_DEVICE_MODULE", "PLATFORM_NAME", "PlatformCPU", "install_process_group_fix"]

#: Name under which :class:`PlatformCPU` is registered; select it with ``VERL_PLATFORM=cpu``.
PLATFORM_NAME = "cpu"


def _noop(*args: Any, **kwargs: Any) -> None:
    """Accept anything, do nothing (device calls that have no CPU meaning)."""


def _zero(*args: Any, **kwargs: Any) -> int:
    """Device-memory counters: a CPU run has no device memory."""
    return 0


def _mem_get_info(*args: Any, **kwargs: Any) -> tuple[int, int]:
    """``(free, total)`` bytes of host memory, the CPU analogue of ``cudaMemGetInfo``."""
    page = os.sysconf("SC_PAGE_SIZE")
    return os.sysconf("SC_AVPHYS_PAGES") * page, os.sysconf("SC_PHYS_PAGES") * page


#: Stand-in for ``torch.cuda`` on the CPU (``verl.utils.device.get_torch_device()``).
#: ``is_available()`` is False: there is no accelerator memory to manage, so verl's memory
#: helpers (``verl.utils.memory_utils``) skip themselves and checkpoints map to the CPU.
CPU_DEVICE_MODULE = types.SimpleNamespace(
    is_available=lambda: False,
    is_initialized=lambda: True,
    device_count=lambda: 1,
    current_device=lambda: "cpu",
    get_device_name=lambda *a, **k: "cpu",
    set_device=_noop,
    synchronize=_noop,
    empty_cache=_noop,
    ipc_collect=_noop,
    set_per_process_memory_fraction=_noop,
    reset_peak_memory_stats=_noop,
    reset_accumulated_memory_stats=_noop,
    memory_allocated=_zero,
    memory_reserved=_zero,
    max_memory_allocated=_zero,
    max_memory_reserved=_zero,
    mem_get_info=_mem_get_info,
    manual_seed=torch.manual_seed,
    manual_seed_all=torch.manual_seed,
    get_rng_state=lambda *a, **k: torch.get_rng_state(),
    set_rng_state=lambda state, *a, **k: torch.set_rng_state(state),
    Stream=torch.cpu.Stream,
    Event=torch.cpu.Event,
    stream=torch.cpu.stream,
    current_stream=torch.cpu.current_stream,
)


class PlatformCPU(PlatformCUDA):
    """verl platform whose device is the CPU and whose collectives use gloo."""

    @property
    def device_name(self) -> str:
        """Torch device type of every tensor and device mesh: ``"cpu"``."""
        return "cpu"

    @property
    def vendor_name(self) -> str:
        """Vendor key for verl's engine registry lookups: ``"cpu"``."""
        return "cpu"

    @property
    def device_module(self) -> types.SimpleNamespace:
        """The no-op ``torch.cuda`` stand-in :data:`CPU_DEVICE_MODULE`."""
        return CPU_DEVICE_MODULE

    def is_available(self) -> bool:
        """The CPU is always there."""
        return True

    def is_platform_available(self, use_smi_check: bool = False) -> bool:
        """Never auto-detected: a CPU run is requested explicitly with ``VERL_PLATFORM=cpu``."""
        return False

    def current_device(self) -> str:
        """``"cpu"``, as ``torch.cpu.current_device()``.

        verl uses the result as a device (``tensor.to(get_device_id())``,
        ``torch.empty(..., device=get_device_id())``); an integer would mean ``cuda:N``.
        """
        return "cpu"

    def device_count(self) -> int:
        """One CPU device per process."""
        return 1

    def set_device(self, device_index: int) -> None:
        """No-op."""

    def synchronize(self, device_index: int | None = None) -> None:
        """No-op: CPU kernels are synchronous."""

    def manual_seed(self, seed: int) -> None:
        """Seed torch's CPU generator."""
        torch.manual_seed(seed)

    def manual_seed_all(self, seed: int) -> None:
        """Seed torch's CPU generator."""
        torch.manual_seed(seed)

    def set_allocator_settings(self, settings: str) -> None:
        """No-op (CUDA caching-allocator settings)."""

    def empty_cache(self) -> None:
        """No-op."""

    def get_device_capability(self, device_index: int = 0) -> tuple[int | None, int | None]:
        """No compute capability: ``(None, None)``."""
        return None, None

    def communication_backend_name(self) -> str:
        """torch.distributed backend: ``"gloo"``."""
        return "gloo"

    def is_ipc_supported(self) -> bool:
        """No CUDA IPC on the CPU."""
        return False

    def rollout_env_vars(self) -> dict[str, str]:
        """No NCCL variables for rollout servers."""
        return {}

    def get_collective_module(self) -> Any:
        """No NCCL module."""
        return None

    @contextlib.contextmanager
    def nvtx_range(self, msg: str):
        """No NVTX on the CPU: an empty context."""
        yield

    def profiler_start(self) -> None:
        """No-op (CUDA profiler)."""

    def profiler_stop(self) -> None:
        """No-op (CUDA profiler)."""

    def cudart(self) -> Any:
        """No CUDA runtime."""
        return None


def install_process_group_fix() -> None:
    """Make ``verl.utils.distributed.initialize_global_process_group_ray`` work on the CPU.

    verl builds its default backend string as ``f"cpu:gloo,{device}:{backend}"``, which on
    this platform is ``"cpu:gloo,cpu:gloo"``; torch rejects it with
    ``ValueError: Duplicate device type cpu in backend string: gloo. The custom backend
    string argument is invalid: cpu:gloo,cpu:gloo.`` (``TrainingWorker.__init__``). verl has
    no setting for that string, so the function is wrapped in memory: while the active
    platform's device is ``"cpu"``, a missing ``backend`` becomes ``"cpu:gloo"``; otherwise
    the call is passed on unchanged. Must run before ``verl.workers.engine_workers`` is
    imported (it binds the function by name); :mod:`dagrpo_verl.cpu` calls it on import,
    which ``VERL_USE_EXTERNAL_MODULES`` makes happen inside ``import verl``. Idempotent.

    verl's SPMD SFT trainer (``torchrun -m verl.trainer.sft_trainer``) builds the same string
    in ``initialize_global_process_group``, which takes no backend argument; on the CPU the
    wrapper runs that function's body with ``"cpu:gloo"`` (mirrored below), elsewhere verl's own.
    ``run_sft`` imports the function when it is called, so the wrapper is the one it gets.
    """
    import functools

    from verl.utils import distributed
    from verl.utils.device import get_device_name

    original = distributed.initialize_global_process_group_ray
    if getattr(original, "_dagrpo_cpu_fix", False):
        return

    @functools.wraps(original)
    def initialize_global_process_group_ray(timeout_second=None, backend=None):
        if backend is None and get_device_name() == PLATFORM_NAME:
            backend = "cpu:gloo"
        return original(timeout_second=timeout_second, backend=backend)

    initialize_global_process_group_ray._dagrpo_cpu_fix = True
    distributed.initialize_global_process_group_ray = initialize_global_process_group_ray

    original_spmd = distributed.initialize_global_process_group

    @functools.wraps(original_spmd)
    def initialize_global_process_group(timeout_second=36000):
        if get_device_name() != PLATFORM_NAME:
            return original_spmd(timeout_second)
        # mirrors verl 0.9.1 verl.utils.distributed:initialize_global_process_group (backend "cpu:gloo";
        # its set_device call is a no-op on the CPU)
        import datetime

        torch.distributed.init_process_group(
            backend="cpu:gloo",
            timeout=datetime.timedelta(seconds=timeout_second),
            init_method=os.environ.get("DIST_INIT_METHOD", None),
        )
        return int(os.environ["LOCAL_RANK"]), int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])

    distributed.initialize_global_process_group = initialize_global_process_group
