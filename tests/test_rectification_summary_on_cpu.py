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
"""The rectification scenario's summary: paired comparisons of the meter's groups, pooled over runs."""

import math

import pandas as pd
import pytest

from dagrpo_verl.conflict import GROUPS_TABLE, QUANTITIES
from dagrpo_verl.cpu.rectification import markdown_table, pooled_conflict


def _groups(run_dir, rows):
    (run_dir / "conflict").mkdir(parents=True)
    frame = pd.DataFrame([{**dict.fromkeys(QUANTITIES, math.nan), **row} for row in rows])
    frame.to_csv(run_dir / "conflict" / GROUPS_TABLE, index=False)


def test_pairs_use_only_groups_where_both_values_exist(tmp_path):
    signal = {"n_pos": 2, "n_neg": 2}
    _groups(tmp_path / "a", [
        {"step": 0, **signal, "cos_before": 0.9, "cos_after": 0.9},  # start model: not in trained=True
        {"step": 10, **signal, "cos_before": 0.1, "cos_after": 0.3, "cos_masked_pos": -0.2, "cos_kept_pos": 0.4},
        {"step": 10, **signal, "cos_before": 0.5},  # no kept pair after the masks: out of the before/after pair
        {"step": 20, "n_pos": 0, "n_neg": 0, "cos_before": -1.0, "cos_after": -1.0},  # no signal: ignored
    ])  # fmt: skip
    _groups(tmp_path / "b", [{"step": 20, **signal, "cos_before": -0.3, "cos_after": 0.1}])

    trained = pooled_conflict([tmp_path / "a", tmp_path / "b"], trained=True)
    pair = trained["before_after"]
    assert pair["n"] == 2
    assert pair["a"] == pytest.approx(-0.1) and pair["b"] == pytest.approx(0.2)
    assert pair["diff"] == pytest.approx(0.3)  # differences 0.2 and 0.4
    assert pair["se"] == pytest.approx(math.sqrt(0.02) / math.sqrt(2))  # sample sd of (0.2, 0.4) over sqrt(n)
    masked = trained["masked_kept_pos"]
    assert (masked["n"], masked["a"], masked["b"]) == (1, -0.2, 0.4) and math.isnan(masked["se"])

    start = pooled_conflict([tmp_path / "a"], trained=False)
    assert start["before_after"]["n"] == 1 and start["before_after"]["diff"] == pytest.approx(0.0)
    assert start["masked_kept_neg"]["n"] == 0 and math.isnan(start["masked_kept_neg"]["a"])

    per_seed = {"GRPO": {0: {"final_rollout_reward": 0.25, "held_out_acc_end": 0.5, "held_out_work_end": 0.4,
                             "grad_norm_mean": 0.1, "grad_norm_max": 0.3, "entropy_end": 0.2,
                             "held_out_acc_start": 0.6, "held_out_work_start": 0.7}}}  # fmt: skip
    table = markdown_table(per_seed, {"GRPO": trained}, start)
    assert "| GRPO | 0.250 | 0.500 | 0.400 | 0.100–0.300 | 0.200 | -0.100 → +0.200 (Δ +0.300 ± 0.100, n=2)" in table
    assert "| start model (step 0) | – | 0.600 | 0.700 |" in table
