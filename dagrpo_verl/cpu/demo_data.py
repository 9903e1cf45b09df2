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
"""A tiny synthetic arithmetic data set in verl's RL parquet layout, for CPU smoke runs.

One row per prompt: ``data_source`` (``lighteval/MATH``, so verl's built-in
``\\boxed{}`` scorer grades it), ``prompt`` (one user message), ``ability``,
``reward_model`` (``ground_truth``, ``style``) and ``extra_info`` (``index``, ``split``).

:func:`digit_reward` is a reward a random model can earn, so that a smoke run has
non-zero advantages (verl's exact-match scorer gives a random model 0 everywhere).
"""

from __future__ import annotations

import os
import pathlib
import random

__all__ = ["digit_reward", "write_arithmetic_parquet"]

_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."


def write_arithmetic_parquet(
    path: str | os.PathLike, n: int = 16, *, seed: int = 0, split: str = "train"
) -> pathlib.Path:
    """Write ``n`` two-operand addition problems to the parquet file ``path``.

    Deterministic for a given ``seed``; returns ``path`` as a :class:`pathlib.Path`.
    """
    import pandas as pd

    rng = random.Random(seed)
    rows = []
    for index in range(n):
        a, b = rng.randint(0, 99), rng.randint(0, 99)
        rows.append(
            {
                "data_source": "lighteval/MATH",
                "prompt": [{"role": "user", "content": f"What is {a} + {b}? {_INSTRUCTION}"}],
                "ability": "math",
                "reward_model": {"ground_truth": str(a + b), "style": "rule"},
                "extra_info": {"index": index, "split": split},
            }
        )
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_parquet(path)
    return path


def digit_reward(data_source: str, solution_str: str, ground_truth: str, extra_info: dict | None = None) -> float:
    """Smoke-test reward: 1.0 iff the response contains the answer's first digit, else 0.0.

    Signature of verl's ``reward.custom_reward_function``
    (``path=pkg://dagrpo_verl.cpu.demo_data``, ``name=digit_reward``).
    """
    return float(ground_truth[:1] in solution_str)
