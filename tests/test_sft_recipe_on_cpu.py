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
"""``recipes/run_sft_baseline.sh``: its printed commands (``DRY_RUN=1``) compose with hydra against verl
0.9.1's own SFT config (``verl/trainer/config/sft_trainer_engine.yaml``, what ``torchrun -m
verl.trainer.sft_trainer`` loads), and the config objects verl's ``SFTTrainer._build_config`` builds
from them instantiate. The run itself on the CPU is ``tests/test_sft_smoke_on_cpu.py``."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from dagrpo_verl.cpu.smoke import CONFIG_DIR

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "recipes" / "run_sft_baseline.sh"
SFT_MODULE = "verl.trainer.sft_trainer"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from dagrpo_verl.cpu.models import build_tiny_qwen2

    return build_tiny_qwen2(tmp_path_factory.mktemp("tiny") / "model")


def _env(tmp: Path, model: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DRY_RUN", "SFT_", "NODE_RANK", "MASTER_"))}
    env.update(
        DRY_RUN="1",
        PYTHON=sys.executable,
        MODEL_PATH=str(model),
        TRAIN_FILE=str(tmp / "train.parquet"),
        NNODES="1",
        GPUS="4",
        OUT_DIR=str(tmp / "out"),
    )
    env.update(extra)
    return env


def _dry_run(tmp: Path, env: dict[str, str], *overrides: str) -> tuple[list[str] | None, list[str], str]:
    """Run the recipe with DRY_RUN=1; return (conversion argv or None, trainer argv, printed text)."""
    out = subprocess.run(
        ["bash", str(RECIPE), *overrides], cwd=tmp, env=env, capture_output=True, text=True, check=True
    ).stdout
    commands = [line for line in out.replace("\\\n", " ").splitlines() if not line.startswith("== ")]
    *convert, train = (shlex.split(c) for c in commands)
    return (convert[0] if convert else None), train, out


def _compose(train_argv: list[str]):
    """What ``torchrun ... -m verl.trainer.sft_trainer <overrides>`` composes (hydra compose API, verl's config)."""
    from hydra import compose, initialize_config_module

    at = train_argv.index(SFT_MODULE)
    assert train_argv[at - 1] == "-m"
    with initialize_config_module(config_module="verl.trainer.config", version_base=None):
        return compose(config_name="sft_trainer_engine", overrides=train_argv[at + 1 :])


def _build_config(cfg):
    """The dataclasses verl's ``SFTTrainer._build_config`` instantiates (HFModelConfig loads the tokenizer)."""
    from verl.utils.config import omega_conf_to_dataclass

    return {key: omega_conf_to_dataclass(cfg[key]) for key in ("model", "engine", "optim", "checkpoint", "profiler")}


def test_recipe_composes_with_the_schedule_and_instantiates(tmp_path, model_dir):
    convert, train, printed = _dry_run(tmp_path, _env(tmp_path, model_dir), "trainer.total_epochs=2")
    sft_file = str(tmp_path / "out" / "sft_train.parquet")
    assert convert[:3] == [sys.executable, "-m", "dagrpo_verl.data.sft"]
    assert convert[convert.index("--input") + 1] == str(tmp_path / "train.parquet")
    assert convert[convert.index("--output") + 1] == sft_file
    assert convert[convert.index("--tokenizer") + 1] == str(model_dir)
    assert convert[convert.index("--max-length") + 1] == "9216"
    assert convert[convert.index("--on-invalid") + 1] == "drop"
    assert train[:3] == [sys.executable, "-m", "torch.distributed.run"]
    assert "--standalone" in train and "--nproc_per_node=4" in train
    assert not (tmp_path / "out").exists()  # DRY_RUN=1 converts and trains nothing

    cfg = _compose(train)
    assert list(cfg.data.train_files) == [sft_file] and cfg.data.val_files is None
    assert cfg.data.max_length == 9216 and cfg.data.truncation == "error"
    assert cfg.data.train_batch_size == 64 and cfg.data.use_dynamic_bsz
    assert cfg.data.max_token_len_per_gpu == 16384 >= cfg.data.max_length
    assert cfg.trainer.total_epochs == 2  # "$@" wins over the recipe's 3
    assert cfg.trainer.default_local_dir == str(tmp_path / "out" / "checkpoints")
    assert "file" in cfg.trainer.logger and cfg.trainer.save_freq == "after_each_epoch"
    assert "hf_model" in cfg.checkpoint.save_contents  # the evaluator loads global_step_N/huggingface

    built = _build_config(cfg)
    optim = built["optim"]
    assert (optim.lr, optim.lr_warmup_steps_ratio, optim.lr_scheduler_type, optim.min_lr_ratio) == (
        5e-5,
        0.1,
        "cosine",
        0.1,
    )
    assert list(optim.betas) == [0.9, 0.95] and optim.weight_decay == 0.0 and optim.clip_grad == 1.0
    assert built["model"].path == str(model_dir) and built["model"].tokenizer is not None
    assert built["model"].use_remove_padding  # GPU defaults kept: flash-attn padding-free path
    assert built["engine"].strategy == "fsdp" and built["engine"].dtype == "bfloat16"
    assert "hf_model" in built["checkpoint"].save_contents


def test_cpu_platform_overrides_compose(tmp_path, model_dir):
    """What the CPU smoke appends: ``hydra.searchpath`` + ``+platform=cpu_sft`` (a "$@" override cannot
    be ``--config-dir``: hydra reads options only before the overrides)."""
    overrides = (f"hydra.searchpath=[file://{CONFIG_DIR}]", "+platform=cpu_sft", "data.train_batch_size=8")
    _, train, _ = _dry_run(tmp_path, _env(tmp_path, model_dir, GPUS="1"), *overrides)
    cfg = _compose(train)
    assert cfg.trainer.device == "cpu" and cfg.data.num_workers == 0 and cfg.data.train_batch_size == 8
    built = _build_config(cfg)
    assert built["engine"].strategy == "fsdp2" and not built["engine"].use_torch_compile
    assert dict(built["engine"].mixed_precision) == {
        "param_dtype": "fp32",
        "reduce_dtype": "fp32",
        "buffer_dtype": "fp32",
    }
    assert not built["model"].use_remove_padding and not built["model"].enable_gradient_checkpointing
    assert built["model"].override_config["attn_implementation"] == "sdpa"


def test_multi_node_needs_a_rendezvous_and_budget_is_checked(tmp_path, model_dir):
    env = _env(tmp_path, model_dir, NNODES="2")
    failed = subprocess.run(["bash", str(RECIPE)], env=env, capture_output=True, text=True, check=False)
    assert failed.returncode != 0 and "set NODE_RANK on every node" in failed.stderr

    _, train, printed = _dry_run(tmp_path, {**env, "NODE_RANK": "1", "MASTER_ADDR": "10.0.0.1"})
    assert {"--nnodes=2", "--node_rank=1", "--master_addr=10.0.0.1", "--master_port=29500"} <= set(train)
    assert "2 node(s) x 4 GPU(s)" in printed and _compose(train).trainer.nnodes == 2

    env = _env(tmp_path, model_dir, SFT_MAX_LENGTH="20000")
    failed = subprocess.run(["bash", str(RECIPE)], env=env, capture_output=True, text=True, check=False)
    assert failed.returncode == 2 and "raise MAX_TOKEN_LEN_PER_GPU" in failed.stderr

    convert, train, printed = _dry_run(
        tmp_path, _env(tmp_path, model_dir, SFT_CONVERT="0", SFT_FILE="/data/sft.parquet")
    )
    assert (
        convert is None and "dagrpo_verl.data.sft" not in printed and "data.train_files=['/data/sft.parquet']" in train
    )
