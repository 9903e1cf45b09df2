#!/usr/bin/env bash
# DaGRPO on Qwen2.5-Math-7B with the paper's settings: delta=3, LLM judge, one off-policy anchor
# (the expert answer) mixed into every group that has one (trigger "always", as LUFFY), trained
# with LUFFY's policy shaping (gamma=0.1).
#
#   bash scripts/serve_judge.sh &        # or JUDGE_BASE_URL=... for a hosted API
#   TRAIN_FILE=data/openr1/train.parquet bash recipes/run_dagrpo_qwen2.5_math_7b.sh [hydra overrides]
#
# Environment variables: see recipes/common.sh (MODEL_PATH defaults to the 16k-context variant of
# Qwen2.5-Math-7B: the original's 4,096-token context cannot hold 1024 + 8192 tokens). On a new GPU
# node run recipes/gpu_smoke.sh first.
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
