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
"""A CPU smoke run of verl's own PPO trainer: command, environment, console-metrics parser.

``python -m dagrpo_verl.cpu.smoke WORKDIR [extra hydra overrides]`` builds the tiny model
and the arithmetic parquet under ``WORKDIR`` and runs ``python -m verl.trainer.main_ppo``
(plain GRPO, 2 steps, console logger, no checkpoints) with the CPU settings of
``dagrpo_verl/config/platform/cpu.yaml``. It prints the command, then verl's output.
"""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

from dagrpo_verl.cpu.demo_data import write_arithmetic_parquet
from dagrpo_verl.cpu.models import build_tiny_qwen2

__all__ = ["CONFIG_DIR", "cpu_env", "parse_console_metrics", "smoke_command"]

#: Hydra config directory holding the ``platform/cpu.yaml`` group option (``+platform=cpu``).
CONFIG_DIR = pathlib.Path(__file__).resolve().parent.parent / "config"

# verl's console logger prints one line per step: "step:N - key:value - key:value ..."
_STEP_LINE = re.compile(r"(?:^|\s)step:(\d+) - (.*)$")


def cpu_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: ``os.environ``) plus :data:`dagrpo_verl.cpu.CPU_ENV`.

    ``dagrpo_verl.cpu`` is appended to an existing ``VERL_USE_EXTERNAL_MODULES`` list.
    """
    from dagrpo_verl.cpu import CPU_ENV

    env = dict(os.environ if base is None else base)
    modules = [m for m in env.get("VERL_USE_EXTERNAL_MODULES", "").split(",") if m]
    env.update(CPU_ENV)
    if CPU_ENV["VERL_USE_EXTERNAL_MODULES"] not in modules:
        modules.append(CPU_ENV["VERL_USE_EXTERNAL_MODULES"])
    env["VERL_USE_EXTERNAL_MODULES"] = ",".join(modules)
    return env


def smoke_command(workdir: str | os.PathLike, steps: int = 2) -> list[str]:
    """Prepare ``workdir`` (tiny model, train/val parquet) and return the trainer command line."""
    workdir = pathlib.Path(workdir).resolve()
    model = build_tiny_qwen2(workdir / "model")
    train = write_arithmetic_parquet(workdir / "train.parquet", 16)
    val = write_arithmetic_parquet(workdir / "val.parquet", 8, seed=1, split="test")
    return [
        sys.executable, "-m", "verl.trainer.main_ppo",
        f"--config-dir={CONFIG_DIR}",
        "+platform=cpu",
        "algorithm.adv_estimator=grpo",
        "algorithm.use_kl_in_reward=false",
        f"data.train_files={train}",
        f"data.val_files={val}",
        "data.train_batch_size=4",
        "data.max_prompt_length=64",
        "data.max_response_length=32",
        f"actor_rollout_ref.model.path={model}",
        "actor_rollout_ref.actor.optim.lr=1e-3",
        "actor_rollout_ref.actor.ppo_mini_batch_size=4",
        "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=8",
        "actor_rollout_ref.actor.use_kl_loss=false",
        "actor_rollout_ref.rollout.n=4",
        "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=8",
        "reward.custom_reward_function.path=pkg://dagrpo_verl.cpu.demo_data",
        "reward.custom_reward_function.name=digit_reward",
        "trainer.logger=[console]",
        "trainer.val_before_train=false",
        "trainer.test_freq=-1",
        "trainer.save_freq=-1",
        f"trainer.total_training_steps={steps}",
        f"trainer.default_local_dir={workdir / 'checkpoints'}",
    ]  # fmt: skip


def _number(text: str) -> float | None:
    """A console metric value as float (``1.5``, ``nan``, ``np.float64(1.5)``, ``np.int32(2)``), else None."""
    text = text.strip()
    wrapped = re.fullmatch(r"np\.\w+\((.*)\)", text)
    try:
        return float(wrapped.group(1) if wrapped else text)
    except ValueError:
        return None


def parse_console_metrics(output: str) -> dict[int, dict[str, float]]:
    """Metrics of every ``step:N - key:value - ...`` line in verl's console output, by step.

    Values that are not numbers are left out; ``nan`` and ``inf`` are kept.
    """
    steps: dict[int, dict[str, float]] = {}
    for line in output.splitlines():
        match = _STEP_LINE.search(line)
        if not match:
            continue
        metrics = {}
        for item in match.group(2).split(" - "):
            key, sep, value = item.partition(":")
            number = _number(value) if sep else None
            if number is not None:
                metrics[key.strip()] = number
        steps[int(match.group(1))] = metrics
    return steps


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m dagrpo_verl.cpu.smoke WORKDIR [hydra overrides]``; returns verl's exit code."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        print(__doc__)
        return 2
    command = smoke_command(argv[0]) + argv[1:]
    print(" ".join(command), flush=True)
    return subprocess.call(command, env=cpu_env(), cwd=argv[0])


if __name__ == "__main__":
    sys.exit(main())
