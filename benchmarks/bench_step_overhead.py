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
"""What a DaGRPO training step costs besides the judge, by verl's ``timing_s/*`` stages.

    python benchmarks/bench_step_overhead.py                      # 4 configurations x 15 steps, ~12 min on 2 cores
    python benchmarks/bench_step_overhead.py --rounds 2           # each configuration twice, interleaved

Trains the CPU demo's task (:mod:`dagrpo_verl.cpu.demo`: tiny Qwen2, 8 prompts x 8 rollouts,
8 response tokens, 4 PPO epochs) through ``python -m dagrpo_verl.main +platform=cpu`` in four
configurations that add DaGRPO's parts one at a time:

* ``grpo_stock``: verl's ``grpo`` + ``vanilla``, verl's own agent loop, no judge call;
* ``grpo_holdback``: the same through DaGRPO's agent loop (each group held back until all its
  sessions settle), anchors off, no judge call;
* ``dagrpo_no_judge``: DaGRPO's estimator, anchors and mixed loss, judge off (``rectification=false``:
  no eq. 8-9 masks, nothing to wait for);
* ``dagrpo``: the demo's DaGRPO, with the rule judge (in-process, a few ms a call).

Every run's reward is the same math-verify grading (``pkg://dagrpo_verl.reward``). Prints the
median over steps 2.. (step 1 holds start-up work) of each ``timing_s/*`` stage per configuration
and its difference to ``grpo_stock``; the last line is JSON (also written to ``<out>/step_overhead.json``).
CPU timings move with the machine's load: compare configurations of the same round, and
repeat with ``--rounds``.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from dagrpo_verl.cpu.demo import RUNS, run_command, train_run
from dagrpo_verl.cpu.models import build_tiny_qwen2
from dagrpo_verl.data.synthetic import write_synthetic_task
from dagrpo_verl.eval.plot import load_metrics

NO_JUDGE = "reward.custom_reward_function.reward_kwargs.judge.backend=none"

#: Overrides per configuration, on top of the demo's command (dagrpo_verl/config/dagrpo_trainer.yaml).
CONFIGS: dict[str, list[str]] = {
    "grpo_stock": [*RUNS["GRPO"], "actor_rollout_ref.rollout.agent.agent_loop_manager_class=null", NO_JUDGE],
    "grpo_holdback": [*RUNS["GRPO"], NO_JUDGE],
    "dagrpo_no_judge": [*RUNS["DaGRPO"], "algorithm.dagrpo.rectification=false", NO_JUDGE],
    "dagrpo": [*RUNS["DaGRPO"]],
}

#: verl's stage timers of one step (``timing_s/step`` holds them all).
STAGES = ["gen", "old_log_prob", "adv", "update_actor", "update_weights", "step"]


def stage_medians(metrics_file: Path) -> dict[str, float]:
    """Median seconds of each :data:`STAGES` timer over steps 2.. of one run, plus tokens per step."""
    frame = load_metrics(metrics_file).iloc[1:]
    medians = {stage: float(frame[f"timing_s/{stage}"].median()) for stage in STAGES}
    medians["tokens"] = float(frame["perf/total_num_tokens"].median())
    return medians


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="outputs/bench_step_overhead", help="output directory")
    parser.add_argument("--steps", type=int, default=15, help="training steps per run (>= 3)")
    parser.add_argument("--rounds", type=int, default=1, help="runs per configuration, interleaved")
    parser.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=list(CONFIGS))
    parser.add_argument("--ppo-epochs", type=int, default=4, help="as the demo")
    args = parser.parse_args(argv)
    if args.steps < 3:
        parser.error("--steps must be >= 3 (step 1 is start-up; a median needs steps 2..)")

    out = Path(args.out).resolve()
    model = build_tiny_qwen2(out / "model")
    train, val = write_synthetic_task(out / "data", train=256, val=16, seed=0, max_operand=2, anchor_style="answer")
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in args.configs}
    for round_index in range(args.rounds):
        for name in args.configs:
            command = run_command(model, train, val, args.steps, 0, CONFIGS[name], args.ppo_epochs, [])
            run_dir = out / f"{name}-round{round_index}"
            train_run(f"{name} (round {round_index + 1})", command, run_dir, args.steps, 0)
            runs[name].append(stage_medians(run_dir / "metrics.jsonl"))

    # per configuration: median over rounds of the per-run medians
    table = {name: {key: statistics.median(r[key] for r in rs) for key in rs[0]} for name, rs in runs.items()}
    base = table.get("grpo_stock")
    print(f"\nmedian seconds per step (steps 2..{args.steps}, {args.rounds} round(s)); (+x) = minus grpo_stock")
    print(f"  {'configuration':<16}" + "".join(f"{s:>12}{'':10}" for s in STAGES) + f"{'tokens':>9}")
    for name, row in table.items():
        cells = "".join(
            f"{row[s]:>12.3f}" + (f" ({row[s] - base[s]:+6.3f})" if base and name != "grpo_stock" else " " * 10)
            for s in STAGES
        )
        print(f"  {name:<16}{cells}{row['tokens']:>9.0f}")
    result = {"steps": args.steps, "rounds": args.rounds, "median_s": table, "runs": runs}
    (out / "step_overhead.json").write_text(json.dumps(result, indent=2))
    print(json.dumps({"median_s": table}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
