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
"""Everything that registers with, subclasses, patches or copies verl 0.9.1, in one place.

What a verl bump touches is here (and in :mod:`dagrpo_verl.cpu`, the CPU platform): the plugin
(:mod:`~dagrpo_verl.integration.registration`), the v1 trainer's hooks (:mod:`~dagrpo_verl.integration.trainer`)
and the legacy trainer's (:mod:`~dagrpo_verl.integration.legacy_trainer`, imported only for
``trainer.use_v1=false``), the agent-loop managers that mix anchors, the start-up checks, the stock-verl
path, and the copies of verl bodies with their fingerprints (:mod:`~dagrpo_verl.integration.verl_mirrors`).
The maths they adapt is :mod:`dagrpo_verl.algo`.
"""
