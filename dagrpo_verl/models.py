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
"""Old home of :mod:`dagrpo_verl.cpu.models` (the embedded models of the CPU platform), kept as an alias.

``import dagrpo_verl.models`` gives the module :mod:`dagrpo_verl.cpu.models` itself, so code and
documentation written for the old path keep working; new code imports ``dagrpo_verl.cpu.models``.
"""

import sys

from dagrpo_verl.cpu import models as _models

sys.modules[__name__] = _models
