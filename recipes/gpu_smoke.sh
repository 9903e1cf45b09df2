#!/usr/bin/env bash
# The first thing to run on a GPU node: 2 DaGRPO steps of the paper recipe (same model, lengths,
# judge and anchors) at a small batch, no validation, no checkpoints; then the metrics to check
# with their healthy values (python -m dagrpo_verl.integration.diagnostics), exit status 1 if one is off:
#
#   judge/failures, dagrpo/missing_scores, judge/calls     the judge answers every response it is asked
#   dagrpo/onpolicy/response_length/clip_ratio              rollouts are not cut by the budget/context
#   dagrpo/onpolicy/rollout_probs_diff_mean, ..._pearson_corr   vLLM samples from the trained weights
#                                                           (on-policy rows only: anchors carry placeholders)
#   actor/dagrpo/anchor_token_frac, ..._shaped_ratio_mean  anchors reach the loss
#   actor/grad_norm                                         the update is finite
#
#   bash scripts/serve_judge.sh &          # or JUDGE_BASE_URL=... for a hosted API
#   TRAIN_FILE=data/openr1/train.parquet bash recipes/gpu_smoke.sh [hydra overrides]
#
# Environment: as recipes/common.sh, plus SMOKE_PROMPTS (prompts per step [16]); OUT_DIR
# [outputs/gpu_smoke]; VAL_FILES defaults to TRAIN_FILE (nothing is validated, verl still opens it).
# DRY_RUN=1 prints the training command and stops.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

export RECIPE=${RECIPE:-gpu_smoke}
export EXPERIMENT=${EXPERIMENT:-gpu_smoke}
export OUT_DIR=${OUT_DIR:-outputs/gpu_smoke}
export TRAIN_FILE=${TRAIN_FILE:-data/openr1/train.parquet}
export VAL_FILES=${VAL_FILES:-$TRAIN_FILE}
export VERL_FILE_LOGGER_PATH=${VERL_FILE_LOGGER_PATH:-$OUT_DIR/verl_metrics.jsonl}
SMOKE_PROMPTS=${SMOKE_PROMPTS:-16}
PYTHON=${PYTHON:-python3}

status=0
bash "$HERE/run_dagrpo_qwen2.5_math_7b.sh" \
    "data.train_batch_size=$SMOKE_PROMPTS" \
    "actor_rollout_ref.actor.ppo_mini_batch_size=$SMOKE_PROMPTS" \
    actor_rollout_ref.rollout.calculate_log_probs=true \
    trainer.total_training_steps=2 \
    trainer.val_before_train=false \
    trainer.test_freq=-1 \
    trainer.save_freq=-1 \
    trainer.resume_mode=disable \
    "trainer.logger=['console','file']" \
    "$@" || status=$?

if [[ "${DRY_RUN:-0}" == 1 ]]; then
    exit "$status"
fi
# also after a failed run: the steps it logged are the first thing to look at
if [[ -s "$VERL_FILE_LOGGER_PATH" ]]; then
    echo "== first-run checks of $VERL_FILE_LOGGER_PATH"
    if ! "$PYTHON" -m dagrpo_verl.integration.diagnostics "$VERL_FILE_LOGGER_PATH" && [[ "$status" == 0 ]]; then
        status=1
    fi
else
    echo "== no metrics in $VERL_FILE_LOGGER_PATH (training exited with status $status)" >&2
fi
exit "$status"
