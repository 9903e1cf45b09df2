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
"""Start-up checks of a composed DaGRPO config (no Ray, no workers, no model weights).

:func:`validate_dagrpo_config` is called by ``python -m dagrpo_verl.main`` before Ray
starts. Every failure raises :class:`DaGRPOConfigError` with the keys to set; settings that
verl accepts but that would skew a DaGRPO run are reported with ``logger.warning`` (policy:
a warning names the effect and the key that removes it). Files read: the schema of local
training parquets and the model's ``config.json`` (a local directory, or the Hugging Face
cache for a hub id; never the network).
"""

from __future__ import annotations

import json
import logging
import os
import re
from typing import Any

from omegaconf import DictConfig, OmegaConf

from dagrpo_verl.algo.anchors import anchor_setup_problem
from dagrpo_verl.algo.settings import DaGRPOConfig, dagrpo_config_from
from dagrpo_verl.fields import ANCHOR_TEXT, DAGRPO_ESTIMATOR, DAGRPO_LOSS_MODE

__all__ = [
    "DAGRPO_REWARD_PATH",
    "DaGRPOConfigError",
    "dataset_has_anchors",
    "model_context_length",
    "validate_dagrpo_config",
]

logger = logging.getLogger(__name__)

#: ``reward.custom_reward_function.path`` of the reward that returns the judge score.
DAGRPO_REWARD_PATH = "pkg://dagrpo_verl.reward"
_LOSS_TARGET = "dagrpo_verl.config.DaGRPOPolicyLossConfig"
_AGENT_LOOP_MODULE = "dagrpo_verl.integration.agent_loop"
_V1_MANAGER = _AGENT_LOOP_MODULE + ".DaGRPOAgentLoopManagerTQ"
_LEGACY_MANAGER = _AGENT_LOOP_MODULE + ".DaGRPOAgentLoopManager"
#: The agent loop module's path in dagrpo-verl 0.1.0, still loadable (the alias ``dagrpo_verl/agent_loop.py``).
_AGENT_LOOP_ALIAS = "dagrpo_verl.agent_loop"


def _agent_loop_manager(config: DictConfig) -> Any:
    """``actor_rollout_ref.rollout.agent.agent_loop_manager_class``, a 0.1.0 path written as today's."""
    manager = _select(config, "actor_rollout_ref.rollout.agent.agent_loop_manager_class")
    if isinstance(manager, str) and manager.startswith(_AGENT_LOOP_ALIAS + "."):
        return _AGENT_LOOP_MODULE + manager[len(_AGENT_LOOP_ALIAS) :]
    return manager


class DaGRPOConfigError(ValueError):
    """A DaGRPO misconfiguration found at start-up; the message names the keys to set."""


def _select(config: DictConfig, key: str, default: Any = None) -> Any:
    return OmegaConf.select(config, key, default=default)


def dataset_has_anchors(path: str) -> bool | None:
    """Whether a local parquet file has the anchor column ``extra_info.anchor``.

    Reads the schema only. Returns None when the file is not local (e.g. ``hdfs://``), so
    the check is left to the anchor mixer at run time.
    """
    if not os.path.isfile(path):
        return None
    import pyarrow.parquet as pq

    schema = pq.read_schema(path)
    if "extra_info" not in schema.names:
        return False
    extra_info = schema.field("extra_info").type
    return hasattr(extra_info, "get_field_index") and extra_info.get_field_index(ANCHOR_TEXT) >= 0


def _train_files(config: DictConfig) -> list[str]:
    files = _select(config, "data.train_files")
    if files is None:
        return []
    if isinstance(files, str):
        return [files]
    return [str(f) for f in files]


def validate_dagrpo_config(config: DictConfig) -> DaGRPOConfig | None:
    """Check a composed verl config for DaGRPO; raise :class:`DaGRPOConfigError` naming the keys to set.

    Checks only what DaGRPO adds; verl's own ``validate_config`` still runs. Harmless for
    configs that use neither the ``dagrpo`` estimator nor the ``dagrpo`` loss.

    Returns:
        The parsed ``algorithm.dagrpo`` settings when the ``dagrpo`` estimator is selected, else None.
    """
    estimator = _select(config, "algorithm.adv_estimator")
    loss_mode = _select(config, "actor_rollout_ref.actor.policy_loss.loss_mode", "vanilla")
    use_v1 = bool(_select(config, "trainer.use_v1", True))
    _check_cpu_sampler(config)
    _check_context_length(config)
    _check_reward_kwargs(config)
    if loss_mode == DAGRPO_LOSS_MODE or estimator == DAGRPO_ESTIMATOR:
        _warn_length_varying_normaliser(config)
    if loss_mode == DAGRPO_LOSS_MODE:
        _check_loss(config, use_v1)
    _check_anchor_training(config, estimator, loss_mode)
    if estimator != DAGRPO_ESTIMATOR:
        return None
    try:
        settings = dagrpo_config_from(config.algorithm)
    except ValueError as error:
        raise DaGRPOConfigError(str(error)) from error

    n = int(_select(config, "actor_rollout_ref.rollout.n", 1))
    if n < 2:
        raise DaGRPOConfigError(
            f"algorithm.adv_estimator=dagrpo is group-relative but actor_rollout_ref.rollout.n={n}; "
            "set actor_rollout_ref.rollout.n=8 (the paper's G) or at least 2."
        )
    if settings.rectification:
        _check_judge_reward(config)
        _check_lazy_judging(config, settings)
    if settings.anchor.enable:
        problem = anchor_setup_problem(settings.anchor, n, legacy=not use_v1)
        if problem is not None:
            raise DaGRPOConfigError(problem)
        _check_anchors(config, loss_mode, use_v1)
    return settings


def _check_anchor_training(config: DictConfig, estimator: Any, loss_mode: Any) -> None:
    """Anchors mixed into groups must be trained as anchors: by the dagrpo estimator and the dagrpo loss.

    Policy: refuse. With another estimator or loss the anchor manager would still mix expert solutions
    into the groups and verl would train them as ordinary rollouts (a "GRPO baseline" that learns from the
    experts through the clipped surrogate with placeholder log-probs).
    """
    from dagrpo_verl.integration.stock import ANCHOR_MIXER, mixes_anchors

    if not mixes_anchors(config) or (estimator == DAGRPO_ESTIMATOR and loss_mode == DAGRPO_LOSS_MODE):
        return
    try:
        anchors_on = dagrpo_config_from(config.algorithm).anchor.enable
    except ValueError as error:
        raise DaGRPOConfigError(str(error)) from error
    if not anchors_on:
        return
    agent = "actor_rollout_ref.rollout.agent"
    installed = (
        f"{agent}.group_transform_class={ANCHOR_MIXER}"
        if _select(config, f"{agent}.group_transform_class") == ANCHOR_MIXER
        else f"{agent}.agent_loop_manager_class={_select(config, f'{agent}.agent_loop_manager_class')}"
    )
    raise DaGRPOConfigError(
        f"{installed} mixes off-policy anchors (expert solutions) into the groups (algorithm.dagrpo.anchor.enable="
        f"true), but algorithm.adv_estimator={estimator} and actor_rollout_ref.actor.policy_loss.loss_mode="
        f"{loss_mode} would train them as ordinary rollouts. For a baseline without anchors set "
        "algorithm.dagrpo.anchor.enable=false; for DaGRPO set algorithm.adv_estimator=dagrpo and "
        "actor_rollout_ref.actor.policy_loss.loss_mode=dagrpo."
    )


def _check_cpu_sampler(config: DictConfig) -> None:
    """``+platform=cpu``'s replay buffer gets none of verl's DAPO group-filtering arguments.

    (Its trainer-mode check is in the class, which every entry point constructs.)
    """
    if _select(config, "trainer.v1.sampler.custom_sampler.name") != "CPUReplayBuffer":
        return
    if _select(config, "algorithm.filter_groups.enable", False):
        raise DaGRPOConfigError(
            "algorithm.filter_groups.enable=true is ignored by verl when trainer.v1.sampler.custom_sampler is set, "
            "and +platform=cpu sets it to CPUReplayBuffer; set algorithm.filter_groups.enable=false or "
            "trainer.v1.sampler.custom_sampler.path=null."
        )


#: A Hugging Face hub repository id (``org/name``), as opposed to a local path.
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def model_context_length(model_path: str) -> tuple[int | None, str]:
    """The context length (``max_position_embeddings``) in a model's ``config.json``, read without network.

    Looks in ``model_path`` when it is a local directory, else in the Hugging Face cache when it
    is a hub id (``org/name``) that was downloaded before. A multimodal config's ``text_config``
    counts too, as in verl's ``get_max_position_embeddings``.

    Returns:
        ``(length, source)``: the length and the file it was read from, or ``(None, reason)``
        when no ``config.json`` could be read.
    """
    local = os.path.expanduser(str(model_path))
    if os.path.isdir(local):
        path = os.path.join(local, "config.json")
        if not os.path.isfile(path):
            return None, f"{local} has no config.json"
    elif _HUB_ID.match(str(model_path)) and not os.path.exists(local):
        try:
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(str(model_path), "config.json")
        except Exception as error:  # an invalid repo id or cache layout: nothing to read
            return None, f"the Hugging Face cache lookup failed ({error})"
        if not isinstance(cached, str):
            return None, f"{model_path} is not a local directory and its config.json is not in the Hugging Face cache"
        path = cached
    else:
        return None, f"{model_path} is neither a local model directory nor a Hugging Face hub id"
    try:
        with open(path, encoding="utf-8") as f:
            hf_config = json.load(f)
    except (OSError, ValueError) as error:
        return None, f"{path} is not readable JSON ({error})"
    length = hf_config.get("max_position_embeddings") if isinstance(hf_config, dict) else None
    if length is None and isinstance(hf_config, dict) and isinstance(hf_config.get("text_config"), dict):
        length = hf_config["text_config"].get("max_position_embeddings")
    if isinstance(length, bool) or not isinstance(length, int):
        return None, f"{path} has no integer max_position_embeddings"
    return length, path


def _check_context_length(config: DictConfig) -> None:
    """The model's context must hold prompt + response; else verl cuts rollouts short but not anchors.

    verl's rollout servers (vLLM, SGLang, TensorRT-LLM) set ``max_model_len`` to the model's
    ``max_position_embeddings`` unless ``rollout.max_model_len`` is given, and clamp every
    request's ``max_tokens`` to ``max_model_len - prompt``; anchors are cut at
    ``rollout.response_length``. A shorter context therefore caps on-policy responses while
    anchors are trained at positions the model never saw.
    """
    prompt = _select(config, "actor_rollout_ref.rollout.prompt_length", _select(config, "data.max_prompt_length"))
    response = _select(config, "actor_rollout_ref.rollout.response_length", _select(config, "data.max_response_length"))
    if prompt is None or response is None:
        return
    need = int(prompt) + int(response)
    lengths = (
        f"prompt + response = {int(prompt)} + {int(response)} = {need} tokens "
        "(data.max_prompt_length + data.max_response_length)"
    )
    max_model_len = _select(config, "actor_rollout_ref.rollout.max_model_len")
    if max_model_len is not None and int(max_model_len) < need:
        raise DaGRPOConfigError(
            f"actor_rollout_ref.rollout.max_model_len={max_model_len} is shorter than {lengths}: verl would cut "
            f"on-policy responses at {max_model_len} - prompt tokens, while anchors are cut at {int(response)}. Set "
            f"actor_rollout_ref.rollout.max_model_len={need} (or null), or lower data.max_response_length."
        )
    model_path = _select(config, "actor_rollout_ref.model.path")
    context, source = model_context_length(model_path) if model_path else (None, "no model path")
    if context is not None and context < need:
        raise DaGRPOConfigError(
            f"actor_rollout_ref.model.path={model_path} has a context of {context} tokens (max_position_embeddings in "
            f"{source}), shorter than {lengths}: verl sets the rollout's max_model_len to {context} and cuts on-policy "
            f"responses at {context} - prompt tokens, while anchors are cut at {int(response)} tokens and trained at "
            "positions the model never saw. Use a model whose config.json holds the budget (LUFFY trains "
            "Elliott/Qwen2.5-Math-7B-16k-think, Qwen2.5-Math-7B with rope_theta=40000 and "
            "max_position_embeddings=16384, with these settings), or lower data.max_response_length / "
            "data.max_prompt_length. (actor_rollout_ref.model.override_config does not reach vLLM, which reads "
            "config.json.)"
        )
    if context is None and max_model_len is None:
        logger.warning(
            f"Could not check that the model's context holds {lengths}: {source}. If it is shorter, verl will cut "
            "on-policy responses to fit while anchors keep their length. Set "
            f"actor_rollout_ref.rollout.max_model_len={need} to make verl's rollout server refuse a model whose "
            "max_position_embeddings is smaller, or pass a local model directory."
        )


def _warn_length_varying_normaliser(config: DictConfig) -> None:
    """Dr.GRPO's normaliser is a constant; verl's default for ``seq-mean-token-sum-norm`` is the padded width."""
    actor = "actor_rollout_ref.actor"
    if _select(config, f"{actor}.loss_agg_mode") != "seq-mean-token-sum-norm":
        return
    if _select(config, f"{actor}.loss_scale_factor") is not None:
        return
    logger.warning(
        f"{actor}.loss_agg_mode=seq-mean-token-sum-norm without {actor}.loss_scale_factor: verl divides each "
        "micro-batch's loss by the micro-batch's padded width (its longest response, often an anchor), so a "
        "rollout's gradient shrinks by up to response_length / its own length depending on what shares its "
        "micro-batch, and changes with the data-parallel split. Dr.GRPO divides by a constant: set "
        f"{actor}.loss_scale_factor to the generation budget (data.max_response_length)."
    )


def _check_loss(config: DictConfig, use_v1: bool) -> None:
    if _select(config, "distillation.enabled", False):
        raise DaGRPOConfigError(
            "actor_rollout_ref.actor.policy_loss.loss_mode=dagrpo cannot be combined with on-policy distillation "
            "(verl then uses its distillation loss); set distillation.enabled=false."
        )
    if not use_v1 and _select(config, "algorithm.rollout_correction.bypass_mode", False):
        raise DaGRPOConfigError(
            "With trainer.use_v1=false, algorithm.rollout_correction.bypass_mode=true makes verl replace the "
            "policy loss by 'bypass_mode' (the dagrpo loss would be dropped); set "
            "algorithm.rollout_correction.bypass_mode=false or trainer.use_v1=true."
        )


# reward settings (issue 11, docs/reliability.md) -----------------------------------------------------------
def _check_reward_kwargs(config: DictConfig) -> None:
    """``reward_kwargs`` of ``dagrpo_verl.reward`` checked before Ray starts: verl 0.9.1's v1 trainer turns an
    exception in the reward function into failed prompt groups, and stops with an error that does not name it."""
    from dagrpo_verl.reward import check_reward_kwargs, is_dagrpo_reward

    if not is_dagrpo_reward(_select(config, "reward.custom_reward_function.path")):
        return

    router = "127.0.0.1:8000" if _select(config, "reward.reward_model.enable", False) else None  # verl's, at run time
    reward_kwargs = _select(config, "reward.custom_reward_function.reward_kwargs")
    try:
        check_reward_kwargs(reward_kwargs, reward_router_address=router)
    except ValueError as error:
        raise DaGRPOConfigError(str(error)) from error


# -----------------------------------------------------------------------------------------------------------


def _check_judge_reward(config: DictConfig) -> None:
    path = _select(config, "reward.custom_reward_function.path")
    if not path:
        raise DaGRPOConfigError(
            "algorithm.dagrpo.rectification=true needs a judge score per response, but "
            "reward.custom_reward_function.path is not set; set "
            f"reward.custom_reward_function.path={DAGRPO_REWARD_PATH} and "
            "reward.custom_reward_function.name=compute_score (or algorithm.dagrpo.rectification=false)."
        )
    if _select(config, "reward.reward_model.enable", False):
        raise DaGRPOConfigError(
            "algorithm.dagrpo.rectification=true reads the judge score from the custom reward function, but "
            "reward.reward_model.enable=true replaces it by a reward model; set reward.reward_model.enable=false "
            "(the judge is configured under reward.custom_reward_function.reward_kwargs.judge)."
        )
    from dagrpo_verl.reward import is_dagrpo_reward

    if not is_dagrpo_reward(path):
        return  # a user reward function: it must return {"score": ..., "judge_score": ...} itself
    judge = _select(config, "reward.custom_reward_function.reward_kwargs.judge")
    from dagrpo_verl.judge import judge_config_from

    try:
        judge_config = judge_config_from(OmegaConf.to_container(judge, resolve=True) if judge is not None else None)
    except ValueError as error:
        raise DaGRPOConfigError(str(error)) from error
    _warn_judged_validation(config, judge_config.backend)
    if judge_config.backend == "rule":
        logger.warning(
            "algorithm.dagrpo.rectification=true with reward.custom_reward_function.reward_kwargs.judge.backend=rule: "
            "the judge scores are a text heuristic (dagrpo_verl.judge.scorers), not an LLM's reading of the "
            "reasoning, so eq. 8-9 mask by that heuristic. For the paper's method set judge.backend=openai (with "
            "judge.base_url and judge.model) or judge.backend=hf; see docs/judge.md."
        )
    if judge_config.backend == "none":
        raise DaGRPOConfigError(
            "algorithm.dagrpo.rectification=true but reward.custom_reward_function.reward_kwargs.judge.backend=none "
            "gives no judge scores; set reward.custom_reward_function.reward_kwargs.judge.backend=openai|hf|rule "
            "or algorithm.dagrpo.rectification=false."
        )


def _check_lazy_judging(config: DictConfig, settings: DaGRPOConfig) -> None:
    """Lazy judging decides from the rewards the agent loop sees; a KL penalty in the reward changes them later.

    With ``algorithm.use_kl_in_reward=true`` the estimator's sequence rewards are the scores minus a
    per-token KL penalty, so a group whose scores are all equal still gets non-zero advantages, whose
    judge scores lazy judging would not have asked for. Policy: refuse, naming both fixes.
    """
    if settings.lazy_judge and _select(config, "algorithm.use_kl_in_reward", False):
        raise DaGRPOConfigError(
            "algorithm.dagrpo.lazy_judge=true skips the judge for groups whose rewards are all equal, but "
            "algorithm.use_kl_in_reward=true subtracts a KL penalty from the rewards after the agent loop, so such "
            "groups get non-zero advantages that eq. 8-9 would mask with scores never asked for. Set "
            "algorithm.dagrpo.lazy_judge=false (judge every response) or algorithm.use_kl_in_reward=false (the "
            "paper uses no KL)."
        )


def _warn_judged_validation(config: DictConfig, backend: str) -> None:
    """Validation samples skip the judge, and training groups are judged lazily, only with a DaGRPO
    agent-loop manager (it marks the samples it judges itself)."""
    if backend not in ("openai", "hf"):
        return
    manager = _agent_loop_manager(config)
    if manager in (_V1_MANAGER, _LEGACY_MANAGER):
        return
    expected = _V1_MANAGER if bool(_select(config, "trainer.use_v1", True)) else _LEGACY_MANAGER
    validation = not _select(config, "reward.custom_reward_function.reward_kwargs.judge_validation", False)
    message = (
        f"actor_rollout_ref.rollout.agent.agent_loop_manager_class={manager} does not judge by group, so the reward "
        "function judges every training response, also in groups whose advantages are all zero (the lazy judging "
        "of algorithm.dagrpo.lazy_judge needs the DaGRPO manager)"
        + (", and every validation response (scores nothing uses)" if validation else "")
        + f". Set actor_rollout_ref.rollout.agent.agent_loop_manager_class={expected}"
        + (
            ", or reward.custom_reward_function.reward_kwargs.judge_validation=true to judge validation on purpose."
            if validation
            else "."
        )
    )
    logger.warning(message)


def _check_anchors(config: DictConfig, loss_mode: str, use_v1: bool) -> None:
    if loss_mode != DAGRPO_LOSS_MODE:
        raise DaGRPOConfigError(
            f"algorithm.dagrpo.anchor.enable=true needs the dagrpo policy loss (anchor tokens have no rollout "
            f"log-probs), but actor_rollout_ref.actor.policy_loss.loss_mode={loss_mode}; set "
            f"actor_rollout_ref.actor.policy_loss.loss_mode=dagrpo and "
            f"actor_rollout_ref.actor.policy_loss._target_={_LOSS_TARGET} (or algorithm.dagrpo.anchor.enable=false)."
        )
    manager = _agent_loop_manager(config)
    expected = _V1_MANAGER if use_v1 else _LEGACY_MANAGER
    from dagrpo_verl.integration.stock import ANCHOR_MIXER

    mixer = use_v1 and _select(config, "actor_rollout_ref.rollout.agent.group_transform_class") == ANCHOR_MIXER
    if not mixer and (not manager or (manager in (_V1_MANAGER, _LEGACY_MANAGER) and manager != expected)):
        raise DaGRPOConfigError(
            f"algorithm.dagrpo.anchor.enable=true with trainer.use_v1={str(use_v1).lower()} needs the anchor-mixing "
            f"agent loop manager, but actor_rollout_ref.rollout.agent.agent_loop_manager_class={manager}; set "
            f"actor_rollout_ref.rollout.agent.agent_loop_manager_class={expected} "
            "(or algorithm.dagrpo.anchor.enable=false)."
        )
    if not use_v1:
        corr = "algorithm.rollout_correction"
        active = [k for k in ("rollout_is", "rollout_rs") if _select(config, f"{corr}.{k}") is not None]
        if active:
            raise DaGRPOConfigError(
                f"With trainer.use_v1=false, rollout correction ({', '.join(f'{corr}.{k}' for k in active)}) would "
                "weight and reject anchors, which have no rollout log-probs; set "
                f"{', '.join(f'{corr}.{k}=null' for k in active)}, "
                "or trainer.use_v1=true (the v1 trainer leaves anchors out of the correction), "
                "or algorithm.dagrpo.anchor.enable=false."
            )
    for path in _train_files(config):
        if dataset_has_anchors(path) is False:
            raise DaGRPOConfigError(
                f"algorithm.dagrpo.anchor.enable=true but data.train_files entry {path!r} has no anchors "
                f"(no extra_info.{ANCHOR_TEXT} column); prepare it with `python -m dagrpo_verl.data.prepare`, "
                "or set algorithm.dagrpo.anchor.enable=false."
            )
