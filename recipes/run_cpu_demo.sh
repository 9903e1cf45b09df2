#!/usr/bin/env bash
# CPU demo (the README's main job): GRPO vs DaGRPO through verl 0.9.1's real trainer on 2 CPU cores,
# embedded tiny Qwen2, synthetic hard task with expert anchors. No GPU, no download.
#
#   bash recipes/run_cpu_demo.sh                       # 1 seed, 40 steps per run (~5 min on 2 cores)
#   SEEDS="0 1 2" bash recipes/run_cpu_demo.sh         # the 3-seed comparison (~14 min)
#   STEPS=2 bash recipes/run_cpu_demo.sh               # smoke run
#   bash recipes/run_cpu_demo.sh -- trainer.total_training_steps=10   # extra hydra overrides after --
#
# Environment: OUT_DIR [outputs/cpu_demo], STEPS [40], SEEDS [0], MODEL [tiny|smollm2], PYTHON [python3].
# Writes $OUT_DIR/{grpo,dagrpo}-seed*/metrics.jsonl, $OUT_DIR/plots/*.png and $OUT_DIR/summary.json.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT_DIR=${OUT_DIR:-outputs/cpu_demo}
STEPS=${STEPS:-40}
SEEDS=${SEEDS:-0}
MODEL=${MODEL:-tiny}
PYTHON=${PYTHON:-python3}

# shellcheck disable=SC2086  # SEEDS is a list
cmd=("$PYTHON" -m dagrpo_verl.cpu.demo --out "$OUT_DIR" --steps "$STEPS" --seeds $SEEDS --model "$MODEL" "$@")
echo "+ ${cmd[*]}"
exec "${cmd[@]}"
