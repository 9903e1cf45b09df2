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
"""The gradient-conflict meter's maths, policy loading, group sampling and command line
(package docstring: :mod:`dagrpo_verl.conflict`)."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

import dagrpo_verl.conflict as conflict_package
from dagrpo_verl.algo import core
from dagrpo_verl.algo.settings import dagrpo_config_from
from dagrpo_verl.conflict import CONFLICT_FILE, GROUPS_TABLE, QUANTITIES, SAMPLES_FILE, metric_name
from dagrpo_verl.fields import ACC, IS_ANCHOR, JUDGE_SCORE

__all__ = [
    "GroupConflict",
    "Sample",
    "conflict_from_gram",
    "group_advantages",
    "load_policy",
    "main",
    "measure_group",
    "summarise",
    "weighted_logprob_gradient",
]

_QUANTILES = {"p10": 0.10, "p25": 0.25, "p50": 0.50, "p75": 0.75, "p90": 0.90}
_STEP_DIR = re.compile(r"global_step_(\d+)$")
# Subsets, in the order of the Gram matrix rows: kept/masked positives, kept/masked negatives.
_SUBSETS = ("pos_kept", "pos_masked", "neg_kept", "neg_masked")


@dataclass
class Sample:
    """One scored response of a group.

    Attributes:
        uid: group label (one prompt).
        prompt_ids: prompt token ids (chat template applied).
        response_ids: response token ids (a rollout's eos included).
        reward: sequence reward R.
        judge_score: judge score S (NaN = missing).
        is_anchor: True for an off-policy anchor.
    """

    uid: str
    prompt_ids: list[int]
    response_ids: list[int]
    reward: float
    judge_score: float = math.nan
    is_anchor: bool = False


@dataclass
class GroupConflict:
    """The measurements of one group (NaN where undefined), and its subset sizes."""

    uid: str
    size: int
    n_pos: int
    n_neg: int
    n_pos_masked: int
    n_neg_masked: int
    n_anchor: int
    values: dict[str, float] = field(default_factory=dict)


# ----------------------------------------------------------------------------- maths


def group_advantages(samples: Sequence[Sample], algorithm_config: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """``(A, A')`` per sample, ``(bs,)`` each, from :func:`dagrpo_verl.algo.core.compute_dagrpo_outcome_advantage`
    with the run's ``algorithm`` settings (as :func:`dagrpo_verl.integration.trainer.compute_batch_advantage` calls it).

    ``A`` is the estimator without masks; ``A'`` applies eq. 8-9 with ``algorithm.dagrpo.delta`` and
    ``on_missing_score`` whatever ``algorithm.dagrpo.rectification`` says (for a GRPO run, ``A'`` is
    what the masks would have done).
    """
    settings = dagrpo_config_from(algorithm_config)
    rewards = torch.tensor([[s.reward] for s in samples], dtype=torch.float32)
    common = dict(
        token_level_rewards=rewards,
        response_mask=torch.ones_like(rewards),
        index=np.array([s.uid for s in samples], dtype=object),
        judge_scores=torch.tensor([s.judge_score for s in samples], dtype=torch.float32),
        anchor_mask=torch.tensor([s.is_anchor for s in samples], dtype=torch.bool),
        delta=float(settings.delta),
        on_missing_score=settings.on_missing_score,
        norm_adv_by_std_in_grpo=bool(algorithm_config.get("norm_adv_by_std_in_grpo", True)),
    )
    before, _, _ = core.compute_dagrpo_outcome_advantage(rectification=False, **common)
    after, _, _ = core.compute_dagrpo_outcome_advantage(rectification=True, **common)
    return before[:, 0], after[:, 0]


def weighted_logprob_gradient(
    model: torch.nn.Module,
    prompts: Sequence[Sequence[int]],
    responses: Sequence[Sequence[int]],
    weights: Sequence[float],
    temperature: float = 1.0,
    micro_batch: int = 16,
    pad_token_id: int = 0,
) -> torch.Tensor:
    """``∇θ Σ_i w_i Σ_t log π(o_{i,t} | q_i, o_{i,<t})`` as one flat vector over the trainable parameters.

    The log-probs are those verl's actor computes: ``log_softmax(logits / temperature)`` of the
    response tokens. Sequences are right-padded; padding is masked out.

    Args:
        model: a causal LM (``model(input_ids, attention_mask).logits``: ``(b, L, V)``).
        prompts, responses: ``n`` token-id lists each.
        weights: ``(n,)`` per-sequence weights (the advantages).

    Returns:
        ``(P,)`` gradient in the parameters' dtype (P = trainable parameters, tied weights once).
    """
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.grad = None
    for start in range(0, len(prompts), micro_batch):
        stop = start + micro_batch
        seqs = [list(q) + list(o) for q, o in zip(prompts[start:stop], responses[start:stop], strict=True)]
        length = max(len(s) for s in seqs)
        input_ids = torch.full((len(seqs), length), pad_token_id, dtype=torch.long)
        attention = torch.zeros((len(seqs), length), dtype=torch.long)
        response_mask = torch.zeros((len(seqs), length), dtype=torch.bool)
        for row, (seq, prompt) in enumerate(zip(seqs, prompts[start:stop], strict=True)):
            input_ids[row, : len(seq)] = torch.tensor(seq)
            attention[row, : len(seq)] = 1
            response_mask[row, len(prompt) : len(seq)] = True
        logits = model(input_ids=input_ids, attention_mask=attention).logits[:, :-1] / temperature
        log_probs = torch.log_softmax(logits, dim=-1).gather(-1, input_ids[:, 1:, None]).squeeze(-1)
        sequence_log_probs = (log_probs * response_mask[:, 1:]).sum(dim=-1)
        w = torch.tensor(list(weights[start:stop]), dtype=sequence_log_probs.dtype)
        (sequence_log_probs * w).sum().backward()
    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])
    for p in params:
        p.grad = None
    return flat


def _cos(gram: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    na, nb = float(a @ gram @ a), float(b @ gram @ b)
    if na <= 0.0 or nb <= 0.0:
        return math.nan
    return float(np.clip((a @ gram @ b) / math.sqrt(na * nb), -1.0, 1.0))


def _norm(gram: np.ndarray, a: np.ndarray) -> float:
    return math.sqrt(max(float(a @ gram @ a), 0.0))


def conflict_from_gram(gram: np.ndarray) -> dict[str, float]:
    """The :data:`QUANTITIES` of one group from the ``(4, 4)`` Gram matrix of the subset gradients
    ``g(P_k), g(P_m), g(N_k), g(N_m)`` (an empty subset has a zero row and column)."""
    pk, pm, nk, nm = np.eye(4)
    pos, neg = pk + pm, nk + nm
    return {
        "cos_before": _cos(gram, pos, neg),
        "cos_after": _cos(gram, pk, nk),
        "cos_masked_pos": _cos(gram, pm, neg),
        "cos_kept_pos": _cos(gram, pk, neg),
        "cos_masked_neg": _cos(gram, nm, pos),
        "cos_kept_neg": _cos(gram, nk, pos),
        "cos_removed_vs_kept": _cos(gram, pm + nm, pk + nk),
        "norm_pos": _norm(gram, pos),
        "norm_neg": _norm(gram, neg),
        "norm_before": _norm(gram, pos + neg),
        "norm_after": _norm(gram, pk + nk),
    }


def measure_group(
    model: torch.nn.Module,
    samples: Sequence[Sample],
    advantages: torch.Tensor,
    rectified: torch.Tensor,
    temperature: float = 1.0,
    micro_batch: int = 16,
    pad_token_id: int = 0,
) -> GroupConflict:
    """Gradient conflict of one group: the subset gradients (package docstring) and their Gram matrix.

    Args:
        samples: the group's ``n`` samples.
        advantages, rectified: ``(n,)`` A and A' (:func:`group_advantages`).
    """
    if len({s.uid for s in samples}) != 1:
        raise ValueError("measure_group takes the samples of one group (one uid).")
    a = advantages.tolist()
    masked = [(x != 0.0) and (y == 0.0) for x, y in zip(a, rectified.tolist(), strict=True)]
    members = {
        "pos_kept": [i for i, x in enumerate(a) if x > 0 and not masked[i]],
        "pos_masked": [i for i, x in enumerate(a) if x > 0 and masked[i]],
        "neg_kept": [i for i, x in enumerate(a) if x < 0 and not masked[i]],
        "neg_masked": [i for i, x in enumerate(a) if x < 0 and masked[i]],
    }
    vectors = []
    for name in _SUBSETS:
        rows = members[name]
        if not rows:
            vectors.append(None)
            continue
        vectors.append(
            weighted_logprob_gradient(
                model,
                [samples[i].prompt_ids for i in rows],
                [samples[i].response_ids for i in rows],
                [a[i] for i in rows],
                temperature=temperature,
                micro_batch=micro_batch,
                pad_token_id=pad_token_id,
            ).double()
        )
    gram = np.zeros((4, 4))
    for i, u in enumerate(vectors):
        for j, v in enumerate(vectors):
            if u is not None and v is not None and j >= i:
                gram[i, j] = gram[j, i] = float(u @ v)
    result = GroupConflict(
        uid=samples[0].uid,
        size=len(samples),
        n_pos=len(members["pos_kept"]) + len(members["pos_masked"]),
        n_neg=len(members["neg_kept"]) + len(members["neg_masked"]),
        n_pos_masked=len(members["pos_masked"]),
        n_neg_masked=len(members["neg_masked"]),
        n_anchor=sum(s.is_anchor for s in samples),
    )
    result.values = conflict_from_gram(gram) if result.n_pos and result.n_neg else dict.fromkeys(QUANTITIES, math.nan)
    return result


def summarise(groups: pd.DataFrame) -> pd.DataFrame:
    """Per-step statistics (:data:`STATS`) of every quantity over the measured groups.

    Args:
        groups: one row per group with a ``step`` column and the :data:`QUANTITIES` columns.

    Returns:
        One row per step, columns :func:`metric_name` ``(quantity, stat)`` plus
        ``dagrpo/conflict_groups`` (groups measured) and ``dagrpo/conflict_groups_without_signal``.
    """
    rows = []
    for step, frame in groups.groupby("step", sort=True):
        signal = frame[(frame["n_pos"] > 0) & (frame["n_neg"] > 0)]
        row: dict[str, float] = {
            "step": int(step),
            "dagrpo/conflict_groups": float(len(signal)),
            "dagrpo/conflict_groups_without_signal": float(len(frame) - len(signal)),
        }
        for quantity in QUANTITIES:
            values = signal[quantity].dropna()
            row[metric_name(quantity, "n")] = float(len(values))
            row[metric_name(quantity, "mean")] = float(values.mean()) if len(values) else math.nan
            for stat, q in _QUANTILES.items():
                row[metric_name(quantity, stat)] = float(values.quantile(q)) if len(values) else math.nan
        rows.append(row)
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- policies


def _has_hf_weights(path: Path) -> bool:
    patterns = ("*.safetensors", "pytorch_model*.bin")
    return (path / "config.json").is_file() and any(next(path.glob(p), None) is not None for p in patterns)


def _checkpoint_actor_dir(path: Path) -> Path | None:
    for candidate in (path, path / "actor"):
        if (candidate / "fsdp_config.json").is_file():
            return candidate
    return None


def policy_step(path: str | Path) -> int | None:
    """The training step of a policy path (``.../global_step_N[/actor[/huggingface]]``), or None."""
    for part in reversed(Path(path).resolve().parts):
        m = _STEP_DIR.match(part)
        if m:
            return int(m.group(1))
    return None


def _fsdp_state_dict(actor_dir: Path) -> dict[str, torch.Tensor]:
    """Full float state dict of a verl FSDP checkpoint (``model_world_size_W_rank_R.pt``).

    World size 1 is read directly in the saved precision (each DTensor's local tensor is the whole
    tensor). Larger world sizes go through verl's own merger (``verl.model_merger``), which casts
    to bfloat16.
    """
    config = json.loads((actor_dir / "fsdp_config.json").read_text())
    world_size = int(config.get("world_size", 0))
    if world_size == 1:
        state = torch.load(actor_dir / "model_world_size_1_rank_0.pt", map_location="cpu", weights_only=False)
        return {k: (v.to_local() if hasattr(v, "to_local") else v) for k, v in state.items()}
    if world_size < 1:
        raise ValueError(f"{actor_dir / 'fsdp_config.json'}: world_size={world_size!r}; not a verl FSDP checkpoint.")
    import tempfile

    from verl.model_merger.base_model_merger import ModelMergerConfig
    from verl.model_merger.fsdp_model_merger import FSDPModelMerger

    print(f"conflict: merging {world_size} FSDP shards with verl.model_merger (bfloat16 weights)", file=sys.stderr)
    with tempfile.TemporaryDirectory() as target:
        merger = FSDPModelMerger(
            ModelMergerConfig(
                operation="merge",
                backend="fsdp",
                local_dir=str(actor_dir),
                target_dir=target,
                hf_model_config_path=str(actor_dir / "huggingface"),
            )
        )
        merger.merge_and_save()
        from safetensors.torch import load_file

        state: dict[str, torch.Tensor] = {}
        for shard in sorted(Path(target).glob("*.safetensors")):
            state.update(load_file(shard))
    return state


def load_policy(path: str | Path, dtype: torch.dtype = torch.float32) -> tuple[torch.nn.Module, Any]:
    """``(model, tokenizer)`` of a Hugging Face directory or a verl checkpoint, in eval mode.

    A verl checkpoint is ``global_step_N`` or its ``actor`` folder: its ``huggingface/`` folder
    gives the model config and tokenizer, and the weights when saved with
    ``checkpoint.save_contents`` including ``hf_model``; otherwise the FSDP shards are merged.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    actor_dir = _checkpoint_actor_dir(path)
    if actor_dir is None:
        if not _has_hf_weights(path):
            raise FileNotFoundError(
                f"{path}: neither a Hugging Face model directory (config.json + weights) nor a verl checkpoint "
                "(global_step_N or global_step_N/actor with fsdp_config.json)."
            )
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, attn_implementation="sdpa")
        return model.eval(), AutoTokenizer.from_pretrained(path)
    hf_dir = actor_dir / "huggingface"
    tokenizer = AutoTokenizer.from_pretrained(hf_dir)
    if _has_hf_weights(hf_dir):
        model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=dtype, attn_implementation="sdpa")
        return model.eval(), tokenizer
    config = AutoConfig.from_pretrained(hf_dir)
    model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation="sdpa")
    missing, unexpected = model.load_state_dict(_fsdp_state_dict(actor_dir), strict=True)
    tied = set(getattr(model, "_tied_weights_keys", None) or [])
    if unexpected or set(missing) - tied:
        absent = sorted(set(missing) - tied)[:5]
        raise ValueError(
            f"{actor_dir}: checkpoint does not match {config.architectures}: missing {absent}, "
            f"unexpected {sorted(unexpected)[:5]}."
        )
    model.tie_weights()
    return model.to(dtype).eval(), tokenizer


# ----------------------------------------------------------------------------- sampling groups


@dataclass(frozen=True)
class SamplingSettings:
    """The run's rollout settings the meter samples with."""

    n: int
    temperature: float
    top_p: float
    top_k: int
    response_length: int

    @classmethod
    def from_config(cls, config: Any) -> SamplingSettings:
        rollout = config.actor_rollout_ref.rollout
        return cls(
            n=int(rollout.n),
            temperature=float(rollout.temperature),
            top_p=float(rollout.top_p),
            top_k=int(rollout.top_k),
            response_length=int(rollout.response_length),
        )


@torch.no_grad()
def _generate(model, prompt_ids: list[int], settings: SamplingSettings, eos_id: int) -> list[list[int]]:
    """``settings.n`` sampled responses of one prompt, each cut after its first eos (kept, as verl's rollout)."""
    inputs = torch.tensor([prompt_ids] * settings.n, dtype=torch.long)
    sample = settings.temperature > 0
    output = model.generate(
        input_ids=inputs,
        attention_mask=torch.ones_like(inputs),
        do_sample=sample,
        temperature=settings.temperature if sample else None,
        top_p=settings.top_p if sample else None,
        top_k=(settings.top_k if settings.top_k > 0 else 0) if sample else None,
        max_new_tokens=settings.response_length,
        eos_token_id=eos_id,
        pad_token_id=eos_id,
    )
    responses = []
    for row in output[:, len(prompt_ids) :].tolist():
        responses.append(row[: row.index(eos_id) + 1] if eos_id in row else row)
    return responses


def _reward_fn(config: Any) -> Callable:
    """The run's reward function, loaded as verl loads it (custom function with its kwargs, else verl's default)."""
    from verl.trainer.ppo.reward import get_custom_reward_fn
    from verl.utils.reward_score import default_compute_score

    return get_custom_reward_fn(config) or default_compute_score


def _score_all(reward_fn: Callable, items: list[dict]) -> list[dict]:
    """Call the reward function on every item as verl's naive reward manager does; dict results as dicts."""

    async def one(item):
        result = reward_fn(**item)
        if asyncio.iscoroutine(result):
            result = await result
        return result if isinstance(result, dict) else {"score": float(result)}

    async def run():
        return await asyncio.gather(*(one(item) for item in items))

    return asyncio.run(run())


def sample_groups(
    model: torch.nn.Module,
    tokenizer: Any,
    rows: Sequence[dict],
    config: Any,
    seed: int,
) -> list[Sample]:
    """Sample, score and anchor-mix one group per data row, as a training step of the run would.

    Rollouts: the run's ``actor_rollout_ref.rollout`` sampling settings. Rewards and judge scores:
    the run's reward function (``reward.custom_reward_function``). Anchors: the run's
    ``algorithm.dagrpo.anchor`` settings through the pure decisions of :mod:`dagrpo_verl.algo.anchors` and
    the anchor response of :func:`dagrpo_verl.integration.agent_loop.anchor_response_ids`.
    """
    from dagrpo_verl.algo.anchors import plan_anchor_groups, rollout_correct, skip_failed_anchors
    from dagrpo_verl.integration.agent_loop import _anchor_judge_score, anchor_response_ids, anchor_text_of

    settings = SamplingSettings.from_config(config)
    anchor_config = dagrpo_config_from(config.algorithm).anchor
    chat_kwargs = dict(config.data.get("apply_chat_template_kwargs", None) or {})
    reward_fn = _reward_fn(config)
    eos_id = int(tokenizer.eos_token_id)
    torch.manual_seed(seed)

    prompts, responses, items = [], [], []
    for index, row in enumerate(rows):
        messages = [dict(m) for m in row["prompt"]]
        prompt_ids = list(
            tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, tokenize=True, return_dict=False, **chat_kwargs
            )
        )
        for response in _generate(model, prompt_ids, settings, eos_id):
            prompts.append((index, prompt_ids))
            responses.append(response)
            items.append(_reward_item(tokenizer, row, response, is_anchor=False))
    results = _score_all(reward_fn, items)
    if not any(JUDGE_SCORE in r for r in results):
        raise ValueError(
            "the run's reward function returns no 'judge_score', so the masks of eq. 8-9 cannot act and the meter "
            "would report A' = A; use reward.custom_reward_function.path=pkg://dagrpo_verl.reward (or a function "
            f"returning '{JUDGE_SCORE}')."
        )
    samples = [
        Sample(str(index), ids, response, float(r["score"]), _as_float(r.get(JUDGE_SCORE)))
        for (index, ids), response, r in zip(prompts, responses, results, strict=True)
    ]
    if not anchor_config.enable:
        return samples

    plans = plan_anchor_groups(
        uids=[s.uid for s in samples],
        rewards=[s.reward for s in samples],
        correct=rollout_correct([s.reward for s in samples], [r.get(ACC) for r in results]),
        has_anchor=[anchor_text_of(dict(rows[int(s.uid)].get("extra_info") or {})) is not None for s in samples],
        config=anchor_config,
        tiebreak=[i for i in range(len(samples))],
    )
    for plan in plans:
        if plan.num_anchors == 0:
            continue
        row = rows[int(plan.uid)]
        text = anchor_text_of(dict(row.get("extra_info") or {}))
        response = anchor_response_ids(tokenizer, text, settings.response_length)
        (result,) = _score_all(reward_fn, [_reward_item(tokenizer, row, response, is_anchor=True)])
        plan, _ = skip_failed_anchors(
            plan, bool(rollout_correct([result["score"]], [result.get(ACC)])[0]), anchor_config
        )
        judge = _anchor_judge_score(_as_float(result.get(JUDGE_SCORE)), anchor_config)
        template = samples[int(plan.rows[0])]
        anchors = [
            Sample(template.uid, template.prompt_ids, response, float(result["score"]), judge, True)
            for _ in range(plan.num_anchors)
        ]
        if plan.replace_rows.size:
            for row_index, anchor in zip(plan.replace_rows, anchors, strict=True):
                samples[int(row_index)] = anchor
        else:
            samples.extend(anchors)
    return samples


def _as_float(value: Any) -> float:
    return math.nan if value is None else float(value)


def _reward_item(tokenizer, row: dict, response_ids: list[int], is_anchor: bool) -> dict:
    extra_info = dict(row.get("extra_info") or {})
    if is_anchor:
        extra_info[IS_ANCHOR] = True
    return {
        "data_source": row["data_source"],
        "solution_str": tokenizer.decode(response_ids, skip_special_tokens=True),
        "ground_truth": row["reward_model"]["ground_truth"],
        "extra_info": extra_info,
    }


# ----------------------------------------------------------------------------- groups file


def write_groups(path: Path, step: int, samples: Sequence[Sample], advantages, rectified) -> None:
    """Append one step's samples with their A and A' to a JSONL file."""
    with path.open("a", encoding="utf-8") as f:
        for sample, a, r in zip(samples, advantages.tolist(), rectified.tolist(), strict=True):
            record = asdict(sample)
            record["judge_score"] = None if math.isnan(sample.judge_score) else sample.judge_score
            f.write(json.dumps({"step": step, **record, "advantage": a, "rectified_advantage": r}) + "\n")


def read_groups(path: Path) -> dict[int | None, list[Sample]]:
    """Samples of a groups file by step (the layout of :data:`~dagrpo_verl.conflict.SAMPLES_FILE`; ``step``
    optional)."""
    by_step: dict[int | None, list[Sample]] = {}
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                sample = Sample(
                    uid=str(obj["uid"]),
                    prompt_ids=[int(t) for t in obj["prompt_ids"]],
                    response_ids=[int(t) for t in obj["response_ids"]],
                    reward=float(obj["reward"]),
                    judge_score=_as_float(obj.get("judge_score")),
                    is_anchor=bool(obj.get("is_anchor", False)),
                )
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(
                    f"{path}:{n}: not a sample line ({exc!r}); each line needs uid, prompt_ids, response_ids, reward "
                    "and may have judge_score, is_anchor, step."
                ) from exc
            by_step.setdefault(obj.get("step"), []).append(sample)
    return by_step


# ----------------------------------------------------------------------------- run


def measure_samples(model, tokenizer, samples: Sequence[Sample], config: Any, step: int, desc: str) -> list[dict]:
    """Per-group measurement rows of one policy on its samples."""
    advantages, rectified = group_advantages(samples, config.algorithm)
    temperature = float(config.actor_rollout_ref.rollout.temperature) or 1.0
    by_group: dict[str, list[int]] = {}
    for i, s in enumerate(samples):
        by_group.setdefault(s.uid, []).append(i)
    rows = []
    for uid, members in tqdm(by_group.items(), desc=desc, unit="group", leave=False):
        result = measure_group(
            model,
            [samples[i] for i in members],
            advantages[members],
            rectified[members],
            temperature=temperature,
            pad_token_id=int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0),
        )
        judge = [samples[i].judge_score for i in members]
        rows.append({
            "step": step, "uid": uid, "size": result.size, "n_pos": result.n_pos, "n_neg": result.n_neg,
            "n_pos_masked": result.n_pos_masked, "n_neg_masked": result.n_neg_masked, "n_anchor": result.n_anchor,
            "reward_mean": float(np.mean([samples[i].reward for i in members])),
            "judge_mean": float(np.nanmean(judge)) if not all(math.isnan(j) for j in judge) else math.nan,
            **result.values,
        })  # fmt: skip
    return rows


def _run_overrides(run_dir: Path) -> list[str]:
    """The hydra overrides of a training run (``.hydra/overrides.yaml`` written by ``python -m dagrpo_verl.main``),
    after a ``--config-dir=DIR`` for each config directory its command line added (``.hydra/hydra.yaml``), so that
    presets such as ``+experiment=paper`` compose again."""
    import yaml

    found = sorted(run_dir.rglob(".hydra/overrides.yaml"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise FileNotFoundError(
            f"{run_dir}: no .hydra/overrides.yaml below it (hydra writes one in the run's output directory); pass "
            "the policies with --policy and the run's overrides after --."
        )
    hydra_file = found[-1].with_name("hydra.yaml")
    sources = (yaml.safe_load(hydra_file.read_text()) or {}) if hydra_file.exists() else {}
    sources = ((sources.get("hydra") or {}).get("runtime") or {}).get("config_sources") or []
    config_dirs = [
        f"--config-dir={s['path']}"
        for s in sources
        if isinstance(s, dict) and s.get("provider") == "command-line" and s.get("schema") == "file"
    ]
    return config_dirs + [str(o) for o in yaml.safe_load(found[-1].read_text()) or []]


def _checkpoints(config: Any, run_dir: Path) -> list[Path]:
    root = Path(config.trainer.default_local_dir)
    if not root.is_absolute():
        root = run_dir / root
    steps = [p for p in root.glob("global_step_*") if _STEP_DIR.search(p.name)] if root.is_dir() else []
    return sorted(steps, key=lambda p: int(_STEP_DIR.search(p.name).group(1)))


def _data_rows(config: Any, data: str | None, prompts: int, seed: int) -> list[dict]:
    files = (
        [data]
        if data
        else list(
            config.data.train_files if not isinstance(config.data.train_files, str) else [config.data.train_files]
        )
    )
    frame = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    if prompts > len(frame):
        raise ValueError(f"--prompts {prompts} is more than the {len(frame)} rows of {files}.")
    picked = sorted(random.Random(seed).sample(range(len(frame)), prompts))
    return [_plain(frame.iloc[i].to_dict()) for i in picked]


def _plain(value: Any) -> Any:
    """Parquet row values (numpy arrays, nested dicts) as plain Python lists and dicts."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def plot_conflict(summary: pd.DataFrame, out: Path, title: str = "Gradient conflict") -> Path:
    """Per-step mean and inter-quartile band of the cosines and norms (:data:`QUANTITIES`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = (
        ("cos(g+, g−): before vs after the masks", (("cos_before", "before (A)"), ("cos_after", "after (A')"))),
        ("positives vs g−: masked vs kept", (("cos_masked_pos", "masked"), ("cos_kept_pos", "kept"))),
        ("negatives vs g+: masked vs kept", (("cos_masked_neg", "masked"), ("cos_kept_neg", "kept"))),
        ("‖g+ + g−‖: before vs after", (("norm_before", "before (A)"), ("norm_after", "after (A')"))),
    )  # fmt: skip
    fig, axes = plt.subplots(2, 2, figsize=(12, 7.2), squeeze=False)
    steps = summary["step"].to_numpy()
    for ax, (panel_title, lines) in zip(axes.flat, panels, strict=True):
        for quantity, label in lines:
            mean = summary[metric_name(quantity, "mean")].to_numpy()
            count = summary[metric_name(quantity, "n")].to_numpy()
            (line,) = ax.plot(steps, mean, "o-", label=f"{label} (groups: {int(count.sum())})")
            ax.fill_between(
                steps,
                summary[metric_name(quantity, "p25")],
                summary[metric_name(quantity, "p75")],
                color=line.get_color(),
                alpha=0.2,
            )
        ax.set_title(panel_title)
        ax.set_xlabel("step (policy checkpoint)")
        if panel_title.startswith("cos"):
            ax.axhline(0.0, color="grey", linewidth=0.8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{title}: mean per step, band = inter-quartile range over groups")
    fig.tight_layout()
    path = out / "gradient_conflict.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dagrpo_verl.conflict",
        description=conflict_package.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--run", help="training run directory: its checkpoints and its hydra overrides")
    parser.add_argument("--policy", action="append", default=[], help="HF directory or verl checkpoint (repeatable)")
    parser.add_argument("--no-start", action="store_true", help="with --run: skip the start model (step 0)")
    parser.add_argument("--groups", help="measure these samples (a conflict_samples.jsonl) instead of sampling")
    parser.add_argument("--data", help="parquet to draw prompts from (default: the run's data.train_files)")
    parser.add_argument("--prompts", type=int, default=16, help="groups (prompts) per policy")
    parser.add_argument("--seed", type=int, default=0, help="prompt choice and sampling seed (same for every policy)")
    parser.add_argument("--out", help="output directory (default: RUN/conflict)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("overrides", nargs="*", help="hydra overrides of the run (after --run's own, if any)")
    args = parser.parse_args(argv)
    if not args.run and not args.policy:
        parser.error("pass --run RUN_DIR or at least one --policy")
    if args.prompts < 1:
        parser.error("--prompts must be >= 1")
    if args.threads:
        torch.set_num_threads(args.threads)

    from dagrpo_verl.main import compose_config

    run_dir = Path(args.run).resolve() if args.run else None
    overrides = (_run_overrides(run_dir) if run_dir else []) + list(args.overrides)
    config = compose_config(overrides)
    policies: list[tuple[int, Path]] = []
    if run_dir and not args.no_start:
        policies.append((0, Path(config.actor_rollout_ref.model.path)))
    if run_dir:
        policies.extend((policy_step(p), p) for p in _checkpoints(config, run_dir))
    for i, p in enumerate(args.policy):
        step = policy_step(p)
        policies.append((i if step is None else step, Path(p)))
    if not policies:
        parser.error(f"{run_dir}: no checkpoint (global_step_*) under trainer.default_local_dir and --no-start given")
    out = Path(args.out) if args.out else (run_dir / "conflict" if run_dir else Path("conflict"))
    out.mkdir(parents=True, exist_ok=True)
    groups_file = out / SAMPLES_FILE
    given = read_groups(Path(args.groups)) if args.groups else None
    if given is None:
        groups_file.unlink(missing_ok=True)
    rows_data = None if given is not None else _data_rows(config, args.data, args.prompts, args.seed)

    measured = []
    for step, path in tqdm(policies, desc="policies", unit="policy"):
        model, tokenizer = load_policy(path)
        if given is not None:
            samples = given.get(step, given.get(None)) if len(given) > 1 else next(iter(given.values()))
            if samples is None:
                raise ValueError(f"{args.groups}: no samples for step {step} (steps there: {sorted(given, key=str)}).")
        else:
            samples = sample_groups(model, tokenizer, rows_data, config, seed=args.seed)
            write_groups(groups_file, step, samples, *group_advantages(samples, config.algorithm))
        measured.extend(measure_samples(model, tokenizer, samples, config, step, desc=f"step {step}"))
        del model

    groups = pd.DataFrame(measured)
    groups.to_csv(out / GROUPS_TABLE, index=False)
    summary = summarise(groups)
    summary.to_csv(out / "conflict_summary.csv", index=False)
    (out / "conflict_summary.json").write_text(json.dumps(summary.to_dict(orient="records"), indent=2))
    with (out / CONFLICT_FILE).open("w", encoding="utf-8") as f:
        for record in summary.to_dict(orient="records"):
            f.write(
                json.dumps({k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in record.items()})
                + "\n"
            )
    png = plot_conflict(summary, out)
    for record in summary.to_dict(orient="records"):
        print(
            f"step {record['step']}: groups {int(record['dagrpo/conflict_groups'])}, "
            f"cos(g+,g-) before {record[metric_name('cos_before', 'mean')]:+.3f} "
            f"after {record[metric_name('cos_after', 'mean')]:+.3f}; "
            f"masked pos vs g- {record[metric_name('cos_masked_pos', 'mean')]:+.3f} "
            f"kept {record[metric_name('cos_kept_pos', 'mean')]:+.3f}"
        )
    print(f"wrote {out / 'conflict_summary.csv'}, {out / CONFLICT_FILE}, {png}")
    return 0
