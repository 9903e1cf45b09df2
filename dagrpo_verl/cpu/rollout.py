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
"""``hf_cpu``: a CPU rollout backend for verl built on ``transformers`` generation.

verl's rollout backends (vLLM, SGLang, TensorRT-LLM) are GPU servers. This backend
plays the same three roles with a plain ``AutoModelForCausalLM`` on the CPU:

* :class:`HFCPUServer` - the "inference server" (one Ray actor per replica). verl's
  agent loops call ``generate(prompt_ids, sampling_params, request_id)`` on it through
  ``LLMServerClient`` exactly as on ``vLLMHttpServer``: token ids in, a
  :class:`~verl.workers.rollout.replica.TokenOutput` (token ids, log-probs) out.
  Concurrent requests are batched into one ``model.generate`` call (left padding).
* :class:`HFCPUReplica` - the :class:`~verl.workers.rollout.replica.RolloutReplica`
  that launches the server; registered as ``hf_cpu`` in ``RolloutReplicaRegistry``.
* :class:`HFCPUServerAdapter` - the :class:`~verl.workers.rollout.base.BaseRollout`
  living in the training worker (``ActorRolloutRefWorker.rollout``). After each update,
  verl's checkpoint engine hands it the trainer's full weights (``update_weights``), which
  it ships to its server through Ray.

Select it with ``actor_rollout_ref.rollout.name=hf_cpu`` (see ``docs/cpu.md``).

Sampling follows vLLM's semantics: ``temperature`` (0 = greedy), ``top_p``, ``top_k``
(-1 or 0 = off), ``repetition_penalty``, ``max_tokens``/``max_new_tokens`` (default: the
rest of ``prompt_length + response_length``, at most ``response_length``), ``ignore_eos``,
``logprobs``. The returned log-probs are those of the sampled tokens under
``softmax(logits / temperature)`` (raw logits when greedy), i.e. what verl's actor
computes; top-k/top-p truncation is not applied to them. Generation stops at the
tokenizer's and the model's eos tokens; the eos token is part of the response, as in vLLM.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import Generator
from typing import Any

import ray
import torch
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
from verl.utils.config import omega_conf_to_dataclass
from verl.workers.config import HFModelConfig, RolloutConfig
from verl.workers.rollout.base import BaseRollout
from verl.workers.rollout.replica import RolloutReplica, TokenOutput

__all__ = ["ROLLOUT_NAME", "HFCPUReplica", "HFCPUServer", "HFCPUServerAdapter", "server_actor_name"]

#: Value of ``actor_rollout_ref.rollout.name`` that selects this backend.
ROLLOUT_NAME = "hf_cpu"

# After the first request of a batch arrives, wait this long for the concurrent ones
# (agent loops send a whole batch's requests at once, one Ray call each).
_BATCH_WINDOW_S = 0.01


def server_actor_name(replica_rank: int, suffix: str = "") -> str:
    """Ray actor name of the server of replica ``replica_rank`` (the adapter finds it by name)."""
    return f"{ROLLOUT_NAME}_server_{suffix}{replica_rank}"


@dataclasses.dataclass(frozen=True)
class _Sampling:
    """Sampling settings shared by one batched ``generate`` call."""

    temperature: float
    top_p: float
    top_k: int
    repetition_penalty: float
    ignore_eos: bool
    logprobs: bool


@dataclasses.dataclass
class _Request:
    """One queued generation request."""

    prompt_ids: list[int]
    max_tokens: int
    sampling: _Sampling
    future: asyncio.Future


class HFCPUServer:
    """Token-in/token-out generation server on the CPU (one Ray actor per replica).

    Args:
        config: the rollout config (``actor_rollout_ref.rollout``), DictConfig or dataclass.
        model_config: the model config (``actor_rollout_ref.model``), DictConfig or dataclass.
    """

    def __init__(self, config: Any, model_config: Any) -> None:
        from transformers import AutoModelForCausalLM

        self.config: RolloutConfig = omega_conf_to_dataclass(config)
        self.model_config: HFModelConfig = omega_conf_to_dataclass(model_config, dataclass_type=HFModelConfig)
        dtype = getattr(torch, self.config.dtype)
        self.model = AutoModelForCausalLM.from_pretrained(
            self.model_config.local_path,
            config=self.model_config.hf_config,
            dtype=dtype,
            # the trainer's choice (often flash_attention_2) may not exist on the CPU
            attn_implementation="sdpa",
            trust_remote_code=self.model_config.trust_remote_code,
        ).eval()
        tokenizer = self.model_config.tokenizer
        self.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        eos = {tokenizer.eos_token_id}
        model_eos = self.model.generation_config.eos_token_id
        eos.update(model_eos if isinstance(model_eos, list) else [model_eos])
        self.eos_token_ids = sorted(i for i in eos if i is not None)
        self.global_steps: int | None = None
        self._queue: list[_Request] = []
        self._drainer: asyncio.Task | None = None
        self._model_lock = asyncio.Lock()

    # ------------------------------------------------------------------ generation

    async def generate(
        self,
        prompt_ids: list[int],
        sampling_params: dict[str, Any],
        request_id: str,
        image_data: list[Any] | None = None,
        video_data: list[Any] | None = None,
        audio_data: list[Any] | None = None,
        mm_processor_kwargs: dict[str, Any] | None = None,
    ) -> TokenOutput:
        """Generate one response for ``prompt_ids`` (same contract as ``vLLMHttpServer.generate``)."""
        if image_data is not None or video_data is not None or audio_data is not None or mm_processor_kwargs:
            raise NotImplementedError(f"{ROLLOUT_NAME} rollout is text-only (request {request_id})")
        prompt_ids = [int(t) for t in prompt_ids]
        params = dict(sampling_params)
        budget = min(
            self.config.response_length,
            self.config.prompt_length + self.config.response_length - len(prompt_ids),
        )
        max_tokens = params.pop("max_tokens", params.pop("max_new_tokens", budget))
        if self.config.max_model_len is not None:
            max_tokens = min(max_tokens, self.config.max_model_len - len(prompt_ids))
        temperature = float(params.get("temperature", 1.0))
        sampling = _Sampling(
            temperature=temperature,
            top_p=float(params.get("top_p", 1.0)),
            top_k=int(params.get("top_k", -1)),
            repetition_penalty=float(params.get("repetition_penalty", 1.0)),
            ignore_eos=bool(params.get("ignore_eos", False)),
            logprobs=bool(params.get("logprobs", False)),
        )
        future = asyncio.get_running_loop().create_future()
        self._queue.append(_Request(prompt_ids, max(1, int(max_tokens)), sampling, future))
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.create_task(self._drain())
        token_ids, log_probs, stop_reason = await future
        return TokenOutput(
            token_ids=token_ids,
            log_probs=log_probs,
            stop_reason=stop_reason,
            extra_fields={"global_steps": self.global_steps},
        )

    async def _drain(self) -> None:
        """Serve the queue: batch requests with equal sampling settings, one batch at a time."""
        while self._queue:
            await asyncio.sleep(_BATCH_WINDOW_S)
            sampling = self._queue[0].sampling
            batch = [r for r in self._queue if r.sampling == sampling][: self.config.max_num_seqs]
            self._queue = [r for r in self._queue if all(r is not b for b in batch)]
            try:
                async with self._model_lock:
                    results = await asyncio.to_thread(
                        self._generate_batch, [r.prompt_ids for r in batch], [r.max_tokens for r in batch], sampling
                    )
            except Exception as exc:  # noqa: BLE001 - hand any error to every waiting caller
                for request in batch:
                    request.future.set_exception(exc)
                continue
            for request, result in zip(batch, results, strict=True):
                request.future.set_result(result)

    @torch.no_grad()
    def _generate_batch(
        self, prompts: list[list[int]], max_tokens: list[int], sampling: _Sampling
    ) -> list[tuple[list[int], list[float] | None, str]]:
        """Run one left-padded ``model.generate``; return (token ids, log-probs, stop reason) per prompt."""
        from transformers import GenerationConfig

        width = max(len(p) for p in prompts)
        input_ids = torch.tensor([[self.pad_token_id] * (width - len(p)) + p for p in prompts], dtype=torch.long)
        attention_mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], dtype=torch.long)
        greedy = sampling.temperature <= 0
        n_new = max(max_tokens)
        generation_config = GenerationConfig(
            max_new_tokens=n_new,
            # ignore_eos: the eos token is never chosen before the budget is spent
            min_new_tokens=n_new if sampling.ignore_eos else 0,
            do_sample=not greedy,
            temperature=1.0 if greedy else sampling.temperature,
            top_p=sampling.top_p,
            top_k=max(sampling.top_k, 0),
            repetition_penalty=sampling.repetition_penalty,
            eos_token_id=self.eos_token_ids,
            pad_token_id=self.pad_token_id,
            return_dict_in_generate=True,
            output_logits=sampling.logprobs,
        )
        out = self.model.generate(
            input_ids=input_ids, attention_mask=attention_mask, generation_config=generation_config
        )
        new_tokens = out.sequences[:, width:]
        log_probs = None
        if sampling.logprobs:
            logits = torch.stack(out.logits, dim=1).float()  # (batch, steps, vocab), before any processor
            if not greedy:
                logits = logits / sampling.temperature
            log_probs = torch.log_softmax(logits, dim=-1).gather(-1, new_tokens.unsqueeze(-1)).squeeze(-1)
        results = []
        for row, limit in enumerate(max_tokens):
            ids = new_tokens[row, :limit].tolist()
            if not sampling.ignore_eos:
                end = next((i + 1 for i, t in enumerate(ids) if t in self.eos_token_ids), len(ids))
                ids = ids[:end]
            row_log_probs = log_probs[row, : len(ids)].tolist() if log_probs is not None else None
            results.append((ids, row_log_probs, "completed"))
        return results

    # ------------------------------------------------------------------ weights

    async def update_weights(self, named_tensors: list[tuple[str, torch.Tensor]], global_steps: int | None) -> None:
        """Copy the trainer's weights (HF parameter names, full tensors) into the model."""
        async with self._model_lock:
            state = self.model.state_dict()
            unknown = [name for name, _ in named_tensors if name not in state]
            if unknown:
                raise KeyError(f"{ROLLOUT_NAME}: weights not in the rollout model: {unknown[:5]}")
            for name, tensor in named_tensors:
                state[name].copy_(tensor)
        self.global_steps = global_steps

    async def set_global_steps(self, global_steps: int) -> None:
        """Record the weight version reported in ``TokenOutput.extra_fields['global_steps']``."""
        self.global_steps = global_steps

    # ------------------------------------------------------------------ life cycle

    async def wake_up(self, tags: list[str] | None = None) -> None:
        """No-op: weights and caches stay in host memory."""

    async def sleep(self) -> None:
        """No-op: nothing to release on the CPU."""

    async def clear_kv_cache(self) -> None:
        """No-op: there is no cache kept between ``generate`` calls."""

    async def release_kv_cache(self) -> None:
        """No-op: there is no cache kept between ``generate`` calls."""

    async def resume_kv_cache(self) -> None:
        """No-op: there is no cache kept between ``generate`` calls."""

    async def abort_all_requests(self, reset_prefix_cache: bool = True, reject_request: bool = False) -> dict:
        """Finish the queued, not yet started requests with an empty ``aborted`` output.

        The batch being generated runs to its end. ``reject_request`` has no effect:
        requests arriving later are served normally.
        """
        aborted, self._queue = self._queue, []
        for request in aborted:
            request.future.set_result(([], None, "aborted"))
        return {"aborted_count": len(aborted), "request_ids": []}

    async def resume_generation(self) -> None:
        """No-op: generation is never paused (see :meth:`abort_all_requests`)."""

    async def start_profile(self, **kwargs: Any) -> None:
        """No-op: no profiler integration."""

    async def stop_profile(self) -> None:
        """No-op: no profiler integration."""


class HFCPUReplica(RolloutReplica):
    """Rollout replica running one :class:`HFCPUServer` (tensor/data/pipeline parallel size 1)."""

    async def launch_servers(self) -> None:
        """Start the server actor on the node of the replica's worker."""
        if self.world_size != 1:
            raise ValueError(
                f"{ROLLOUT_NAME} rollout runs one model per replica: set actor_rollout_ref.rollout."
                f"tensor_model_parallel_size, data_parallel_size and pipeline_model_parallel_size to 1 "
                f"(world size is {self.world_size})"
            )
        if self.is_reward_model:
            suffix = "reward_"
        elif self.is_teacher_model:
            suffix = "teacher_"
        else:
            suffix = ""
        node_id = await self.workers[0].__ray_call__.remote(lambda worker: ray.get_runtime_context().get_node_id())
        server = (
            ray.remote(HFCPUServer)
            .options(
                name=server_actor_name(self.replica_rank, suffix) + self.name_suffix,
                scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node_id, soft=False),
                max_concurrency=self.max_concurrency,
            )
            .remote(config=self.config, model_config=self.model_config)
        )
        # wait until the model is loaded, so a failure surfaces here
        await server.set_global_steps.remote(None)
        self.servers = [server]
        self._server_handle = server
        self._server_address = f"{ROLLOUT_NAME}://{server_actor_name(self.replica_rank, suffix)}{self.name_suffix}"


class HFCPUServerAdapter(BaseRollout):
    """The training worker's handle on its :class:`HFCPUServer`: forwards weight updates.

    One training rank per replica (the rollout world size is 1), so trainer rank ``r``
    feeds the server of replica ``r``.
    """

    def __init__(
        self,
        config: RolloutConfig,
        model_config: HFModelConfig,
        device_mesh: Any,
        replica_rank: int = -1,
    ) -> None:
        super().__init__(config, model_config, device_mesh)
        self.replica_rank = int(os.environ["RANK"]) if replica_rank == -1 else replica_rank
        self.server_handle: ray.actor.ActorHandle | None = None

    def _server(self) -> ray.actor.ActorHandle:
        """The server actor (looked up lazily: it starts after the training worker)."""
        if self.server_handle is None:
            self.server_handle = ray.get_actor(server_actor_name(self.replica_rank))
        return self.server_handle

    async def resume(self, tags: list[str]) -> None:
        """No-op: the server keeps its weights in host memory."""

    async def release(self) -> None:
        """No-op: the server keeps its weights in host memory."""

    async def update_weights(
        self,
        weights: Generator[tuple[str, torch.Tensor], None, None],
        global_steps: int | None = None,
        wire_format: str = "named_tensors",
        peft_config: Any = None,
        **kwargs: Any,
    ) -> None:
        """Send the trainer's full weights to the server (one Ray call).

        Args:
            weights: ``(HF parameter name, full tensor)`` pairs from the training engine.
            global_steps: weight version, echoed in the server's outputs.
            wire_format: only ``"named_tensors"`` (full tensors) is supported.
            peft_config: must be None: LoRA adapters are not supported (``lora.merge=True`` works).
        """
        if wire_format != "named_tensors":
            raise NotImplementedError(f"{ROLLOUT_NAME} rollout takes full tensors, not wire_format={wire_format!r}")
        if peft_config is not None:
            raise NotImplementedError(f"{ROLLOUT_NAME} rollout cannot load LoRA adapters; set model.lora.merge=True")
        named = [(name, tensor.detach().to("cpu")) for name, tensor in weights]
        await self._server().update_weights.remote(named, global_steps)
