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
"""Alias of :mod:`dagrpo_verl.integration.agent_loop` under its path of dagrpo-verl 0.1.0.

verl loads ``actor_rollout_ref.rollout.agent.agent_loop_manager_class`` by module path, so configs
written for 0.1.0 (``dagrpo_verl.agent_loop.DaGRPOAgentLoopManagerTQ``) keep working: this module is
replaced by the integration module itself (the same classes, not copies). New configs name
``dagrpo_verl.integration.agent_loop.<class>``.
"""

import sys
import warnings

from dagrpo_verl.integration import agent_loop as _home

warnings.warn(
    "dagrpo_verl.agent_loop moved to dagrpo_verl.integration.agent_loop; set "
    "actor_rollout_ref.rollout.agent.agent_loop_manager_class=dagrpo_verl.integration.agent_loop.<class> "
    "(the old path is an alias and keeps working).",
    FutureWarning,
    stacklevel=2,
)
sys.modules[__name__] = _home
