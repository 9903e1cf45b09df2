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
"""Generation backends for the evaluator: vLLM (GPU) and transformers (CPU or GPU).

Both turn a chat prompt into text with the model's own chat template and sample
``n`` completions per request with the same settings (temperature, top-p, token
budget), so the two backends are interchangeable for a run.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "Completion",
    "Generator",
    "HFGenerator",
    "Request",
    "SamplingSettings",
    "VLLMGenerator",
    "make_generator",
    "prompt_text",
    "vllm_available",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SamplingSettings:
    """Sampling settings; the defaults are the paper's evaluation settings."""

    temperature: float = 0.6
    top_p: float = 1.0
    max_new_tokens: int = 8192
    seed: int = 0

    def __post_init__(self):
        if self.temperature < 0:
            raise ValueError(f"--temperature must be >= 0 (0 = greedy), got {self.temperature}.")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"--top-p must be in (0, 1], got {self.top_p}.")
        if self.max_new_tokens < 1:
            raise ValueError(f"--max-new-tokens must be >= 1, got {self.max_new_tokens}.")


@dataclass(frozen=True)
class Request:
    """``n`` samples of one prompt text; ``seed`` makes a vLLM request reproducible."""

    text: str
    n: int
    seed: int


@dataclass(frozen=True)
class Completion:
    """One sampled response: its text, generated token count and whether the budget cut it off."""

    text: str
    num_tokens: int
    truncated: bool


class Generator(Protocol):
    """Samples completions for a list of requests (results in request order)."""

    name: str
    settings: SamplingSettings
    tokenizer: object

    def generate(self, requests: list[Request]) -> list[list[Completion]]: ...


def prompt_text(tokenizer, messages) -> str:
    """Render chat messages with the tokenizer's chat template (generation prompt appended).

    A tokenizer without a chat template (a base model) gets the message contents joined by blank lines.
    """
    messages = [dict(m) for m in messages]
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    logger.warning("tokenizer has no chat template; joining the prompt messages as plain text")
    return "\n\n".join(m["content"] for m in messages) + "\n\n"


class HFGenerator:
    """transformers ``generate`` in padded batches (left padding), on CPU or one GPU.

    Sampling is seeded once per process (``settings.seed``), not per request, so a resumed run
    draws different (equally valid) samples than an uninterrupted one would have.

    Args:
        model_path: a Hugging Face model directory or hub id.
        settings: sampling settings.
        batch_size: sequences per ``generate`` call (requests are expanded ``n`` times).
        device: ``"cpu"``, ``"cuda"``...; default: cuda if available.
        dtype: torch dtype name; default: bfloat16 on GPU, float32 on CPU.
    """

    name = "hf"

    def __init__(
        self,
        model_path: str,
        settings: SamplingSettings,
        batch_size: int = 8,
        device: str | None = None,
        dtype: str | None = None,
    ):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if batch_size < 1:
            raise ValueError(f"--batch-size must be >= 1, got {batch_size}.")
        self.settings = settings
        self.batch_size = batch_size
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        torch_dtype = getattr(torch, dtype) if dtype else (torch.bfloat16 if self.device != "cpu" else torch.float32)
        self.tokenizer = AutoTokenizer.from_pretrained(model_path, padding_side="left")
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch_dtype).to(self.device).eval()
        torch.manual_seed(settings.seed)

    def _eos_ids(self) -> set[int]:
        eos = self.model.generation_config.eos_token_id
        ids = set(eos if isinstance(eos, list) else [eos]) if eos is not None else set()
        if self.tokenizer.eos_token_id is not None:
            ids.add(self.tokenizer.eos_token_id)
        return ids

    def generate(self, requests: list[Request]) -> list[list[Completion]]:
        import torch

        s = self.settings
        flat = [(i, r.text) for i, r in enumerate(requests) for _ in range(r.n)]
        out: list[list[Completion]] = [[] for _ in requests]
        eos_ids = self._eos_ids()
        sampling = (
            {"do_sample": True, "temperature": s.temperature, "top_p": s.top_p}
            if s.temperature > 0
            else {"do_sample": False}
        )
        for start in range(0, len(flat), self.batch_size):
            batch = flat[start : start + self.batch_size]
            enc = self.tokenizer([t for _, t in batch], return_tensors="pt", padding=True, add_special_tokens=False)
            enc = {k: v.to(self.device) for k, v in enc.items()}
            with torch.no_grad():
                ids = self.model.generate(
                    **enc, max_new_tokens=s.max_new_tokens, pad_token_id=self.tokenizer.pad_token_id, **sampling
                )
            new = ids[:, enc["input_ids"].shape[1] :].tolist()
            for (i, _), tokens in zip(batch, new, strict=True):
                end = next((j + 1 for j, t in enumerate(tokens) if t in eos_ids), None)
                kept = tokens if end is None else tokens[:end]
                text = self.tokenizer.decode(kept, skip_special_tokens=True)
                out[i].append(Completion(text, len(kept), end is None))
        return out


class VLLMGenerator:
    """vLLM offline engine (``vllm.LLM``); needs a GPU and the ``vllm`` package.

    Args:
        model_path: a Hugging Face model directory or hub id.
        settings: sampling settings.
        tensor_parallel_size: GPUs per model replica.
        gpu_memory_utilization: fraction of GPU memory vLLM may take.
        max_model_len: context length (prompt + response); default: the model's.
    """

    name = "vllm"

    def __init__(
        self,
        model_path: str,
        settings: SamplingSettings,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.9,
        max_model_len: int | None = None,
    ):
        from vllm import LLM

        self.settings = settings
        self.llm = LLM(
            model=model_path,
            tensor_parallel_size=tensor_parallel_size,
            gpu_memory_utilization=gpu_memory_utilization,
            max_model_len=max_model_len,
            seed=settings.seed,
        )
        self.tokenizer = self.llm.get_tokenizer()

    def generate(self, requests: list[Request]) -> list[list[Completion]]:
        from vllm import SamplingParams

        s = self.settings
        params = [
            SamplingParams(n=r.n, temperature=s.temperature, top_p=s.top_p, max_tokens=s.max_new_tokens, seed=r.seed)
            for r in requests
        ]
        # Token ids, tokenised like the transformers backend (the chat template already holds any BOS).
        prompts = [
            {"prompt_token_ids": self.tokenizer(r.text, add_special_tokens=False)["input_ids"]} for r in requests
        ]
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        return [
            [Completion(o.text, len(o.token_ids), o.finish_reason == "length") for o in result.outputs]
            for result in outputs
        ]


def vllm_available() -> bool:
    """True iff vLLM is installed and a CUDA GPU is visible."""
    if importlib.util.find_spec("vllm") is None:
        return False
    import torch

    return torch.cuda.is_available()


def make_generator(backend: str, model_path: str, settings: SamplingSettings, **options) -> Generator:
    """Build the generator for ``backend`` (``auto``: vLLM when available, else transformers).

    ``options``: ``batch_size``, ``device``, ``dtype`` (hf); ``tensor_parallel_size``,
    ``gpu_memory_utilization``, ``max_model_len`` (vllm). Options of the other backend are ignored.
    """
    if backend == "auto":
        backend = "vllm" if vllm_available() else "hf"
    if backend == "vllm":
        if importlib.util.find_spec("vllm") is None:
            raise RuntimeError(
                "--backend vllm: the vllm package is not installed; `pip install vllm` or use --backend hf."
            )
        keys = ("tensor_parallel_size", "gpu_memory_utilization", "max_model_len")
        return VLLMGenerator(model_path, settings, **{k: options[k] for k in keys if k in options})
    if backend == "hf":
        keys = ("batch_size", "device", "dtype")
        return HFGenerator(model_path, settings, **{k: options[k] for k in keys if k in options})
    raise ValueError(f"--backend {backend!r} is not one of ['auto', 'vllm', 'hf'].")
