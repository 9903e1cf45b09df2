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
"""``recipes/gpu_smoke.sh``: its training command composes into the paper recipe at 2 small steps, and
its report (``python -m dagrpo_verl.integration.diagnostics``) flags unhealthy first-run metrics.

Real: the script in bash (``DRY_RUN=1`` prints the command; with ``PYTHON=true`` the training is a no-op
so the report runs on a metrics file written here in verl's file-logger format), the hydra compose API
on ``dagrpo_trainer``, the start-up checks. No GPU: the training itself is not run.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pandas as pd

from dagrpo_verl.integration.diagnostics import FIRST_RUN_CHECKS
from dagrpo_verl.integration.validation import validate_dagrpo_config
from dagrpo_verl.main import compose_config

SCRIPT = Path(__file__).resolve().parents[1] / "recipes" / "gpu_smoke.sh"

HEALTHY = {
    "judge/failures": 0.0,
    "dagrpo/missing_scores": 0.0,
    "judge/calls": 112.0,
    "dagrpo/onpolicy/response_length/clip_ratio": 0.02,
    "dagrpo/onpolicy/rollout_probs_diff_mean": 0.005,
    "dagrpo/onpolicy/rollout_actor_probs_pearson_corr": 0.998,
    "actor/dagrpo/anchor_token_frac": 0.31,
    "actor/dagrpo/anchor_shaped_ratio_mean": 0.12,
    "actor/grad_norm": 0.4,
}


def _env(tmp_path, **extra):
    train = tmp_path / "train.parquet"
    pd.DataFrame(
        {
            "data_source": ["openr1"],
            "prompt": [[{"role": "user", "content": "1+1?"}]],
            "reward_model": [{"ground_truth": "2", "style": "rule"}],
            "extra_info": [{"index": 0, "split": "train", "anchor": "\\boxed{2}"}],
        }
    ).to_parquet(train)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUDGE_", "DRY_RUN", "VERL_"))}
    env.update(PYTHON=sys.executable, TRAIN_FILE=str(train), OUT_DIR=str(tmp_path / "out"), **extra)
    return env


def test_dry_run_composes_two_small_paper_steps(tmp_path):
    out = subprocess.run(
        ["bash", str(SCRIPT), "data.seed=3"], env=_env(tmp_path, DRY_RUN="1"), capture_output=True, text=True,
        check=True, cwd=tmp_path,
    ).stdout  # fmt: skip
    command = "\n".join(line for line in out.splitlines() if not line.startswith("== "))
    argv = shlex.split(command.replace("\\\n", " "))
    assert argv[1:3] == ["-m", "dagrpo_verl.main"] and argv[-1] == "data.seed=3"
    config = compose_config(argv[3:])
    assert config.trainer.total_training_steps == 2 and not config.trainer.val_before_train
    assert config.trainer.test_freq == -1 and config.trainer.save_freq == -1
    assert config.data.train_batch_size == 16 and config.actor_rollout_ref.actor.ppo_mini_batch_size == 16
    assert "file" in config.trainer.logger and config.actor_rollout_ref.rollout.calculate_log_probs
    # the paper's lengths, normaliser, anchors and judge: the smoke run exercises what the long run will
    assert config.data.max_response_length == 8192 and config.actor_rollout_ref.rollout.max_model_len == 9216
    assert config.actor_rollout_ref.actor.loss_scale_factor == 8192
    assert config.actor_rollout_ref.model.path == "Elliott/Qwen2.5-Math-7B-16k-think"
    assert list(config.data.val_files) == list(config.data.train_files)
    settings = validate_dagrpo_config(config)
    assert settings.anchor.enable and settings.rectification
    assert config.reward.custom_reward_function.reward_kwargs.judge.backend == "openai"
    assert not (tmp_path / "out").exists()


def _run_with_metrics(tmp_path, steps: dict[int, dict]):
    """The script with a no-op training (PYTHON=true for the trainer) on a metrics file written here."""
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text("".join(json.dumps({"step": s, "data": d}) + "\n" for s, d in steps.items()))
    env = _env(tmp_path, VERL_FILE_LOGGER_PATH=str(metrics))
    # the recipe's launcher moves an earlier file aside only for verl's own entry: the file stays
    wrapper = tmp_path / "python"
    wrapper.write_text(f'#!/bin/sh\nif [ "$2" = dagrpo_verl.main ]; then exit 0; fi\nexec {sys.executable} "$@"\n')
    wrapper.chmod(0o755)
    env["PYTHON"] = str(wrapper)
    return subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, cwd=tmp_path)


def test_report_passes_healthy_and_flags_unhealthy_runs(tmp_path):
    healthy = _run_with_metrics(tmp_path, {1: HEALTHY, 2: HEALTHY})
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    for check in FIRST_RUN_CHECKS:
        assert check.key in healthy.stdout
    assert "CHECK" not in healthy.stdout and "all first-run checks healthy" in healthy.stdout

    # step 2: judge scores went missing and every rollout hit the budget; no rollout log-probs in any step
    first = {k: v for k, v in HEALTHY.items() if k != "dagrpo/onpolicy/rollout_actor_probs_pearson_corr"}
    sick = dict(first, **{"dagrpo/missing_scores": 12.0, "dagrpo/onpolicy/response_length/clip_ratio": 1.0})
    unhealthy = _run_with_metrics(tmp_path, {1: first, 2: sick})
    assert unhealthy.returncode == 1
    status = {
        line.split()[0]: line for line in unhealthy.stdout.splitlines() if line.startswith(("dagrpo", "judge", "actor"))
    }
    assert {k for k, line in status.items() if " CHECK " in line} == {
        "dagrpo/missing_scores",
        "dagrpo/onpolicy/response_length/clip_ratio",
    }
    assert " MISSING " in status["dagrpo/onpolicy/rollout_actor_probs_pearson_corr"]
