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
"""Rectification on its own, on CPU: GRPO vs DaGRPO without anchors vs DaGRPO, through verl's real trainer.

    python -m dagrpo_verl.cpu.rectification --out outputs/cpu_rectification --seeds 0 1 2
    python -m dagrpo_verl.cpu.rectification --out /tmp/ci --steps 2 --seeds 0 --runs GRPO   # smoke

Task, judge and start model: :mod:`dagrpo_verl.cpu.chain_sums` (``a + b + c`` with the work shown; a
step-checking rule judge; the tiny Qwen2 warm-started by a short supervised pass, so groups are mixed
from the first step and lucky guesses are common). Three runs per seed, same seed, data and budget,
through ``python -m dagrpo_verl.main +platform=cpu``:

* ``GRPO``: verl's ``grpo`` estimator (Dr.GRPO: no std) and ``vanilla`` loss;
* ``DaGRPO w/o anchors``: the eq. 8-9 masks (δ = 3) on the same groups, no anchors (the paper's
  "w/o off-policy");
* ``DaGRPO``: masks and anchors (the plugin's defaults: one anchor in each all-wrong group).

Each run validates greedily on the held-out combinations (``val-core/dagrpo/chain_sums/acc/mean@1``,
before training and every ``--val-every`` steps) and saves its policy every ``--conflict-every``
steps; then :mod:`dagrpo_verl.conflict` measures the gradient conflict of every saved policy
(and the start model) on ``--conflict-prompts`` freshly sampled groups, in a subprocess that runs while
the next run trains. Writes per run
``<out>/<run>-seed<k>/{metrics.jsonl,train.log,conflict/}``, ``<out>/plots/`` (seed means: training
dynamics, masks, gradient conflict) and ``<out>/summary.json`` (per seed: final on-policy reward,
held-out accuracy and work, gradient-norm mean/max, entropy, conflict cosines before/after the masks).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from dagrpo_verl.conflict import CONFLICT_FILE, GROUPS_TABLE, metric_name
from dagrpo_verl.cpu.chain_sums import DATA_SOURCE, warm_start, write_chain_task
from dagrpo_verl.cpu.demo import rollout_reward, seed_mean, train_run
from dagrpo_verl.cpu.models import build_tiny_qwen2
from dagrpo_verl.eval.plot import load_metrics, plot_runs

__all__ = [
    "HELD_OUT_ACC",
    "HELD_OUT_WORK",
    "PAIRS",
    "RUNS",
    "main",
    "markdown_table",
    "pooled_conflict",
    "run_command",
    "run_summary",
]

#: Algorithm overrides per run, on top of dagrpo_verl/config/dagrpo_trainer.yaml.
RUNS: dict[str, list[str]] = {
    "GRPO": [
        "algorithm.adv_estimator=grpo",
        "actor_rollout_ref.actor.policy_loss.loss_mode=vanilla",
        "algorithm.dagrpo.anchor.enable=false",
    ],
    "DaGRPO w/o anchors": ["algorithm.dagrpo.anchor.enable=false"],
    "DaGRPO": [],
}

#: verl's validation metrics of the task: greedy accuracy and share of correct steps on held-out problems.
HELD_OUT_ACC = f"val-core/{DATA_SOURCE}/acc/mean@1"
HELD_OUT_WORK = f"val-aux/{DATA_SOURCE}/work/mean@1"


def _slug(name: str) -> str:
    return name.lower().replace(" ", "-").replace("/", "")


def run_command(
    model: Path,
    train: Path,
    val: Path,
    run_dir: Path,
    *,
    steps: int,
    seed: int,
    lr: float,
    ppo_epochs: int,
    val_every: int,
    save_every: int,
    algorithm: list[str],
    extra: list[str],
) -> list[str]:
    """The ``python -m dagrpo_verl.main`` command line of one run."""
    return [
        sys.executable, "-m", "dagrpo_verl.main",
        "+platform=cpu",
        f"data.train_files={train}",
        f"data.val_files={val}",
        "data.train_batch_size=8",
        "data.max_prompt_length=64",
        # the worked solution is 22 tokens + eos
        "data.max_response_length=32",
        f"data.seed={seed}",
        f"actor_rollout_ref.model.path={model}",
        f"actor_rollout_ref.actor.optim.lr={lr}",
        f"actor_rollout_ref.actor.ppo_epochs={ppo_epochs}",
        "actor_rollout_ref.actor.ppo_mini_batch_size=8",
        "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=64",
        f"actor_rollout_ref.rollout.seed={seed}",
        "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=64",
        # the step-checking judge of the task; it takes no settings (the trainer config's reward_kwargs go)
        "reward.custom_reward_function.path=pkg://dagrpo_verl.cpu.chain_sums",
        "reward.custom_reward_function.name=compute_score",
        "~reward.custom_reward_function.reward_kwargs",
        "trainer.logger=[console,file]",
        "trainer.project_name=dagrpo_cpu_rectification",
        "trainer.val_before_train=true",
        f"trainer.test_freq={val_every}",
        f"trainer.save_freq={save_every}",
        f"trainer.default_local_dir={run_dir / 'checkpoints'}",
        # the policy weights only: what the gradient-conflict meter reads
        "actor_rollout_ref.actor.checkpoint.save_contents=[model]",
        f"trainer.total_training_steps={steps}",
        *algorithm,
        *extra,
    ]  # fmt: skip


def _already_done(run_dir: Path, command: list[str], steps: int) -> bool:
    """True when ``run_dir`` holds a finished run of exactly ``command`` and its meter output (``--resume``)."""
    command_file, metrics = run_dir / "command.txt", run_dir / "metrics.jsonl"
    if not (command_file.is_file() and metrics.is_file() and (run_dir / "conflict" / CONFLICT_FILE).is_file()):
        return False
    if command_file.read_text() != " ".join(command) + "\n":
        return False
    frame = load_metrics(metrics)
    return bool(len(frame.index)) and int(frame.index.max()) >= steps


class _MeterJob:
    """The gradient-conflict meter (``python -m dagrpo_verl.conflict --run``) on every saved policy of a run
    and its start model, in a subprocess started at once: it runs while the next run trains (on 2 cores
    the trainer's start-up leaves room for it), and :meth:`wait` collects it."""

    def __init__(self, run_dir: Path, prompts: int, seed: int):
        command = [sys.executable, "-m", "dagrpo_verl.conflict", "--run", str(run_dir)]
        command += ["--prompts", str(prompts), "--seed", str(seed)]
        self.run_dir, self.started = run_dir, time.perf_counter()
        with open(run_dir / "conflict.log", "w") as log:
            self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)

    def wait(self) -> float:
        """Wait for the meter; its wall time in seconds (from its start).

        Raises:
            RuntimeError: the meter failed; the message holds the end of its log.
        """
        code = self.proc.wait()
        if code != 0:
            tail = "".join((self.run_dir / "conflict.log").read_text().splitlines(keepends=True)[-30:])
            raise RuntimeError(f"the conflict meter failed on {self.run_dir} (exit {code}):\n{tail}")
        return time.perf_counter() - self.started


def run_summary(frame: pd.DataFrame, last: int) -> dict[str, float]:
    """The numbers of one run: final on-policy reward (mean of the ``last`` steps), held-out accuracy and
    work (start and end), gradient-norm mean and max, final entropy, and the meter's mean cosines
    (start and end policy) before and after the masks."""
    grad = frame["actor/grad_norm"].dropna() if "actor/grad_norm" in frame.columns else pd.Series(dtype=float)
    entropy = frame["actor/entropy"].dropna() if "actor/entropy" in frame.columns else pd.Series(dtype=float)
    held_out = frame[HELD_OUT_ACC].dropna() if HELD_OUT_ACC in frame.columns else pd.Series(dtype=float)
    work = frame[HELD_OUT_WORK].dropna() if HELD_OUT_WORK in frame.columns else pd.Series(dtype=float)
    summary = {
        "final_rollout_reward": float(rollout_reward(frame).tail(last).mean()),
        "held_out_acc_start": float(held_out.iloc[0]) if len(held_out) else math.nan,
        "held_out_acc_end": float(held_out.iloc[-1]) if len(held_out) else math.nan,
        "held_out_work_start": float(work.iloc[0]) if len(work) else math.nan,
        "held_out_work_end": float(work.iloc[-1]) if len(work) else math.nan,
        "grad_norm_mean": float(grad.mean()) if len(grad) else math.nan,
        "grad_norm_max": float(grad.max()) if len(grad) else math.nan,
        "entropy_end": float(entropy.tail(last).mean()) if len(entropy) else math.nan,
    }
    for quantity in ("cos_before", "cos_after", "cos_masked_pos", "cos_kept_pos"):
        key = metric_name(quantity, "mean")
        series = frame[key].dropna() if key in frame.columns else pd.Series(dtype=float)
        summary[f"{quantity}_start"] = float(series.iloc[0]) if len(series) else math.nan
        summary[f"{quantity}_end"] = float(series.iloc[-1]) if len(series) else math.nan
    return summary


#: Paired comparisons of the meter's per-group values, pooled over seeds and measured policies: for the
#: groups where both are defined, the mean of each, and the mean and standard error of the difference.
PAIRS = {
    "before_after": ("cos_before", "cos_after"),  # cos(g+, g-) with A, then with A'
    "masked_kept_pos": ("cos_masked_pos", "cos_kept_pos"),  # positives the masks drop / keep, against g-
    "masked_kept_neg": ("cos_masked_neg", "cos_kept_neg"),  # negatives the masks drop / keep, against g+
    "norm_before_after": ("norm_before", "norm_after"),  # |g+ + g-| with A, then with A'
}


def pooled_conflict(run_dirs: list[Path], trained: bool) -> dict[str, dict[str, float]]:
    """The :data:`PAIRS` over the meter's groups of several runs.

    Args:
        run_dirs: run directories holding ``conflict/conflict_groups.csv``.
        trained: True: the policies the runs trained (steps > 0); False: the start model (step 0).

    Returns:
        ``{pair: {"a": mean, "b": mean, "diff": mean of b - a, "se": its standard error, "n": groups}}``.
    """
    groups = pd.concat([pd.read_csv(d / "conflict" / GROUPS_TABLE) for d in run_dirs], ignore_index=True)
    groups = groups[(groups["n_pos"] > 0) & (groups["n_neg"] > 0)]
    groups = groups[groups["step"] > 0] if trained else groups[groups["step"] == 0]
    pooled = {}
    for pair, (a, b) in PAIRS.items():
        both = groups[[a, b]].dropna()
        diff = both[b] - both[a]
        pooled[pair] = {
            "a": float(both[a].mean()) if len(both) else math.nan,
            "b": float(both[b].mean()) if len(both) else math.nan,
            "diff": float(diff.mean()) if len(both) else math.nan,
            "se": float(diff.std(ddof=1) / math.sqrt(len(both))) if len(both) > 1 else math.nan,
            "n": len(both),
        }
    return pooled


def markdown_table(per_seed: dict[str, dict[int, dict]], pooled: dict[str, dict], start: dict) -> str:
    """The comparison as a Markdown table (per-seed values, then the meter's paired comparisons)."""

    def seeds(values: dict[int, dict], key: str) -> str:
        return " / ".join(f"{v[key]:.3f}" for v in values.values())

    def pair(p: dict, name: str) -> str:
        q = p[name]
        return f"{q['a']:+.3f} → {q['b']:+.3f} (Δ {q['diff']:+.3f} ± {q['se']:.3f}, n={q['n']})"

    lines = [
        "| run | on-policy reward (last steps) | held-out acc (end) | held-out work (end) | grad norm mean–max "
        "| entropy (end) | cos(g+, g−): before → after the masks | cos with g−: masked → kept positives |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, values in per_seed.items():
        grad = " / ".join(f"{v['grad_norm_mean']:.3f}–{v['grad_norm_max']:.3f}" for v in values.values())
        lines.append(
            f"| {name} | {seeds(values, 'final_rollout_reward')} | {seeds(values, 'held_out_acc_end')} "
            f"| {seeds(values, 'held_out_work_end')} | {grad} | {seeds(values, 'entropy_end')} "
            f"| {pair(pooled[name], 'before_after')} | {pair(pooled[name], 'masked_kept_pos')} |"
        )
    first = next(iter(per_seed.values()))
    lines.append(
        f"| start model (step 0) | – | {seeds(first, 'held_out_acc_start')} | {seeds(first, 'held_out_work_start')} "
        f"| – | – | {pair(start, 'before_after')} | {pair(start, 'masked_kept_pos')} |"
    )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="outputs/cpu_rectification", help="output directory")
    parser.add_argument("--steps", type=int, default=20, help="training steps per run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="one run of each kind per seed")
    parser.add_argument("--runs", nargs="+", choices=list(RUNS), default=list(RUNS), help="which runs to train")
    parser.add_argument("--lr", type=float, default=3e-4, help="actor learning rate")
    parser.add_argument("--ppo-epochs", type=int, default=1, help="passes over each batch")
    parser.add_argument("--val-every", type=int, default=10, help="held-out validation every N steps (and at 0)")
    parser.add_argument("--conflict-every", type=int, default=10, help="save and measure the policy every N steps")
    parser.add_argument("--conflict-prompts", type=int, default=16, help="groups the meter samples per policy")
    parser.add_argument("--warm-steps", type=int, default=200, help="supervised warm-start batches")
    parser.add_argument("--max-operand", type=int, default=4, help="a, b, c in 0..max_operand")
    parser.add_argument("--val-frac", type=float, default=0.3, help="share of the (a, b, c) combinations held out")
    parser.add_argument("--last", type=int, default=10, help="steps averaged for the final on-policy reward")
    parser.add_argument(
        "--resume", action="store_true", help="keep runs already finished with the same command (and measured) in --out"
    )
    parser.add_argument("overrides", nargs="*", help="extra hydra overrides for every run")
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error("--steps must be >= 1")

    out = Path(args.out).resolve()
    started_all = time.perf_counter()
    train, val = write_chain_task(out / "data", max_operand=args.max_operand, val_frac=args.val_frac)
    model = warm_start(build_tiny_qwen2(out / "tiny"), out / "start", train, steps=args.warm_steps)

    frames: dict[str, list[pd.DataFrame]] = {name: [] for name in args.runs}
    per_seed: dict[str, dict[int, dict]] = {name: {} for name in args.runs}
    run_dirs: dict[str, list[Path]] = {name: [] for name in args.runs}

    def collect(name: str, seed: int, run_dir: Path, timing: dict) -> None:
        frame = load_metrics(run_dir)  # the run's metrics.jsonl joined with the meter's per-step output
        frames[name].append(frame)
        run_dirs[name].append(run_dir)
        per_seed[name][seed] = s = {**run_summary(frame, args.last), **timing}
        print(
            f"[{name}, seed {seed}] {s['train_s']:.0f} s training + {s['conflict_s']:.0f} s meter; on-policy reward"
            f" {s['final_rollout_reward']:.3f}, held-out acc {s['held_out_acc_start']:.3f} -> "
            f"{s['held_out_acc_end']:.3f}, cos(g+,g-) {s['cos_before_end']:+.3f} before / "
            f"{s['cos_after_end']:+.3f} after the masks",
            flush=True,
        )

    def finish(job: _MeterJob, name: str, seed: int, train_s: float) -> None:
        timing = {"train_s": round(train_s, 1), "conflict_s": round(job.wait(), 1)}
        (job.run_dir / "timing.json").write_text(json.dumps(timing))
        collect(name, seed, job.run_dir, timing)

    measuring = None  # the meter of the previous run, measuring while this one trains
    for seed in args.seeds:
        for name in args.runs:
            run_dir = out / f"{_slug(name)}-seed{seed}"
            command = run_command(
                model,
                train,
                val,
                run_dir,
                steps=args.steps,
                seed=seed,
                lr=args.lr,
                ppo_epochs=args.ppo_epochs,
                val_every=args.val_every,
                save_every=args.conflict_every,
                algorithm=RUNS[name],
                extra=args.overrides,
            )
            timing_file = run_dir / "timing.json"
            if args.resume and _already_done(run_dir, command, args.steps) and timing_file.is_file():
                print(f"\n[{name}, seed {seed}] kept the finished run in {run_dir}", flush=True)
                collect(name, seed, run_dir, json.loads(timing_file.read_text()))
                continue
            print(f"\n[{name}, seed {seed}] {' '.join(command)}", flush=True)
            started = time.perf_counter()
            # one metrics line per step, plus step 0 (validation before training)
            train_run(f"{name} seed {seed}", command, run_dir, args.steps + 1, 0)
            train_s = time.perf_counter() - started
            if measuring is not None:
                finish(*measuring)
            measuring = (_MeterJob(run_dir, args.conflict_prompts, seed), name, seed, train_s)
    if measuring is not None:
        finish(*measuring)

    suffix = "" if len(args.seeds) == 1 else f" (mean of {len(args.seeds)} seeds)"
    written = plot_runs({name + suffix: seed_mean(fs) for name, fs in frames.items()}, out / "plots")
    summary = {
        "steps": args.steps,
        "seeds": args.seeds,
        "lr": args.lr,
        "ppo_epochs": args.ppo_epochs,
        "warm_steps": args.warm_steps,
        "max_operand": args.max_operand,
        "val_frac": args.val_frac,
        "last": args.last,
        "per_seed": per_seed,
        "mean": {name: pd.DataFrame(v.values()).mean(numeric_only=True).to_dict() for name, v in per_seed.items()},
        # the meter's per-group values over all seeds: the trained policies of each run kind, and the start model
        "conflict_pooled": {name: pooled_conflict(dirs, trained=True) for name, dirs in run_dirs.items()},
        "conflict_start": pooled_conflict(next(iter(run_dirs.values())), trained=False),
        "wall_s": round(time.perf_counter() - started_all, 1),
        "plots": {name: str(path) for name, path in written.items()},
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    table = markdown_table(per_seed, summary["conflict_pooled"], summary["conflict_start"])
    (out / "table.md").write_text(table)
    print("\n" + table)
    print("\nper seed: final on-policy reward | held-out acc end | cos before/after (end policy)")
    for name, seeds in per_seed.items():
        print(
            f"  {name:<20} "
            + "  ".join(
                f"seed {k}: {v['final_rollout_reward']:.3f} | {v['held_out_acc_end']:.3f} | "
                f"{v['cos_before_end']:+.2f}/{v['cos_after_end']:+.2f}"
                for k, v in seeds.items()
            )
        )
    for path in written.values():
        print(f"wrote {path}")
    print(f"wrote {out / 'summary.json'}, {out / 'table.md'} ({summary['wall_s']:.0f} s in all)")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
