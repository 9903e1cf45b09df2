#!/usr/bin/env bash
# Ablation "DaGRPO w/o off-policy": the judge-based gradient rectification (delta=3) on the
# on-policy groups only; no anchors are mixed in. Same settings as the main recipe otherwise.
#
#   MODEL_PATH=... TRAIN_FILE=... bash recipes/run_dagrpo_no_offpolicy.sh [hydra overrides]
#
# Environment variables: see recipes/common.sh.
RECIPE=${RECIPE:-dagrpo_no_offpolicy}
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

launch dagrpo_verl.main \
    "${PAPER_ARGS[@]}" \
    algorithm.adv_estimator=dagrpo \
    algorithm.dagrpo.delta=3.0 \
    algorithm.dagrpo.rectification=true \
    algorithm.dagrpo.anchor.enable=false \
    actor_rollout_ref.actor.policy_loss._target_=dagrpo_verl.config.DaGRPOPolicyLossConfig \
    actor_rollout_ref.actor.policy_loss.loss_mode=dagrpo \
    reward.custom_reward_function.path=pkg://dagrpo_verl.reward \
    reward.custom_reward_function.name=compute_score \
    "${JUDGE_ARGS[@]}" \
    "$@"
