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
"""The synthetic demo task: verl layout, anchors that the real grader accepts, deterministic."""

import pandas as pd
import pytest

from dagrpo_verl.data.synthetic import make_rows, write_synthetic_task
from dagrpo_verl.grading import grade_math


def test_rows_have_verl_layout_and_correct_anchors(tmp_path):
    train, val = write_synthetic_task(tmp_path, train=12, val=4, seed=3)
    frame = pd.read_parquet(train)
    assert list(frame.columns) == ["data_source", "prompt", "ability", "reward_model", "extra_info"]
    assert len(frame) == 12 and len(pd.read_parquet(val)) == 4
    for _, row in frame.iterrows():
        answer = row["reward_model"]["ground_truth"]
        assert grade_math(row["extra_info"]["anchor"], answer)
        assert not grade_math(row["extra_info"]["anchor"], str(int(answer) + 1))
        assert row["prompt"][0]["role"] == "user"


def test_deterministic_and_splits_differ():
    assert make_rows(8, seed=1, split="train") == make_rows(8, seed=1, split="train")
    assert make_rows(8, seed=1, split="train") != make_rows(8, seed=1, split="val")
    with pytest.raises(ValueError, match="n must be"):
        make_rows(0, seed=0, split="train")
