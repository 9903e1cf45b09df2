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
"""The paper's maths, with no verl import (a test keeps it so): pure functions over tensors and settings.

- :mod:`~dagrpo_verl.algo.core`: Dr.GRPO advantage over the mixed group, the distinctiveness masks of
  eq. 8-9, the mixed policy loss (clipped PPO on rollout tokens, policy shaping on anchor tokens).
- :mod:`~dagrpo_verl.algo.anchors`: which groups get anchors and which rollouts they replace.
- :mod:`~dagrpo_verl.algo.settings`: the ``algorithm.dagrpo`` block as validated dataclasses.

verl reaches these through :mod:`dagrpo_verl.integration`.
"""
