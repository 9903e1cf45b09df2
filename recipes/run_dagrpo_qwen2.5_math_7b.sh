#!/usr/bin/env bash
# DaGRPO on Qwen2.5-Math-7B with the paper's settings: delta=3, LLM judge, one off-policy anchor
# (the expert answer) mixed into every group that has one (trigger "always", as LUFFY), trained
# with LUFFY's policy shaping (gamma=0.1).
#
#   bash recipes/serve_judge.sh &        # or JUDGE_BASE_URL=... for a hosted API
#   MODEL_PATH=Qwen/Qwen2.5-Math-7B TRAIN_FILE=data/openr1/train.parquet \
#       bash recipes/run_dagrpo_qwen2.5_math_7b.sh [hydra overrides]
#
# Environment variables: see recipes/common.sh.
RECIPE=${RECIPE:-dagrpo_qwen2.5_math_7b}
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

launch dagrpo_verl.main \
    "${PAPER_ARGS[@]}" \
    algorithm.adv_estimator=dagrpo \
    algorithm.dagrpo.delta=3.0 \
    algorithm.dagrpo.rectification=true \
    algorithm.dagrpo.anchor.enable=true \
    algorithm.dagrpo.anchor.trigger=always \
    algorithm.dagrpo.anchor.num_anchors=1 \
    algorithm.dagrpo.anchor.mode=replace \
    actor_rollout_ref.actor.policy_loss._target_=dagrpo_verl.config.DaGRPOPolicyLossConfig \
    actor_rollout_ref.actor.policy_loss.loss_mode=dagrpo \
    actor_rollout_ref.actor.policy_loss.off_policy_gamma=0.1 \
    reward.custom_reward_function.path=pkg://dagrpo_verl.reward \
    reward.custom_reward_function.name=compute_score \
    "${JUDGE_ARGS[@]}" \
    "$@"
