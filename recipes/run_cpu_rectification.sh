#!/usr/bin/env bash
# Rectification on its own, on 2 CPU cores: GRPO vs DaGRPO without anchors vs DaGRPO through verl 0.9.1's
# real trainer, on the chain-sums task (a + b + c with the work shown; a step-checking rule judge; the tiny
# Qwen2 warm-started by a short supervised pass). Every run's saved policies are measured by the
# gradient-conflict meter (python -m dagrpo_verl.conflict). No GPU, no download. docs/evidence.md.
#
#   SEEDS="0 1 2" bash recipes/run_cpu_rectification.sh   # the 3-seed comparison (9 runs)
#   bash recipes/run_cpu_rectification.sh                 # seed 0 only (3 runs)
#   STEPS=2 RUNS=GRPO bash recipes/run_cpu_rectification.sh   # smoke run
#   bash recipes/run_cpu_rectification.sh -- actor_rollout_ref.actor.optim.lr=3e-4   # extra hydra overrides
#
# Environment: OUT_DIR [outputs/cpu_rectification], STEPS [20], SEEDS [0], PYTHON [python3],
#              RUNS [all three; one run name, e.g. RUNS=GRPO, trains that kind only].
# Writes $OUT_DIR/<run>-seed*/{metrics.jsonl,conflict/}, $OUT_DIR/plots/*.png, summary.json, table.md.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT_DIR=${OUT_DIR:-outputs/cpu_rectification}
STEPS=${STEPS:-20}
SEEDS=${SEEDS:-0}
PYTHON=${PYTHON:-python3}

runs=()
if [[ -n "${RUNS:-}" ]]; then runs=(--runs "$RUNS"); fi
# shellcheck disable=SC2086  # SEEDS is a list
cmd=("$PYTHON" -m dagrpo_verl.cpu.rectification --out "$OUT_DIR" --steps "$STEPS" --seeds $SEEDS "${runs[@]}" "$@")
echo "+ ${cmd[*]}"
exec "${cmd[@]}"
