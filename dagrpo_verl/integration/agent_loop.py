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
"""Anchor mixing inside verl's agent loop: after a group is generated and rewarded,
before old log-probs.

Install (the key is not in verl's rollout YAML, hence the ``+`` in plain verl configs;
``dagrpo_verl/config/dagrpo_trainer.yaml`` declares it):

* v1 (TransferQueue) trainer, ``trainer.use_v1=true``:
  ``+actor_rollout_ref.rollout.agent.agent_loop_manager_class=dagrpo_verl.integration.agent_loop.DaGRPOAgentLoopManagerTQ``
* legacy ``RayPPOTrainer``, ``trainer.use_v1=false``:
  ``+actor_rollout_ref.rollout.agent.agent_loop_manager_class=dagrpo_verl.integration.agent_loop.DaGRPOAgentLoopManager``

Both read ``algorithm.dagrpo.anchor`` (:class:`dagrpo_verl.algo.settings.AnchorConfig`); the
decisions are the pure functions of :mod:`dagrpo_verl.algo.anchors`.

Every sample they emit carries

* ``is_anchor`` (:data:`dagrpo_verl.fields.IS_ANCHOR`): bool, True for an expert
  solution mixed into the group;
* ``judge_score`` (:data:`dagrpo_verl.fields.JUDGE_SCORE`): float32, the judge score S (NaN
  when there is none; see "Judging" below);
* only when ``anchor.enable``: ``anchor_failed`` (:data:`dagrpo_verl.fields.ANCHOR_FAILED`):
  int64, how many anchors of the sample's group failed verification (used or skipped),
  the same on every sample of the group - count it once per ``uid``.

v1: TransferQueue fields (0-d tensors, so a batch read gives ``(bs,)`` tensors).
Legacy: ``non_tensor_batch`` numpy arrays.

An anchor sample is a normal verl sample: the prompt tokens of the group's first
rollout, the response ``tokenizer.encode(expert_text) + [eos]`` cut to
``rollout.response_length`` (the layout of a rollout that stopped on eos), response
mask 1 on every response token, ``rollout_log_probs`` of zeros when the rollouts have
them (placeholder: exclude anchors with ``is_anchor``), rewarded by the configured
reward function with ``extra_info["is_anchor"] = True``. Validation batches get no
anchors. Anchors assume single-turn agent loops (the response is one assistant turn).

Every sample's ``extra_info`` also carries ``is_validation``
(:data:`dagrpo_verl.fields.IS_VALIDATION`, set here whatever the data row holds), so that the
reward function can skip the judge on validation responses.

Judging (lazy, per group). With the DaGRPO reward function (``pkg://dagrpo_verl.reward``) every
training sample's ``extra_info`` also carries ``judge_deferred`` (:data:`~dagrpo_verl.fields.JUDGE_DEFERRED`,
set here whatever the data row holds): the reward function only grades it, and the judge runs here,
once per group, after the group is graded and its anchors are mixed in (:class:`GroupJudging`,
:func:`dagrpo_verl.judge.group.judge_group`). In the v1 worker that is as soon as the group's last
session settles, while other groups are still being generated; in the legacy manager it is after the
whole batch. A group whose advantages are all zero after mixing
(:func:`dagrpo_verl.algo.core.group_needs_judge_scores`) makes no judge call: its responses are not needed
(``judge/skipped_not_needed``, S = NaN), which the estimator does not count as missing. The advantages
are those of judging every response (``algorithm.dagrpo.lazy_judge=false``). The counters of a group's
judge calls travel with its first sample (:data:`~dagrpo_verl.fields.JUDGE_STATS`). With another
reward function, the reward function's own ``judge_score`` is used.

Anchors (one rule, ``algorithm.dagrpo.anchor``): an anchor is the judge's reference, so with
``judge_anchors=false`` it gets ``max_score`` and no judge call; with ``judge_anchors=true`` it is
judged like a rollout (with lazy judging: only in a group that needs scores), and a judge failure
leaves its score missing (NaN, handled by ``on_missing_score``), never ``max_score``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import ray
import torch
import transfer_queue as tq
from verl.experimental.agent_loop import AgentLoopManager, AgentLoopOutput, AgentLoopWorker
from verl.experimental.agent_loop.agent_loop import AgentLoopMetrics
from verl.protocol import DataProto
from verl.trainer.ppo.v1.agent_loop_tq import AgentLoopManagerTQ, AgentLoopWorkerTQ, apply_greedy_sampling_params
from verl.utils.ray_utils import auto_await
from verl.utils.tensordict_utils import list_of_dict_to_tensordict

from dagrpo_verl.algo import core
from dagrpo_verl.algo.anchors import (
    GroupPlan,
    anchor_setup_problem,
    plan_anchor_groups,
    rollout_correct,
    skip_failed_anchors,
)
from dagrpo_verl.algo.settings import AnchorConfig, dagrpo_config_from
from dagrpo_verl.fields import (
    ACC,
    ANCHOR_FAILED,
    ANCHOR_TEXT,
    DAGRPO_ESTIMATOR,
    IS_ANCHOR,
    IS_VALIDATION,
    JUDGE_DEFERRED,
    JUDGE_SCORE,
    JUDGE_STATS,
    REWARD_ERROR,
)
from dagrpo_verl.integration.capabilities import group_transform_supported
from dagrpo_verl.judge import get_judge
from dagrpo_verl.judge.config import JudgeConfig
from dagrpo_verl.judge.group import judge_group, stats_record
from dagrpo_verl.reward import is_dagrpo_reward, judge_config_of, judge_item

logger = logging.getLogger(__name__)
logger.setLevel(os.getenv("VERL_LOGGING_LEVEL", "INFO"))

__all__ = [
    "AnchorMixer",
    "DaGRPOAgentLoopManager",
    "DaGRPOAgentLoopManagerTQ",
    "DaGRPOAgentLoopWorker",
    "DaGRPOAgentLoopWorkerTQ",
    "DaGRPOGroupWorkerTQ",
    "GroupJudging",
    "anchor_response_ids",
    "anchor_text_of",
    "check_anchor_setup",
    "group_judging_of",
    "with_trainer_flags",
]

# Keys of an output's extra_fields that belong to the rollout itself, not to its prompt.
_ROLLOUT_ONLY_EXTRA_FIELDS = ("reward_extra_info", "teacher_ids", "teacher_logprobs", JUDGE_STATS)


# ----------------------------------------------------------------------------- shared helpers


def anchor_text_of(extra_info: Any) -> str | None:
    """The expert solution in a row's ``extra_info`` (key :data:`~dagrpo_verl.fields.ANCHOR_TEXT`), or None."""
    if not isinstance(extra_info, dict):
        return None
    text = extra_info.get(ANCHOR_TEXT)
    return text if isinstance(text, str) and text.strip() else None


def anchor_response_ids(tokenizer: Any, text: str, response_length: int) -> list[int]:
    """Response token ids of an anchor: ``encode(text) + [eos]``, cut to ``response_length``.

    Rollouts stop on the eos token and keep it in their response, so the anchor ends
    the same way; an anchor longer than ``response_length`` is cut like a rollout that
    hit the length limit (no eos).
    """
    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has no eos_token_id; anchors need one to end their response.")
    ids = list(tokenizer.encode(text, add_special_tokens=False)) + [int(tokenizer.eos_token_id)]
    return ids[:response_length]


def with_trainer_flags(extra_info: Any, validate: bool, judge_deferred: bool) -> dict:
    """A copy of a row's ``extra_info`` with the flags the trainer sets itself, whatever the row holds:
    :data:`~dagrpo_verl.fields.IS_VALIDATION` (the reward function skips the judge on validation samples)
    and :data:`~dagrpo_verl.fields.JUDGE_DEFERRED` (the agent loop judges the sample's group itself)."""
    flags = {IS_VALIDATION: bool(validate), JUDGE_DEFERRED: bool(judge_deferred)}
    return {**(extra_info if isinstance(extra_info, dict) else {}), **flags}


@dataclass(frozen=True)
class GroupJudging:
    """How the DaGRPO agent loops judge a training group (see the module docstring, "Judging").

    Attributes:
        judge: the judge settings of ``reward.custom_reward_function.reward_kwargs.judge``.
        lazy: ``algorithm.dagrpo.lazy_judge``: judge only groups where a score can change an advantage.
        scores_used: whether any advantage reads the scores (``algorithm.adv_estimator=dagrpo`` with
            ``algorithm.dagrpo.rectification=true``); without, no group needs them.
        judge_anchors: ``algorithm.dagrpo.anchor.judge_anchors``.
    """

    judge: JudgeConfig
    lazy: bool
    scores_used: bool
    judge_anchors: bool

    def needed(self, rewards: list) -> bool:
        """Whether a group with these sequence rewards (all its samples, anchors included) is judged."""
        if not self.lazy:
            return True
        if not self.scores_used:
            return False
        if any(r is None for r in rewards):  # no reward to decide on: judge (never guess "not needed")
            return True
        return core.group_needs_judge_scores([float(r) for r in rewards])


def group_judging_of(config: Any) -> GroupJudging | None:
    """The :class:`GroupJudging` of a trainer config, or None when the reward function is not
    ``dagrpo_verl.reward`` (a user reward function judges, or not, on its own)."""
    reward = config.reward.custom_reward_function
    if not is_dagrpo_reward(reward.get("path", None)):
        return None
    settings = dagrpo_config_from(config.algorithm)
    return GroupJudging(
        judge=judge_config_of(reward.get("reward_kwargs", None)),
        lazy=settings.lazy_judge,
        scores_used=config.algorithm.get("adv_estimator", None) == DAGRPO_ESTIMATOR and settings.rectification,
        judge_anchors=settings.anchor.judge_anchors,
    )


def _reward_extra_info(output: AgentLoopOutput) -> dict:
    return output.extra_fields.get("reward_extra_info") or {}


def _judge_score(output: AgentLoopOutput) -> float:
    value = _reward_extra_info(output).get(JUDGE_SCORE)
    return float("nan") if value is None else float(value)


def _anchor_judge_score(score: float, config: AnchorConfig) -> float:
    """An anchor is the judge's reference: ``max_score`` unless anchors are judged, then the judge's score
    (NaN when the judge gave none: a failure is missing, never the maximum)."""
    return score if config.judge_anchors else float(config.max_score)


def _reward_failed(output: AgentLoopOutput) -> bool:
    """The reward function could not score the sample (``reward_error``): it gets no judge score either."""
    try:
        return float(_reward_extra_info(output).get(REWARD_ERROR) or 0.0) > 0
    except (TypeError, ValueError):
        return False


def _decode_response(tokenizer: Any, response_ids: Any) -> str:
    """The response text the reward function is given for these ids."""
    # mirrors verl 0.9.1 verl.experimental.reward_loop.reward_manager.naive:NaiveRewardManager.run_single (decode)
    return tokenizer.decode(response_ids, skip_special_tokens=True)


def _as_judge_scores(values: Any, size: int) -> np.ndarray:
    """``(size,)`` float32 judge scores from a reward extra-info array (None -> NaN); all NaN when absent."""
    if values is None:
        return np.full(size, np.nan, dtype=np.float32)
    return np.array([np.nan if v is None else float(v) for v in np.asarray(values, dtype=object)], dtype=np.float32)


def check_anchor_setup(config: Any, *, legacy: bool, reward_loop_worker_handles: Any) -> AnchorConfig:
    """Validate the anchor settings against the rest of the verl config before any rollout.

    Raises:
        ValueError: naming the key and the fix, when anchors cannot work with this setup.
    """
    anchor = dagrpo_config_from(config.algorithm).anchor
    manager = "DaGRPOAgentLoopManager" if legacy else "DaGRPOAgentLoopManagerTQ"
    use_v1 = bool(config.trainer.get("use_v1", True))
    if use_v1 == legacy:
        other = "DaGRPOAgentLoopManagerTQ" if legacy else "DaGRPOAgentLoopManager"
        raise ValueError(
            f"dagrpo_verl.integration.agent_loop.{manager} is for trainer.use_v1={str(not legacy).lower()}, but "
            f"trainer.use_v1={str(use_v1).lower()}; set actor_rollout_ref.rollout.agent.agent_loop_manager_class="
            f"dagrpo_verl.integration.agent_loop.{other}."
        )
    if not anchor.enable:
        return anchor
    if reward_loop_worker_handles is None:
        raise ValueError(
            "algorithm.dagrpo.anchor.enable=true needs rewards inside the agent loop (reward loop workers), but "
            "verl computes them later with a colocated reward model (reward.reward_model.enable=true without "
            "enable_resource_pool). Use a reward function (reward.custom_reward_function) or "
            "reward.reward_model.enable_resource_pool=true, or set algorithm.dagrpo.anchor.enable=false."
        )
    problem = anchor_setup_problem(anchor, int(config.actor_rollout_ref.rollout.n), legacy=legacy)
    if problem is not None:
        raise ValueError(problem)
    return anchor


# ----------------------------------------------------------------------------- v1 (TransferQueue)


@dataclass
class _Session:
    """All outputs of one agent-loop session (one of the group's n samples), rewarded, not yet in TransferQueue."""

    session_id: int
    outputs: list[AgentLoopOutput]
    kwargs: dict[str, Any]
    is_anchor: bool = False
    judge_score: float = field(default=float("nan"))


class _AnchorMixing:
    """Anchor mixing of one settled group, shared by the worker of verl 0.9.1
    (:class:`DaGRPOAgentLoopWorkerTQ`) and the group transform of a verl with the hook
    (:class:`AnchorMixer`). Needs ``anchor_config``, ``tokenizer``, ``rollout_config`` and
    ``_score(outputs, validate, kwargs)`` (reward and teacher step of a session)."""

    anchor_config: AnchorConfig
    group_judging: GroupJudging | None

    async def _score(self, outputs: list[AgentLoopOutput], validate: bool, kwargs: dict) -> None:
        raise NotImplementedError

    def _defers_judging(self, validate: bool) -> bool:
        """Whether this loop judges the training group itself (:data:`~dagrpo_verl.fields.JUDGE_DEFERRED`)."""
        return self.group_judging is not None and not validate

    async def _judge_group(self, sessions: list[_Session]) -> None:
        """Judge scores of one settled, mixed training group whose judging was deferred to this loop, in place:
        :func:`~dagrpo_verl.judge.group.judge_group` over its rollouts (and anchors when they are judged), only
        when a score can change an advantage; the group's judge counters go with its first sample."""
        judging = self.group_judging
        if judging is None or not sessions:
            return
        rollouts = [s for s in sessions if not s.is_anchor]
        template = (rollouts or sessions)[0].kwargs.get("extra_info")
        if not (isinstance(template, dict) and template.get(JUDGE_DEFERRED)):
            return  # the reward function judged (verl's own worker with the group transform)
        finals = [s.outputs[-1] for s in sessions]
        targets = [
            i
            for i, session in enumerate(sessions)
            if (judging.judge_anchors or not session.is_anchor) and not _reward_failed(finals[i])
        ]
        needed = judging.needed([o.reward_score for o in finals])
        items = await asyncio.gather(*(self._judge_item(sessions[i]) for i in targets)) if needed else targets
        result = await judge_group(get_judge(judging.judge), items, needed=needed)
        for i, score in zip(targets, result.scores, strict=True):
            sessions[i].judge_score = float(score)
        sessions[0].outputs[0].extra_fields[JUDGE_STATS] = stats_record(result.stats)

    async def _judge_item(self, session: _Session) -> Any:
        """The judge request of a session's final output, as the reward function would send it (None when
        the row cannot be read: the judge counts it as a failure)."""
        kwargs = session.kwargs
        try:
            text = await asyncio.get_running_loop().run_in_executor(
                None, _decode_response, self.tokenizer, session.outputs[-1].response_ids
            )
            return judge_item(
                kwargs.get("data_source"), text, kwargs["reward_model"]["ground_truth"], kwargs.get("extra_info")
            )
        except Exception:  # counted by the judge (internal_errors) and logged here
            logger.exception("uid=%s: the judge request of a response could not be built", kwargs.get("uid"))
            return None

    def _dagrpo_fields(self, session: _Session, failed: int) -> dict[str, torch.Tensor]:
        """The DaGRPO fields put with every output of ``session`` (see the module docstring)."""
        fields = {
            IS_ANCHOR: torch.tensor(session.is_anchor),
            JUDGE_SCORE: torch.tensor(session.judge_score, dtype=torch.float32),
        }
        if self.anchor_config.enable:
            fields[ANCHOR_FAILED] = torch.tensor(failed, dtype=torch.int64)
        return fields

    async def _mix_anchors(self, sessions: list[_Session], n: int) -> tuple[list[_Session], int]:
        """Apply the group's :class:`~dagrpo_verl.algo.anchors.GroupPlan`.

        Returns:
            ``(sessions, failed)``: the group's sessions with anchors replacing or appended to
            rollouts, and the number of anchors that failed verification.
        """
        sessions = sorted(sessions, key=lambda s: s.session_id)
        finals = [s.outputs[-1] for s in sessions]
        if any(o.reward_score is None for o in finals):
            raise ValueError(
                f"uid={sessions[0].kwargs['uid']}: a rollout has no reward score; anchor mixing needs the reward "
                "inside the agent loop (see check_anchor_setup)."
            )
        text = anchor_text_of(sessions[0].kwargs.get("extra_info"))
        (plan,) = plan_anchor_groups(
            uids=[s.kwargs["uid"] for s in sessions],
            rewards=[o.reward_score for o in finals],
            correct=rollout_correct([o.reward_score for o in finals], [_reward_extra_info(o).get(ACC) for o in finals]),
            has_anchor=[text is not None] * len(sessions),
            config=self.anchor_config,
            tiebreak=[s.session_id for s in sessions],
        )
        if plan.num_anchors == 0:
            return sessions, 0
        anchor = await self._build_anchor(sessions[0], text)
        score, acc = anchor.outputs[-1].reward_score, _reward_extra_info(anchor.outputs[-1]).get(ACC)
        plan, failed = skip_failed_anchors(plan, bool(rollout_correct([score], [acc])[0]), self.anchor_config)
        return self._place_anchors(sessions, anchor, plan, n), failed

    async def _build_anchor(self, template: _Session, text: str) -> _Session:
        """One rewarded anchor session with the prompt tokens of ``template``'s first output."""
        rollout = template.outputs[0]
        if rollout.routed_experts is not None:
            raise NotImplementedError(
                "anchors with router replay (routed_experts) are not supported: an expert solution has no routing "
                "record. Set algorithm.dagrpo.anchor.enable=false or disable router replay."
            )
        response_ids = await asyncio.get_running_loop().run_in_executor(
            None, anchor_response_ids, self.tokenizer, text, self.rollout_config.response_length
        )
        output = rollout.model_copy(
            update={
                "response_ids": response_ids,
                "response_mask": [1] * len(response_ids),
                "response_logprobs": None if rollout.response_logprobs is None else [0.0] * len(response_ids),
                "reward_score": None,
                "metrics": AgentLoopMetrics(),
                "extra_fields": {k: v for k, v in rollout.extra_fields.items() if k not in _ROLLOUT_ONLY_EXTRA_FIELDS},
            }
        )
        extra_info = {**template.kwargs["extra_info"], IS_ANCHOR: True}
        if not self.anchor_config.judge_anchors:
            extra_info[JUDGE_DEFERRED] = True  # its score is max_score: no judge call in the reward function
        kwargs = dict(template.kwargs, extra_info=extra_info)
        await self._score([output], validate=False, kwargs=kwargs)
        score = _anchor_judge_score(_judge_score(output), self.anchor_config)
        return _Session(-1, [output], kwargs, is_anchor=True, judge_score=score)

    @staticmethod
    def _place_anchors(sessions: list[_Session], anchor: _Session, plan: GroupPlan, n: int) -> list[_Session]:
        """Copies of ``anchor`` under the replaced rollouts' session ids (replace) or ids n, n+1, ... (append)."""
        if plan.num_anchors == 0:
            return sessions
        if plan.replace_rows.size:
            session_ids = [sessions[row].session_id for row in plan.replace_rows]
        else:
            session_ids = list(range(n, n + plan.num_anchors))
        kept = [s for s in sessions if s.session_id not in set(session_ids)]
        copies = [
            _Session(
                sid,
                [o.model_copy(deep=True) for o in anchor.outputs],
                dict(anchor.kwargs, session_id=sid),
                is_anchor=True,
                judge_score=anchor.judge_score,
            )
            for sid in session_ids
        ]
        return kept + copies


class DaGRPOAgentLoopWorkerTQ(_AnchorMixing, AgentLoopWorkerTQ.__ray_actor_class__):
    """verl's ``AgentLoopWorkerTQ`` that holds a group back until all its sessions settle,
    mixes anchors, and only then puts the group into TransferQueue.

    Overrides ``_run_prompt`` (verl 0.9.1 ``verl/trainer/ppo/v1/agent_loop_tq.py``) and
    ``_agent_loop_postprocess`` (the same file: it scores and returns the session instead of
    putting it). Keys, fields and tags put into TransferQueue are those of verl's worker
    (``{uid}_{session_id}_{index}``) plus the DaGRPO fields; an anchor that replaces a
    rollout takes that rollout's session id, appended anchors take session ids n, n+1, ...
    A group whose sessions partly failed keeps verl's semantics (status ``failure``, the
    finished sessions are put) and gets anchors over its finished sessions.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.anchor_config = dagrpo_config_from(self.config.algorithm).anchor
        self.group_judging = group_judging_of(self.config)

    async def _run_prompt(self, prompt: dict, sampling_params: dict, trajectory: dict, trace: bool = False) -> None:
        """Run the n sessions of one prompt, then mix anchors, judge and put the whole group (see the class doc)."""
        # mirrors verl 0.9.1 verl.trainer.ppo.v1.agent_loop_tq:AgentLoopWorkerTQ._run_prompt
        uid, validate = prompt["uid"], trajectory["validate"]
        prompt["extra_info"] = with_trainer_flags(prompt.get("extra_info"), validate, self._defers_judging(validate))
        partition_id = "val" if validate else "train"
        await tq.async_kv_put(key=uid, partition_id=partition_id, tag={"status": "running"})
        tasks = []
        try:
            config = self.config.actor_rollout_ref.rollout
            n = prompt.pop("__rollout_n__", config.val_kwargs.n if validate else config.n)
            do_sample = prompt.pop("__do_sample__", True)
            run_sampling_params = dict(sampling_params)
            if not validate and not do_sample:
                apply_greedy_sampling_params(run_sampling_params)
            tasks = [
                asyncio.create_task(
                    self._run_agent_loop(
                        run_sampling_params, trajectory=trajectory, trace=trace, session_id=i, **prompt
                    )
                )
                for i in range(n)
            ]
            results = await asyncio.gather(*tasks, return_exceptions=True)
            errors = [r for r in results if isinstance(r, BaseException)]
            for error in errors:
                logger.error(f"Error in _run_prompt for uid={uid}", exc_info=(type(error), error, error.__traceback__))
            sessions = [r for r in results if isinstance(r, _Session)]
            if sessions:
                await self._put_group(sessions, n=n, validate=validate)
            status = "failure" if errors else "finished"
            await tq.async_kv_put(key=uid, partition_id=partition_id, tag={"status": status})
        except Exception as e:
            logger.exception(f"Error in _run_prompt for uid={uid}: {e}")
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
            await tq.async_kv_put(key=uid, partition_id=partition_id, tag={"status": "failure"})

    async def _agent_loop_postprocess(
        self, output: AgentLoopOutput | list[AgentLoopOutput], validate: bool, **kwargs
    ) -> _Session | None:
        """Score one session (reward, teacher log-probs) like verl's worker, and return it instead of putting it."""
        # mirrors verl 0.9.1 verl.trainer.ppo.v1.agent_loop_tq:AgentLoopWorkerTQ._agent_loop_postprocess (empty output)
        outputs = output if isinstance(output, list) else [output]
        if not outputs:
            logger.warning(f"Empty output for prompt {kwargs['uid']}_{kwargs['session_id']}")
            return None
        await self._score(outputs, validate, kwargs)
        return _Session(int(kwargs["session_id"]), outputs, kwargs, judge_score=_judge_score(outputs[-1]))

    async def _score(self, outputs: list[AgentLoopOutput], validate: bool, kwargs: dict) -> None:
        """verl's reward + teacher step of ``AgentLoopWorkerTQ._agent_loop_postprocess``; the last output's reward
        is copied to the session's other outputs."""
        # mirrors verl 0.9.1 verl.trainer.ppo.v1.agent_loop_tq:AgentLoopWorkerTQ._agent_loop_postprocess (scoring)
        await self._compute_score(outputs, kwargs=kwargs)
        final_output = outputs[-1]
        await self._compute_teacher_logprobs(
            final_output,
            prompt_ids=final_output.prompt_ids,
            response_ids=final_output.response_ids,
            validate=validate,
            sample_kwargs=kwargs,
        )
        if final_output.reward_score is not None:
            for output in outputs[:-1]:
                output.reward_score = final_output.reward_score
                output.extra_fields["reward_extra_info"] = final_output.extra_fields["reward_extra_info"]

    async def _put_group(self, sessions: list[_Session], *, n: int, validate: bool) -> None:
        """Mix anchors into one prompt's settled sessions and judge them (not for validation), and put all of them."""
        failed = 0
        if self.anchor_config.enable and not validate:
            sessions, failed = await self._mix_anchors(sessions, n)
        if not validate:
            await self._judge_group(sessions)
        keys, fields, tags = [], [], []
        for session in sessions:
            for i, output in enumerate(session.outputs):
                key, sample, tag = self._tq_sample(output, session.kwargs, i)
                sample.update(self._dagrpo_fields(session, failed))
                keys.append(key)
                fields.append(sample)
                tags.append(tag)
        await tq.async_kv_batch_put(
            keys=keys, fields=list_of_dict_to_tensordict(fields), tags=tags, partition_id="val" if validate else "train"
        )

    def _tq_sample(self, output: AgentLoopOutput, kwargs: dict, index: int) -> tuple[str, dict, dict]:
        """Key, fields and tag of one output, exactly as verl's ``AgentLoopWorkerTQ._agent_loop_postprocess``
        builds them (verl 0.9.1)."""
        # mirrors verl 0.9.1 verl.trainer.ppo.v1.agent_loop_tq:AgentLoopWorkerTQ._agent_loop_postprocess (sample, tag)
        prompts = torch.tensor(output.prompt_ids, dtype=torch.int64)
        responses = torch.tensor(output.response_ids, dtype=torch.int64)
        input_ids = torch.cat([prompts, responses], dim=0)
        attention_mask = torch.ones_like(input_ids, dtype=torch.int64)
        multi_modal_inputs = self._compute_multi_modal_inputs(output, input_ids)
        position_ids = self._compute_position_ids(
            input_ids.unsqueeze(0), attention_mask.unsqueeze(0), multi_modal_inputs
        ).squeeze(0)

        sample = output.as_dict()
        sample.update(kwargs)
        sample.pop("multi_modal_data", None)
        sample["loss_mask"] = sample["response_mask"]
        sample["input_ids"] = input_ids
        sample["position_ids"] = position_ids
        sample["multi_modal_inputs"] = multi_modal_inputs
        prompt_len, response_len = sample["prompts"].size(0), sample["responses"].size(0)
        tag = {
            "status": "success",
            "prompt_len": prompt_len,
            "response_len": response_len,
            "seq_len": prompt_len + response_len,
            "global_steps": kwargs["global_steps"],
            "min_global_steps": sample["extra_fields"].get("min_global_steps"),
            "max_global_steps": sample["extra_fields"].get("max_global_steps"),
        }
        return f"{kwargs['uid']}_{kwargs['session_id']}_{index}", sample, tag


class AnchorMixer(_AnchorMixing):
    """Anchor mixing as verl's agent-loop group transform (a verl with ``upstream/0006``).

    ``actor_rollout_ref.rollout.agent.group_transform_class=dagrpo_verl.integration.agent_loop.AnchorMixer``, or
    :class:`DaGRPOAgentLoopManagerTQ`, which installs it on such a verl. verl's own worker holds each
    prompt's sessions until all are rewarded and calls the transform; it mixes anchors exactly as
    :class:`DaGRPOAgentLoopWorkerTQ` (same decisions, samples and fields) and returns the group with the
    DaGRPO fields of every sample in ``session.fields``. No code of verl's worker is copied.

    Args:
        config: the trainer config (reads ``algorithm.dagrpo.anchor`` and ``actor_rollout_ref.rollout.n``).
        worker: verl's ``AgentLoopWorkerTQ`` (``tokenizer``, ``rollout_config``, ``score_outputs``).
    """

    def __init__(self, config: Any, worker: Any):
        self.config = config
        self.worker = worker
        self.anchor_config = dagrpo_config_from(config.algorithm).anchor
        self.group_judging = group_judging_of(config)
        self.tokenizer = worker.tokenizer
        self.rollout_config = worker.rollout_config

    async def _score(self, outputs: list[AgentLoopOutput], validate: bool, kwargs: dict) -> None:
        await self.worker.score_outputs(outputs, validate, kwargs)

    async def __call__(self, group: Any) -> Any:
        """``AgentLoopGroup -> AgentLoopGroup`` (``verl.trainer.ppo.v1.agent_loop_tq``): anchors mixed in and
        the group judged (training groups only; judged here when :class:`DaGRPOGroupWorkerTQ` deferred it),
        DaGRPO fields on every session."""
        from verl.trainer.ppo.v1.agent_loop_tq import AgentLoopSession

        sessions = [
            _Session(s.session_id, s.outputs, s.sample_kwargs, judge_score=_judge_score(s.outputs[-1]))
            for s in group.sessions
        ]
        failed = 0
        if self.anchor_config.enable and not group.validate and sessions:
            n = max(int(self.config.actor_rollout_ref.rollout.n), max(s.session_id for s in sessions) + 1)
            sessions, failed = await self._mix_anchors(sessions, n)
        if not group.validate:
            await self._judge_group(sessions)
        mixed = [AgentLoopSession(s.session_id, s.outputs, s.kwargs, self._dagrpo_fields(s, failed)) for s in sessions]
        return dataclasses.replace(group, sessions=mixed)


class DaGRPOGroupWorkerTQ(AgentLoopWorkerTQ.__ray_actor_class__):
    """verl's ``AgentLoopWorkerTQ`` on a verl with the group hook (``upstream/0006``): :class:`AnchorMixer` as
    its group transform, and the validation flag on every sample's ``extra_info``. Overrides nothing but
    ``__init__`` and ``_run_prompt``, which call verl's."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.group_transform is None:
            self.group_transform = AnchorMixer(self.config, self)
        elif not isinstance(self.group_transform, AnchorMixer):
            raise ValueError(
                f"{__name__}.DaGRPOAgentLoopManagerTQ mixes anchors with its own group transform, but "
                f"actor_rollout_ref.rollout.agent.group_transform_class={type(self.group_transform).__qualname__}; "
                f"set it to null (or to {__name__}.AnchorMixer)."
            )

    async def _run_prompt(self, prompt: dict, sampling_params: dict, trajectory: dict, trace: bool = False) -> None:
        """verl's ``_run_prompt`` with :data:`~dagrpo_verl.fields.IS_VALIDATION` and
        :data:`~dagrpo_verl.fields.JUDGE_DEFERRED` (judged by :class:`AnchorMixer`) set in the row's ``extra_info``."""
        validate = trajectory["validate"]
        deferred = self.group_transform._defers_judging(validate)
        prompt["extra_info"] = with_trainer_flags(prompt.get("extra_info"), validate, deferred)
        await super()._run_prompt(prompt, sampling_params, trajectory, trace)


class DaGRPOAgentLoopManagerTQ(AgentLoopManagerTQ):
    """verl's ``AgentLoopManagerTQ`` that mixes anchors into the scored groups (v1 trainer).

    ``actor_rollout_ref.rollout.agent.agent_loop_manager_class=dagrpo_verl.integration.agent_loop.DaGRPOAgentLoopManagerTQ``.
    Workers: :class:`DaGRPOGroupWorkerTQ` (verl's worker with :class:`AnchorMixer`) on a verl with the group
    hook (detected by capability, :mod:`dagrpo_verl.integration.capabilities`), else :class:`DaGRPOAgentLoopWorkerTQ`.
    """

    def __init__(self, config, llm_client, teacher_client=None, reward_loop_worker_handles=None):
        check_anchor_setup(config, legacy=False, reward_loop_worker_handles=reward_loop_worker_handles)
        super().__init__(config, llm_client, teacher_client, reward_loop_worker_handles)
        worker = DaGRPOGroupWorkerTQ if group_transform_supported() else DaGRPOAgentLoopWorkerTQ
        self.agent_loop_workers_class = ray.remote(worker)


# ----------------------------------------------------------------------------- legacy (DataProto)


class DaGRPOAgentLoopWorker(AgentLoopWorker):
    """verl's ``AgentLoopWorker`` that can also build rewarded anchor samples (legacy trainer)."""

    async def build_anchor_batch(self, requests: list[dict]) -> DataProto:
        """Anchor samples in the layout of ``AgentLoopWorker.generate_sequences``'s output.

        Args:
            requests: one dict per anchor: ``prompt_ids`` (list[int], unpadded prompt tokens of
                the group's rollouts), ``text`` (expert solution), ``with_logprobs`` (bool: give
                a ``rollout_log_probs`` placeholder of zeros) and ``kwargs`` (the group's
                ``non_tensor_batch`` row, passed to the reward function like a rollout's).

        Returns:
            DataProto of ``len(requests)`` samples: ``prompts (b, prompt_length)``,
            ``responses``/``response_mask``/``rm_scores`` ``(b, response_length)``,
            ``input_ids``/``attention_mask``/``position_ids`` ``(b, prompt_length + response_length)``,
            reward extra info and extra fields in ``non_tensor_batch``.
        """
        outputs = await asyncio.gather(*(self._anchor_output(request) for request in requests))
        return self._postprocess(list(outputs), validate=False)

    async def _anchor_output(self, request: dict):
        response_ids = await asyncio.get_running_loop().run_in_executor(
            None, anchor_response_ids, self.tokenizer, request["text"], self.rollout_config.response_length
        )
        output = AgentLoopOutput(
            prompt_ids=list(request["prompt_ids"]),
            response_ids=response_ids,
            response_mask=[1] * len(response_ids),
            response_logprobs=[0.0] * len(response_ids) if request["with_logprobs"] else None,
            num_turns=2,
            metrics=AgentLoopMetrics(),
            extra_fields={"turn_scores": [], "tool_rewards": []},
        )
        return await self._agent_loop_postprocess(output, False, **request["kwargs"])


class DaGRPOAgentLoopManager(AgentLoopManager):
    """verl's ``AgentLoopManager`` that mixes anchors into the whole repeated batch (legacy trainer).

    ``actor_rollout_ref.rollout.agent.agent_loop_manager_class=dagrpo_verl.integration.agent_loop.DaGRPOAgentLoopManager``
    with ``trainer.use_v1=false``. Mode ``replace`` only (see :func:`check_anchor_setup`): an
    anchor takes the row of the rollout it replaces, so the batch keeps its size and order.
    """

    def __init__(self, config, llm_client, teacher_client=None, reward_loop_worker_handles=None):
        self.anchor_config = check_anchor_setup(
            config, legacy=True, reward_loop_worker_handles=reward_loop_worker_handles
        )
        self.group_judging = group_judging_of(config)
        self._tokenizer = None
        super().__init__(config, llm_client, teacher_client, reward_loop_worker_handles)
        self.agent_loop_workers_class = ray.remote(DaGRPOAgentLoopWorker)

    @auto_await
    async def generate_sequences(self, prompts: DataProto) -> DataProto:
        """verl's generation, then anchors by ``uid`` and the group judge (not for validation), and the DaGRPO fields.

        Args:
            prompts: the repeated batch (rollout.n rows per prompt) with ``uid``, ``extra_info``,
                ``raw_prompt`` ... in ``non_tensor_batch``.

        Returns:
            verl's output (row i answers prompt row i) with anchors in place of the replaced
            rollouts and ``is_anchor`` (bool), ``judge_score`` (float32), ``anchor_failed``
            (int64, when anchors are enabled) in ``non_tensor_batch``; ``judge_stats`` (object: the
            group's judge counters on its first row, None elsewhere) when this manager judged.
        """
        validate = bool(prompts.meta_info.get("validate", False))
        deferred = self.group_judging is not None and not validate
        infos = prompts.non_tensor_batch.get("extra_info", np.full(len(prompts), None, dtype=object))
        flagged = np.empty(len(prompts), dtype=object)
        flagged[:] = [with_trainer_flags(info, validate, deferred) for info in infos]
        prompts.non_tensor_batch["extra_info"] = flagged
        output = await super().generate_sequences(prompts)
        size = len(output)
        is_anchor = np.zeros(size, dtype=bool)
        failed = np.zeros(size, dtype=np.int64)
        judge = _as_judge_scores(output.non_tensor_batch.get(JUDGE_SCORE), size)
        if self.anchor_config.enable and not validate:
            await self._mix_anchors(prompts, output, is_anchor, failed, judge)
        if deferred:
            output.non_tensor_batch[JUDGE_STATS] = await self._judge_groups(prompts, output, is_anchor, judge)
        output.non_tensor_batch[IS_ANCHOR] = is_anchor
        output.non_tensor_batch[JUDGE_SCORE] = judge
        if self.anchor_config.enable:
            output.non_tensor_batch[ANCHOR_FAILED] = failed
        return output

    async def _judge_groups(
        self, prompts: DataProto, output: DataProto, is_anchor: np.ndarray, judge: np.ndarray
    ) -> np.ndarray:
        """The group judge over the whole mixed batch: every ``uid`` group through
        :func:`~dagrpo_verl.judge.group.judge_group` at once (only groups where a score can change an
        advantage make calls); fills ``judge`` in place.

        Returns:
            ``(bs,)`` object array: each group's judge counters (a record) on its first row, None elsewhere.
        """
        judging = self.group_judging
        uids = prompts.non_tensor_batch["uid"]
        rewards = output.batch["rm_scores"].sum(dim=-1).to(torch.float32).tolist()
        errors = output.non_tensor_batch.get(REWARD_ERROR)
        groups: dict[Any, list[int]] = {}
        for row, uid in enumerate(uids):
            groups.setdefault(uid, []).append(row)

        async def judge_one(rows: list[int]):
            targets = [
                row
                for row in rows
                if (judging.judge_anchors or not is_anchor[row])
                and not (errors is not None and float(errors[row] or 0.0) > 0)
            ]
            needed = judging.needed([rewards[row] for row in rows])
            items = [self._judge_item(prompts, output, row) for row in targets] if needed else targets
            return targets, await judge_group(get_judge(judging.judge), items, needed=needed)

        records = np.full(len(output), None, dtype=object)
        results = await asyncio.gather(*(judge_one(rows) for rows in groups.values()))
        for rows, (targets, result) in zip(groups.values(), results, strict=True):
            judge[targets] = np.asarray(result.scores, dtype=np.float32)
            records[rows[0]] = stats_record(result.stats)
        # this event loop ends with the call (verl's auto_await): close its HTTP session, flush the cache
        await get_judge(judging.judge).aclose()
        return records

    def _judge_item(self, prompts: DataProto, output: DataProto, row: int) -> Any:
        """The judge request of one row, as the reward function would send it (None when it cannot be built)."""
        info = prompts.non_tensor_batch["extra_info"][row]
        try:
            responses = output.batch["responses"][row]
            valid = int(output.batch["attention_mask"][row, -responses.shape[-1] :].sum())
            text = _decode_response(self._load_tokenizer(), responses[:valid])
            reward_model = prompts.non_tensor_batch["reward_model"][row]
            data_source = prompts.non_tensor_batch["data_source"][row]
            return judge_item(data_source, text, reward_model["ground_truth"], info)
        except Exception:  # counted by the judge (internal_errors) and logged here
            logger.exception("row %d: the judge request of a response could not be built", row)
            return None

    def _load_tokenizer(self) -> Any:
        """The actor's tokenizer, as verl's reward loop loads it (decodes responses for the judge)."""
        if self._tokenizer is None:
            from verl.utils import hf_tokenizer
            from verl.utils.fs import copy_to_local

            # mirrors verl 0.9.1 verl.experimental.reward_loop.reward_loop:RewardLoopWorker.__init__ (tokenizer)
            model = self.config.actor_rollout_ref.model
            path = copy_to_local(model.get("tokenizer_path", None) or model.path)
            self._tokenizer = hf_tokenizer(path, trust_remote_code=model.get("trust_remote_code", False))
        return self._tokenizer

    async def _mix_anchors(
        self, prompts: DataProto, output: DataProto, is_anchor: np.ndarray, failed: np.ndarray, judge: np.ndarray
    ) -> None:
        """Replace rollouts of the planned groups by anchors in ``output`` (in place); fill the per-row arrays."""
        if "rm_scores" not in output.batch.keys():
            raise ValueError("anchor mixing needs rm_scores from the agent loop (see check_anchor_setup).")
        uids = prompts.non_tensor_batch["uid"]
        texts = [anchor_text_of(info) for info in prompts.non_tensor_batch["extra_info"]]
        rewards = output.batch["rm_scores"].sum(dim=-1).numpy()
        plans = plan_anchor_groups(
            uids=uids,
            rewards=rewards,
            correct=rollout_correct(rewards, output.non_tensor_batch.get(ACC)),
            has_anchor=[t is not None for t in texts],
            config=self.anchor_config,
        )
        plans = [plan for plan in plans if plan.num_anchors]
        if not plans:
            return
        anchors = await self._anchor_batch(prompts, output, [int(plan.rows[0]) for plan in plans], texts)
        anchor_rewards = anchors.batch["rm_scores"].sum(dim=-1).numpy()
        anchor_correct = rollout_correct(anchor_rewards, anchors.non_tensor_batch.get(ACC))
        anchor_judge = _as_judge_scores(anchors.non_tensor_batch.get(JUDGE_SCORE), len(anchors))
        for j, plan in enumerate(plans):
            plan, group_failed = skip_failed_anchors(plan, bool(anchor_correct[j]), self.anchor_config)
            failed[plan.rows] = group_failed
            for row in plan.replace_rows:
                _replace_row(output, int(row), anchors, j)
                is_anchor[row] = True
                judge[row] = _anchor_judge_score(float(anchor_judge[j]), self.anchor_config)

    async def _anchor_batch(self, prompts: DataProto, output: DataProto, rows: list[int], texts: list) -> DataProto:
        """Build and reward one anchor per template row, spread over the agent loop workers."""
        prompt_width = output.batch["prompts"].size(1)
        with_logprobs = "rollout_log_probs" in output.batch.keys()
        requests = []
        for row in rows:
            prompt_mask = output.batch["attention_mask"][row, :prompt_width].bool()
            kwargs = {k: v[row] for k, v in prompts.non_tensor_batch.items() if k != "__do_sample__"}
            kwargs["extra_info"] = {**kwargs["extra_info"], IS_ANCHOR: True}
            if not self.anchor_config.judge_anchors:
                kwargs["extra_info"][JUDGE_DEFERRED] = True  # its score is max_score: no judge call
            requests.append(
                {
                    "prompt_ids": output.batch["prompts"][row][prompt_mask].tolist(),
                    "text": texts[row],
                    "with_logprobs": with_logprobs,
                    "kwargs": kwargs,
                }
            )
        workers = self.agent_loop_workers
        chunks = [requests[w :: len(workers)] for w in range(len(workers))]
        parts = await asyncio.gather(
            *(worker.build_anchor_batch.remote(chunk) for worker, chunk in zip(workers, chunks, strict=True) if chunk)
        )
        # chunk w holds requests w, w + W, ...: interleave the parts back into request order
        order = [i for w in range(len(workers)) for i in range(w, len(requests), len(workers))]
        merged = DataProto.concat(list(parts))
        return merged.select_idxs(np.argsort(order))


def _replace_row(output: DataProto, row: int, anchors: DataProto, j: int) -> None:
    """Overwrite sample ``row`` of ``output`` with sample ``j`` of ``anchors`` (same layout), in place."""
    missing = sorted(set(output.batch.keys()) - set(anchors.batch.keys()))
    if missing:
        raise ValueError(
            f"anchor samples lack the batch field(s) {missing} that the rollouts have; anchors do not support them "
            "(set algorithm.dagrpo.anchor.enable=false)."
        )
    for key in output.batch.keys():
        output.batch[key][row] = anchors.batch[key][j]
    for key, values in output.non_tensor_batch.items():
        if key in anchors.non_tensor_batch:
            values[row] = anchors.non_tensor_batch[key][j]
        elif values.dtype == object:
            values[row] = None
        else:
            raise ValueError(
                f"anchor samples lack the field {key!r} that the rollouts have; the reward function must return "
                "the same keys for every sample."
            )
