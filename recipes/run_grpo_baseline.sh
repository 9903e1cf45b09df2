#!/usr/bin/env bash
# Baseline: plain verl GRPO (verl.trainer.main_ppo, adv_estimator=grpo, vanilla PPO loss) with the
# paper's settings (Dr.GRPO: no std, no KL, seq-mean-token-sum-norm). The reward is the same binary
# math-verify reward as DaGRPO's, with the judge switched off (backend none): no judge server needed.
#
#   MODEL_PATH=... TRAIN_FILE=... bash recipes/run_grpo_baseline.sh [hydra overrides]
#
# Environment variables: see recipes/common.sh.
RECIPE=${RECIPE:-grpo_baseline}
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

launch verl.trainer.main_ppo \
    "${PAPER_ARGS[@]}" \
    algorithm.adv_estimator=grpo \
    actor_rollout_ref.actor.policy_loss.loss_mode=vanilla \
    reward.custom_reward_function.path=pkg://dagrpo_verl.reward \
    reward.custom_reward_function.name=compute_score \
    ++reward.custom_reward_function.reward_kwargs.judge.backend=none \
    "$@"
