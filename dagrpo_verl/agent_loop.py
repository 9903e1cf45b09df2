"""Anchor mixing inside verl's agent loop: after a group is generated and rewarded,
before old log-probs.

Install (the key is not in verl's rollout YAML, hence the ``+`` in plain verl configs;
``dagrpo_verl/config/dagrpo_trainer.yaml`` declares it):

* v1 (TransferQueue) trainer, ``trainer.use_v1=true``:
  ``+actor_rollout_ref.rollout.agent.agent_loop_manager_class=dagrpo_verl.agent_loop.DaGRPOAgentLoopManagerTQ``
* legacy ``RayPPOTrainer``, ``trainer.use_v1=false``:
  ``+actor_rollout_ref.rollout.agent.agent_loop_manager_class=dagrpo_verl.agent_loop.DaGRPOAgentLoopManager``

Both read ``algorithm.dagrpo.anchor`` (:class:`dagrpo_verl.config.AnchorConfig`); the
decisions are the pure functions of :mod:`dagrpo_verl.anchors`.

Every sample they emit carries

* ``is_anchor`` (:data:`dagrpo_verl.fields.IS_ANCHOR`): bool, True for an expert
  solution mixed into the group;
* ``judge_score`` (:data:`dagrpo_verl.fields.JUDGE_SCORE`): float32, the reward extra
  info ``judge_score`` (NaN when the reward function returned none; an anchor the
  reward function gave no score gets ``anchor.max_score`` unless ``judge_anchors``);
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
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import os
from dataclasses import dataclass, field
from typing import Any, Optional

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

from dagrpo_verl.anchors import GroupPlan, plan_anchor_groups, rollout_correct, skip_failed_anchors
from dagrpo_verl.capabilities import group_transform_supported
from dagrpo_verl.config import AnchorConfig, dagrpo_config_from
from dagrpo_verl.fields import ACC, ANCHOR_FAILED, ANCHOR_TEXT, IS_ANCHOR, IS_VALIDATION, JUDGE_SCORE

logger = logging.getLogger(__name__)
logger.setLevel(os.getenv("VERL_LOGGING_LEVEL", "INFO"))

__all__ = [
    "AnchorMixer",
    "DaGRPOAgentLoopManager",
    "DaGRPOAgentLoopManagerTQ",
    "DaGRPOAgentLoopWorker",
    "DaGRPOAgentLoopWorkerTQ",
    "DaGRPOGroupWorkerTQ",
    "anchor_response_ids",
    "anchor_text_of",
    "check_anchor_setup",
    "with_validation_flag",
]

# Keys of an output's extra_fields that belong to the rollout itself, not to its prompt.
_ROLLOUT_ONLY_EXTRA_FIELDS = ("reward_extra_info", "teacher_ids", "teacher_logprobs")


# ----------------------------------------------------------------------------- shared helpers


def anchor_text_of(extra_info: Any) -> Optional[str]:
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


def with_validation_flag(extra_info: Any, validate: bool) -> dict:
    """A copy of a row's ``extra_info`` with :data:`~dagrpo_verl.fields.IS_VALIDATION` set to ``validate``
    (a data row cannot set it: the reward function skips the judge on validation samples)."""
    return {**(extra_info if isinstance(extra_info, dict) else {}), IS_VALIDATION: bool(validate)}


def _reward_extra_info(output: AgentLoopOutput) -> dict:
    return output.extra_fields.get("reward_extra_info") or {}


def _judge_score(output: AgentLoopOutput) -> float:
    value = _reward_extra_info(output).get(JUDGE_SCORE)
    return float("nan") if value is None else float(value)


def _anchor_judge_score(score: float, config: AnchorConfig) -> float:
    """An anchor is the judge's reference: max score when the reward function gave none and anchors are not judged."""
    return float(config.max_score) if math.isnan(score) and not config.judge_anchors else score


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
            f"dagrpo_verl.agent_loop.{manager} is for trainer.use_v1={str(not legacy).lower()}, but "
            f"trainer.use_v1={str(use_v1).lower()}; set actor_rollout_ref.rollout.agent.agent_loop_manager_class="
            f"dagrpo_verl.agent_loop.{other}."
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
    n = int(config.actor_rollout_ref.rollout.n)
    if anchor.mode == "replace" and anchor.num_anchors >= n:
        raise ValueError(
            f"algorithm.dagrpo.anchor.num_anchors={anchor.num_anchors} with mode=replace must be < "
            f"actor_rollout_ref.rollout.n={n} (at least one on-policy rollout stays); lower num_anchors or use "
            "mode=append."
        )
    if legacy and anchor.mode == "append":
        raise ValueError(
            "algorithm.dagrpo.anchor.mode=append is not possible with the legacy trainer (trainer.use_v1=false): "
            "verl 0.9.1 verl/trainer/ppo/ray_trainer.py RayPPOTrainer.fit joins the rollouts to the prompt batch "
            "with batch.repeat(rollout.n).union(gen_batch_output), which needs exactly rollout.n samples per "
            "prompt. Use mode=replace, or the v1 trainer (trainer.use_v1=true)."
        )
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

    async def _score(self, outputs: list[AgentLoopOutput], validate: bool, kwargs: dict) -> None:
        raise NotImplementedError

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
        """Apply the group's :class:`~dagrpo_verl.anchors.GroupPlan`.

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
                "extra_fields": {
                    k: v for k, v in rollout.extra_fields.items() if k not in _ROLLOUT_ONLY_EXTRA_FIELDS
                },
            }
        )
        kwargs = dict(template.kwargs, extra_info={**template.kwargs["extra_info"], IS_ANCHOR: True})
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

    async def _run_prompt(self, prompt: dict, sampling_params: dict, trajectory: dict, trace: bool = False) -> None:
        """Run the n sessions of one prompt, then mix anchors and put the whole group (see the class doc)."""
        uid, validate = prompt["uid"], trajectory["validate"]
        prompt["extra_info"] = with_validation_flag(prompt.get("extra_info"), validate)
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
    ) -> Optional[_Session]:
        """Score one session (reward, teacher log-probs) like verl's worker, and return it instead of putting it."""
        outputs = output if isinstance(output, list) else [output]
        if not outputs:
            logger.warning(f"Empty output for prompt {kwargs['uid']}_{kwargs['session_id']}")
            return None
        await self._score(outputs, validate, kwargs)
        return _Session(int(kwargs["session_id"]), outputs, kwargs, judge_score=_judge_score(outputs[-1]))

    async def _score(self, outputs: list[AgentLoopOutput], validate: bool, kwargs: dict) -> None:
        """verl's reward + teacher step of ``AgentLoopWorkerTQ._agent_loop_postprocess``; the last output's reward
        is copied to the session's other outputs."""
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
        """Mix anchors into one prompt's settled sessions (not for validation) and put all of them."""
        failed = 0
        if self.anchor_config.enable and not validate:
            sessions, failed = await self._mix_anchors(sessions, n)
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

    ``actor_rollout_ref.rollout.agent.group_transform_class=dagrpo_verl.agent_loop.AnchorMixer``, or
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
        self.tokenizer = worker.tokenizer
        self.rollout_config = worker.rollout_config

    async def _score(self, outputs: list[AgentLoopOutput], validate: bool, kwargs: dict) -> None:
        await self.worker.score_outputs(outputs, validate, kwargs)

    async def __call__(self, group: Any) -> Any:
        """``AgentLoopGroup -> AgentLoopGroup`` (``verl.trainer.ppo.v1.agent_loop_tq``): anchors mixed in
        (training groups only), DaGRPO fields on every session."""
        from verl.trainer.ppo.v1.agent_loop_tq import AgentLoopSession

        sessions = [
            _Session(s.session_id, s.outputs, s.sample_kwargs, judge_score=_judge_score(s.outputs[-1]))
            for s in group.sessions
        ]
        failed = 0
        if self.anchor_config.enable and not group.validate and sessions:
            n = max(int(self.config.actor_rollout_ref.rollout.n), max(s.session_id for s in sessions) + 1)
            sessions, failed = await self._mix_anchors(sessions, n)
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
                f"dagrpo_verl.agent_loop.DaGRPOAgentLoopManagerTQ mixes anchors with its own group transform, but "
                f"actor_rollout_ref.rollout.agent.group_transform_class={type(self.group_transform).__qualname__}; "
                "set it to null (or to dagrpo_verl.agent_loop.AnchorMixer)."
            )

    async def _run_prompt(self, prompt: dict, sampling_params: dict, trajectory: dict, trace: bool = False) -> None:
        """verl's ``_run_prompt`` with :data:`~dagrpo_verl.fields.IS_VALIDATION` set in the row's ``extra_info``."""
        prompt["extra_info"] = with_validation_flag(prompt.get("extra_info"), trajectory["validate"])
        await super()._run_prompt(prompt, sampling_params, trajectory, trace)


class DaGRPOAgentLoopManagerTQ(AgentLoopManagerTQ):
    """verl's ``AgentLoopManagerTQ`` that mixes anchors into the scored groups (v1 trainer).

    ``actor_rollout_ref.rollout.agent.agent_loop_manager_class=dagrpo_verl.agent_loop.DaGRPOAgentLoopManagerTQ``.
    Workers: :class:`DaGRPOGroupWorkerTQ` (verl's worker with :class:`AnchorMixer`) on a verl with the group
    hook (detected by capability, :mod:`dagrpo_verl.capabilities`), else :class:`DaGRPOAgentLoopWorkerTQ`.
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

    ``actor_rollout_ref.rollout.agent.agent_loop_manager_class=dagrpo_verl.agent_loop.DaGRPOAgentLoopManager``
    with ``trainer.use_v1=false``. Mode ``replace`` only (see :func:`check_anchor_setup`): an
    anchor takes the row of the rollout it replaces, so the batch keeps its size and order.
    """

    def __init__(self, config, llm_client, teacher_client=None, reward_loop_worker_handles=None):
        self.anchor_config = check_anchor_setup(
            config, legacy=True, reward_loop_worker_handles=reward_loop_worker_handles
        )
        super().__init__(config, llm_client, teacher_client, reward_loop_worker_handles)
        self.agent_loop_workers_class = ray.remote(DaGRPOAgentLoopWorker)

    @auto_await
    async def generate_sequences(self, prompts: DataProto) -> DataProto:
        """verl's generation, then anchors by ``uid`` (not for validation) and the DaGRPO fields.

        Args:
            prompts: the repeated batch (rollout.n rows per prompt) with ``uid``, ``extra_info``,
                ``raw_prompt`` ... in ``non_tensor_batch``.

        Returns:
            verl's output (row i answers prompt row i) with anchors in place of the replaced
            rollouts and ``is_anchor`` (bool), ``judge_score`` (float32), ``anchor_failed``
            (int64, when anchors are enabled) in ``non_tensor_batch``.
        """
        validate = bool(prompts.meta_info.get("validate", False))
        infos = prompts.non_tensor_batch.get("extra_info", np.full(len(prompts), None, dtype=object))
        flagged = np.empty(len(prompts), dtype=object)
        flagged[:] = [with_validation_flag(info, validate) for info in infos]
        prompts.non_tensor_batch["extra_info"] = flagged
        output = await super().generate_sequences(prompts)
        size = len(output)
        is_anchor = np.zeros(size, dtype=bool)
        failed = np.zeros(size, dtype=np.int64)
        judge = _as_judge_scores(output.non_tensor_batch.get(JUDGE_SCORE), size)
        if self.anchor_config.enable and not prompts.meta_info.get("validate", False):
            await self._mix_anchors(prompts, output, is_anchor, failed, judge)
        output.non_tensor_batch[IS_ANCHOR] = is_anchor
        output.non_tensor_batch[JUDGE_SCORE] = judge
        if self.anchor_config.enable:
            output.non_tensor_batch[ANCHOR_FAILED] = failed
        return output

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
            *(worker.build_anchor_batch.remote(chunk) for worker, chunk in zip(workers, chunks) if chunk)
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
