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
"""Recipes: every script's full override set composes (hydra compose API on its entry point's config),
carries the paper's settings, takes ``"$@"`` overrides and NNODES/GPUS/paths from the environment,
and passes DaGRPO's and verl's config validation."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parents[1]
RECIPES = REPO / "recipes"
SERVE_JUDGE = REPO / "scripts" / "serve_judge.sh"
TRAINING_RECIPES = ("run_dagrpo_qwen2.5_math_7b.sh", "run_grpo_baseline.sh", "run_dagrpo_no_offpolicy.sh")


def _env(tmp: Path) -> dict[str, str]:
    train = tmp / "train.parquet"
    pd.DataFrame(
        {
            "data_source": ["openr1"],
            "prompt": [[{"role": "user", "content": "1+1?"}]],
            "ability": ["math"],
            "reward_model": [{"ground_truth": "2", "style": "rule"}],
            "extra_info": [{"index": 0, "split": "train", "anchor": "1+1=2, so \\boxed{2}"}],
        }
    ).to_parquet(train)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUDGE_", "DRY_RUN"))}
    env.update(
        PYTHON=sys.executable,
        MODEL_PATH="/models/qwen2.5-math-7b",
        TRAIN_FILE=str(train),
        VAL_FILES="/data/valid.all.parquet,/data/valid.gpqa.parquet",
        NNODES="2",
        GPUS="4",
        OUT_DIR=str(tmp / "out"),
        JUDGE_BASE_URL="http://judge-host:8123/v1",
        JUDGE_MODEL="my-judge",
        JUDGE_API_KEY_ENV="MY_JUDGE_KEY",
    )
    return env


#: Hydra config of each entry point the recipes launch.
ENTRY_CONFIGS = {"dagrpo_verl.main": "dagrpo_trainer", "verl.trainer.main_ppo": "ppo_trainer"}


def _compose(module: str, overrides: list[str]):
    """Compose what ``python -m <module> <overrides>`` would run (hydra compose API, same search path: a
    ``--config-dir=DIR`` argument adds DIR to it, as on the command line)."""
    if module == "dagrpo_verl.main":
        from dagrpo_verl.main import compose_config

        return compose_config(overrides)
    from hydra import compose, initialize_config_module

    dirs = [o.split("=", 1)[1] for o in overrides if o.startswith("--config-dir=")]
    overrides = [o for o in overrides if not o.startswith("--config-dir=")]
    if dirs:  # verl's ppo_trainer declares no search path of its own
        overrides = [f"hydra.searchpath=[{','.join(f'file://{d}' for d in dirs)}]", *overrides]
    with initialize_config_module(config_module="verl.trainer.config", version_base=None):
        return compose(config_name=ENTRY_CONFIGS[module], overrides=overrides)


@pytest.fixture(scope="module")
def composed(tmp_path_factory) -> dict[str, tuple[str, object]]:
    """Each training recipe's printed command (DRY_RUN=1), parsed back with shlex and composed."""
    tmp = tmp_path_factory.mktemp("recipes")
    env = {**_env(tmp), "DRY_RUN": "1"}
    results = {}
    for name in TRAINING_RECIPES:
        out = subprocess.run(
            ["bash", str(RECIPES / name), "trainer.total_training_steps=7"],
            cwd=tmp,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        command = "\n".join(line for line in out.splitlines() if not line.startswith("== "))
        argv = shlex.split(command.replace("\\\n", " "))  # valid shell: line continuations, quoting
        assert argv[:2] == [sys.executable, "-m"] and argv[2] in ENTRY_CONFIGS, argv[:3]
        results[name] = (out, _compose(argv[2], argv[3:]))
    return results


@pytest.mark.parametrize("name", TRAINING_RECIPES)
def test_paper_settings_compose(composed, name):
    printed, cfg = composed[name]
    assert "2 node(s) x 4 GPU(s)" in printed and "trainer.total_training_steps=7" in printed
    assert cfg.trainer.nnodes == 2 and cfg.trainer.n_gpus_per_node == 4
    assert cfg.trainer.total_training_steps == 7  # "$@" wins over the recipe's 500
    assert cfg.actor_rollout_ref.model.path == "/models/qwen2.5-math-7b"
    assert list(cfg.data.val_files) == ["/data/valid.all.parquet", "/data/valid.gpqa.parquet"]
    assert cfg.data.train_batch_size == 128 and cfg.actor_rollout_ref.actor.ppo_mini_batch_size == 64
    assert cfg.data.max_response_length == 8192 and cfg.actor_rollout_ref.actor.optim.lr == 1e-6
    rollout = cfg.actor_rollout_ref.rollout
    assert rollout.n == 8 and rollout.temperature == 1.0 and rollout.top_p == 1.0
    assert rollout.val_kwargs.temperature == 0.6 and rollout.val_kwargs.do_sample
    actor = cfg.actor_rollout_ref.actor
    assert actor.loss_agg_mode == "seq-mean-token-sum-norm" and not actor.use_kl_loss
    # Dr.GRPO's constant normaliser (the generation budget), not each micro-batch's padded width
    assert actor.loss_scale_factor == 8192
    # verl's rollout server refuses a model whose context cannot hold prompt + response
    assert rollout.max_model_len == 1024 + 8192
    assert cfg.algorithm.norm_adv_by_std_in_grpo is False and cfg.algorithm.use_kl_in_reward is False
    assert cfg.reward.custom_reward_function.path == "pkg://dagrpo_verl.reward"


@pytest.mark.parametrize("module", list(ENTRY_CONFIGS))
def test_the_paper_preset_composes_on_the_command_line(module):
    """configs/experiment/paper.yaml through each entry point's own command line (hydra prints the job config)."""
    configs = RECIPES.parent / "configs"
    out = subprocess.run(
        [sys.executable, "-m", module, f"--config-dir={configs}", "+experiment=paper", "--cfg", "job"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    printed = OmegaConf.create(out.stdout)
    assert printed.data.train_batch_size == 128 and printed.actor_rollout_ref.rollout.n == 8
    assert printed.actor_rollout_ref.actor.loss_agg_mode == "seq-mean-token-sum-norm"
    assert OmegaConf.to_container(printed.trainer.logger) == ["console", "tensorboard", "file"]


def test_dagrpo_recipe_is_valid(composed, monkeypatch):
    from dagrpo_verl.integration.validation import validate_dagrpo_config
    from dagrpo_verl.judge import judge_config_from

    monkeypatch.setenv("MY_JUDGE_KEY", "k")  # the variable JUDGE_API_KEY_ENV names must exist where training runs
    _, cfg = composed["run_dagrpo_qwen2.5_math_7b.sh"]
    settings = validate_dagrpo_config(cfg)
    assert settings.delta == 3.0 and settings.rectification
    assert settings.anchor.enable and settings.anchor.trigger == "always"
    assert cfg.actor_rollout_ref.actor.policy_loss.loss_mode == "dagrpo"
    assert cfg.actor_rollout_ref.actor.policy_loss.off_policy_gamma == 0.1
    judge = judge_config_from(OmegaConf.to_container(cfg.reward.custom_reward_function.reward_kwargs.judge))
    assert (judge.backend, judge.base_url, judge.model, judge.api_key_env) == (
        "openai",
        "http://judge-host:8123/v1",
        "my-judge",
        "MY_JUDGE_KEY",
    )


def test_ablation_and_baseline(composed, monkeypatch):
    from dagrpo_verl.integration.validation import validate_dagrpo_config
    from dagrpo_verl.judge import judge_config_from

    monkeypatch.setenv("MY_JUDGE_KEY", "k")
    _, ablation = composed["run_dagrpo_no_offpolicy.sh"]
    settings = validate_dagrpo_config(ablation)
    assert settings.rectification and not settings.anchor.enable
    _, baseline = composed["run_grpo_baseline.sh"]
    assert baseline.algorithm.adv_estimator == "grpo"
    assert baseline.actor_rollout_ref.actor.policy_loss.loss_mode == "vanilla"
    assert "dagrpo" not in baseline.algorithm
    judge = judge_config_from(OmegaConf.to_container(baseline.reward.custom_reward_function.reward_kwargs.judge))
    assert judge.backend == "none"


def test_dry_run_prints_and_stops(tmp_path):
    env = _env(tmp_path)
    env["DRY_RUN"] = "1"
    env["PYTHON"] = "/nonexistent/python"  # never executed
    out = subprocess.run(
        ["bash", str(RECIPES / "run_dagrpo_no_offpolicy.sh"), "data.seed=1"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "/nonexistent/python -m dagrpo_verl.main" in out and out.rstrip().endswith("data.seed=1")
    assert not (tmp_path / "out").exists()


def test_serve_judge(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUDGE_")}
    env.update(DRY_RUN="1", JUDGE_GPUS="4,5", JUDGE_MODEL="Qwen/Qwen2.5-7B-Instruct", JUDGE_API_KEY_ENV="K", K="s3cret")
    out = subprocess.run(
        ["bash", str(SERVE_JUDGE), "--seed", "1"], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert "CUDA_VISIBLE_DEVICES=4,5 vllm serve Qwen/Qwen2.5-7B-Instruct" in out
    assert "--tensor-parallel-size 2" in out and out.rstrip().endswith("--seed 1")
    assert "s3cret" not in out and "--api-key ***" in out
    env.pop("K")
    failed = subprocess.run(["bash", str(SERVE_JUDGE)], check=False, env=env, capture_output=True, text=True)
    assert failed.returncode != 0 and "$K is empty" in failed.stderr
    env.update(JUDGE_BASE_URL="https://api.example.com/v1", JUDGE_API_KEY_ENV="")
    out = subprocess.run(["bash", str(SERVE_JUDGE)], env=env, capture_output=True, text=True, check=True).stdout
    assert "nothing to serve" in out and "judge.base_url=https://api.example.com/v1" in out


def test_default_model_holds_prompt_and_response(tmp_path):
    """Without MODEL_PATH the recipes train LUFFY's 16k-context Qwen2.5-Math-7B (the 4k original would
    cap on-policy responses); the lengths follow MAX_PROMPT_LENGTH/MAX_RESPONSE_LENGTH."""
    env = {k: v for k, v in _env(tmp_path).items() if k != "MODEL_PATH"}
    env.update(DRY_RUN="1", MAX_RESPONSE_LENGTH="4096")
    out = subprocess.run(
        ["bash", str(RECIPES / "run_dagrpo_qwen2.5_math_7b.sh")], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert "actor_rollout_ref.model.path=Elliott/Qwen2.5-Math-7B-16k-think" in out
    assert "data.max_response_length=4096" in out and "actor_rollout_ref.rollout.max_model_len=5120" in out


def test_verl_entry_keeps_earlier_metrics(tmp_path):
    """The baseline runs verl's own entry, whose file logger truncates: launch moves an earlier file aside."""
    env = _env(tmp_path)
    env["PYTHON"] = "true"  # `true -m verl.trainer.main_ppo ...` stands in for training
    metrics = tmp_path / "out" / "verl_metrics.jsonl"
    metrics.parent.mkdir()
    metrics.write_text('{"step": 1, "data": {}}\n')
    subprocess.run(["bash", str(RECIPES / "run_grpo_baseline.sh")], env=env, capture_output=True, check=True)
    kept = list(metrics.parent.glob("verl_metrics.jsonl.previous-*"))
    assert not metrics.exists() and [p.read_text() for p in kept] == ['{"step": 1, "data": {}}\n']
