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
"""The reward function grades the real evaluation answers.

Reads ``<repo>/../shared/data/benchmarks/*.parquet`` (skipped when absent): a deterministic
sample of 38 rows per data source (about 300 rows: AIME24/25, AMC, MATH-500, Minerva,
OlympiadBench, ARC-c, GPQA). Each ground truth given back as ``\\boxed{...}`` must score 1;
a wrong answer (another row's answer, or another option letter) must score 0. The full sweep
is ``python -m benchmarks.reward_sweep``.
"""

import asyncio

import pytest

from benchmarks.reward_sweep import DEFAULT_DATA_DIR, grade_rows, load_rows, spread_sample

pytestmark = pytest.mark.skipif(
    not any(DEFAULT_DATA_DIR.glob("*.parquet")), reason=f"benchmark parquets not found in {DEFAULT_DATA_DIR}"
)


def test_reward_grades_real_benchmark_answers():
    frame = spread_sample(load_rows(DEFAULT_DATA_DIR), per_source=38)
    assert len(frame) >= 300 and frame["data_source"].nunique() >= 8
    graded = asyncio.run(grade_rows(frame))
    right_misses = graded.loc[graded["right"] != 1.0, ["data_source", "ground_truth"]].values.tolist()
    wrong_misses = graded.loc[graded["wrong"] != 0.0, ["data_source", "ground_truth"]].values.tolist()
    assert right_misses == []
    assert wrong_misses == []
