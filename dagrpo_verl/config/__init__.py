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
"""The trainer's Hydra configs (package data) and the config class that verl configs name by path.

- ``dagrpo_trainer.yaml`` (``python -m dagrpo_verl.main``'s config, extends verl's ``ppo_trainer``) and
  ``platform/*.yaml`` (``+platform=cpu``) are read by Hydra from this folder.
- ``actor_rollout_ref.actor.policy_loss._target_=dagrpo_verl.config.DaGRPOPolicyLossConfig`` names the
  loss config by its public path; the class lives with the rest of the verl glue
  (:class:`dagrpo_verl.integration.config.DaGRPOPolicyLossConfig`) and is loaded on first use, so
  importing this package does not import verl.
"""

from __future__ import annotations

from typing import Any

__all__ = ["DaGRPOPolicyLossConfig"]


def __getattr__(name: str) -> Any:
    if name == "DaGRPOPolicyLossConfig":
        from dagrpo_verl.integration.config import DaGRPOPolicyLossConfig

        return DaGRPOPolicyLossConfig
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
