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
"""verl's synchronous replay buffer, polling for finished rollouts every 50 ms instead of 2 s.

verl 0.9.1's v1 trainer waits for a step's rollouts in ``ReplayBuffer.sample``, which
sleeps ``poll_interval`` (2.0 s, not a config key) between looks at TransferQueue. Next to
a GPU rollout that is noise; next to a CPU rollout of a tiny model that finishes in a
fraction of a second, it is half of every training step. ``+platform=cpu`` plugs this
subclass in through verl's own hook::

    trainer.v1.sampler.custom_sampler.path=pkg://dagrpo_verl.cpu.sampler
    trainer.v1.sampler.custom_sampler.name=CPUReplayBuffer

It changes nothing but the interval. verl passes custom samplers neither the DAPO
group-filtering arguments nor ``sync_refill_failed_groups``, so ``algorithm.filter_groups``
would be ignored: :func:`dagrpo_verl.integration.validation.validate_dagrpo_config` refuses it at
start-up. The class itself refuses any ``trainer.v1.trainer_mode`` but ``sync`` (the async
trainers are untested on the CPU).
"""

from __future__ import annotations

from verl.trainer.ppo.v1.replay_buffer import ReplayBuffer

__all__ = ["CPU_POLL_INTERVAL_S", "CPUReplayBuffer"]

#: Seconds between two looks at TransferQueue while a step's rollouts are running.
CPU_POLL_INTERVAL_S = 0.05


class CPUReplayBuffer(ReplayBuffer):
    """:class:`verl.trainer.ppo.v1.replay_buffer.ReplayBuffer` with a 50 ms poll interval."""

    def __init__(self, trainer_mode: str, *args, poll_interval: float = CPU_POLL_INTERVAL_S, **kwargs):
        if trainer_mode != "sync":
            raise ValueError(
                f"CPUReplayBuffer supports trainer.v1.trainer_mode=sync only, got {trainer_mode!r}; set "
                "trainer.v1.sampler.custom_sampler.path=null or trainer.v1.trainer_mode=sync."
            )
        super().__init__(trainer_mode, *args, poll_interval=poll_interval, **kwargs)
