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
"""Names DaGRPO adds to verl: the per-sample fields of its batches, the registered estimator and
loss, the config block and the metric prefix.

One place for every name, so the reward function, the anchor mixer, the trainer
hooks, the start-up checks and the estimator agree.
"""

#: ``algorithm.adv_estimator`` of the registered DaGRPO advantage estimator (``register_adv_est``).
DAGRPO_ESTIMATOR = "dagrpo"

#: ``actor_rollout_ref.actor.policy_loss.loss_mode`` of the registered DaGRPO policy loss (``register_policy_loss``).
DAGRPO_LOSS_MODE = "dagrpo"

#: Key of the DaGRPO settings in verl's ``algorithm`` config: ``algorithm.dagrpo``.
ALGORITHM_BLOCK = "dagrpo"

#: Prefix of DaGRPO's metrics (``dagrpo/pos_masked_frac`` ...; the loss's arrive as ``actor/dagrpo/...``).
METRIC_PREFIX = "dagrpo/"

#: Reward extra-info key (returned by ``dagrpo_verl.reward.compute_score``): the judge score
#: S in [1, 10] of one response, NaN when the judge gave none. Float per sample.
JUDGE_SCORE = "judge_score"

#: Reward extra-info key: 1.0 iff the final answer is correct (math-verify). Float per sample.
ACC = "acc"

#: Reward extra-info key: 1.0 iff grading the response ran past its time bound
#: (``reward_kwargs.grading.timeout_s``; the answer then scores 0), else 0.0. Float per sample;
#: its sum over a batch is the number of grade timeouts (log it as ``reward/grade_timeouts``).
GRADE_TIMEOUT = "grade_timeout"

#: Reward extra-info key: 1.0 iff the grader failed on the response (raised, ran out of memory,
#: its process died; the answer then scores 0), else 0.0. Float per sample.
GRADE_ERROR = "grade_error"

#: Reward extra-info key: 1.0 iff scoring the sample raised outside the grader and the judge (a
#: data row the reward cannot read, such as a null ground truth, or a bug); the sample then
#: scores 0 with a missing judge score, else 0.0. Float per sample; its batch sum is logged as
#: ``reward/errors`` and bounded per step by ``reward_kwargs.max_error_frac``
#: (:mod:`dagrpo_verl.reward`).
REWARD_ERROR = "reward_error"

#: Per-sample flag (non_tensor_batch / TransferQueue field / reward ``extra_info``):
#: True iff the response is an off-policy anchor (expert solution), not a rollout.
IS_ANCHOR = "is_anchor"

#: Flag inside a sample's ``extra_info`` (set by the DaGRPO agent loops for validation samples,
#: seen by the reward function): True iff the response answers a validation prompt. Its judge
#: score feeds no advantage, so ``dagrpo_verl.reward`` makes no judge call for it unless
#: ``reward_kwargs.judge_validation=true``.
IS_VALIDATION = "is_validation"

#: Flag inside a sample's ``extra_info`` (set by the DaGRPO agent loops on every training sample,
#: whatever the data row holds; ``python -m dagrpo_verl.data.prepare`` refuses it in data): True iff the
#: agent loop sets the sample's judge score itself, after the group is graded and anchors are mixed (lazy
#: group judging, :mod:`dagrpo_verl.judge.group`), so ``dagrpo_verl.reward`` grades it but makes no judge call.
JUDGE_DEFERRED = "judge_deferred"

#: Key of a sample's agent-loop ``extra_fields`` (v1) / ``non_tensor_batch`` column (legacy): the
#: ``judge/*`` counters of its group's judge calls (``JudgeStats.to_record``), on one sample per
#: group (None on the others). The trainer and the estimator merge them into the step's metrics.
JUDGE_STATS = "judge_stats"

#: Key inside a data row's ``extra_info`` holding the expert solution text (the anchor,
#: and the judge's reference solution o_demo).
ANCHOR_TEXT = "anchor"

#: Per-sample counter written by the anchor mixer (TransferQueue field / non_tensor_batch,
#: only when ``algorithm.dagrpo.anchor.enable``): number of anchors of the sample's ``uid``
#: group that failed verification (used or skipped); the same on every sample of the group.
ANCHOR_FAILED = "anchor_failed"

#: Key inside a data row's ``extra_info`` holding the problem statement shown to the judge
#: (``python -m dagrpo_verl.data.prepare`` copies the last user message there).
QUESTION = "question"
