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
"""Evaluation on the paper's nine benchmarks: ``python -m dagrpo_verl.eval``.

Generates with vLLM (GPU) or transformers (CPU), grades math with math-verify and
multiple choice by the chosen option label, and writes the paper's table as
Markdown and CSV. See ``docs/eval.md``.
"""
