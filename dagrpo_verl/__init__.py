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
"""dagrpo-verl: DaGRPO (Distinctiveness-aware Group Relative Policy Optimization,
arXiv 2512.06337) for verl 0.9.x.

Importing this package is cheap and does not import verl. verl loads
``dagrpo_verl.integration.registration`` through the ``verl.plugins`` entry point, which
registers the ``dagrpo`` advantage estimator and policy loss.
"""

__version__ = "0.1.0"
