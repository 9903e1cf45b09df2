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
"""verl 0.9.1's own v1 PPO trainer (python -m verl.trainer.main_ppo) on the CPU, 2 GRPO steps.

Runs ``python -m dagrpo_verl.cpu.smoke`` (tiny Qwen2, arithmetic parquet, +platform=cpu,
hf_cpu rollout) in a subprocess and checks verl's console metrics. About 3 minutes on 2 cores.
"""

import math
import subprocess
import sys

import pytest

from dagrpo_verl.cpu.smoke import parse_console_metrics


@pytest.mark.slow
def test_two_grpo_steps_on_cpu(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "dagrpo_verl.cpu.smoke", str(tmp_path)],
        check=False,  # the output is checked below
        capture_output=True,
        text=True,
        timeout=1200,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-5000:]
    steps = parse_console_metrics(output)
    assert sorted(steps) == [1, 2], output[-5000:]
    for step, metrics in steps.items():
        assert len(metrics) > 50, f"step {step}: too few metrics {sorted(metrics)}"
        bad = {k: v for k, v in metrics.items() if not math.isfinite(v)}
        assert not bad, f"step {step}: non-finite metrics {bad}"
        assert metrics["training/global_step"] == step
        # the digit reward gives a random model a learning signal, so the actor really moves
        assert metrics["actor/grad_norm"] > 0
        assert 0 < metrics["response_length/mean"] <= 32
        # the hf_cpu rollout's log-probs are the actor's: in step 2 this holds only if the
        # weights updated in step 1 reached the rollout server
        assert metrics["training/rollout_probs_diff_max"] < 1e-5, metrics["training/rollout_probs_diff_max"]
    assert not (tmp_path / "checkpoints").exists()
