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
  importing this package does not import verl. The settings this module held in 0.1.0 still load from
  here (:data:`MOVED_NAMES`, with a FutureWarning).
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

__all__ = ["DaGRPOPolicyLossConfig"]

#: The other names this module held in dagrpo-verl 0.1.0 (``dagrpo_verl/config.py``) and their homes now;
#: they still load, with a FutureWarning naming the new home.
MOVED_NAMES = {
    "AnchorConfig": "dagrpo_verl.algo.settings",
    "DaGRPOConfig": "dagrpo_verl.algo.settings",
    "JudgeHealthConfig": "dagrpo_verl.algo.settings",
    "dagrpo_config_from": "dagrpo_verl.algo.settings",
    "advantage_settings": "dagrpo_verl.integration.config",
    "VERL_NORM_ADV_BY_STD_DEFAULT": "dagrpo_verl.integration.config",
}


def __getattr__(name: str) -> Any:
    if name == "DaGRPOPolicyLossConfig":
        from dagrpo_verl.integration.config import DaGRPOPolicyLossConfig

        return DaGRPOPolicyLossConfig
    if name in MOVED_NAMES:
        home = MOVED_NAMES[name]
        warnings.warn(f"dagrpo_verl.config.{name} moved to {home}.{name}.", FutureWarning, stacklevel=2)
        return getattr(importlib.import_module(home), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
